"""Review of the direct cut constructor (discoseq.index.decode): cuts it builds behave like the
ones Lhotse's ``deserialize_cut`` builds (audio and features load, Lhotse operations, copies),
share no mutable state with each other, leave a record Lhotse can still read when they fall
back half way, and the per-process first-use check survives threads and forks."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import soundfile
from lhotse import CutSet, Features, MonoCut, Recording
from lhotse.cut.set import deserialize_cut
from lhotse.features.io import LilcomChunkyWriter, LilcomFilesWriter, NumpyFilesWriter

import discoseq.index.decode as decode
from discoseq import build_index
from discoseq.index.decode import PROBES, CutDecoder, identical
from tests.index.like_lhotse import assert_like_lhotse

FEATURE_WRITERS = {"numpy_files": NumpyFilesWriter, "lilcom_chunky": LilcomChunkyWriter,
                   "lilcom_files": LilcomFilesWriter}  # fmt: skip


def _real_cut(tmp_path: Path, writer: type = NumpyFilesWriter) -> dict[str, Any]:
    """The record of a cut with a real 2-channel WAV recording and real features stored by
    ``writer`` (Lhotse's storage: numpy files, lilcom chunks in one file, lilcom files)."""
    rng = np.random.default_rng(0)
    audio = rng.uniform(-0.5, 0.5, size=(16000, 2)).astype(np.float32)
    wav = tmp_path / "rec.wav"
    soundfile.write(wav, audio, 16000, subtype="FLOAT")
    recording = Recording.from_file(wav, recording_id="rec")
    feats = rng.standard_normal((100, 8)).astype(np.float32)
    with writer(tmp_path / "feats") as w:
        key = w.write("rec", feats)
        features = Features(
            type="fbank",
            num_frames=100,
            num_features=8,
            frame_shift=0.01,
            sampling_rate=16000,
            start=0,
            duration=1.0,
            storage_type=w.name,
            storage_path=str(w.storage_path),
            storage_key=key,
            recording_id="rec",
            channels=0,
        )
    cut = MonoCut(
        "c", start=0, duration=1.0, channel=0, recording=recording, features=features
    ).with_custom("lang", "de")
    record: dict[str, Any] = orjson.loads(orjson.dumps(cut.to_dict()))
    return record


def _both(record: dict[str, Any]) -> tuple[Any, Any]:
    """(the decoder's cut, deserialize_cut's cut) of ``record``, each from its own copy."""
    decoder = CutDecoder()
    ours = decoder(copy.deepcopy(record))
    assert decoder.fallbacks == 0
    theirs = deserialize_cut(copy.deepcopy(record))
    assert identical(ours, theirs) is None, identical(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize("storage", list(FEATURE_WRITERS))
def test_real_audio_and_features_load_identically(tmp_path: Path, storage: str) -> None:
    ours, theirs = _both(_real_cut(tmp_path, FEATURE_WRITERS[storage]))
    assert ours.features.storage_type == storage
    np.testing.assert_array_equal(ours.load_audio(), theirs.load_audio())
    np.testing.assert_array_equal(ours.load_features(), theirs.load_features())
    assert ours.load_audio().shape == (1, 16000)
    assert ours.load_features().shape == (100, 8)
    assert ours.has_recording and ours.has_features and ours.lang == "de"


def test_lhotse_operations_on_built_cuts(tmp_path: Path) -> None:
    ours, theirs = _both(_real_cut(tmp_path))
    operations = [
        lambda c: c.with_id("x"),
        lambda c: c.truncate(offset=0.25, duration=0.5, preserve_id=True),
        lambda c: c.drop_features().perturb_speed(1.1),
        lambda c: c.drop_features().resample(8000),
        lambda c: c.drop_features().perturb_volume(0.5),
        lambda c: c.with_custom("k", [1, 2]),
        copy.deepcopy,
        copy.copy,
        lambda c: pickle.loads(pickle.dumps(c)),
    ]
    for op in operations:
        a, b = op(ours), op(theirs)
        assert identical(a.to_dict(), b.to_dict()) is None
        if isinstance(b, MonoCut):
            assert identical(a, b) is None, identical(a, b)
        # audio read through the speed and resample transforms too (Lhotse's resampling)
        np.testing.assert_array_equal(a.load_audio(), b.load_audio())
    # CutSet operations over built cuts
    cs_ours = CutSet.from_cuts([ours, ours.with_id("y")])
    cs_theirs = CutSet.from_cuts([theirs, theirs.with_id("y")])
    for op_set in [
        lambda s: s.subset(cut_ids=["y"]),
        lambda s: s.filter(lambda x: x.id == "c"),
        lambda s: s.modify_ids(lambda i: i + "-m"),
        lambda s: s.trim_to_supervisions(keep_overlapping=False),
        lambda s: s.sort_by_duration(),
    ]:
        assert [c.to_dict() for c in op_set(cs_ours)] == [c.to_dict() for c in op_set(cs_theirs)]


def test_custom_attribute_access_and_setting() -> None:
    """The CustomFieldMixin hooks work on a cut whose __dict__ was filled directly."""
    record = orjson.loads(PROBES[1])
    ours, theirs = _both(record)
    assert ours.lang == theirs.lang == "de"
    for cut in (ours, theirs):
        cut.spk = "s1"  # a new attribute goes into custom
        cut.lang = None  # None removes it
        with pytest.raises(AttributeError):
            _ = cut.missing
    assert identical(ours, theirs) is None
    assert "spk" not in vars(ours) and ours.custom == {"n": [1, 2], "w": 0.5, "spk": "s1"}
    sup_record = orjson.loads(PROBES[2])
    ours, theirs = _both(sup_record)
    for cut in (ours, theirs):
        cut.supervisions[0].mood = "ok"
    assert identical(ours, theirs) is None


def test_no_state_shared_between_cuts_or_with_defaults() -> None:
    """Two cuts of one record, and cuts of records missing optional fields, share no list or
    dict: mutating one leaves the other (and the next cut built) unchanged."""
    decoder = CutDecoder()
    for raw in PROBES:
        a = decoder(orjson.loads(raw))
        b = decoder(orjson.loads(raw))
        reference = deserialize_cut(orjson.loads(raw))
        a.supervisions.append("junk")
        if a.custom is not None:
            a.custom["junk"] = 1
        if a.recording is not None:
            a.recording.channel_ids.append(99)
            a.recording.sources[0].channels.append(99)
            a.recording.sources.append("junk")
            if a.recording.transforms is not None:
                a.recording.transforms.append("junk")
        for s in a.supervisions[:-1]:
            if isinstance(s.channel, list):
                s.channel.append(99)
            if s.alignment is not None:
                for items in s.alignment.values():
                    items.append("junk")
        c = decoder(orjson.loads(raw))
        assert identical(b, reference) is None, identical(b, reference)
        assert identical(c, reference) is None, identical(c, reference)


def test_minimal_record_gets_fresh_supervision_lists() -> None:
    decoder = CutDecoder()
    raw = PROBES[3]  # no supervisions key: Lhotse's default is a new list per cut
    a, b = decoder(orjson.loads(raw)), decoder(orjson.loads(raw))
    assert a.supervisions == [] and a.supervisions is not b.supervisions
    a.supervisions.append(1)
    assert decoder(orjson.loads(raw)).supervisions == []


def test_half_built_record_falls_back_intact() -> None:
    """A record the fast path refuses late (after building the recording's transforms and
    alignments) reaches deserialize_cut unchanged: the same cut as Lhotse builds."""
    record = orjson.loads(PROBES[2])
    record["recording"]["transforms"] = [{"name": "Speed", "kwargs": {"factor": 1.1}}]
    # a dict custom value (Lhotse may turn it into a manifest) is seen after the rest
    record["custom"] = {"a": 1, "arr": {"array": {"x": 1}, "shape": [1]}}
    pristine = copy.deepcopy(record)
    decoder = CutDecoder()
    assert_like_lhotse(decoder, record)
    assert decoder.fallbacks == 1
    # the fast path left the record as it was for Lhotse (Lhotse's own steps may then pop)
    unchanged = copy.deepcopy(pristine)
    with pytest.raises(decode._Unsupported):
        decoder._cut.build(unchanged)
    assert unchanged == pristine


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("start", 2**62),
        ("duration", 1e308),
        ("start", -0.0),
        ("channel", True),
        ("id", "ünï-ç😀\u0000"),
        ("custom", {"t": "漢字", "big": 2**63 - 1, "neg": -(2**63), "nested": [[1, [2, None]]]}),
    ],
)
def test_unusual_values_pass_through_like_lhotse(key: str, value: Any) -> None:
    record = orjson.loads(PROBES[0])
    record[key] = value
    record = orjson.loads(orjson.dumps(record))  # as an index record parses
    ours, theirs = _both(record)
    assert type(getattr(ours, key)) is type(value)
    assert identical(ours.to_dict(), theirs.to_dict()) is None


def test_nan_and_inf_values_like_lhotse() -> None:
    """orjson writes NaN/inf as null; a dict holding them (another reader) passes through."""
    record = orjson.loads(PROBES[0])
    record["duration"] = float("inf")
    record["supervisions"][0]["start"] = float("nan")
    decoder = CutDecoder()
    ours = decoder(copy.deepcopy(record))
    theirs = deserialize_cut(copy.deepcopy(record))
    assert decoder.fallbacks == 0
    assert ours.duration == theirs.duration == float("inf")
    assert np.isnan(ours.supervisions[0].start) and np.isnan(theirs.supervisions[0].start)
    assert list(vars(ours)) == list(vars(theirs))


def test_resolve_with_repeated_rows_shares_nothing(tmp_path: Path) -> None:
    """One row twice in a batch (oversampled mixtures): two independent cuts."""
    path = tmp_path / "cuts.jsonl"
    path.write_bytes(b"\n".join(PROBES[:3]) + b"\n")
    index = build_index(path, tmp_path / "idx")
    a, b = list(index.resolve([1, 1]))
    assert a is not b and a.custom is not b.custom
    a.custom["lang"] = "fr"
    a.recording.channel_ids.append(7)
    assert b.custom["lang"] == "de" and b.recording.channel_ids == [0, 1]


def test_first_use_check_is_once_per_process_across_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(decode, "_decoder", None)
    made: list[CutDecoder] = []
    original = CutDecoder.check
    calls = []

    def counted(self: CutDecoder) -> str | None:
        calls.append(1)
        return original(self)

    monkeypatch.setattr(CutDecoder, "check", counted)
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        made.append(decode.cut_decoder())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 4 and all(d is made[0] for d in made)
    assert len(calls) == 1
    monkeypatch.setattr(decode, "_decoder", None)


def _child_decodes(queue: Any) -> None:
    cut = decode.cut_decoder()(orjson.loads(PROBES[0]))
    queue.put((cut.to_dict(), decode.cut_decoder().fast))


def test_forked_worker_gets_a_working_decoder_even_if_forked_mid_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DataLoader worker forked while another thread of the parent holds the first-use lock
    (checking) must not wait forever on the copy of that held lock."""
    monkeypatch.setattr(decode, "_decoder", None)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with decode._lock:  # another thread is in the middle of the first-use check
        p = ctx.Process(target=_child_decodes, args=(queue,))
        p.start()
    got = queue.get(timeout=60)  # a hang guard, not a speed check
    p.join()
    assert p.exitcode == 0
    assert got == (deserialize_cut(orjson.loads(PROBES[0])).to_dict(), True)
    monkeypatch.setattr(decode, "_decoder", None)
