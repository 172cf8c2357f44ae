"""discoseq.synth: every record is what Lhotse would write; the profiles are as documented."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from lhotse import AudioSource, CutSet, Features, MonoCut, Recording, SupervisionSegment
from lhotse.cut import Cut, MixedCut, PaddingCut
from lhotse.utils import LOG_EPSILON, compute_num_frames, compute_num_samples

from discoseq import synth

SR = synth.SAMPLING_RATE


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All record kinds: MonoCut, padded and two-cut MixedCut, standalone PaddingCut."""
    path = tmp_path_factory.mktemp("synth") / "cuts.jsonl.gz"
    return synth.write_manifest(path, 400, seed=3, mixed_fraction=0.3, padding_fraction=0.1)


def read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def lhotse_line(cut: Cut) -> str:
    # What CutSet.to_file writes for one cut (lhotse.serialization.save_to_jsonl).
    return json.dumps(cut.to_dict(), ensure_ascii=False)


def mono_cuts(cut: Cut) -> list[MonoCut]:
    if isinstance(cut, MonoCut):
        return [cut]
    if isinstance(cut, MixedCut):
        return [t.cut for t in cut.tracks if isinstance(t.cut, MonoCut)]
    return []


def load(path: Path) -> CutSet:
    # Eager: Lhotse's lazy reader (CutSet.from_file) mistakes a top-level PaddingCut for Features.
    return CutSet.from_jsonl(path)


def test_every_record_round_trips_through_lhotse(manifest: Path) -> None:
    lines = read_lines(manifest)
    cuts = list(load(manifest))
    assert len(cuts) == len(lines) == 400
    kinds = {type(c).__name__ for c in cuts}
    assert kinds == {"MonoCut", "MixedCut", "PaddingCut"}
    for line, cut in zip(lines, cuts, strict=True):
        assert orjson.loads(line) == cut.to_dict()
        assert line == lhotse_line(cut)  # byte for byte, key order included
    assert len({c.id for c in cuts}) == len(cuts)


def test_lhotse_rewrites_identical_bytes(tmp_path: Path) -> None:
    path = synth.write_manifest(tmp_path / "a.jsonl", 50, profile="mixed", mixed_fraction=0.5)
    CutSet.from_file(path).to_file(tmp_path / "b.jsonl")
    assert path.read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_layout_matches_lhotse_objects(manifest: Path) -> None:
    """Rebuild records from Lhotse objects and operations (pad, mix): same dict, same key order."""
    records = [orjson.loads(line) for line in read_lines(manifest)]

    def rebuild(d: dict) -> MonoCut:
        sup, feats, rec = d["supervisions"][0], d["features"], d["recording"]
        recording = Recording(
            id=rec["id"],
            sources=[AudioSource(type="file", channels=[0], source=rec["sources"][0]["source"])],
            sampling_rate=SR,
            num_samples=rec["num_samples"],
            duration=rec["num_samples"] / SR,
        )
        supervision = SupervisionSegment(
            id=rec["id"],
            recording_id=rec["id"],
            start=0.0,
            duration=recording.duration,
            channel=0,
            text=sup["text"],
            language="English",
            speaker=sup["speaker"],
        )
        features = Features(
            type="kaldi-fbank",
            num_frames=compute_num_frames(recording.duration, 0.01, SR),
            num_features=80,
            frame_shift=0.01,
            sampling_rate=SR,
            start=0,
            duration=recording.duration,
            storage_type="lilcom_chunky",
            storage_path=feats["storage_path"],
            storage_key=feats["storage_key"],
            recording_id=rec["id"],
            channels=0,
        )
        return MonoCut(
            id=d["id"],
            start=0,
            duration=recording.duration,
            channel=0,
            supervisions=[supervision],
            features=features,
            recording=recording,
        )

    seen = set()
    for r in records:
        if r["type"] == "MonoCut":
            expected = rebuild(r).to_dict()
            seen.add("mono")
        elif r["type"] == "PaddingCut":
            expected = PaddingCut(
                id=r["id"],
                duration=r["num_samples"] / SR,
                sampling_rate=SR,
                feat_value=LOG_EPSILON,
                num_frames=compute_num_frames(r["num_samples"] / SR, 0.01, SR),
                num_features=80,
                frame_shift=0.01,
                num_samples=r["num_samples"],
            ).to_dict()
            seen.add("padding")
        else:
            first, second = r["tracks"]
            cut = rebuild(first["cut"])
            if second["type"] == "PaddingCut":
                total = cut.num_samples + second["cut"]["num_samples"]
                mixed = cut.pad(num_samples=total)
                mixed.tracks[1].cut.id = second["cut"]["id"]  # Lhotse draws a uuid4
                seen.add("pad")
            else:
                other = rebuild(second["cut"])
                mixed = cut.mix(other, offset_other_by=second["offset"], snr=second["snr"])
                seen.add("mix")
            expected = mixed.with_id(r["id"]).to_dict()
        assert json.dumps(r) == json.dumps(expected)
    assert seen == {"mono", "padding", "pad", "mix"}


def test_counts_are_consistent_with_lhotse(manifest: Path) -> None:
    for line, cut in zip(read_lines(manifest), load(manifest), strict=True):
        record = orjson.loads(line)
        assert cut.num_samples == compute_num_samples(cut.duration, SR)
        assert cut.num_frames == compute_num_frames(cut.duration, 0.01, SR)
        if isinstance(cut, MixedCut):
            ends = [t["offset"] + t["cut"]["duration"] for t in record["tracks"]]
            assert cut.duration == round(max(ends), 8)
            if record["tracks"][1]["type"] == "PaddingCut":
                pad = record["tracks"][1]["cut"]
                assert cut.num_samples == cut.tracks[0].cut.num_samples + pad["num_samples"]
                assert cut.num_frames == cut.tracks[0].cut.num_frames + pad["num_frames"]
        else:
            assert cut.duration == record["duration"]
            assert cut.duration == cut.num_samples / SR  # whole samples
        if isinstance(cut, PaddingCut):
            assert cut.num_frames == record["num_frames"]
            assert cut.num_samples == record["num_samples"]
        for mono in mono_cuts(cut):
            d = mono.duration
            assert mono.num_samples == mono.recording.num_samples == round(d * SR)
            assert mono.num_frames == mono.features.num_frames
            assert d == mono.recording.duration == mono.features.duration
            assert mono.supervisions[0].duration == d


def test_manifest_durations_are_generate_durations(tmp_path: Path) -> None:
    path = synth.write_manifest(tmp_path / "c.jsonl", 300, seed=7, padding_fraction=0.2)
    records = [orjson.loads(line) for line in read_lines(path)]
    durations = [r["duration"] for r in records]
    np.testing.assert_array_equal(durations, synth.generate_durations(300, seed=7))


def test_librispeech_profile() -> None:
    d = synth.generate_durations(20_000, "librispeech", seed=0)
    assert d.dtype == np.float64
    np.testing.assert_array_equal(np.rint(d * SR) / SR, d)  # whole 16 kHz samples
    assert 12.0 < d.mean() < 12.6
    assert 1.0 <= d.min() < 1.5 and 28.0 < d.max() <= 35.0
    assert 13.5 < np.median(d) < 14.3  # skewed left: median above mean
    assert 0.65 < ((d >= 10) & (d <= 17)).mean() < 0.75
    assert 0.02 < (d > 17).mean() < 0.04


def test_mixed_profile() -> None:
    d = synth.generate_durations(20_000, "mixed", seed=0)
    short = d <= 5.0
    assert 0.68 < short.mean() < 0.72
    assert d.min() >= 0.5 and d.max() <= 30.0
    assert not ((d > 5.0) & (d < 10.0)).any()
    assert 7.2 < d.mean() < 8.0
    assert 2.1 < d[short].mean() < 2.5 and 19.5 < d[~short].mean() < 20.5


def test_transcripts(manifest: Path) -> None:
    sups = [s for c in load(manifest) for m in mono_cuts(c) for s in m.supervisions]
    words = re.compile(r"[A-Z']+( [A-Z']+)*")
    assert all(words.fullmatch(s.text) for s in sups)
    rate = sum(len(s.text) for s in sups) / sum(s.duration for s in sups)
    assert 14.0 < rate < 16.0


def test_deterministic(tmp_path: Path) -> None:
    def make(name: str, n: int = 200, seed: int = 5) -> bytes:
        path = tmp_path / name
        synth.write_manifest(path, n, "mixed", seed, mixed_fraction=0.2, padding_fraction=0.1)
        return path.read_bytes()

    assert make("a.jsonl.gz") == make("b.jsonl.gz")
    assert make("c.jsonl.gz", seed=6) != make("a.jsonl.gz")
    first = gzip.decompress(make("a.jsonl.gz")).splitlines()
    assert gzip.decompress(make("d.jsonl.gz", n=120)).splitlines() == first[:120]
    assert make("e.jsonl") == gzip.decompress(make("a.jsonl.gz"))


def test_empty_and_invalid(tmp_path: Path) -> None:
    assert synth.write_manifest(tmp_path / "e.jsonl", 0).read_bytes() == b""
    assert synth.generate_durations(0).shape == (0,)
    with pytest.raises(ValueError, match="jsonl"):
        synth.write_manifest(tmp_path / "x.json", 1)
    with pytest.raises(ValueError, match="profile"):
        synth.generate_durations(1, "aishell")
    with pytest.raises(ValueError, match="mixed_fraction"):
        synth.write_manifest(tmp_path / "x.jsonl", 1, mixed_fraction=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        synth.write_manifest(tmp_path / "x.jsonl", 1, mixed_fraction=0.6, padding_fraction=0.6)
    assert list(tmp_path.iterdir()) == [tmp_path / "e.jsonl"]  # no temporary left behind


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.jsonl"
    assert synth.main([str(out), "--n", "20", "--profile", "mixed", "--seed", "2"]) == 0
    assert (
        out.read_bytes()
        == synth.write_manifest(tmp_path / "api.jsonl", 20, "mixed", 2).read_bytes()
    )


def test_id_prefix_makes_files_that_index_together(tmp_path: Path) -> None:
    """Every file starts its ids at 19-100000-0000; a prefix per file tells them apart, and the
    records stay what Lhotse writes."""
    from discoseq.index import build_index

    a = synth.write_manifest(tmp_path / "a.jsonl", 60, mixed_fraction=0.3, padding_fraction=0.1)
    b = synth.write_manifest(
        tmp_path / "b.jsonl.gz", 60, mixed_fraction=0.3, padding_fraction=0.1, id_prefix="b_"
    )
    plain, prefixed = load(a), load(b)
    assert [c.id for c in prefixed] == ["b_" + c.id for c in plain]
    for line, cut in zip(read_lines(b), prefixed, strict=True):
        assert line == lhotse_line(cut)
        for mono in mono_cuts(cut):
            assert mono.recording_id.startswith("b_")
            assert all(s.id.startswith("b_") for s in mono.supervisions)
    index = build_index([a, b], tmp_path / "both.idx")
    assert len(index) == 120
    assert synth.main([str(tmp_path / "c.jsonl"), "--n", "5", "--id-prefix", "c-"]) == 0
    assert read_lines(tmp_path / "c.jsonl")[0].startswith('{"id": "c-19-100000-0000-0"')
    with pytest.raises(ValueError, match="id_prefix"):
        synth.write_manifest(tmp_path / "x.jsonl", 1, id_prefix='a"b')
