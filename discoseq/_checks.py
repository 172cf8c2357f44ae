"""Value checks shared by the configuration, the planner and the sampler (one home for each)."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable

__all__ = ["MAX_WORLD_SIZE", "U64_MAX", "close_name", "is_int", "is_real"]

U64_MAX = (1 << 64) - 1
"""The largest seed or epoch: both key a 64-bit random stream."""

MAX_WORLD_SIZE = 1 << 20
"""The most ranks a plan is made for (a million): plans allocate per rank, so a corrupted or
absurd world size must fail validation, not exhaust memory."""


def is_int(value: object) -> bool:
    """An integer (Python or NumPy), and not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (Python or NumPy, integers included), and not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def close_name(name: str, choices: Iterable[str]) -> str | None:
    """The choice a mistyped ``name`` most likely meant (difflib's closest, similarity at least
    0.6), or None: for the "did you mean" of an error message."""
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1)
    return close[0] if close else None
