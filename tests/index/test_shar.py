"""Lhotse Shar corpora: a Shar set indexed by tar headers, each resolved cut equal to the one
``CutSet.from_shar`` gives (audio, features, custom fields), and bad Shar input named."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner
from lhotse import CutSet, Features, MonoCut, NumpyFilesWriter, Recording
from lhotse.supervision import SupervisionSegment

from discoseq.cli.index_cli import main as index_main
from discoseq.errors import ManifestError, StaleIndexError
from discoseq.index import CutIndex, build_index, verify_index
from discoseq.index.opener import open_source
from discoseq.index.shar import _tarfile_members, _ustar_members

FULL = {"recording": "wav", "features": "numpy", "emb": "numpy", "lang": "jsonl"}
FIELD_SETS = {
    "recording": {"recording": "flac"},
    "features": {"features": "numpy"},
    "recording+lilcom-features": {"recording": "wav", "features": "lilcom"},
    "recording+features+custom": FULL,
}


def make_cuts(directory: Path, custom: bool, n: int = 7, prefix: str = "cut-") -> CutSet:
    """Cuts of real WAV and FLAC audio with numpy-stored features; with ``custom``, every cut
    but one has a custom array ``emb``, two in three a custom string ``lang``."""
    rng = np.random.default_rng(0)
    writer = NumpyFilesWriter(str(directory / "feats"))
    cuts = []
    for i in range(n):
        sr = 16000
        audio = (rng.standard_normal(int(sr * (0.5 + 0.1 * i))) * 0.1).astype(np.float32)
        path = directory / f"a{i}.{'wav' if i % 2 else 'flac'}"
        sf.write(path, audio, sr)
        rec = Recording.from_file(path, recording_id=f"rec-{i}")
        sup = SupervisionSegment(
            id=f"sup-{i}", recording_id=rec.id, start=0, duration=rec.duration, text=f"text {i}"
        )
        cut = MonoCut(
            id=f"{prefix}{i}", start=0, duration=rec.duration, channel=0, recording=rec,
            supervisions=[sup],
        )  # fmt: skip
        frames = round(rec.duration * 100)
        key = writer.write(f"f{i}", rng.standard_normal((frames, 20)).astype(np.float32))
        cut.features = Features(
            type="fbank", num_frames=frames, num_features=20, frame_shift=0.01,
            sampling_rate=sr, start=0, duration=rec.duration, storage_type=writer.name,
            storage_path=str(writer.storage_path), storage_key=key,
        )  # fmt: skip
        if custom and i != 3:
            cut = cut.attach_tensor("emb", rng.standard_normal(8).astype(np.float32))
        if custom and i % 3:
            cut.lang = "en"
        cuts.append(cut)
    return CutSet.from_cuts(cuts)


def write_shar(
    tmp_path: Path, fields: dict[str, str], name: str = "shar", prefix: str = "cut-"
) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    out = tmp_path / name
    out.mkdir()
    make_cuts(src, custom="emb" in fields, prefix=prefix).to_shar(
        out, fields=fields, shard_size=3, warn_unused_fields=False
    )
    return out


def assert_same_cut(ours: Any, theirs: Any) -> None:
    """The same cut as Lhotse's Shar reader gives: manifest, audio, features, custom fields
    (the data of each field the Shar set was read with: the others are placeholders)."""
    assert ours.id == theirs.id
    mine, ref = ours.to_dict(), theirs.to_dict()
    ref.get("custom", {}).pop("shar_epoch", None)  # Lhotse's iteration counter (not set)
    assert mine == ref
    assert ours.has_recording == theirs.has_recording
    if theirs.has_recording and theirs.recording.sources[0].type != "shar":
        np.testing.assert_array_equal(ours.load_audio(), theirs.load_audio())
    assert ours.has_features == theirs.has_features
    if theirs.has_features and theirs.features.storage_type != "shar":
        np.testing.assert_array_equal(ours.load_features(), theirs.load_features())
    for key, value in (theirs.custom or {}).items():
        if key == "shar_epoch":
            continue
        if getattr(value, "storage_type", None) == "shar":
            continue
        if hasattr(value, "load"):
            np.testing.assert_array_equal(ours.load_custom(key), theirs.load_custom(key))
        else:
            assert getattr(ours, key) == value


@pytest.mark.parametrize("fields", list(FIELD_SETS))
def test_resolved_cuts_equal_lhotse_shar_reader(tmp_path, fields):
    shar = write_shar(tmp_path, FIELD_SETS[fields])
    index = build_index(shar, tmp_path / "idx")
    reference = {cut.id: cut for cut in CutSet.from_shar(in_dir=shar)}
    assert len(index) == len(reference) == 7
    assert index.header.sources[0]["path"].endswith("cuts.000000.jsonl.gz")
    rows = np.random.default_rng(1).permutation(len(index))  # any order, one cut at a time
    for cut in index.resolve(rows):
        assert_same_cut(cut, reference[cut.id])
    np.testing.assert_allclose(
        index.duration, [reference[i].duration for i in index.cut_ids(range(len(index)))]
    )
    assert verify_index(index.path).ok


def test_long_member_names_in_pax_headers(tmp_path):
    """Cut ids longer than a tar header's 100-byte name field: Lhotse's writer puts them in
    pax extended headers, which the build reads with tarfile instead of its header parser."""
    shar = write_shar(tmp_path, {"recording": "wav", "emb": "numpy"}, prefix="x" * 150 + "-")
    with tarfile.open(shar / "recording.000000.tar") as tar:
        assert any(len(m.name) > 100 for m in tar)
    assert _header_members(shar / "recording.000000.tar") is None  # pax: left to tarfile
    index = build_index(shar, tmp_path / "idx")
    reference = {cut.id: cut for cut in CutSet.from_shar(in_dir=shar)}
    for cut in index.resolve(range(len(index))):
        assert_same_cut(cut, reference[cut.id])


def _header_members(path: Path) -> Any:
    fd = os.open(path, os.O_RDONLY)
    try:
        return _ustar_members(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def test_header_parser_agrees_with_tarfile(tmp_path, monkeypatch):
    import discoseq.index.shar as shar_module

    shar = write_shar(tmp_path, FULL)
    for scan_members in (1 << 16, 3):  # also in calls of 3 members at a time
        monkeypatch.setattr(shar_module, "_SCAN_MEMBERS", scan_members)
        for path in sorted(shar.glob("*.tar")):
            names, table = _header_members(path)
            ref_names, ref_table = _tarfile_members(path, "f")
            assert len(names) >= 2 and names == ref_names
            np.testing.assert_array_equal(table, ref_table)
    # a header with a wrong checksum is left to tarfile, which names it
    path = shar / "recording.000000.tar"
    data = bytearray(path.read_bytes())
    data[0] ^= 1  # the first member's name, not its checksum
    path.write_bytes(bytes(data))
    assert _header_members(path) is None
    with pytest.raises(ManifestError, match=r"recording.000000.tar: .*not a readable plain tar"):
        build_index(shar, tmp_path / "idx")


def test_dict_form_reads_the_fields_it_names(tmp_path):
    shar = write_shar(tmp_path, FULL)
    fields = {
        "cuts": sorted(str(p) for p in shar.glob("cuts.*")),
        "features": sorted(str(p) for p in shar.glob("features.*")),
        "lang": sorted(str(p) for p in shar.glob("lang.*")),
    }
    index = build_index(fields, tmp_path / "idx")
    reference = {cut.id: cut for cut in CutSet.from_shar(fields=fields)}
    for cut in index.resolve(range(len(index))):
        assert_same_cut(cut, reference[cut.id])
        # not asked for: the recording stays the placeholder the cut shard holds
        assert cut.recording.sources[0].type == "shar"


def test_each_field_is_one_pread_of_its_members(tmp_path, monkeypatch):
    shar = write_shar(tmp_path, FULL)
    index = build_index(shar, tmp_path / "idx")
    reads: list[tuple[str, int, int]] = []
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        reads.append((os.readlink(f"/proc/self/fd/{fd}"), size, offset))
        return real_pread(fd, size, offset)

    index.records([0, 1, 2, 3, 4, 5, 6])  # open the records file first
    monkeypatch.setattr(os, "pread", pread)
    row = index.row_of("cut-4")
    index.resolve([row])
    by_file = {Path(path).name: (size, offset) for path, size, offset in reads}
    field_reads = [Path(p).name for p, _, _ in reads if Path(p).name != "records.bin"]
    # one read per field: three tars and the copied jsonl lines
    assert sorted(field_reads) == [
        "emb.000001.tar", "features.000001.tar", "recording.000001.tar", "shar_lang.bin"
    ]  # fmt: skip
    with tarfile.open(shar / "recording.000001.tar") as tar:
        members = {m.name: m for m in tar}
    data, meta = members["cut-4.wav"], members["cut-4.json"]
    assert by_file["recording.000001.tar"] == (
        meta.offset_data + meta.size - data.offset_data,
        data.offset_data,
    )


def test_a_batch_reads_each_file_forward(tmp_path, monkeypatch):
    shar = write_shar(tmp_path, {"recording": "wav", "features": "numpy"})
    index = build_index(shar, tmp_path / "idx")
    index.records(range(len(index)))
    reads: list[tuple[str, int]] = []
    real_pread = os.pread

    def pread(fd: int, size: int, offset: int) -> bytes:
        reads.append((os.readlink(f"/proc/self/fd/{fd}"), offset))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    rows = np.random.default_rng(5).permutation(len(index))
    cuts = index.resolve(rows)
    assert [c.id for c in cuts] == index.cut_ids(rows)  # the order asked
    tar_reads = [(Path(p).name, o) for p, o in reads if p.endswith(".tar")]
    assert len(tar_reads) == 2 * len(index)  # one per cut and field
    for name in {n for n, _ in tar_reads}:
        offsets = [o for n, o in tar_reads if n == name]
        assert offsets == sorted(offsets), name  # a forward pass over each file


def test_cli_build_and_sampler_on_a_shar_directory(tmp_path):
    from discoseq import DiscoSeqSampler, SamplerConfig

    shar = write_shar(tmp_path, {"recording": "wav"})
    result = CliRunner().invoke(index_main, ["build", str(shar), "-o", str(tmp_path / "x.idx")])
    assert result.exit_code == 0, result.output
    assert "indexed 7 cuts" in result.output and "Shar" in result.output
    result = CliRunner().invoke(index_main, ["info", str(tmp_path / "x.idx")])
    assert "shar field   recording (tar, 3 files" in result.output, result.output
    assert "7 of 7 cuts have data" in result.output
    result = CliRunner().invoke(index_main, ["verify", str(tmp_path / "x.idx")])
    assert result.exit_code == 0 and "ok: 7 rows verified" in result.output
    sampler = DiscoSeqSampler(str(shar), SamplerConfig(max_duration=3.0), progress=False)
    seen = [cut.id for batch in sampler for cut in batch]
    assert sorted(seen) == [f"cut-{i}" for i in range(7)]
    batch = next(iter(sampler))
    reference = {cut.id: cut for cut in CutSet.from_shar(in_dir=shar)}
    for cut in batch:
        np.testing.assert_array_equal(cut.load_audio(), reference[cut.id].load_audio())


def test_open_source_caches_a_shar_index_beside_the_directory(tmp_path):
    shar = write_shar(tmp_path, {"recording": "wav"})
    with open_source(shar, cache_index=True, progress=False) as opened:
        assert opened.index.path == (tmp_path / "shar.discoseq-index").absolute()
    with open_source(shar, cache_index=True, progress=False) as again:
        assert again.index.header.created == opened.index.header.created


def test_a_changed_tar_makes_the_index_stale(tmp_path):
    shar = write_shar(tmp_path, {"recording": "wav"})
    index = build_index(shar, tmp_path / "idx")
    tar = shar / "recording.000001.tar"
    with open(tar, "ab") as f:
        f.write(b"\0" * 512)
    with pytest.raises(StaleIndexError, match=r"recording\.000001\.tar changed size"):
        CutIndex.open(index.path)
    report = verify_index(index.path)  # the member table is the same: only the size changed
    assert report.ok, report.problems


def _rewrite_tar(path: Path, edit: Any) -> None:
    """Rewrite a tar with ``edit(list of (name, bytes))`` applied to its members."""
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    members = edit(members)
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _build_fails(shar: Path, out: Path, match: str) -> None:
    with pytest.raises(ManifestError, match=match):
        build_index(shar, out)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def test_bad_shar_input_is_named(tmp_path):
    shar = write_shar(tmp_path, {"recording": "wav", "features": "numpy"})
    out = tmp_path / "idx"
    tar = shar / "recording.000001.tar"
    original = tar.read_bytes()

    # members out of the cut order
    _rewrite_tar(tar, lambda m: m[2:4] + m[0:2] + m[4:])
    _build_fails(shar, out, r"recording.000001.tar: .*item 1 is 'cut-4'.*follow")

    # a member missing
    tar.write_bytes(original)
    _rewrite_tar(tar, lambda m: m[:4])
    _build_fails(shar, out, r"recording.000001.tar: .*2 items for the 3 cuts.*'cut-5'")

    # a truncated member
    tar.write_bytes(original)
    with tarfile.open(tar) as t:
        last = list(t)[-2]  # the last data member
    tar.write_bytes(original[: last.offset_data + last.size // 2])
    _build_fails(shar, out, r"recording.000001.tar: .*'cut-5.wav' is truncated")

    # a data member without its metadata member
    tar.write_bytes(original)
    _rewrite_tar(tar, lambda m: m[:5])
    _build_fails(shar, out, r"recording.000001.tar: .*has no partner")

    # a cut shard without its field tar
    tar.unlink()
    _build_fails(shar, out, r"cuts.000001.jsonl.gz has no 'recording' shard")

    # a compressed field file
    tar.write_bytes(original)
    (shar / "features.000002.tar").rename(shar / "features.000002.tar.gz")
    _build_fails(shar, out, r"features.000002.tar.gz: .*compressed tar")


def test_mismatched_shard_counts_are_named(tmp_path):
    shar = write_shar(tmp_path, {"recording": "wav"})
    fields = {
        "cuts": sorted(str(p) for p in shar.glob("cuts.*")),
        "recording": sorted(str(p) for p in shar.glob("recording.*"))[:2],
    }
    with pytest.raises(ManifestError, match="field 'recording' has 2 shards, 'cuts' has 3"):
        build_index(fields, tmp_path / "idx")
    (shar / "recording.000003.tar").write_bytes((shar / "recording.000002.tar").read_bytes())
    with pytest.raises(ManifestError, match=r"recording.000003.tar has no cut shard"):
        build_index(shar, tmp_path / "idx")


def test_a_jsonl_field_out_of_order_is_named(tmp_path):
    import gzip

    shar = write_shar(tmp_path, {"lang": "jsonl"})
    path = shar / "lang.000000.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).splitlines(keepends=True)
    path.write_bytes(gzip.compress(b"".join([lines[1], lines[0], lines[2]])))
    with pytest.raises(ManifestError, match=r"lang.000000.jsonl.gz: field 'lang': item 1 is"):
        build_index(shar, tmp_path / "idx")


def test_verify_finds_a_rewritten_tar(tmp_path):
    shar = write_shar(tmp_path, {"recording": "wav"})
    index = build_index(shar, tmp_path / "idx")
    assert verify_index(index.path).ok
    _rewrite_tar(shar / "recording.000001.tar", lambda m: [(n, d + d) for n, d in m])
    report = verify_index(index.path)
    assert not report.ok
    assert any("recording.000001.tar content changed" in p for p in report.problems)


def test_verify_finds_a_changed_copy_of_a_jsonl_field(tmp_path):
    """A jsonl field's lines are copied into the index: verify compares every copied line with
    the field file's (a changed byte of the copy changed what resolution gives, unreported)."""
    shar = write_shar(tmp_path, {"emb": "numpy", "lang": "jsonl"})
    index = build_index(shar, tmp_path / "idx")
    assert verify_index(index.path).ok
    blob = index.path / "shar_lang.bin"
    data = blob.read_bytes()
    at = data.index(b'"en"', data.index(b"cut-4"))  # cut-4's line, same size
    blob.write_bytes(data[:at] + b'"xn"' + data[at + 4 :])
    assert CutIndex.open(index.path).resolve([4])[0].lang == "xn"  # what training would get
    report = verify_index(index.path)
    assert not report.ok
    assert any(
        "shar_lang.bin row 4" in p and "line 2 of" in p and "lang.000001.jsonl.gz" in p
        for p in report.problems
    ), report.problems


def test_few_field_files_stay_open(tmp_path, monkeypatch):
    import discoseq.index.shar as shar_module

    monkeypatch.setattr(shar_module, "MAX_OPEN_FILES", 2)
    shar = write_shar(tmp_path, FULL)
    index = build_index(shar, tmp_path / "idx")
    reference = {cut.id: cut for cut in CutSet.from_shar(in_dir=shar)}
    for row in np.random.default_rng(0).permutation(len(index)).tolist():
        cut = index.resolve([row])[0]
        assert_same_cut(cut, reference[cut.id])
        assert len(index._shar._fds) <= 2


def test_a_parallel_build_is_the_same(tmp_path):
    shar = write_shar(tmp_path, FULL)
    one = build_index(shar, tmp_path / "one")
    two = build_index(shar, tmp_path / "two", jobs=2)
    assert two.header.raw["shar"] == one.header.raw["shar"]
    for name in one.header.raw["columns"]:
        np.testing.assert_array_equal(two.column(name), one.column(name))
    assert (tmp_path / "two" / "shar_lang.bin").read_bytes() == (
        tmp_path / "one" / "shar_lang.bin"
    ).read_bytes()


class _AudioOf:
    """A dataset run in the DataLoader workers: each cut's audio, loaded there."""

    def __getitem__(self, cuts: Any) -> dict[str, np.ndarray]:
        return {cut.id: cut.load_audio() for cut in cuts}


def test_dataloader_workers_load_shar_audio(tmp_path):
    from discoseq import SamplerConfig, create_dataloader

    shar = write_shar(tmp_path, {"recording": "flac"})
    index = build_index(shar, tmp_path / "idx")
    config = SamplerConfig(max_duration=2.0, num_workers=2, shard_block=1)
    loader = create_dataloader(index, config, dataset=_AudioOf())
    reference = {cut.id: cut for cut in CutSet.from_shar(in_dir=shar)}
    seen = {}
    for batch in loader:
        seen.update(batch)
    assert sorted(seen) == sorted(reference)
    for cut_id, audio in seen.items():
        np.testing.assert_array_equal(audio, reference[cut_id].load_audio())
