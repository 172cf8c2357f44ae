"""The direct cut constructor (discoseq.index.decode) against Lhotse's ``deserialize_cut``:
identical objects (types, values, attribute order) for every record, the fallback for shapes it
does not know, and the first-use check that turns it off when Lhotse builds something else."""

from __future__ import annotations

import copy
import gzip
import json
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lhotse import CutSet, MonoCut, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.cut.set import deserialize_cut
from lhotse.supervision import AlignmentItem
from lhotse.testing.dummies import dummy_cut, dummy_supervision

import discoseq.index.decode as decode
from discoseq import CutIndex, build_index
from discoseq.index.decode import PROBES, CutDecoder, identical
from discoseq.synth import write_manifest
from tests.index.like_lhotse import assert_like_lhotse

DATA = Path(__file__).resolve().parents[1] / "data"

# Lhotse's own warnings for the legacy records it is given here
pytestmark = [
    pytest.mark.filterwarnings("ignore:Your manifest was created with Lhotse version"),
    pytest.mark.filterwarnings('ignore:The "frame_shift" field was not found'),
]


def fixture_records() -> list[dict[str, Any]]:
    """Every cut record of tests/data: the Lhotse fixtures' cuts, the cuts Lhotse makes of the
    mini LibriSpeech recordings and supervisions, and the golden indexes' records."""
    out: list[dict[str, Any]] = []
    for path in sorted((DATA / "lhotse").glob("*cuts*")):
        if path.name.endswith(".jsonl.gz"):
            with gzip.open(path, "rt") as f:
                out.extend(json.loads(line) for line in f if line.strip())
        else:
            out.extend(json.loads(path.read_text()))
    mini = DATA / "lhotse" / "mini_librispeech_lhotse_"
    cuts = CutSet.from_manifests(
        recordings=RecordingSet.from_file(f"{mini}recordings.jsonl.gz"),
        supervisions=SupervisionSet.from_file(f"{mini}supervisions.jsonl.gz"),
    )
    out.extend(c.to_dict() for c in cuts)
    for golden in sorted(DATA.glob("golden_index_v*")):
        index = CutIndex.open(golden, check_sources=False)
        out.extend(orjson.loads(x) for x in index.records(np.arange(len(index))))
    return out


def synthetic_records(tmp_path: Path) -> list[dict[str, Any]]:
    """The benchmark corpus's kind of records (discoseq.synth), mixes and paddings included."""
    path = write_manifest(
        tmp_path / "synth.jsonl", 300, seed=1, mixed_fraction=0.1, padding_fraction=0.05
    )
    return [json.loads(line) for line in path.read_text().splitlines()]


def check_same(decoder: CutDecoder, record: dict[str, Any]) -> bool:
    """Assert the decoder builds ``record`` as ``deserialize_cut`` does; True if it took the
    fast path."""
    raw = orjson.dumps(record)
    theirs = deserialize_cut(orjson.loads(raw))
    before = decoder.fallbacks
    ours = decoder(orjson.loads(raw))
    assert identical(ours, theirs) is None, identical(ours, theirs)
    assert ours == theirs
    return decoder.fallbacks == before


def expect_fast(record: dict[str, Any]) -> bool:
    """Whether the fast path should take ``record``: a MonoCut whose custom fields (of the cut
    and of its supervisions) hold no dict (Lhotse may turn one into an array manifest)."""
    customs = [record.get("custom")] + [s.get("custom") for s in record.get("supervisions", [])]
    return record["type"] == "MonoCut" and not any(
        isinstance(v, dict) for c in customs if c for v in c.values()
    )


def lhotse_operation_records() -> list[dict[str, Any]]:
    """Records Lhotse itself writes after common operations."""
    base = dummy_cut(0, duration=2.0, recording_duration=3.0)
    base.supervisions = [
        dummy_supervision(0, start=0.0, duration=1.0),
        dummy_supervision(1, start=0.5, duration=1.5, text="hello", alignment=None),
    ]
    aligned = dummy_cut(1, duration=1.0)
    aligned.supervisions = [
        SupervisionSegment(
            id="ali",
            recording_id=aligned.recording_id,
            start=0.0,
            duration=1.0,
            channel=[0, 1],
            speaker="spk",
            gender="m",
            custom={"emotion": "calm"},
            alignment={"word": [AlignmentItem("a", 0.0, 0.5), AlignmentItem("b", 0.5, 0.5, 0.9)]},
        )
    ]
    no_feats = base.drop_features()
    no_rec = base.drop_recording()
    cuts = [
        base,
        aligned,
        no_feats,
        no_rec,
        no_feats.perturb_speed(1.1),
        no_feats.perturb_tempo(0.9),
        no_feats.perturb_volume(0.5),
        no_feats.resample(8000),
        no_feats.perturb_speed(0.9).resample(22050),
        base.truncate(duration=0.5),
        base.pad(duration=4.0),
        base.mix(no_rec, offset_other_by=0.5),
        no_feats.append(no_feats),
        base.with_id("renamed"),
    ]
    tagged = base.with_custom("lang", "de")
    tagged.supervisions[0].custom = {"w": [1, 2], "x": None}
    cuts.append(tagged)
    cuts += [t.cut for t in base.pad(duration=4.0).tracks]  # a standalone PaddingCut
    with tempfile.TemporaryDirectory() as tmp:  # as Lhotse writes them
        path = Path(tmp) / "cuts.jsonl"
        CutSet.from_cuts(c.with_id(f"op-{i}") for i, c in enumerate(cuts)).to_file(path)
        return [json.loads(line) for line in path.read_text().splitlines()]


def test_fixtures_identical_and_mostly_fast() -> None:
    decoder = CutDecoder()
    records = fixture_records()
    assert len(records) > 20
    fast = [check_same(decoder, r) for r in records]
    kinds = {r["type"] for r in records}
    assert "MonoCut" in kinds
    # every MonoCut of the fixtures takes the fast path but a Shar one whose custom field holds
    # an array manifest; the rest (MultiCut, legacy "Cut") Lhotse's deserialize_cut
    assert fast == [expect_fast(r) for r in records]
    assert sum(fast) > 20
    assert decoder.fallbacks == sum(not expect_fast(r) for r in records) > 0


def test_synthetic_corpus_identical(tmp_path: Path) -> None:
    decoder = CutDecoder()
    records = synthetic_records(tmp_path)
    fast = [check_same(decoder, r) for r in records]
    types = [r["type"] for r in records]
    assert {"MonoCut", "MixedCut"} <= set(types)
    assert fast == [t == "MonoCut" for t in types]


def test_lhotse_operations_identical() -> None:
    decoder = CutDecoder()
    records = lhotse_operation_records()
    fast = [check_same(decoder, r) for r in records]
    types = [r["type"] for r in records]
    assert "MixedCut" in types and "PaddingCut" in types
    # dummy cuts carry custom strings only: every MonoCut fast, mixes and paddings not
    assert fast == [t == "MonoCut" for t in types]
    # perturbed and resampled recordings (transforms) are built directly too
    transformed = ["transforms" in r.get("recording", {}) for r in records]
    assert sum(transformed) >= 4


def test_probes_fast_and_identical() -> None:
    decoder = CutDecoder()
    assert decoder.check() is None
    for raw in PROBES:
        assert check_same(decoder, orjson.loads(raw))


def _mono() -> dict[str, Any]:
    return orjson.loads(PROBES[0])


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda r: r.update(extra=1), "unknown cut key"),
        (lambda r: r["recording"]["sources"][0].update(video={"fps": 25.0}), "video source"),
        (lambda r: r.update(custom={"emb": {"array": 1}}), "custom value that is a dict"),
        (lambda r: r.update(custom=[1]), "custom that is not a dict"),
        (lambda r: r["features"].pop("storage_path"), "features without storage_path"),
        (lambda r: r["features"].pop("frame_shift"), "features without frame_shift"),
        (lambda r: r["supervisions"][0].update(foo="bar"), "unknown supervision key"),
        (lambda r: r["recording"].update(transforms=[{"name": "Nope", "kwargs": {}}]), "bad"),
        (lambda r: r.update(type="Cut"), "legacy type name"),
    ],
)
def test_unknown_shapes_fall_back(change: Any, why: str) -> None:
    decoder = CutDecoder()
    record = _mono()
    change(record)
    try:
        theirs: Any = deserialize_cut(copy.deepcopy(record))
    except Exception as e:  # Lhotse refuses it: the decoder raises the same error
        with pytest.raises(type(e)):
            decoder(record)
        assert decoder.fallbacks == 1, why
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = decoder(record)
    assert decoder.fallbacks == 1, why
    assert identical(ours, theirs) is None


def test_null_and_wrong_types_fall_back_to_lhotse_errors() -> None:
    for key, value in [("features", None), ("recording", None), ("supervisions", None)]:
        decoder = CutDecoder()
        record = _mono()
        record[key] = value
        with pytest.raises(Exception) as ours:
            decoder(record)
        with pytest.raises(Exception) as theirs:
            deserialize_cut(_mono() | {key: value})
        assert type(ours.value) is type(theirs.value)
        assert decoder.fallbacks == 1


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
json_value = st.one_of(json_scalar, st.lists(json_scalar, max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drops=st.sets(
        st.sampled_from(
            [
                "features",
                "recording",
                "supervisions",
                "sup.text",
                "sup.language",
                "sup.speaker",
                "sup.channel",
                "rec.channel_ids",
                "feat.recording_id",
                "feat.channels",
            ]
        )
    ),
    values=st.dictionaries(
        st.sampled_from(
            [
                "start",
                "duration",
                "channel",
                "custom",
                "sup.channel",
                "sup.gender",
                "sup.custom",
                "sup.alignment",
                "rec.channel_ids",
                "rec.duration",
                "feat.channels",
                "feat.start",
            ]
        ),
        json_value,
    ),
    custom=st.dictionaries(st.text(max_size=4), json_value, max_size=3),
    alignment=st.lists(
        st.tuples(st.text(max_size=3), st.floats(0, 10), st.floats(0, 10)), max_size=3
    ),
    with_custom=st.booleans(),
    with_alignment=st.booleans(),
)
def test_mutated_optional_fields(
    drops: set[str],
    values: dict[str, Any],
    custom: dict[str, Any],
    alignment: list[tuple[str, float, float]],
    with_custom: bool,
    with_alignment: bool,
) -> None:
    record = _mono()
    parts = {
        "": record,
        "sup.": record["supervisions"][0],
        "rec.": record["recording"],
        "feat.": record["features"],
    }

    def split(name: str) -> tuple[dict[str, Any], str]:
        prefix, _, key = name.rpartition(".")
        return parts[prefix + "." if prefix else ""], key

    for name, value in values.items():
        target, key = split(name)
        target[key] = value
    if with_custom:
        record["custom"] = custom
        record["supervisions"][0]["custom"] = dict(custom)
    if with_alignment:
        record["supervisions"][0]["alignment"] = {"word": [list(a) for a in alignment]}
    for name in drops:
        target, key = split(name)
        target.pop(key, None)
    decoder = CutDecoder()
    if assert_like_lhotse(decoder, record):  # Lhotse refuses it: so does the fallback
        assert decoder.fallbacks == 1


def test_identical_sees_type_differences() -> None:
    a = MonoCut("c", 0, 1.0, 0)
    assert identical(a, MonoCut("c", 0, 1.0, 0)) is None
    assert identical(a, MonoCut("c", 0.0, 1.0, 0)) is not None  # int vs float, == holds
    assert identical(a, MonoCut("c", 0, 1.0, [0])) is not None
    b = MonoCut("c", 0, 1.0, 0)
    b.__dict__ = dict(reversed(list(vars(b).items())))
    assert identical(a, b) is not None  # same values, other attribute order


def test_first_use_check_turns_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Lhotse whose supervisions come back otherwise: the check finds it, warns once, and
    every record then takes deserialize_cut."""
    original = SupervisionSegment.from_dict

    def changed(data: dict[str, Any]) -> SupervisionSegment:
        segment = original(data)
        segment.speaker = "other"
        return segment

    monkeypatch.setattr(SupervisionSegment, "from_dict", staticmethod(changed))
    monkeypatch.setattr(decode, "_decoder", None)
    with pytest.warns(RuntimeWarning, match="differs from Lhotse's deserialize_cut") as seen:
        decoder = decode.cut_decoder()
    assert len(seen) == 1
    assert not decoder.fast
    assert decode.cut_decoder() is decoder
    cut = decoder(_mono())
    assert cut.supervisions[0].speaker == "other"
    assert decoder.fallbacks == 1
    monkeypatch.setattr(decode, "_decoder", None)  # the next test gets a freshly checked one


def test_first_use_check_passes_with_this_lhotse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "_decoder", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        decoder = decode.cut_decoder()
    assert decoder.fast and decoder.fallbacks == 0


def test_resolve_equals_deserialize_cut(tmp_path: Path) -> None:
    """Through an index: resolve builds the cuts deserialize_cut builds from the same records."""
    records = [r for r in lhotse_operation_records() if r["type"] != "PaddingCut"]
    path = tmp_path / "cuts.jsonl"
    CutSet.from_dicts(copy.deepcopy(records)).to_file(path)
    index = build_index(path, tmp_path / "idx")
    rows = np.arange(len(index))[::-1]
    ours = list(index.resolve(rows))
    theirs = [deserialize_cut(orjson.loads(x)) for x in index.records(rows)]
    assert len(ours) == len(records)
    for a, b in zip(ours, theirs, strict=True):
        assert identical(a, b) is None, identical(a, b)
        # what a DataLoader worker sends and what Lhotse writes back stay the same too
        assert identical(pickle.loads(pickle.dumps(a)), b) is None
        assert identical(a.to_dict(), b.to_dict()) is None


def test_each_new_shape_is_compared_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A record that brings a shape the decoder has not met is compared with deserialize_cut
    (the probes cannot hold every shape); records of known shapes are not. A difference on a
    new shape turns the fast path off with one warning and returns Lhotse's cut."""
    decoder = CutDecoder()
    calls: list[str] = []
    real = decoder._deserialize_cut

    def counted(record: dict[str, Any]) -> Any:
        calls.append(record["id"])
        return real(record)

    monkeypatch.setattr(decoder, "_deserialize_cut", counted)
    first = _mono()
    decoder(copy.deepcopy(first))
    assert len(calls) == 1  # new shapes: checked
    decoder(copy.deepcopy(first))
    assert len(calls) == 1  # the same shapes: not again
    assert decoder.fast and decoder.fallbacks == 0

    def differs(record: dict[str, Any]) -> Any:
        cut = real(record)
        cut.supervisions[0].speaker = "someone else"
        return cut

    monkeypatch.setattr(decoder, "_deserialize_cut", differs)
    other = copy.deepcopy(first)
    other["supervisions"][0]["gender"] = "m"  # a supervision shape not met yet
    with pytest.warns(RuntimeWarning, match="record of a new shape"):
        cut = decoder(other)
    assert cut.supervisions[0].speaker == "someone else"  # Lhotse's cut
    assert not decoder.fast and decoder.fallbacks == 1
