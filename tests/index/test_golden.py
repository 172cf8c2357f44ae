"""Tiny indexes checked into git: today's code must read the current one and the older formats it
still supports, and must write the current one's bytes.

If this fails after a change to the format, that change is a decision: bump FORMAT_VERSION,
add ``tests/data/golden_index_v<new>`` (keep the old ones while they are read) and say so in the
commit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lhotse import CutSet

from discoseq import CutIndex, build_index
from discoseq.index import verify_index
from discoseq.index.format import COLUMNS, FORMAT_VERSION, RECORDS_FILE

DATA = Path(__file__).resolve().parents[1] / "data"
GOLDEN = DATA / f"golden_index_v{FORMAT_VERSION}"
INPUTS = ("ljspeech_cuts.json", "lsmix_cuts.000000.jsonl.gz")


@pytest.mark.parametrize("version", [1, FORMAT_VERSION])
def test_golden_index_opens_and_resolves(fixtures_dir, version):
    """Format 1 (records stored uncompressed) is still read, as is the current format."""
    index = CutIndex.open(DATA / f"golden_index_v{version}", check_sources=False)
    assert index.header.raw["format_version"] == version
    assert index.header.records["codec"] == ("none" if version == 1 else "zstd")
    expected = [c for name in INPUTS for c in CutSet.from_file(fixtures_dir / name)]
    assert len(index) == len(expected) == 4
    assert [c.to_dict() for c in index.resolve(np.arange(4))] == [c.to_dict() for c in expected]
    assert index.row_of(expected[2].id) == 2
    report = verify_index(index.path)  # decompresses (format 2) and rechecks every record
    assert report.ok, report.problems


def test_builder_writes_the_golden_bytes(tmp_path, fixtures_dir):
    index = build_index([fixtures_dir / name for name in INPUTS], tmp_path / "idx")
    for name in COLUMNS:
        fresh = (index.path / f"{name}.npy").read_bytes()
        assert fresh == (GOLDEN / f"{name}.npy").read_bytes(), name
    assert (index.path / RECORDS_FILE).read_bytes() == (GOLDEN / RECORDS_FILE).read_bytes()
    fresh_header = json.loads((index.path / "header.json").read_text())
    golden_header = json.loads((GOLDEN / "header.json").read_text())
    for header in (fresh_header, golden_header):
        header.pop("created")
        header.pop("discoseq_version")
        for source in header["sources"]:
            source["path"] = Path(source["path"]).name
            source["given"] = Path(source["given"]).name  # the path as given (not resolved)
            source.pop("mtime_ns")
    assert fresh_header == golden_header


def test_a_rebuild_in_the_current_format_keeps_the_fingerprint(tmp_path, fixtures_dir):
    """Format 2 changed only how stored records are kept: the same manifests give the same
    rows, so a sampler state saved against a format-1 index resumes on a rebuilt one."""
    old = CutIndex.open(DATA / "golden_index_v1", check_sources=False)
    new = build_index([fixtures_dir / name for name in INPUTS], tmp_path / "idx")
    assert new.header.raw["format_version"] == FORMAT_VERSION != 1
    assert new.fingerprint == old.fingerprint
