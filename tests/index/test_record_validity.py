"""Every record the build accepts is one Lhotse loads: the exact path
(``discoseq.index.fields``) against Lhotse's own ``deserialize_cut`` on records mutated at every
key of every level (deleted, set to null, an unknown key added) and on random replacements; and
through the build, a record Lhotse rejects fails the build naming file and line, or is skipped
(counted) with ``--on-error skip``. Absurd numbers are named, skippable errors."""

from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lhotse import CutSet
from lhotse.cut.set import deserialize_cut

from discoseq._core import cutscan
from discoseq.errors import ManifestError
from discoseq.index import build_index
from discoseq.index.fields import RecordError, fields_from_record
from tests.conftest import FIXTURES
from tests.index.pyscan import scan_all_slow


def base_records() -> list[dict[str, Any]]:
    """One record of each kind: MonoCut (features, recording, supervisions with alignment and
    custom), MultiCut, PaddingCut, MixedCut (with a padding track)."""
    records = [
        CutSet.from_file(FIXTURES / "libri_cuts.json")[0].to_dict(),
        CutSet.from_file(FIXTURES / "libri_cuts_multi.json")[0].to_dict(),
    ]
    mono = CutSet.from_file(FIXTURES / "libri_cuts.json")[0]
    mono.supervisions[0].custom = {"age": 3}
    records.append(mono.to_dict())
    padded = mono.pad(duration=mono.duration + 1.0)
    records.append(padded.to_dict())
    records.append(padded.tracks[1].cut.to_dict())
    records.append(mono.mix(mono, offset_other_by=0.5).to_dict())
    records.append(mono.perturb_speed(1.1).resample(8000).to_dict())  # recording transforms
    return records


def lhotse_loads(record: Any) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            deserialize_cut(copy.deepcopy(record))
    except Exception:
        return False
    return True


def we_accept(record: Any) -> bool:
    try:
        fields_from_record(copy.deepcopy(record))
    except RecordError:
        return False
    return True


def paths(node: Any, at: tuple = ()) -> Iterator[tuple]:
    """Every path to an object (dict) in the record."""
    if isinstance(node, dict):
        yield at
        for key, value in node.items():
            yield from paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*at, i))


def get(node: Any, at: tuple) -> Any:
    for step in at:
        node = node[step]
    return node


def mutations(record: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for at in paths(record):
        obj = get(record, at)
        for key in list(obj):
            for kind in ("delete", "null"):
                mutated = copy.deepcopy(record)
                target = get(mutated, at)
                if kind == "delete":
                    del target[key]
                else:
                    target[key] = None
                yield f"{kind} {(*at, key)}", mutated
        mutated = copy.deepcopy(record)
        get(mutated, at)["speaker_x"] = "spk"
        yield f"add key at {at}", mutated


RECORDS = base_records()

# Records we refuse although Lhotse loads them (stricter on purpose; never the other way):
# a features entry without frame_shift (Lhotse guesses it from duration / num_frames, with a
# warning), a MixedCut without a non-padding track (nothing to compute counts from), and
# values set to null where Lhotse's constructors take any value (num_features must be an int).
STRICTER = ("'frame_shift'", "frame_shift", "sampling_rate", "num_features", "num_frames")


def test_base_records_load() -> None:
    for record in RECORDS:
        assert lhotse_loads(record) and we_accept(record)


@pytest.mark.parametrize("which", range(len(RECORDS)))
def test_every_key_mutation_agrees_with_lhotse(which: int) -> None:
    false_accepts = []
    for what, mutated in mutations(RECORDS[which]):
        if we_accept(mutated) and not lhotse_loads(mutated):
            false_accepts.append(what)
    assert not false_accepts, f"accepted records Lhotse rejects: {false_accepts}"


def build_accepts(record: Any) -> bool:
    """What the build does with one line: the compiled scanner's fast path (status 0) keeps it
    as is; every other line goes through the exact path."""
    line = json.dumps(record).encode() + b"\n"  # json: also integers beyond 64 bits
    if cutscan.scan_cut_lines(line)["status"][0] == 0:
        return True
    return we_accept(record)


@pytest.mark.parametrize("which", range(len(RECORDS)))
def test_build_never_keeps_a_line_lhotse_rejects(which: int) -> None:
    """The same mutations through both paths of the build (the compiled scanner first)."""
    false_accepts = []
    for what, mutated in mutations(RECORDS[which]):
        if build_accepts(mutated) and not lhotse_loads(mutated):
            false_accepts.append(what)
    assert not false_accepts, f"the build keeps records Lhotse rejects: {false_accepts}"


@pytest.mark.parametrize("which", range(len(RECORDS)))
def test_unknown_keys_rejected_and_known_keys_kept(which: int) -> None:
    """An added unknown key is rejected exactly where Lhotse rejects it (never a record Lhotse
    loads refused for a key)."""
    for what, mutated in mutations(RECORDS[which]):
        if what.startswith("add key"):
            assert we_accept(mutated) == lhotse_loads(mutated), what


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
    st.dictionaries(
        st.sampled_from(["id", "type", "x", "sources", "width"]), st.none(), max_size=3
    ),
)


@given(which=st.integers(0, len(RECORDS) - 1), pick=st.integers(0, 10**6), value=VALUES)
def test_random_replacement_never_accepted_if_lhotse_rejects(which, pick, value) -> None:
    record = copy.deepcopy(RECORDS[which])
    spots = [(at, key) for at in paths(record) for key in get(record, at)]
    at, key = spots[pick % len(spots)]
    get(record, at)[key] = value
    try:
        fields_from_record(copy.deepcopy(record))
    except RecordError:
        accepted = False  # refused by name: fine
    else:
        accepted = True
        assert lhotse_loads(record), f"accepted {(*at, key)} = {value!r}, which Lhotse refuses"
    if not accepted and build_accepts(record):  # the compiled scanner kept it on its own
        assert lhotse_loads(record), f"scanner kept {(*at, key)} = {value!r}; Lhotse refuses"


def write_lines(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


REJECTED = {
    "extra top-level key": lambda r: r.update(speaker="spk1"),
    "unknown supervision key": lambda r: r["supervisions"][0].update(emotion="happy"),
    "supervision without id": lambda r: r["supervisions"][0].pop("id"),
    "cut without start": lambda r: r.pop("start"),
    "recording without sources": lambda r: r["recording"].pop("sources"),
    "features without storage_type": lambda r: r["features"].pop("storage_type"),
}


@pytest.mark.parametrize("case", list(REJECTED))
@pytest.mark.parametrize("scanner", ["compiled", "python"])
def test_build_rejects_what_lhotse_rejects(tmp_path, monkeypatch, case, scanner) -> None:
    if scanner == "python":
        monkeypatch.setattr(cutscan, "scan_cut_lines", scan_all_slow)
    good = [dict(RECORDS[0], id=f"c{i}") for i in range(4)]
    bad = copy.deepcopy(good[2])
    REJECTED[case](bad)
    assert not lhotse_loads(bad)
    manifest = write_lines(tmp_path / "cuts.jsonl", [*good[:2], bad, good[3]])
    with pytest.raises(ManifestError, match=r"cuts\.jsonl:3: "):
        build_index(manifest, tmp_path / "idx")
    index = build_index(manifest, tmp_path / "idx2", on_error="skip")
    assert len(index) == 3 and index.header.build["skipped"] == 1
    index.resolve(range(3))


def mixed_with(edit) -> dict[str, Any]:
    record = copy.deepcopy(RECORDS[5])
    edit(record)
    return record


@pytest.mark.parametrize(
    "edit",
    [
        lambda r: r["tracks"][0].update(volume=2),
        lambda r: r["tracks"][0]["cut"].update(speaker="x"),
        lambda r: r["tracks"][1].pop("type"),
    ],
)
def test_mixed_cut_tracks_are_checked(tmp_path, edit) -> None:
    bad = mixed_with(edit)
    assert not lhotse_loads(bad)
    manifest = write_lines(tmp_path / "cuts.jsonl", [RECORDS[0], bad])
    with pytest.raises(ManifestError, match=r"cuts\.jsonl:2: "):
        build_index(manifest, tmp_path / "idx")


ABSURD = {
    "huge duration": lambda r: r.update(duration=1e15),
    "huge sampling rate": lambda r: (r.pop("features"), r["recording"].update(sampling_rate=1e308)),
    "tiny frame shift": lambda r: r["features"].update(frame_shift=5e-324),
    "huge features sampling rate": lambda r: r["features"].update(sampling_rate=1e308),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_numbers_are_named_and_skippable(tmp_path, case) -> None:
    good = [dict(RECORDS[0], id=f"c{i}") for i in range(3)]
    bad = copy.deepcopy(good[1])
    ABSURD[case](bad)
    manifest = write_lines(tmp_path / "cuts.jsonl", [*good[:1], bad, *good[2:]])
    with pytest.raises(ManifestError, match=r"cuts\.jsonl:2: "):
        build_index(manifest, tmp_path / "idx")
    index = build_index(manifest, tmp_path / "idx2", on_error="skip")
    assert len(index) == 2 and index.header.build["skipped"] == 1


def test_verify_reports_a_record_lhotse_rejects(tmp_path, monkeypatch) -> None:
    """An index built before this check (simulated by switching it off) passes no more:
    verify names the row."""
    from discoseq.index import fields, verify_index

    good = [dict(RECORDS[0], id=f"c{i}") for i in range(3)]
    good[1]["speaker"] = "spk1"
    manifest = write_lines(tmp_path / "cuts.jsonl", good)
    with monkeypatch.context() as m:
        m.setattr(fields, "check_data_cut", lambda *args, **kwargs: None)
        build_index(manifest, tmp_path / "idx")
    report = verify_index(tmp_path / "idx")
    assert any("row 1" in p and "speaker" in p for p in report.problems), report.problems


def test_transform_table_is_lhotses() -> None:
    import inspect

    from lhotse.augmentation.transform import AudioTransform

    from discoseq.index.fields import TRANSFORMS

    found = {}
    for name, cls in AudioTransform.KNOWN_TRANSFORMS.items():
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        taken = frozenset(p.name for p in params)
        required = frozenset(p.name for p in params if p.default is inspect.Parameter.empty)
        found[name] = (taken, required)
    assert found == TRANSFORMS


@pytest.mark.parametrize(
    "transforms",
    [
        [{"name": "Nope", "kwargs": {}}],
        [{"name": "Speed", "kwargs": {}}],
        [{"name": "Speed", "kwargs": {"factor": 1.1, "x": 1}}],
        [{"name": "Speed"}],
        [{"kwargs": {"factor": 1.1}}],
        [None],
        None,
        {"name": "Speed", "kwargs": {"factor": 1.1}},
    ],
)
@pytest.mark.parametrize("where", ["mixed", "recording"])
def test_transforms_lhotse_rejects(transforms, where) -> None:
    record = copy.deepcopy(RECORDS[5] if where == "mixed" else RECORDS[6])
    target = record if where == "mixed" else record["recording"]
    target["transforms"] = transforms
    assert not we_accept(record)
    # Recording.from_dict swallows a KeyError from a transform without name or kwargs and drops
    # all its transforms: Lhotse "loads" that record, silently changed; we refuse it.
    lenient = where == "recording" and isinstance(transforms, list) and transforms[0] is not None
    assert lhotse_loads(record) == (lenient and not {"name", "kwargs"} <= transforms[0].keys())


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), None])
def test_resample_rate_that_int_refuses_is_refused_by_name(value: Any) -> None:
    """Lhotse's Resample converts its rates with ``int()``: infinities and NaN fail there, so the
    build refuses them by field (found by the random replacement test)."""
    record = copy.deepcopy(RECORDS[-1])
    transforms = record["recording"]["transforms"]
    k = next(i for i, t in enumerate(transforms) if t["name"] == "Resample")
    transforms[k]["kwargs"]["source_sampling_rate"] = value
    assert not lhotse_loads(record)
    with pytest.raises(RecordError, match=rf"transforms\[{k}\]\.kwargs\.source_sampling_rate"):
        fields_from_record(record)
