"""A small corpus shared by the ``discoseq`` command tests: its manifest and its index."""

from __future__ import annotations

import pytest

from discoseq.index import build_index
from discoseq.synth import write_manifest


@pytest.fixture(scope="package")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    manifest = write_manifest(d / "cuts.jsonl.gz", 400, seed=5)
    index = build_index(manifest, d / "cuts.idx")
    return manifest, index
