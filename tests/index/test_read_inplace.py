"""Records read in place from their source: neighbouring records asked one after another are
read with one ``pread``; what is read is always the records, and a truncated source is named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import discoseq.index.reader as reader
from discoseq import StaleIndexError, build_index
from discoseq.index import CutIndex
from discoseq.synth import write_manifest

N = 60


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("inplace")
    a = write_manifest(root / "a.jsonl", N, seed=21, mixed_fraction=0.1)
    b = write_manifest(root / "b.jsonl", N, seed=22)
    b.write_bytes(  # other cut ids (the synthetic ids repeat across manifests)
        b"".join(
            line.replace(b'"id": "', b'"id": "b-', 1) + b"\n"
            for line in b.read_bytes().splitlines()
        )
    )
    lines = [line for p in (a, b) for line in p.read_bytes().splitlines() if line.strip()]
    return {"root": root, "paths": [a, b], "lines": lines}


def counting_pread(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count ``os.pread`` calls (their sizes) made while reading records."""
    sizes: list[int] = []
    real = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        sizes.append(n)
        return real(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    return sizes


def test_neighbouring_records_are_read_with_one_call(
    manifests: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build_index(manifests["paths"], tmp_path / "idx")
    assert all(s["records"] == "inplace" for s in index.header.sources)
    lines = manifests["lines"]
    calls = counting_pread(monkeypatch)
    rows = np.arange(10, 40)  # one source, one after another
    assert index.records(rows) == [lines[r] for r in rows.tolist()]
    assert len(calls) == 1
    calls.clear()
    rows = np.arange(N - 5, N + 5)  # across the two sources: one call each
    assert index.records(rows) == [lines[r] for r in rows.tolist()]
    assert len(calls) == 2
    calls.clear()
    rows = np.arange(39, 9, -1)  # backwards: a call each, the same records
    assert index.records(rows) == [lines[r] for r in rows.tolist()]
    assert len(calls) == 30
    calls.clear()
    rows = np.array([3, 4, 4, 5, 50, 51, 7])  # a repeated record starts a new read
    assert index.records(rows) == [lines[r] for r in rows.tolist()]
    assert len(calls) == 4
    calls.clear()
    by_row = index.records_in_file_order(np.random.default_rng(0).permutation(2 * N))
    assert by_row == dict(enumerate(lines))
    assert len(calls) == 2  # the whole of each file, in file order
    calls.clear()
    cap = 3 * max(map(len, lines))
    monkeypatch.setattr(reader, "COALESCE_BYTES", cap)
    assert index.records(np.arange(N)) == lines[:N]
    assert max(calls) <= cap and len(calls) >= sum(map(len, lines[:N])) / cap > 1
    cuts = index.resolve(np.arange(5, 25))
    assert [c.id for c in cuts] == index.cut_ids(np.arange(5, 25))


def test_records_far_apart_are_read_alone(
    manifests: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = build_index(manifests["paths"], tmp_path / "idx")
    lines = manifests["lines"]
    monkeypatch.setattr(reader, "COALESCE_GAP", 0)  # only records with no byte between them
    calls = counting_pread(monkeypatch)
    rows = np.arange(0, N, 2)  # every other record: a newline and a record apart
    assert index.records(rows) == [lines[r] for r in rows.tolist()]
    assert len(calls) == len(rows)
    assert sum(calls) == sum(len(lines[r]) for r in rows.tolist())  # no byte between read


def test_truncated_source_names_the_first_missing_record(manifests: dict, tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(manifests["paths"][0].read_bytes())
    index = build_index(path, tmp_path / "idx")
    offsets = index.column("record_offset")
    cut = int(offsets[30]) + 5  # inside record 30
    with open(path, "r+b") as f:
        f.truncate(cut)
    stale = CutIndex.open(tmp_path / "idx", check_sources=False)
    assert stale.records(np.arange(0, 30)) == manifests["lines"][:30]
    with pytest.raises(StaleIndexError, match=r"row 30: record of source .*a\.jsonl is truncated"):
        stale.records(np.arange(20, 40))
    with pytest.raises(StaleIndexError, match=r"row 35: record of source .*truncated"):
        stale.records([35])
