"""Corruptions that ``CutIndex.open`` accepts (it does not scan columns) and the code reading a
value must catch: each an ``IndexFormatError`` naming the file and the row; ``verify`` reports
them (exit 1) and ``info``/``verify`` refuse what ``open`` rejects (exit 3). Header edge cases."""

from __future__ import annotations

import gzip
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from discoseq.cli.index_cli import main as index_cli
from discoseq.errors import IndexFormatError, ManifestError, StaleIndexError
from discoseq.index import CutIndex, build_index, verify_index
from discoseq.synth import write_manifest
from tests.index.stored import rewrite_stored_record

N = 12


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("corrupt")
    inplace = write_manifest(root / "a.jsonl", N // 2, seed=3)
    other = write_manifest(root / "b.jsonl", N - N // 2, seed=4)
    stored = root / "b.jsonl.gz"
    with gzip.open(stored, "wt") as f:
        for line in other.read_text().splitlines():
            record = json.loads(line)
            record["id"] = "b-" + record["id"]
            f.write(json.dumps(record) + "\n")
    build_index([inplace, stored], root / "base.idx")
    return root / "base.idx"


def copy(base: Path, tmp_path: Path) -> Path:
    out = tmp_path / "idx"
    shutil.copytree(base, out)
    return out


def set_value(idx: Path, column: str, row: int, value: int) -> None:
    path = idx / f"{column}.npy"
    a = np.load(path)
    a[row] = value
    np.save(path, a)


CASES: dict[str, tuple[str, int, int]] = {
    "source_id": ("source_id", 5, 7),
    "negative source_id": ("source_id", 5, -1),
    "negative record_offset": ("record_offset", 4, -7),
    "record_offset past stored records": ("record_offset", 9, 2**40),
    "record_length huge": ("record_length", 8, 2**32 - 1),
}


@pytest.mark.parametrize("case", list(CASES))
def test_record_addresses_are_checked(base, tmp_path, case) -> None:
    column, row, value = CASES[case]
    idx = copy(base, tmp_path)
    set_value(idx, column, row, value)
    index = CutIndex.open(idx)  # open stays cheap: it does not scan the columns
    with pytest.raises(IndexFormatError, match=rf"row {row}"):
        index.resolve(range(N))
    report = verify_index(idx)
    assert not report.ok
    result = CliRunner().invoke(index_cli, ["verify", str(idx)])
    assert result.exit_code == 1, result.output


def test_id_blob_not_utf8(base, tmp_path) -> None:
    idx = copy(base, tmp_path)
    offsets = np.load(idx / "id_offsets.npy")
    set_value(idx, "id_blob", int(offsets[3]) + 1, 0xFF)
    index = CutIndex.open(idx)
    with pytest.raises(IndexFormatError, match=r"id_blob\.npy: row 3"):
        index.cut_id(3)
    with pytest.raises(IndexFormatError, match=r"row 3"):
        index.cut_ids([0, 3])
    report = verify_index(idx)
    assert any("row 3" in p and "UTF-8" in p for p in report.problems)


def test_id_offsets_out_of_blob(base, tmp_path) -> None:
    idx = copy(base, tmp_path)
    set_value(idx, "id_offsets", 4, -5)
    index = CutIndex.open(idx)
    with pytest.raises(IndexFormatError, match=r"id_offsets\.npy: row 3"):
        index.cut_id(3)
    assert not verify_index(idx).ok


def test_npy_header_parse_error(base, tmp_path) -> None:
    idx = copy(base, tmp_path)
    data = bytearray((idx / "duration.npy").read_bytes())
    data[20:24] = b"'''("  # numpy's header parser raises tokenize.TokenError on this
    (idx / "duration.npy").write_bytes(bytes(data))
    with pytest.raises(IndexFormatError, match=r"duration\.npy"):
        CutIndex.open(idx)
    for command in ("info", "verify"):
        result = CliRunner().invoke(index_cli, [command, str(idx)])
        assert result.exit_code == 3, result.output
        assert "duration.npy" in result.output


def edit_header(idx: Path, change: Callable[[dict], object]) -> None:
    header = json.loads((idx / "header.json").read_text())
    change(header)
    (idx / "header.json").write_text(json.dumps(header))


HEADER_CASES: dict[str, tuple[Callable[[dict], object], str]] = {
    "no sources": (lambda h: h.update(sources=[]), "'sources' is empty"),
    "path None": (lambda h: h["sources"][0].update(path=None), r"sources\[0\]\.path"),
    "path a number": (lambda h: h["sources"][1].update(path=3), r"sources\[1\]\.path"),
    "rows a string": (lambda h: h["sources"][0].update(rows="6"), r"sources\[0\]\.rows"),
    "rows do not add up": (lambda h: h["sources"][0].update(rows=1), "add up"),
    "unknown format": (lambda h: h["sources"][0].update(format="csv"), "format"),
    "records size": (lambda h: h["records"].update(size=-1), "records.size"),
    "skipped examples": (lambda h: h["build"].update(skipped_examples=3), "skipped_examples"),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_header_edge_cases(base, tmp_path, case) -> None:
    change, message = HEADER_CASES[case]
    idx = copy(base, tmp_path)
    edit_header(idx, change)
    with pytest.raises(IndexFormatError, match=message):
        CutIndex.open(idx)


def test_deeply_nested_header(base, tmp_path) -> None:
    idx = copy(base, tmp_path)
    (idx / "header.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(IndexFormatError, match="nested"):
        CutIndex.open(idx)


def test_resolution_error_names_cut_file_and_line(tmp_path) -> None:
    """A stored record that still parses and carries its id but that Lhotse cannot load (here
    changed after the build): the error names the cut id, its source file and line."""
    manifest = write_manifest(tmp_path / "cuts.jsonl", 3, seed=2)
    index = build_index(manifest, tmp_path / "idx", store_records=True)
    assert b'"start"' in index.records([1])[0]
    rewrite_stored_record(index.path, 1, lambda r: r.replace(b'"start"', b'"stArt"', 1))
    cut_id = index.cut_id(1)
    with pytest.raises(
        ManifestError, match=rf"cut '{cut_id}'.*cuts\.jsonl:2: |cuts\.jsonl:2: .*{cut_id}"
    ):
        CutIndex.open(tmp_path / "idx").resolve([0, 1])


def test_inplace_source_gone_or_a_directory(tmp_path) -> None:
    """Opened without checking the sources (as workers do): reading a record names the
    source instead of a raw OSError."""
    manifest = write_manifest(tmp_path / "cuts.jsonl", 3, seed=2)
    build_index(manifest, tmp_path / "idx")
    manifest.unlink()
    with pytest.raises(StaleIndexError, match=r"cuts\.jsonl"):
        CutIndex.open(tmp_path / "idx", check_sources=False).resolve([0])
    manifest.mkdir()
    with pytest.raises(StaleIndexError, match=r"cuts\.jsonl"):
        CutIndex.open(tmp_path / "idx", check_sources=False).resolve([0])
    with pytest.raises(StaleIndexError, match=r"cuts\.jsonl"):
        CutIndex.open(tmp_path / "idx")
    assert not verify_index(tmp_path / "idx").ok


def test_source_path_with_a_nul_byte(base, tmp_path) -> None:
    idx = copy(base, tmp_path)
    edit_header(idx, lambda h: h["sources"][0].update(path="a\0b"))
    with pytest.raises(IndexFormatError, match="not a path"):
        CutIndex.open(idx)
