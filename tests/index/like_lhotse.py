"""Test helper: a decoder's cut against Lhotse's ``deserialize_cut`` for the same record."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from lhotse.cut.set import deserialize_cut

from discoseq.index.decode import CutDecoder, identical


def assert_like_lhotse(decoder: CutDecoder, record: dict[str, Any]) -> bool:
    """``decoder(record)`` is identical to ``deserialize_cut`` of a copy, or raises the type of
    error Lhotse raises for it. Returns True when Lhotse raised."""
    try:
        theirs: Any = deserialize_cut(copy.deepcopy(record))
    except Exception as e:
        with pytest.raises(type(e)):
            decoder(record)
        return True
    ours = decoder(record)
    assert identical(ours, theirs) is None, identical(ours, theirs)
    return False
