"""Building, opening and resolving indexes: round trips on Lhotse's fixtures; every bad input."""

from __future__ import annotations

import gzip
import json
import multiprocessing as mp
import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pytest
from lhotse import CutSet, RecordingSet, SupervisionSet

import discoseq._core.cutscan as cutscan
import discoseq.index.builder as builder
from discoseq import CutIndex, IndexFormatError, ManifestError, StaleIndexError, build_index
from discoseq.index import verify_index
from tests.index.pyscan import scan_all_slow

CUT_FIXTURES = [
    "ami_cuts.json",
    "libri_cuts.json",
    "libri_cuts_multi.json",
    "libri_cuts_no_feats.json",
    "libri_cuts_no_recording.json",
    "ljspeech_cuts.json",
    "lsmix_cuts.000000.jsonl.gz",
]


@pytest.fixture(params=["compiled", "python"])
def scanner(request, monkeypatch):
    """Run a test with the compiled scanner and with every line on the exact Python path (in
    the builder and in verify_index: both scan through ``builder.line_scanner``)."""
    if request.param == "python":
        monkeypatch.setattr(cutscan, "scan_cut_lines", scan_all_slow)
    return request.param


def mini_librispeech(fixtures_dir: Path) -> CutSet:
    return CutSet.from_manifests(
        recordings=RecordingSet.from_file(
            fixtures_dir / "mini_librispeech_lhotse_recordings.jsonl.gz"
        ),
        supervisions=SupervisionSet.from_file(
            fixtures_dir / "mini_librispeech_lhotse_supervisions.jsonl.gz"
        ),
    )


def opt(value):
    return -1 if value is None else value


def assert_columns_match(index: CutIndex, cuts) -> None:
    cuts = list(cuts)
    assert len(index) == len(cuts)
    for row, cut in enumerate(cuts):
        assert index.cut_id(row) == cut.id
        assert index.duration[row] == cut.duration
        assert index.num_frames[row] == opt(cut.num_frames)
        assert index.num_samples[row] == opt(cut.num_samples)
        assert index.num_features[row] == opt(cut.num_features)
        texts = [s.text for s in cut.supervisions if s.text is not None]
        assert index.num_tokens[row] == (sum(map(len, texts)) if texts else -1)
        assert index.column("num_supervisions")[row] == len(cut.supervisions)


def write_lines(path: Path, records) -> Path:
    data = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


@pytest.fixture
def mono(fixtures_dir):
    return CutSet.from_file(fixtures_dir / "libri_cuts.json")[0].to_dict()


def mono_records(base: dict, n: int, prefix: str = "c") -> list[dict]:
    out = []
    for i in range(n):
        rec = json.loads(json.dumps(base))
        rec["id"] = f"{prefix}-{i}"
        rec["duration"] = round(1.0 + i * 0.37, 4)
        out.append(rec)
    return out


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CUT_FIXTURES)
def test_fixture_round_trip(tmp_path, fixtures_dir, scanner, name):
    path = fixtures_dir / name
    index = build_index(path, tmp_path / "idx")
    cuts = CutSet.from_file(path)
    assert_columns_match(index, cuts)
    resolved = index.resolve(np.arange(len(index)))
    assert [c.to_dict() for c in resolved] == [c.to_dict() for c in cuts]
    assert verify_index(index.path).ok


def test_build_and_verify_scan_through_line_scanner(tmp_path, fixtures_dir, monkeypatch):
    """One scanner for both (what the ``scanner`` fixture relies on): builder.line_scanner."""
    calls: list[str] = []
    compiled = builder.line_scanner()

    def counting(buf):
        calls.append("scan")
        return compiled(buf)

    monkeypatch.setattr(cutscan, "scan_cut_lines", counting)
    assert builder.line_scanner() is counting
    index = build_index(fixtures_dir / "libri_cuts.json", tmp_path / "idx")
    built = len(calls)
    assert built > 0
    assert verify_index(index.path).ok
    assert len(calls) > built


def test_mini_librispeech_cutset_and_files(tmp_path, fixtures_dir, scanner):
    cuts = mini_librispeech(fixtures_dir)
    eager = build_index(cuts, tmp_path / "eager")
    assert_columns_match(eager, cuts)
    cuts.to_file(tmp_path / "mini.jsonl")
    cuts.to_file(tmp_path / "mini.jsonl.gz")
    lazy = build_index(CutSet.from_file(tmp_path / "mini.jsonl.gz"), tmp_path / "lazy")
    assert_columns_match(lazy, cuts)
    inplace = build_index(tmp_path / "mini.jsonl", tmp_path / "inplace")
    assert inplace.header.sources[0]["records"] == "inplace"
    assert inplace.header.records["size"] == 0
    stored = build_index(tmp_path / "mini.jsonl", tmp_path / "stored", store_records=True)
    assert stored.header.sources[0]["records"] == "stored"
    rows = [5, 0, 37, 5]
    expected = [cuts[i].to_dict() for i in rows]
    for index in (eager, lazy, inplace, stored):
        assert [c.to_dict() for c in index.resolve(rows)] == expected


def test_several_inputs_keep_order(tmp_path, fixtures_dir, scanner):
    files = [
        fixtures_dir / "ljspeech_cuts.json",
        fixtures_dir / "libri_cuts.json",
        fixtures_dir / "lsmix_cuts.000000.jsonl.gz",
    ]
    index = build_index(files, tmp_path / "idx")
    expected = [c for f in files for c in CutSet.from_file(f)]
    assert_columns_match(index, expected)
    assert list(index.column("source_id")) == [0, 0, 1, 2, 2]
    assert list(index.column("source_line")) == [1, 2, 1, 1, 2]


def test_mixed_and_padding_cuts(tmp_path, fixtures_dir, scanner):
    cuts = mini_librispeech(fixtures_dir).subset(first=4)
    a, b, c, d = list(cuts)
    mixed = [
        a.mix(b, offset_other_by=1.5, snr=10).with_id("mix-1"),
        a.pad(duration=a.duration + 3.25).with_id("pad-1"),
        c.mix(d, offset_other_by=0.1).mix(a, offset_other_by=2.0).with_id("mix-3"),
        c.pad(duration=c.duration + 1.0, direction="left").with_id("pad-2"),
    ]
    padding = a.pad(duration=a.duration + 3.0).tracks[1].cut.with_id("padding-alone")
    records = [m.to_dict() for m in mixed] + [padding.to_dict()]
    path = write_lines(tmp_path / "mixed.jsonl", records)
    index = build_index(path, tmp_path / "idx")
    expected = [*mixed, padding]
    assert_columns_match(index, expected)
    assert list(index.column("cut_type")) == [1, 1, 1, 1, 2]
    resolved = index.resolve(np.arange(5))
    assert [x.to_dict() for x in resolved] == records


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["tracks"][1].update(offset="1.5"), "'tracks[1].offset' expected a number"),
        (lambda r: r["tracks"][1].update(offset=True), "'tracks[1].offset' expected a number"),
        (lambda r: r["tracks"][1].update(offset=None), "'tracks[1].offset' expected a number"),
        (lambda r: r["tracks"][0]["cut"].update(duration=False), "'tracks[0].cut.duration' exp"),
    ],
)
def test_bad_mixed_cut_fields(tmp_path, fixtures_dir, scanner, edit, message):
    a, b = list(mini_librispeech(fixtures_dir).subset(first=2))
    record = a.mix(b, offset_other_by=1.5).with_id("mix").to_dict()
    edit(record)
    with pytest.raises(ManifestError, match=rf"mixed\.jsonl:1: field {re.escape(message)}"):
        build_index(write_lines(tmp_path / "mixed.jsonl", [record]), tmp_path / "idx")


def test_mixed_cut_track_offset_defaults_to_zero(tmp_path, fixtures_dir, scanner):
    a, b = list(mini_librispeech(fixtures_dir).subset(first=2))
    mixed = a.mix(b, offset_other_by=1.5).with_id("mix")
    record = mixed.to_dict()
    assert record["tracks"][0]["offset"] == 0
    del record["tracks"][0]["offset"]
    index = build_index(write_lines(tmp_path / "mixed.jsonl", [record]), tmp_path / "idx")
    assert_columns_match(index, [mixed])


@pytest.mark.parametrize("value", [80.0, True, "80"])
def test_feature_dimension_must_be_an_integer(tmp_path, mono, scanner, value):
    record = json.loads(json.dumps(mono))
    record["features"]["num_features"] = value
    with pytest.raises(ManifestError, match=r"'features\.num_features' expected an integer"):
        build_index(write_lines(tmp_path / "a.jsonl", [record]), tmp_path / "idx")


def test_ids_and_lookup(tmp_path, mono):
    records = mono_records(mono, 300)
    records[7]["id"] = "ünïcödé-√-7"
    index = build_index(write_lines(tmp_path / "m.jsonl", records), tmp_path / "idx")
    for row in (0, 7, 299):
        assert index.row_of(records[row]["id"]) == row
        assert index.cut_id(row) == records[row]["id"]
    assert "c-5" in index and "nope" not in index
    with pytest.raises(KeyError, match="nope"):
        index.row_of("nope")
    with pytest.raises(IndexError):
        index.cut_id(300)
    assert index.cut_id(-1) == "c-299"
    for name, col in index.columns.items():
        assert not col.flags.writeable, name


def test_pickles_as_path_and_resolves_in_threads_and_forks(tmp_path, mono):
    records = mono_records(mono, 500)
    index = build_index(write_lines(tmp_path / "m.jsonl", records), tmp_path / "idx")
    assert len(pickle.dumps(index)) < 500
    index.resolve([0])  # open a descriptor before forking
    rows = np.random.default_rng(0).permutation(500)[:200]
    expected = [records[r]["id"] for r in rows]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda r: index.resolve([r])[0].id, rows.tolist()))
    assert got == expected
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        ids = pool.map(_resolve_ids, [(index, rows[:100]), (index, rows[100:])])
    assert ids[0] + ids[1] == expected


def test_relative_index_path_survives_a_change_of_directory(tmp_path, mono, monkeypatch):
    records = mono_records(mono, 20)
    monkeypatch.chdir(tmp_path)
    gz = tmp_path / "m.jsonl.gz"  # records stored in the index's records.bin
    with gzip.open(gz, "wb") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    index = build_index("m.jsonl.gz", "idx")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert [c.id for c in index.resolve([3, 1])] == ["c-3", "c-1"]
    assert [c.id for c in pickle.loads(pickle.dumps(index)).resolve([2])] == ["c-2"]


def _resolve_ids(args):
    index, rows = args
    return [c.id for c in index.resolve(rows)]


# -- bad input --------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match=r"nothere\.jsonl: no such file"):
        build_index(tmp_path / "nothere.jsonl", tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mini_librispeech_lhotse_recordings.jsonl.gz", "recording manifest"),
        ("mini_librispeech_lhotse_supervisions.jsonl.gz", "supervision manifest"),
    ],
)
def test_not_a_cut_manifest(tmp_path, fixtures_dir, scanner, name, kind):
    with pytest.raises(ManifestError, match=rf"{name}:1: .*{kind}.*make cuts first"):
        build_index(fixtures_dir / name, tmp_path / "idx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("record", "what"),
    [
        ({"id": "r1", "type": "Recording"}, "recording manifest"),
        ({"id": "s1", "type": "SupervisionSegment"}, "supervision manifest"),
        # what Lhotse writes for a Features record: the extractor's name as its type
        (
            {
                "type": "kaldi-fbank",
                "num_frames": 10,
                "num_features": 80,
                "frame_shift": 0.01,
                "storage_type": "lilcom_chunky",
                "storage_path": "f",
                "storage_key": "0",
            },
            "features manifest",
        ),
    ],
)
def test_a_record_of_another_manifest_is_named(tmp_path, scanner, record, what):
    """Named as the manifest it comes from, with how to make cuts; skipping bad records would
    not help, so that is not suggested (it is for a malformed cut record)."""
    path = write_lines(tmp_path / "other.jsonl", [json.dumps(record)])
    with pytest.raises(ManifestError, match=rf"other\.jsonl:1: this looks like .*{what}") as e:
        build_index(path, tmp_path / "idx")
    assert "features=...)" in str(e.value) and "--on-error skip" not in str(e.value)


def test_malformed_line_names_file_and_line(tmp_path, mono, scanner):
    lines = [json.dumps(r) for r in mono_records(mono, 5)]
    lines.insert(3, '{"id": "broken", "duration": 1.0, ')
    path = write_lines(tmp_path / "bad.jsonl.gz", lines)
    with pytest.raises(ManifestError, match=r"bad\.jsonl\.gz:4: malformed JSON at column 35") as e:
        build_index(path, tmp_path / "idx")
    assert str(e.value).endswith("--on-error skip, build_index(..., on_error='skip'))")


@pytest.mark.parametrize(
    ("duration", "message"),
    [
        (None, "field 'duration' is missing"),
        (-1.0, "positive finite"),
        (0.0, "positive finite"),
        (0, "positive finite"),
        ("NaN", "malformed JSON"),
        ("Infinity", "malformed JSON"),
        ('"10.0"', "expected a number"),
    ],
)
def test_bad_durations(tmp_path, mono, scanner, duration, message):
    records = mono_records(mono, 3)
    bad = json.dumps(records[1])
    if duration is None:
        bad = json.dumps({k: v for k, v in records[1].items() if k != "duration"})
    else:
        bad = bad.replace('"duration": 1.37', f'"duration": {duration}', 1)
    lines = [json.dumps(records[0]), bad, json.dumps(records[2])]
    path = write_lines(tmp_path / "d.jsonl", lines)
    with pytest.raises(ManifestError, match=rf"d\.jsonl:2: .*{message}"):
        build_index(path, tmp_path / "idx")


@pytest.mark.parametrize("cut_id", ["", 5, None])
def test_bad_ids(tmp_path, mono, scanner, cut_id):
    records = mono_records(mono, 3)
    records[2]["id"] = cut_id
    path = write_lines(tmp_path / "a.jsonl", records)
    with pytest.raises(ManifestError, match=r"a\.jsonl:3: field 'id' expected a non-empty string"):
        build_index(path, tmp_path / "idx")


def test_duplicate_ids_within_and_across(tmp_path, mono, scanner):
    records = mono_records(mono, 10)
    records[8]["id"] = "c-2"
    path = write_lines(tmp_path / "a.jsonl", records)
    with pytest.raises(
        ManifestError, match=r"duplicate cut id 'c-2' at .*a\.jsonl:3 and .*a\.jsonl:9"
    ):
        build_index(path, tmp_path / "idx")
    a = write_lines(tmp_path / "x.jsonl", mono_records(mono, 4))
    b = write_lines(tmp_path / "y.jsonl.gz", mono_records(mono, 4)[3:])
    with pytest.raises(
        ManifestError, match=r"duplicate cut id 'c-3' at .*x\.jsonl:4 and .*y\.jsonl\.gz:1"
    ):
        build_index([a, b], tmp_path / "idx")
    assert not (tmp_path / "idx").exists()
    # parts in worker processes: found while the id columns are written, in threads
    with pytest.raises(
        ManifestError, match=r"duplicate cut id 'c-3' at .*x\.jsonl:4 and .*y\.jsonl\.gz:1"
    ):
        build_index([a, b], tmp_path / "idx", jobs=2)
    assert not (tmp_path / "idx").exists()
    assert not list(tmp_path.glob(".idx*"))  # no build directory left beside it


def test_empty_manifest(tmp_path, mono):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n  \n")
    with pytest.raises(ManifestError, match=r"empty\.jsonl: contains no cuts"):
        build_index(empty, tmp_path / "idx")
    ok = write_lines(tmp_path / "ok.jsonl", mono_records(mono, 2))
    with pytest.raises(ManifestError, match=r"empty\.jsonl: contains no cuts"):
        build_index([ok, empty], tmp_path / "idx")
    (tmp_path / "e.json").write_text("[]")
    with pytest.raises(ManifestError, match="contains no cuts"):
        build_index(tmp_path / "e.json", tmp_path / "idx")
    assert not (tmp_path / "idx").exists()


def test_existing_output_needs_force(tmp_path, mono):
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 3))
    build_index(path, tmp_path / "idx")
    with pytest.raises(FileExistsError, match="force"):
        build_index(path, tmp_path / "idx")
    path2 = write_lines(tmp_path / "b.jsonl", mono_records(mono, 5))
    assert len(build_index(path2, tmp_path / "idx", force=True)) == 5
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not a discoseq index"):
        build_index(path, precious, force=True)
    assert (precious / "thesis.tex").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "idx", "precious"]


def modes(index_dir: Path) -> tuple[int, set[int]]:
    """Permission bits of an index directory and the set of those of its files."""
    files = {p.stat().st_mode & 0o777 for p in index_dir.iterdir()}
    return index_dir.stat().st_mode & 0o777, files


@pytest.mark.parametrize(("umask", "dir_mode", "file_mode"), [(0o022, 0o755, 0o644),
                                                              (0o027, 0o750, 0o640)])  # fmt: skip
def test_index_gets_the_umask_permissions(tmp_path, mono, umask, dir_mode, file_mode):
    """As mkdir and open give, so a team on a shared machine can read it (not mkdtemp's 0o700),
    also when an existing index is replaced."""
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 3))
    old = os.umask(umask)
    try:
        built = build_index(path, tmp_path / "idx")
        assert modes(built.path) == (dir_mode, {file_mode})
        replaced = build_index(path, tmp_path / "idx", force=True)
        assert modes(replaced.path) == (dir_mode, {file_mode})
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "idx"]


@pytest.mark.parametrize("lazy", [False, True])
def test_progress_of_a_cutset_counts_cuts(tmp_path, mono, capsys, lazy):
    """A CutSet has no bytes to count: the bar counts cuts (of a known total when eager)."""
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 7))
    cuts = CutSet.from_file(path) if lazy else CutSet.from_file(path).to_eager()
    build_index(cuts, tmp_path / "idx", progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert " cuts" in bar and "B/s" not in bar, bar
    assert ("7.00 cuts" in bar) if lazy else ("7.00/7.00" in bar), bar


def test_interrupted_build_leaves_nothing(tmp_path, mono, monkeypatch):
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 50))
    old = build_index(path, tmp_path / "idx")
    old_header = (old.path / "header.json").read_bytes()
    calls = 0
    original = builder._IndexWriter.add

    def interrupted(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        original(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(builder._IndexWriter, "add", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(path, tmp_path / "new")
    with pytest.raises(KeyboardInterrupt):
        build_index(path, tmp_path / "idx", force=True)
    assert calls == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "idx"]
    assert (tmp_path / "idx" / "header.json").read_bytes() == old_header
    assert len(CutIndex.open(tmp_path / "idx")) == 50


def test_stale_source(tmp_path, mono):
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 4))
    build_index(path, tmp_path / "idx")
    records = mono_records(mono, 4)
    records[2]["id"] = "c-X"  # same size, different content
    st = path.stat()
    write_lines(path, records)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(StaleIndexError, match=r"a\.jsonl was modified.*discoseq-index build"):
        CutIndex.open(tmp_path / "idx")
    index = CutIndex.open(tmp_path / "idx", check_sources=False)
    assert index.resolve([1])[0].id == "c-1"
    with pytest.raises(StaleIndexError, match="does not match its source"):
        index.resolve([2])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # content changed, stat identical
    CutIndex.open(tmp_path / "idx")
    report = verify_index(tmp_path / "idx")
    assert not report.ok
    assert any("content changed" in p for p in report.problems)
    path.unlink()
    with pytest.raises(StaleIndexError, match="no longer exists"):
        CutIndex.open(tmp_path / "idx")


@pytest.mark.parametrize("kind", ["store_records", "gz"])
def test_stored_records_survive_a_moved_or_deleted_source(tmp_path, mono, kind):
    records = mono_records(mono, 6)
    if kind == "gz":
        path = tmp_path / "a.jsonl.gz"
        with gzip.open(path, "wb") as f:
            f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    else:
        path = write_lines(tmp_path / "a.jsonl", records)
    build_index(path, tmp_path / "idx", store_records=kind == "store_records")
    path.rename(tmp_path / "moved")
    index = CutIndex.open(tmp_path / "idx")  # the records are in the index: not stale
    assert [c.id for c in index.resolve([4, 0])] == ["c-4", "c-0"]
    report = verify_index(tmp_path / "idx")
    assert report.ok and any("no longer exists" in n for n in report.notes)
    (tmp_path / "moved").rename(path)
    path.write_bytes(path.read_bytes() + b"\n")  # present but changed: still stale
    with pytest.raises(StaleIndexError, match="changed size"):
        CutIndex.open(tmp_path / "idx")


def test_on_error_skip_counts(tmp_path, mono, scanner):
    lines = [json.dumps(r) for r in mono_records(mono, 6)]
    lines[1] = "{not json"
    lines[4] = json.dumps({"id": "r", "sources": [], "sampling_rate": 16000})
    path = write_lines(tmp_path / "a.jsonl", lines)
    index = build_index(path, tmp_path / "idx", on_error="skip")
    assert len(index) == 4
    assert index.header.build["skipped"] == 2
    assert "a.jsonl:2" in index.header.build["skipped_examples"][0]
    assert [index.cut_id(i) for i in range(4)] == ["c-0", "c-2", "c-3", "c-5"]
    assert list(index.column("source_line")) == [1, 3, 4, 6]
    assert index.resolve([1])[0].id == "c-2"


# -- corrupted indexes ------------------------------------------------------------------------


@pytest.fixture
def built(tmp_path, mono) -> Path:
    path = write_lines(tmp_path / "a.jsonl", mono_records(mono, 20))
    build_index(path, tmp_path / "idx")
    return tmp_path / "idx"


def edit_header(idx: Path, change) -> None:
    header = json.loads((idx / "header.json").read_text())
    change(header)
    (idx / "header.json").write_text(json.dumps(header))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda h: h.update(magic="NOPE"), "field 'magic'"),
        (lambda h: h.update(format_version=99), "newer than this discoseq supports"),
        (lambda h: h.update(format_version=True), "field 'format_version' is True"),
        (lambda h: h.update(num_rows=20.0), "field 'num_rows' expected int, found float"),
        (lambda h: h.pop("num_rows"), "field 'num_rows' is missing"),
        (lambda h: h.update(num_rows=21), "length expected 21"),
        (lambda h: h["columns"].pop("duration"), "column 'duration' is missing"),
        (lambda h: h["columns"]["duration"].update(dtype="<f4"), "dtype expected '<f8'"),
        (lambda h: h["sources"][0].pop("fingerprint"), "lacks field 'fingerprint'"),
    ],
)
def test_corrupted_header(built, change, message):
    edit_header(built, change)
    with pytest.raises(IndexFormatError, match=message):
        CutIndex.open(built)


def test_header_not_json_or_missing(built):
    (built / "header.json").write_bytes(b"\x00\x01garbage")
    with pytest.raises(IndexFormatError, match="not valid JSON"):
        CutIndex.open(built)
    (built / "header.json").unlink()
    with pytest.raises(IndexFormatError, match="not a complete discoseq index"):
        CutIndex.open(built)


def test_error_family():
    assert issubclass(IndexFormatError, ValueError)
    assert issubclass(StaleIndexError, IndexFormatError)
    assert issubclass(StaleIndexError, RuntimeError)  # what it was before: old handlers still catch
    assert issubclass(ManifestError, ValueError)
    assert not issubclass(ManifestError, IndexFormatError)


def test_stale_index_is_caught_as_an_index_format_error(built):
    source = Path(CutIndex.open(built).header.sources[0]["path"])
    source.write_bytes(source.read_bytes() + b"\n")
    for family in (StaleIndexError, IndexFormatError, ValueError, RuntimeError):
        with pytest.raises(family, match="is stale"):
            CutIndex.open(built)


@pytest.mark.parametrize("column", ["duration", "id_blob", "record_offset", "id_hash_rows"])
def test_truncated_column(built, column):
    path = built / f"{column}.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-3])
    with pytest.raises(IndexFormatError, match=rf"{column}.*truncated or corrupted"):
        CutIndex.open(built)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(IndexFormatError, match=rf"{column}\.npy: not a valid \.npy"):
        CutIndex.open(built)
    path.unlink()
    with pytest.raises(IndexFormatError, match=rf"{column}\.npy: column file is missing"):
        CutIndex.open(built)


def test_wrong_dtype_in_column_file(built):
    np.save(built / "duration.npy", np.zeros(20, np.float32))
    with pytest.raises(IndexFormatError, match="expected dtype <f8"):
        CutIndex.open(built)


def test_verify_catches_corrupted_values(built):
    index = CutIndex.open(built)
    assert verify_index(built).ok
    path = built / "num_frames.npy"
    arr = np.load(path)
    arr[3] += 1
    header_len = path.stat().st_size - arr.nbytes
    with open(path, "r+b") as f:
        f.seek(header_len)
        f.write(arr.tobytes())
    report = verify_index(built)
    assert not report.ok
    assert any("column num_frames row 3" in p for p in report.problems)
    assert len(index) == 20


def test_json_lines_records_are_compact(tmp_path, mono):
    records = mono_records(mono, 3)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, indent=2))
    index = build_index(path, tmp_path / "idx")
    assert [orjson.loads(r) for r in index.records([2, 0])] == [records[2], records[0]]


def test_truncated_and_corrupted_gzip(tmp_path, mono):
    path = write_lines(tmp_path / "a.jsonl.gz", mono_records(mono, 200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ManifestError, match=r"a\.jsonl\.gz: truncated gzip file"):
        build_index(path, tmp_path / "idx")
    path.write_bytes(data[:20] + b"\xff" * 64 + data[84:])
    with pytest.raises(ManifestError, match=r"a\.jsonl\.gz: corrupted gzip file"):
        build_index(path, tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl.gz"]


def test_multi_member_gzip_and_crlf(tmp_path, mono):
    records = mono_records(mono, 6)
    first = "".join(json.dumps(r) + "\r\n" for r in records[:3]).encode()
    second = "".join(json.dumps(r) + "\n" for r in records[3:]).encode()
    path = tmp_path / "m.jsonl.gz"
    path.write_bytes(gzip.compress(first) + gzip.compress(second))
    index = build_index(path, tmp_path / "idx")
    assert [index.cut_id(i) for i in range(6)] == [r["id"] for r in records]
    assert [c.to_dict() for c in index.resolve([2, 3])] == [records[2], records[3]]


def test_chunk_boundaries_keep_line_numbers(tmp_path, mono, monkeypatch):
    import discoseq.index.sources as sources

    monkeypatch.setattr(sources, "CHUNK_BYTES", 3000)
    monkeypatch.setattr(sources, "PIECE_BYTES", 1000)
    lines = [json.dumps(r) for r in mono_records(mono, 40)]
    lines[10:10] = ["", "   "]
    lines.insert(33, '{"id": "bad"')
    for suffix in (".jsonl", ".jsonl.gz"):
        path = write_lines(tmp_path / f"c{suffix}", lines)
        with pytest.raises(ManifestError, match=rf"c{suffix}:34: malformed JSON"):
            build_index(path, tmp_path / "idx", force=True)
        index = build_index(path, tmp_path / "idx", on_error="skip", force=True)
        assert len(index) == 40
        expected = [i + 1 for i, line in enumerate(lines) if line.strip() and line != lines[33]]
        assert list(index.column("source_line")) == expected
        assert index.resolve([39])[0].id == "c-39"


def test_fingerprint_is_content_based(tmp_path, fixtures_dir, mono):
    cuts = mini_librispeech(fixtures_dir)
    a = build_index(cuts, tmp_path / "a")
    b = build_index(cuts, tmp_path / "b")
    assert a.fingerprint == b.fingerprint
    assert a.header.sources[0]["fingerprint"].startswith("blake2b-128:")
    c = build_index(cuts.subset(first=37), tmp_path / "c")
    assert c.fingerprint != a.fingerprint
    path = write_lines(tmp_path / "m.jsonl", mono_records(mono, 5))
    d = build_index(path, tmp_path / "d")
    e = build_index(path, tmp_path / "e", store_records=True)
    assert d.fingerprint == e.fingerprint != a.fingerprint


def test_records_in_file_order_feed_resolve(tmp_path, mono):
    records = mono_records(mono, 30)
    a = write_lines(tmp_path / "a.jsonl", records[:15])
    b = write_lines(tmp_path / "b.jsonl.gz", records[15:])
    index = build_index([b, a], tmp_path / "idx")  # rows 0-14 from b, 15-29 from a
    rows = np.array([20, 3, 20, 17, 0, 29])
    raw = index.records_in_file_order(rows)
    assert sorted(raw) == [0, 3, 17, 20, 29]
    resolved = index.resolve(rows, raw)
    assert [c.id for c in resolved] == [index.cut_id(r) for r in rows]
    assert [c.to_dict() for c in resolved] == [c.to_dict() for c in index.resolve(rows)]
    raw[3] = raw[0]
    with pytest.raises(StaleIndexError, match="row 3"):
        index.resolve(rows, raw)


def test_reading_ahead_stops_when_the_build_stops_near_the_end_of_a_file() -> None:
    """A build that stops (a bad record, Ctrl-C) while the reader thread has read the whole
    file and waits to queue its end mark returns at once: the thread waited forever on the full
    queue, and the build on the thread (the guard below only keeps a failure from hanging)."""
    import threading

    from discoseq.index.sources import prefetch

    at_end = threading.Event()

    def chunks():
        yield from (1, 2, 3)
        at_end.set()  # next, the reader queues its end mark: the queue holds 2 and 3

    reading = prefetch(chunks(), depth=2)
    assert next(reading) == 1
    assert at_end.wait(30)
    stopper = threading.Thread(target=reading.close, daemon=True)  # the consumer stops
    stopper.start()
    stopper.join(30)
    assert not stopper.is_alive(), "the reader thread was never stopped"
    assert not any(t.name == "discoseq-read" for t in threading.enumerate())


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_a_failed_build_stops_its_reading_scanning_and_compressing_threads(
    tmp_path: Path, name: str
) -> None:
    """Reading, scanning and compressing run in threads of their own, one feeding the next: a
    bad record far before the end stops them all, none left waiting on another's queue."""
    import threading

    lines = [
        json.dumps(
            {
                "id": f"c{i}",
                "start": 0,
                "duration": 1.0,
                "channel": 0,
                "supervisions": [],
                "type": "MonoCut",
            }
        )
        for i in range(200_000)
    ]
    lines[1000] = "{broken"
    path = tmp_path / name
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(ManifestError, match=r":1001: malformed JSON"):
        build_index(path, tmp_path / "out.idx")
    assert not any(t.name == "discoseq-read" for t in threading.enumerate())


def test_gather_ids_equals_gathering_from_the_chunk_and_its_extra_ids() -> None:
    """The build gathers a chunk's ids from the chunk and, for lines the exact path read, from
    the ids it appended after it (``complete_chunk``), without joining the two: the same
    bytes as gathering from their concatenation."""
    rng = np.random.default_rng(5)
    buf = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    extra = rng.integers(0, 256, 60, dtype=np.uint8).tobytes()
    both = np.frombuffer(buf + extra, np.uint8)
    starts = rng.integers(0, len(buf) + len(extra), 200)
    limit = np.where(starts < len(buf), len(buf), len(buf) + len(extra))  # spans stay in one
    ends = np.minimum(starts + rng.integers(0, 30, 200), limit)
    for which in (slice(None), starts < len(buf), starts >= len(buf)):
        s, e = starts[which].astype(np.int64), ends[which].astype(np.int64)
        for tail in (extra, b"") if bool((s < len(buf)).all()) else (extra,):
            blob, lengths = builder.gather_ids(memoryview(buf), tail, s, e)
            expected = b"".join(
                bytes(both[a:b]) for a, b in zip(s.tolist(), e.tolist(), strict=True)
            )
            assert bytes(blob) == expected
            assert lengths.tolist() == (e - s).tolist()


@pytest.mark.parametrize("chunk_bytes", [7, 16, 64, 1 << 20])
@pytest.mark.parametrize("ending", [b"\n", b"", b"\n\n"])
def test_plain_file_chunks_are_the_files_lines(tmp_path, monkeypatch, chunk_bytes, ending):
    """A plain ``.jsonl`` is read straight into each chunk's buffer: the chunks still end on a
    line (a line longer than a chunk makes a larger one), hold every byte once at its offset,
    and the fingerprint is the file's."""
    import discoseq.index.sources as sources

    monkeypatch.setattr(sources, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(chunk_bytes)
    lines = [b"x" * int(n) for n in rng.integers(0, 40, 50)]
    data = b"\n".join(lines) + ending
    path = tmp_path / "p.jsonl"
    path.write_bytes(data)
    source = sources.file_source(path, store_records=False)
    chunks = list(sources.file_chunks(source))
    assert b"".join(bytes(c.data) for c in chunks) == data
    offset = 0
    for c in chunks:
        assert c.offset == offset
        offset += len(c.data)
    assert all(bytes(c.data).endswith(b"\n") for c in chunks[:-1])
    assert source.fingerprint == sources.fingerprint_file(path)


def test_an_index_given_as_a_manifest_is_named(tmp_path: Path, fixtures_dir: Path) -> None:
    """Building from an index (a natural slip: ``build corpus.idx -o c2.idx``) says it is an
    index and how one is used, not just that it is no regular file."""
    index = build_index(fixtures_dir / "libri_cuts.json", tmp_path / "a.idx")
    with pytest.raises(ManifestError, match="a discoseq index, not a manifest"):
        build_index(index.path, tmp_path / "b.idx")


def test_a_config_given_as_a_manifest_is_named(tmp_path: Path) -> None:
    """A SamplerConfig JSON given where a manifest goes (``analyze config.json``) is named as a
    config, with where it belongs."""
    from discoseq import SamplerConfig

    path = tmp_path / "config.json"
    path.write_text(SamplerConfig(max_duration=600).to_json())
    with pytest.raises(ManifestError, match=r"looks like a discoseq SamplerConfig.*--config"):
        build_index(path, tmp_path / "x.idx")
