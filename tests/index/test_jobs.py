"""``jobs=N`` / ``--jobs N``: input files indexed in worker processes give the same bytes as one
process, the same errors (file and line; the first in input order), and leave nothing behind
when they fail or are interrupted."""

from __future__ import annotations

import errno
import gzip
import json
import multiprocessing
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from lhotse import CutSet

from discoseq.cli.index_cli import main as index_cli
from discoseq.errors import ManifestError
from discoseq.index import build_index
from discoseq.index import builder as builder_module
from discoseq.index.builder import WorkerDiedError
from discoseq.index.format import HEADER_FILE
from discoseq.synth import write_manifest


def renamed(src: Path, dst: Path, prefix: str) -> Path:
    """``src``'s records under ids prefixed with ``prefix`` (synth ids do not depend on the
    seed), written to ``dst`` (``.jsonl``, ``.jsonl.gz`` or a ``.json`` array)."""
    records = []
    for line in src.read_text().splitlines():
        record = json.loads(line)
        record["id"] = prefix + record["id"]
        records.append(record)
    if dst.name.endswith(".json"):
        dst.write_text(json.dumps(records))
    else:
        opener = gzip.open if dst.suffix == ".gz" else open
        with opener(dst, "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("jobs")
    a = write_manifest(root / "a.jsonl", 150, seed=1, mixed_fraction=0.2)
    b = renamed(write_manifest(root / "b0.jsonl", 120, seed=2), root / "b.jsonl.gz", "b-")
    c = renamed(
        write_manifest(root / "c0.jsonl", 40, seed=3, padding_fraction=0.3), root / "c.json", "c-"
    )
    return [a, b, c]


def index_files(path: Path) -> dict[str, bytes]:
    """Every file of an index; the header without its build time."""
    files = {p.name: p.read_bytes() for p in path.iterdir()}
    header = json.loads(files.pop(HEADER_FILE))
    header.pop("created")
    files[HEADER_FILE] = json.dumps(header).encode()
    return files


def test_parallel_build_is_byte_identical(inputs: list[Path], tmp_path: Path) -> None:
    cuts = CutSet.from_cuts(
        c.with_id("mem-" + c.id) for c in CutSet.from_file(inputs[0]).subset(first=30)
    )
    sources = [inputs[0], inputs[1], cuts, inputs[2]]  # a CutSet between files
    one = build_index(sources, tmp_path / "one.idx")
    assert one.header.records["dictionary"] is not None  # enough stored records to train one
    expected = index_files(one.path)
    for jobs in (2, 3, 8):
        many = build_index(sources, tmp_path / f"jobs{jobs}.idx", jobs=jobs)
        assert index_files(many.path) == expected, jobs
    assert len(one) == 150 + 120 + 30 + 40


@pytest.mark.parametrize("threads", [1, 3])
def test_id_hashes_sorted_and_merged_in_threads_give_the_same_bytes(
    inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """The end of a parallel build merges the parts' id hashes in as many threads as it has
    cores: the index is the same whatever that number (threads are given a few hashes each
    here so that every one gets some)."""
    from discoseq._core import idhash

    cuts = CutSet.from_cuts(
        c.with_id("mem-" + c.id) for c in CutSet.from_file(inputs[0]).subset(first=30)
    )
    sources = [inputs[0], inputs[1], cuts, inputs[2]]
    expected = index_files(build_index(sources, tmp_path / "one.idx").path)
    monkeypatch.setattr(idhash, "MIN_THREAD_HASHES", 8)
    monkeypatch.setattr(builder_module, "merge_threads", lambda: threads)
    for jobs in (2, 3):
        index = build_index(sources, tmp_path / f"threads{jobs}.idx", jobs=jobs)
        assert index_files(index.path) == expected, jobs


def test_skipped_records_are_merged_in_order(inputs: list[Path], tmp_path: Path) -> None:
    bad = []
    for k, path in enumerate(inputs[:2]):
        lines = (gzip.open(path, "rt") if path.suffix == ".gz" else open(path)).read().splitlines()
        lines[3] = "{not json"
        lines[7] = json.dumps({"id": f"x{k}", "type": "MonoCut"})
        bad.append(renamed_lines(tmp_path / f"bad{k}.jsonl", lines))
    one = build_index(bad, tmp_path / "one.idx", on_error="skip")
    two = build_index(bad, tmp_path / "two.idx", on_error="skip", jobs=2)
    assert one.header.build["skipped"] == 4
    assert index_files(two.path) == index_files(one.path)
    assert re.search(r"bad1\.jsonl:8: ", one.header.build["skipped_examples"][-1])


def renamed_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def no_leftovers(tmp_path: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not multiprocessing.active_children()


def test_worker_error_names_file_and_line(inputs: list[Path], tmp_path: Path) -> None:
    lines = inputs[0].read_text().splitlines()
    lines[4] = lines[4].replace('"duration": ', '"duration": -', 1)
    first = renamed_lines(tmp_path / "first.jsonl", lines)
    second = renamed_lines(tmp_path / "second.jsonl", ["{broken"])
    out = tmp_path / "out.idx"
    with pytest.raises(ManifestError) as one:
        build_index([inputs[1], second], out)
    with pytest.raises(ManifestError) as two:
        build_index([inputs[1], second], out, jobs=2)
    assert str(two.value) == str(one.value) and two.value.line == 1
    assert str(two.value).startswith(f"{second}:1: malformed JSON")
    no_leftovers(tmp_path, out)
    # two bad files: the first in input order is reported, as with one process
    with pytest.raises(ManifestError) as one:
        build_index([inputs[1], first, second], out)
    with pytest.raises(ManifestError) as two:
        build_index([inputs[1], first, second], out, jobs=3)
    assert str(two.value) == str(one.value) and f"{first}:5: " in str(two.value)
    no_leftovers(tmp_path, out)


def test_duplicates_and_empty_files_as_with_one_process(inputs: list[Path], tmp_path: Path) -> None:
    empty = renamed_lines(tmp_path / "empty.jsonl", [""])
    out = tmp_path / "out.idx"
    for bad in ([inputs[0], inputs[1], inputs[0]], [inputs[0], empty]):
        with pytest.raises(ManifestError) as one:
            build_index(bad, out)
        with pytest.raises(ManifestError) as two:
            build_index(bad, out, jobs=2)
        assert str(two.value) == str(one.value)
        no_leftovers(tmp_path, out)


def test_interrupted_parallel_build_leaves_nothing(
    inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the parts are appended: the workers are stopped, the temporary directory
    with every part removed, and no index appears."""

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(builder_module._IndexWriter, "add_part", interrupted)
    out = tmp_path / "out.idx"
    with pytest.raises(KeyboardInterrupt):
        build_index(inputs, out, jobs=2)
    no_leftovers(tmp_path, out)


def worker_dies(*args: object) -> None:
    """Stands for a worker killed while indexing a file."""
    os._exit(9)


def test_a_worker_that_dies_is_named(
    inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed (say by the out-of-memory killer) is no Python exception: the build
    says which file it was indexing and leaves nothing behind."""

    monkeypatch.setattr(builder_module, "_index_part", worker_dies)
    out = tmp_path / "out.idx"
    with pytest.raises(WorkerDiedError, match=rf"worker process indexing {inputs[0]} died"):
        build_index(inputs, out, jobs=2)
    no_leftovers(tmp_path, out)
    # on the command line: the message and exit 1, not a traceback
    result = CliRunner().invoke(index_cli, ["build", *map(str, inputs), "-o", str(out), "-j2"])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"error: the worker process indexing {inputs[0]} died" in result.output
    no_leftovers(tmp_path, out)


def test_progress_counts_cuts_of_all_processes(
    inputs: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_index(inputs, tmp_path / "idx", jobs=2, progress=True)
    err = capsys.readouterr().err
    assert re.search(r"310 cuts", err.replace("\r", "\n").strip().splitlines()[-1])


def test_jobs_option(inputs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jobs must be a positive number"):
        build_index(inputs, tmp_path / "x.idx", jobs=0)
    runner = CliRunner()
    result = runner.invoke(index_cli, ["build", *map(str, inputs), "-o", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    args = ["build", *map(str, inputs), "-o", str(tmp_path / "y"), "--jobs", "2", "-q"]
    result = runner.invoke(index_cli, args)
    assert result.exit_code == 0, result.output
    assert index_files(tmp_path / "y") == index_files(tmp_path / "x")
    result = runner.invoke(index_cli, ["build", str(inputs[0]), "-o", str(tmp_path / "z"), "-j0"])
    assert result.exit_code == 2 and "--jobs" in result.output
    assert os.listdir(tmp_path).count("z") == 0


def test_cutsets_around_parts_and_copies_without_copy_file_range(
    inputs: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows indexed in this process before, between and after the parts (CutSets) join the
    parts' sorted id runs in the merge; without ``os.copy_file_range`` (another file system,
    an old kernel) the parts are copied by reading and writing: the same bytes either way."""
    cuts = list(CutSet.from_file(inputs[0]).subset(first=25))
    first, middle, last = (
        CutSet.from_cuts(c.with_id(f"{tag}-{c.id}") for c in cuts) for tag in ("p", "q", "r")
    )
    sources = [first, inputs[0], inputs[1], middle, inputs[2], last]
    expected = index_files(build_index(sources, tmp_path / "one.idx").path)
    assert index_files(build_index(sources, tmp_path / "two.idx", jobs=2).path) == expected

    def unsupported(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", unsupported)
    assert index_files(build_index(sources, tmp_path / "three.idx", jobs=3).path) == expected
    files_only = [inputs[1], inputs[0], inputs[2]]
    expected = index_files(build_index(files_only, tmp_path / "four.idx").path)
    assert index_files(build_index(files_only, tmp_path / "five.idx", jobs=2).path) == expected


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five plain ``.jsonl`` files of different sizes, with blank lines (only whitespace) here
    and there: their rows are counted before they are scanned."""
    root = tmp_path_factory.mktemp("plain")
    paths = []
    for k, n in enumerate((60, 25, 90, 40, 70)):
        src = write_manifest(root / f"src{k}.jsonl", n, seed=10 + k, mixed_fraction=0.1)
        lines = [
            json.dumps({**json.loads(x), "id": f"f{k}-{i}"})
            for i, x in enumerate(src.read_text().splitlines())
        ]
        lines[3:3] = ["", "  \t", "\r"]  # blank: no rows
        paths.append(renamed_lines(root / f"plain{k}.jsonl", [*lines, " "]))
    return paths


@pytest.mark.parametrize("store_records", [False, True])
def test_rows_placed_by_the_workers_give_the_same_bytes(
    plain_files: list[Path], inputs: list[Path], tmp_path: Path, store_records: bool
) -> None:
    """Plain ``.jsonl`` inputs: the rows before each part are counted while the workers scan,
    and each worker writes its rows' columns straight into the index's files; the index is the
    same as one process builds, with records read in place or stored, for any number of jobs,
    and with inputs that cannot be counted (a ``.gz``, a CutSet) after the plain ones."""
    cuts = CutSet.from_cuts(
        c.with_id("mem-" + c.id) for c in CutSet.from_file(inputs[0]).subset(first=20)
    )
    for sources in (plain_files, [*plain_files[:3], inputs[1], cuts, *plain_files[3:]]):
        one = build_index(sources, tmp_path / "one.idx", store_records=store_records, force=True)
        expected = index_files(one.path)
        for jobs in (2, 3, 5, 8):
            out = tmp_path / f"jobs{jobs}.idx"
            many = build_index(sources, out, store_records=store_records, jobs=jobs, force=True)
            assert index_files(many.path) == expected, (jobs, len(sources))


def test_rows_placed_when_a_file_changes_meanwhile_is_an_error(
    plain_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose rows differ from those counted before it was scanned (it changed
    meanwhile) would leave the next files' rows at the wrong place: the build stops, naming it."""
    counted = builder_module._count_rows
    monkeypatch.setattr(
        builder_module, "_count_rows", lambda path: counted(path) + (path.endswith("plain1.jsonl"))
    )
    out = tmp_path / "out.idx"
    with pytest.raises(ManifestError, match=r"plain1\.jsonl: changed while it was being indexed"):
        build_index(plain_files, out, jobs=5)
    no_leftovers(tmp_path, out)


@pytest.mark.parametrize("hold", [0, 1 << 30])
def test_rows_held_until_their_first_row_is_counted_give_the_same_bytes(
    plain_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hold: int
) -> None:
    """The rows before a part counted late (a slow disk): its worker scans meanwhile, holding
    its placed columns in memory (up to ``HOLD_BYTES``, then waiting), and writes them at their
    rows once counted: the same index as one process builds."""
    expected = index_files(build_index(plain_files, tmp_path / "one.idx").path)
    counted = builder_module._count_rows

    def slow(path: str) -> int:
        time.sleep(0.2)
        return counted(path)

    monkeypatch.setattr(builder_module, "_count_rows", slow)
    monkeypatch.setattr(builder_module, "HOLD_BYTES", hold)
    for jobs in (2, 5):
        index = build_index(plain_files, tmp_path / f"jobs{jobs}.idx", jobs=jobs)
        assert index_files(index.path) == expected, (jobs, hold)


def test_placed_parts_report_errors_and_skip_as_one_process(
    plain_files: list[Path], tmp_path: Path
) -> None:
    """A bad line in a plain file after the first part: the error names its file and line as
    with one process; with ``on_error="skip"`` nothing is placed after the first part (the rows
    cannot be counted before the lines are read) and the index is the same."""
    lines = plain_files[3].read_text().splitlines()
    lines[10] = lines[10].replace('"duration": ', '"duration": -', 1)
    bad = [*plain_files[:3], renamed_lines(tmp_path / "bad3.jsonl", lines), plain_files[4]]
    out = tmp_path / "out.idx"
    with pytest.raises(ManifestError) as one:
        build_index(bad, out)
    with pytest.raises(ManifestError) as two:
        build_index(bad, out, jobs=3)
    assert str(two.value) == str(one.value) and f"{bad[3]}:11: " in str(two.value)
    no_leftovers(tmp_path, out)
    one_idx = build_index(bad, tmp_path / "one.idx", on_error="skip")
    two_idx = build_index(bad, tmp_path / "two.idx", on_error="skip", jobs=3)
    assert one_idx.header.build["skipped"] == 1
    assert index_files(two_idx.path) == index_files(one_idx.path)


def test_a_worker_that_dies_while_placing_rows_is_named(
    plain_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed after it wrote rows into the index's files (its part placed after the
    first): the build names the files it was indexing and leaves nothing behind."""
    parent = os.getpid()
    add = builder_module._IndexWriter.add

    def dies_after_placing(self: Any, *args: Any) -> int:
        lines = add(self, *args)
        if os.getpid() != parent and args[2].path.endswith("plain3.jsonl"):
            self.place(wait=True)  # its first row counted: the held rows written
            placed = self.columns["duration"]
            assert "duration" in self.placed and placed.path.parent != self.tmp
            placed._file.flush()  # its rows are in the index's file
            os._exit(9)
        return lines

    monkeypatch.setattr(builder_module._IndexWriter, "add", dies_after_placing)
    out = tmp_path / "out.idx"
    with pytest.raises(WorkerDiedError, match=rf"indexing {plain_files[3]} to {plain_files[4]} "):
        build_index(plain_files, out, jobs=3)
    no_leftovers(tmp_path, out)


def test_a_part_done_is_not_named_when_its_worker_dies_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker records its process on the part only while indexing it: one that dies in a
    later part is not said to have died in the parts it finished."""
    from discoseq.index.sources import Source

    pids = [0, 0]
    monkeypatch.setattr(builder_module, "_part_pids", pids)
    seen = []

    def indexes(writer: Any, *args: Any) -> None:
        seen.append(pids[1])
        args[1].rows = 1

    monkeypatch.setattr(builder_module, "_index_source", indexes)
    source = Source(str(tmp_path / "a.jsonl"), "jsonl", "stored")
    (tmp_path / "part-1").mkdir()  # made by the building process
    builder_module._index_part(
        str(tmp_path / "part-1"), 1, [(0, source)], "raise", b"", None, False
    )
    assert seen == [os.getpid()] and pids == [0, 0]

    class Ended:
        exitcode = 9

    pids[0] = 123  # part 0 still being indexed by process 123, which ended
    assert builder_module._died({123: Ended(), 456: Ended()}, pids, [0, 1]) == [0]


def test_a_worker_whose_building_process_is_gone_stops_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker asking for its part's first row exits once its building process is gone
    (killed while counting rows) instead of polling for ever."""

    class Exited(Exception):
        pass

    def exits(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(builder_module, "_first_rows", [-1])
    monkeypatch.setattr(builder_module, "_parent_pid", -1)  # not this process's parent
    monkeypatch.setattr(builder_module.os, "_exit", exits)
    with pytest.raises(Exited):
        builder_module._known_first_row(0)


def test_part_ranges_split_files_by_bytes() -> None:
    from discoseq.index.sources import Source

    def src(size: int, fmt: str = "jsonl") -> Source:
        return Source("p", fmt, "stored" if fmt != "jsonl" else "inplace", size=size)

    equal = [src(100) for _ in range(10)]
    assert builder_module._part_ranges(equal, 2) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert builder_module._part_ranges(equal, 20) == [[i] for i in range(10)]
    # a CutSet and a stored source between: parts end there
    mixed = [src(100), src(100), src(0, "cutset"), src(100), src(50, "jsonl.gz"), src(50)]
    assert builder_module._part_ranges(mixed, 2) == [[0, 1], [3], [4], [5]]
    assert builder_module._part_ranges([src(900), src(50), src(50)], 2) == [[0], [1, 2]]


@pytest.mark.parametrize("block", [8, 64, 1 << 20])
def test_rows_counted_in_blocks_are_the_rows_scanned(
    plain_files: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """The rows of a plain file counted before it is scanned, read in blocks (lines across
    blocks, lines longer than a block, blank lines, no newline at the end): the rows its index
    has."""
    monkeypatch.setattr(builder_module, "COUNT_BLOCK_BYTES", block)
    no_newline = tmp_path / "no_newline.jsonl"
    no_newline.write_bytes(plain_files[0].read_bytes().rstrip())
    for path in [*plain_files, no_newline]:
        rows = len(build_index(path, tmp_path / "one.idx", force=True))
        assert builder_module._count_rows(str(path)) == rows, (path, block)


@pytest.mark.parametrize("cores", [1, 2, 4])
def test_reading_in_threads_or_not_gives_the_same_bytes(
    plain_files: list[Path],
    inputs: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cores: int,
) -> None:
    """Each building process reads, scans and compresses in threads of its own only when it
    has two cores or more to itself (``pipeline_threads``), else chunk after chunk in one
    thread: the same index either way, and a bad record still named by file and line."""
    cuts = CutSet.from_cuts(
        c.with_id("mem-" + c.id) for c in CutSet.from_file(inputs[0]).subset(first=20)
    )
    sources = [*plain_files[:2], inputs[1], cuts, inputs[2], *plain_files[2:]]
    expected = index_files(build_index(sources, tmp_path / "threads.idx").path)
    monkeypatch.setattr(builder_module, "usable_cores", lambda: cores)
    assert builder_module.pipeline_threads(2) == (cores >= 4)
    for jobs in (1, 2):
        index = build_index(sources, tmp_path / f"{cores}-{jobs}.idx", jobs=jobs)
        assert index_files(index.path) == expected, (cores, jobs)
    lines = plain_files[2].read_text().splitlines()
    lines[7] = "{broken"
    bad = [plain_files[0], renamed_lines(tmp_path / "bad.jsonl", lines)]
    for jobs in (1, 2):
        with pytest.raises(ManifestError, match=rf"{tmp_path / 'bad.jsonl'}:8: malformed JSON"):
            build_index(bad, tmp_path / "bad.idx", jobs=jobs)
