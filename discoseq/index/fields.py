"""Per-cut values computed from a cut's JSON record exactly as Lhotse computes them.

This is the exact, readable path (and the specification of the compiled scanner in
``discoseq._core.cutscan``): every record the scanner does not handle with certainty comes
here, e.g. every MixedCut. It also checks that the record is one Lhotse's constructors load
(every key they take and none they refuse, at every level: :func:`check_keys`, from the same
schema tables as the scanner), so a bad record fails the build, naming its file and line, rather
than a training run. It builds no Lhotse object; ``tests/index/test_build.py`` checks it
against Lhotse's own ``cut.duration``, ``cut.num_frames``, ... on every fixture (its ``scanner``
fixture's ``python`` case sends every line here: ``test_fixture_round_trip``,
``test_mixed_and_padding_cuts``, ``test_mini_librispeech_cutset_and_files``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from discoseq.index.format import CUT_TYPE_CODE, MISSING, is_json_int, is_json_number


class RecordError(ValueError):
    """A record is not a valid cut; the builder adds the file and line to the message."""


class NotACutError(RecordError):
    """A record of another kind of Lhotse manifest (recordings, supervisions, features): the
    whole file is likely not a cut manifest, so skipping bad records would not help."""


@dataclass(frozen=True)
class CutFields:
    """The index columns of one cut (``-1`` where Lhotse returns ``None``)."""

    cut_id: str
    cut_type: int
    duration: float
    num_frames: int
    num_samples: int
    num_features: int
    num_tokens: int
    num_supervisions: int


#: Counts must fit the index's int64 columns.
MAX_COUNT = 2**63 - 1


def _product(a: float, b: float, what: str) -> float:
    p = a * b
    if not math.isfinite(p) or abs(p) > MAX_COUNT:
        raise RecordError(f"{what} = {a!r} * {b!r} is not a representable count of samples")
    return p


def compute_num_frames(duration: float, frame_shift: float, sampling_rate: float) -> int:
    """``lhotse.utils.compute_num_frames`` (a :class:`RecordError` where Lhotse's arithmetic
    would overflow or divide by zero)."""
    num_samples = round(_product(duration, sampling_rate, "duration * sampling_rate"))
    window_hop = round(_product(frame_shift, sampling_rate, "frame_shift * sampling_rate"))
    if window_hop == 0:
        raise RecordError(
            f"frame_shift {frame_shift!r} * sampling_rate {sampling_rate!r} rounds to a hop of "
            "0 samples: num_frames is undefined"
        )
    return _count(int((num_samples + window_hop // 2) // window_hop), "num_frames")


def compute_num_samples(duration: float, sampling_rate: float) -> int:
    """``lhotse.utils.compute_num_samples`` with its default ROUND_HALF_UP."""
    product = _product(duration, sampling_rate, "duration * sampling_rate")
    return _count(int(Decimal(round(product, ndigits=8)).quantize(0, ROUND_HALF_UP)), "num_samples")


def _count(value: int, what: str) -> int:
    if not -MAX_COUNT <= value <= MAX_COUNT:
        raise RecordError(f"{what} {value} does not fit a 64-bit integer")
    return value


def _number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = obj.get(key)
    if not is_json_number(value):
        raise RecordError(f"field '{where}{key}' expected a number, found {value!r}")
    return value


def _duration(rec: Mapping[str, Any], where: str = "") -> float:
    if "duration" not in rec:
        raise RecordError(f"field '{where}duration' is missing")
    d = _number(rec, "duration", where)
    if not math.isfinite(d) or d <= 0:
        raise RecordError(f"field '{where}duration' must be a positive finite number, found {d!r}")
    return d


def _optional_dict(rec: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
    value = rec.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError(f"field '{where}{key}' expected an object, found {type(value).__name__}")
    return value


# -- which keys Lhotse's constructors take -------------------------------------------------------
# One schema for both paths: the compiled scanner's tables (``discoseq._core.cutscan.SCHEMA``),
# whose levels mirror the Lhotse dataclasses exactly (keys the scanner routes to this path,
# "slow", are keys Lhotse takes), plus the levels the scanner never reads itself (a MixedCut and
# its tracks) and the keys it routes here although Lhotse takes them (an audio source's "video").


@dataclass(frozen=True)
class _Level:
    name: str
    allowed: frozenset[str]
    required: frozenset[str]


def _level(
    name: str, extra_allowed: tuple[str, ...] = (), not_required: tuple[str, ...] = ()
) -> _Level:
    from discoseq._core.cutscan import SCHEMA

    keys = SCHEMA[name]["keys"]
    return _Level(
        name,
        frozenset(keys) | frozenset(extra_allowed),
        frozenset(k for k, p in keys.items() if p == "required") - frozenset(not_required),
    )


def _levels() -> dict[str, _Level]:
    levels = {
        "MonoCut": _level("cut/MonoCut"),
        "MultiCut": _level("cut/MultiCut"),
        "PaddingCut": _level("cut/PaddingCut"),
        "supervision": _level("supervision"),
        "features": _level("features"),
        "recording": _level("recording"),
        "source": _level("source", extra_allowed=("video",)),
        # MixTrack.from_dict pops "cut" and "type" and passes the rest to MixTrack(...)
        "track": _Level(
            "track",
            frozenset({"cut", "type", "offset", "snr", "tag", "is_snr_reference", "mute"}),
            frozenset({"cut", "type"}),
        ),
        # Image.from_dict (a dict with "width" in a custom field); storage_path may be absent
        "image": _Level(
            "image",
            frozenset({"storage_type", "storage_path", "storage_key", "width", "height"}),
            frozenset({"storage_type", "storage_key", "width", "height"}),
        ),
    }
    levels["Cut"] = levels["MonoCut"]  # Lhotse < 0.8's name of a MonoCut
    return levels


_LEVELS: dict[str, _Level] = {}


def check_keys(obj: Mapping[str, Any], level: str, where: str, *, nested: bool = False) -> None:
    """Raise :class:`RecordError` if ``obj`` has a key the Lhotse constructor of ``level``
    rejects, or lacks one it requires (``nested``: a track's cut, whose type its track gives)."""
    spec = _LEVELS.get(level)
    if spec is None:
        _LEVELS.update(_levels())
        spec = _LEVELS[level]
    if spec.allowed.issuperset(obj) and (
        (spec.required - _TYPE if nested else spec.required).issubset(obj)
    ):
        return  # the common case, in two C-level set operations
    for key in obj:
        if key not in spec.allowed:
            raise RecordError(
                f"field '{where}{key}' is not a field of a Lhotse {spec.name} (Lhotse would "
                f"refuse this record); expected only {sorted(spec.allowed)}"
            )
    missing = spec.required - obj.keys() - (_TYPE if nested else frozenset())
    raise RecordError(
        f"field '{where}{sorted(missing)[0]}' is missing (required by Lhotse's {spec.name})"
    )


_TYPE = frozenset({"type"})


#: ``AudioTransform.KNOWN_TRANSFORMS`` of Lhotse 1.33: name -> (the keyword arguments its class
#: takes, those it requires). ``AudioTransform.from_dict`` reads only "name" and "kwargs".
#: ``tests/index/test_record_validity.py`` checks this table against the installed Lhotse.
TRANSFORMS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    name: (frozenset(taken), frozenset(required))
    for name, taken, required in (
        ("Clipping", ("hard", "gain_db", "normalize"), ()),
        ("Compress", ("codec", "compression_level"), ("codec",)),
        (
            "DereverbWPE",
            ("n_fft", "hop_length", "taps", "delay", "iterations", "statistics_mode"),
            (),
        ),
        ("LoudnessNormalization", ("target",), ("target",)),
        (
            "Narrowband",
            ("codec", "source_sampling_rate", "restore_orig_sr"),
            ("codec", "source_sampling_rate", "restore_orig_sr"),
        ),
        (
            "Resample",
            ("source_sampling_rate", "target_sampling_rate"),
            ("source_sampling_rate", "target_sampling_rate"),
        ),
        (
            "ReverbWithImpulseResponse",
            (
                "rir",
                "normalize_output",
                "early_only",
                "rir_channels",
                "rir_generator",
                "RIR_SCALING_FACTOR",
            ),
            (),
        ),
        ("Speed", ("factor",), ("factor",)),
        ("Tempo", ("factor",), ("factor",)),
        ("Volume", ("factor",), ("factor",)),
    )
}


#: Keyword arguments that Lhotse's transform constructors convert with ``int()`` (Resample's;
#: null, NaN and infinities fail there). Others (Speed's factor, ...) are stored as given, so
#: any value loads.
_NUMERIC_KWARGS = frozenset({"source_sampling_rate", "target_sampling_rate"})


def _int_convertible(value: Any) -> bool:
    """A number ``int()`` converts: finite (``int(inf)`` and ``int(nan)`` raise)."""
    return is_json_number(value) and math.isfinite(value)


def _transform_ok(t: Any) -> bool:
    if not isinstance(t, dict) or "name" not in t or not isinstance(t.get("kwargs"), dict):
        return False
    name, kwargs = t["name"], t["kwargs"]
    spec = TRANSFORMS.get(name) if isinstance(name, str) else None
    return (
        spec is not None
        and spec[0].issuperset(kwargs)
        and spec[1].issubset(kwargs)
        and all(_int_convertible(kwargs[k]) for k in _NUMERIC_KWARGS.intersection(kwargs))
    )


def _transforms_ok(transforms: Any) -> bool:
    return isinstance(transforms, list) and all(_transform_ok(t) for t in transforms)


def check_transforms(transforms: Any, where: str) -> None:
    """Raise :class:`RecordError` unless every transform is one ``AudioTransform.from_dict``
    builds: a known name and keyword arguments its class takes."""
    for i, t in enumerate(_check_list_of_objects(transforms, where)):
        if _transform_ok(t):
            continue
        name = t.get("name")
        if not isinstance(name, str) or name not in TRANSFORMS:
            raise RecordError(
                f"field '{where}[{i}].name' is {name!r}, not a Lhotse transform "
                f"({', '.join(sorted(TRANSFORMS))})"
            )
        kwargs = t.get("kwargs")
        if isinstance(kwargs, dict):
            for key in sorted(_NUMERIC_KWARGS.intersection(kwargs)):
                if not _int_convertible(kwargs[key]):
                    raise RecordError(
                        f"field '{where}[{i}].kwargs.{key}' expected a finite number, "
                        f"found {kwargs[key]!r}"
                    )
        raise RecordError(
            f"field '{where}[{i}].kwargs' {t.get('kwargs')!r} are not the arguments of Lhotse's "
            f"{name} (it takes {sorted(TRANSFORMS[name][0])}, requires "
            f"{sorted(TRANSFORMS[name][1])})"
        )


def _check_list_of_objects(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise RecordError(f"field '{field}' expected a list, found {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise RecordError(f"field '{field}[{i}]' expected an object")
    return value


def _check_custom(custom: Any, where: str) -> None:
    """What ``deserialize_custom_field`` needs: an object (or null) whose object values that
    look like a Recording or an Image are one."""
    if custom is None:
        return
    if not isinstance(custom, dict):
        raise RecordError(f"field '{where}custom' expected an object or null")
    for key, value in custom.items():
        if not isinstance(value, dict):
            continue
        inner = f"{where}custom.{key}."
        if all(k in value for k in ("id", "sources", "sampling_rate")):
            _check_recording(value, inner)
        elif "width" in value:
            check_keys(value, "image", inner)


def _check_recording(recording: Any, where: str) -> None:
    if not isinstance(recording, dict):
        raise RecordError(f"field '{where.rstrip('.')}' expected an object")
    check_keys(recording, "recording", where)
    for i, source in enumerate(_check_list_of_objects(recording["sources"], where + "sources")):
        check_keys(source, "source", f"{where}sources[{i}].")
    if "transforms" in recording:  # Recording.from_dict iterates any value present
        check_transforms(recording["transforms"], where + "transforms")


def _check_supervision(sup: Mapping[str, Any], where: str) -> None:
    check_keys(sup, "supervision", where)
    _check_custom(sup.get("custom"), where)
    alignment = sup.get("alignment")
    if alignment is None:
        return
    if not isinstance(alignment, dict):
        raise RecordError(f"field '{where}alignment' expected an object")
    for kind, items in alignment.items():
        if not isinstance(items, list):
            raise RecordError(f"field '{where}alignment.{kind}' expected a list")
        for i, item in enumerate(items):
            if not isinstance(item, list | dict) or not 3 <= len(item) <= 4:
                raise RecordError(
                    f"field '{where}alignment.{kind}[{i}]' expected [symbol, start, duration"
                    "(, score)]"
                )


def check_data_cut(rec: Mapping[str, Any], cut_type: str, where: str, nested: bool) -> None:
    """A MonoCut/MultiCut/PaddingCut record is one its Lhotse ``from_dict`` loads: a yes/no
    answer in set operations first (:func:`_data_cut_ok`), the message-building walk only for
    a record that fails it."""
    if not _LEVELS:
        _LEVELS.update(_levels())
    if _data_cut_ok(rec, cut_type, nested):
        return
    _explain_data_cut(rec, cut_type, where, nested)
    raise RecordError(f"field '{where or 'the cut'}' is not a record Lhotse loads")


def _keys_ok(obj: Any, spec: _Level, required: frozenset[str] | None = None) -> bool:
    return (
        isinstance(obj, dict)
        and spec.allowed.issuperset(obj)
        and (spec.required if required is None else required).issubset(obj)
    )


def _recording_ok(recording: Any) -> bool:
    if not _keys_ok(recording, _LEVELS["recording"]):
        return False
    sources = recording["sources"]
    source = _LEVELS["source"]
    if not isinstance(sources, list) or not all(_keys_ok(s, source) for s in sources):
        return False
    return "transforms" not in recording or _transforms_ok(recording["transforms"])


def _custom_ok(custom: Any) -> bool:
    if custom is None:
        return True
    if not isinstance(custom, dict):
        return False
    for value in custom.values():
        if isinstance(value, dict):
            if all(k in value for k in ("id", "sources", "sampling_rate")):
                if not _recording_ok(value):
                    return False
            elif "width" in value and not _keys_ok(value, _LEVELS["image"]):
                return False
    return True


def _alignment_ok(alignment: Any) -> bool:
    if alignment is None:
        return True
    return isinstance(alignment, dict) and all(
        isinstance(items, list)
        and all(isinstance(item, list | dict) and 3 <= len(item) <= 4 for item in items)
        for items in alignment.values()
    )


def _data_cut_ok(rec: Mapping[str, Any], cut_type: str, nested: bool) -> bool:
    spec = _LEVELS[cut_type]
    if not _keys_ok(rec, spec, spec.required - _TYPE if nested else None):
        return False
    if "custom" in rec and not _custom_ok(rec["custom"]):
        return False
    if cut_type == "PaddingCut":
        return True
    if "features" in rec and not _keys_ok(rec["features"], _LEVELS["features"]):
        return False
    if "recording" in rec and not _recording_ok(rec["recording"]):
        return False
    if "supervisions" in rec:
        sups = rec["supervisions"]
        if not isinstance(sups, list):
            return False
        supervision = _LEVELS["supervision"]
        for sup in sups:
            if not _keys_ok(sup, supervision):
                return False
            if "custom" in sup and not _custom_ok(sup["custom"]):
                return False
            if "alignment" in sup and not _alignment_ok(sup["alignment"]):
                return False
    return True


def _explain_data_cut(rec: Mapping[str, Any], cut_type: str, where: str, nested: bool) -> None:
    """Raise the :class:`RecordError` naming the first field that makes Lhotse refuse ``rec``."""
    check_keys(rec, cut_type, where, nested=nested)
    _check_custom(rec.get("custom"), where)
    if cut_type == "PaddingCut":
        return
    # MonoCut/MultiCut.from_dict call Features/Recording.from_dict on any value present (null
    # included) and iterate "supervisions".
    if "features" in rec:
        features = rec["features"]
        if not isinstance(features, dict):
            raise RecordError(f"field '{where}features' expected an object")
        check_keys(features, "features", where + "features.")
    if "recording" in rec:
        _check_recording(rec["recording"], where + "recording.")
    if "supervisions" in rec:
        sups = _check_list_of_objects(rec["supervisions"], where + "supervisions")
        for i, sup in enumerate(sups):
            _check_supervision(sup, f"{where}supervisions[{i}].")


class _Track:
    """What a MixedCut needs to know of one track's cut (a DataCut or a PaddingCut)."""

    def __init__(self, cut: Mapping[str, Any], cut_type: str, where: str) -> None:
        self.is_padding = cut_type == "PaddingCut"
        self.duration = _duration(cut, where)
        self.supervisions: Sequence[Any] = ()
        if self.is_padding:
            self.has_features = cut.get("num_frames") is not None
            self.frame_shift = cut.get("frame_shift")
            self.sampling_rate = cut.get("sampling_rate")
            self.num_features = cut.get("num_features")
            return
        features = _optional_dict(cut, "features", where)
        recording = _optional_dict(cut, "recording", where)
        self.has_features = features is not None
        if features is not None:
            self.frame_shift = _number(features, "frame_shift", where + "features.")
            self.sampling_rate = _number(features, "sampling_rate", where + "features.")
            self.num_features = features.get("num_features")
        else:
            self.frame_shift = None
            self.num_features = None
            self.sampling_rate = (
                _number(recording, "sampling_rate", where + "recording.")
                if recording is not None
                else None
            )
        self.supervisions = _supervisions(cut, where)


def _supervisions(rec: Mapping[str, Any], where: str) -> Sequence[Any]:
    sups = rec.get("supervisions")
    if sups is None:
        return ()
    if not isinstance(sups, list):
        raise RecordError(
            f"field '{where}supervisions' expected a list, found {type(sups).__name__}"
        )
    return sups


def _text_stats(supervisions: Sequence[Any], where: str) -> tuple[int, int]:
    """(num_supervisions, num_tokens) with num_tokens -1 when no supervision has a text."""
    tokens = MISSING
    for i, sup in enumerate(supervisions):
        if not isinstance(sup, dict):
            raise RecordError(f"field '{where}supervisions[{i}]' expected an object")
        text = sup.get("text")
        if text is None:
            continue
        if not isinstance(text, str):
            raise RecordError(f"field '{where}supervisions[{i}].text' expected a string")
        tokens = len(text) if tokens == MISSING else tokens + len(text)
    return len(supervisions), tokens


def _int_or_missing(value: Any, field: str) -> int:
    if value is None:
        return MISSING
    if not is_json_int(value):
        raise RecordError(f"field '{field}' expected an integer, found {value!r}")
    return value


_MAKE_CUTS = (
    ": make cuts first (lhotse `CutSet.from_manifests(recordings=..., supervisions=..., "
    "features=...)`, then `to_file`)"
)


def describe_non_cut(rec: Mapping[str, Any]) -> str | None:
    """What kind of Lhotse manifest a record that is not a cut comes from, for the error
    message (None: none recognised). Lhotse writes no ``type`` in recordings and supervisions,
    and the feature extractor's name (e.g. ``kaldi-fbank``) as a ``Features`` record's."""
    kind = rec.get("type")
    if "sources" in rec or kind == "Recording":
        what = "a Lhotse recording manifest (RecordingSet)"
    elif ("storage_type" in rec and ("num_features" in rec or "num_frames" in rec)) or (
        kind == "Features"
    ):
        what = "a Lhotse features manifest (FeatureSet)"
    elif ("recording_id" in rec and "start" in rec) or kind == "SupervisionSegment":
        what = "a Lhotse supervision manifest (SupervisionSet)"
    elif "max_duration" in rec and "strategy" in rec:
        return (
            "this looks like a discoseq SamplerConfig (a config file), not a cut manifest: give it "
            "as --config CONFIG to analyze or benchmark (SamplerConfig.from_json reads its text)"
        )
    else:
        return None
    return f"this looks like {what}, not a cut manifest{_MAKE_CUTS}"


def fields_from_record(rec: Any) -> CutFields:
    """Compute a cut's index columns from its JSON record, as Lhotse would."""
    if not isinstance(rec, dict):
        raise RecordError(f"expected a JSON object (a cut), found {type(rec).__name__}")
    cut_type = rec.get("type")
    if not isinstance(cut_type, str) or cut_type not in CUT_TYPE_CODE:
        other = describe_non_cut(rec)
        if other is not None:
            raise NotACutError(other)
        if cut_type is None:
            raise RecordError("field 'type' is missing: not a Lhotse cut record")
        raise RecordError(
            f"field 'type' is {cut_type!r}; expected one of MonoCut, MultiCut, MixedCut, PaddingCut"
        )
    cut_id = rec.get("id")
    if not isinstance(cut_id, str) or not cut_id:
        raise RecordError(f"field 'id' expected a non-empty string, found {cut_id!r}")
    if cut_type == "MixedCut":
        return _mixed_fields(rec, cut_id)
    check_data_cut(rec, cut_type, "", nested=False)
    duration = _duration(rec)
    code = CUT_TYPE_CODE[cut_type]
    if cut_type == "PaddingCut":
        return CutFields(
            cut_id,
            code,
            float(duration),
            _int_or_missing(rec.get("num_frames"), "num_frames"),
            _int_or_missing(rec.get("num_samples"), "num_samples"),
            _int_or_missing(rec.get("num_features"), "num_features"),
            MISSING,
            0,
        )
    track = _Track(rec, cut_type, "")
    recording = _optional_dict(rec, "recording", "")
    num_frames = MISSING
    num_features = MISSING
    if track.has_features:
        assert track.frame_shift is not None and track.sampling_rate is not None
        num_frames = compute_num_frames(duration, track.frame_shift, track.sampling_rate)
        num_features = _int_or_missing(track.num_features, "features.num_features")
    num_samples = MISSING
    if recording is not None:
        assert track.sampling_rate is not None
        num_samples = compute_num_samples(duration, track.sampling_rate)
    n_sup, tokens = _text_stats(track.supervisions, "")
    return CutFields(
        cut_id, code, float(duration), num_frames, num_samples, num_features, tokens, n_sup
    )


def _mixed_fields(rec: Mapping[str, Any], cut_id: str) -> CutFields:
    tracks_raw = rec.get("tracks")
    if not isinstance(tracks_raw, list) or not tracks_raw:
        raise RecordError("field 'tracks' of a MixedCut expected a non-empty list")
    if "transforms" in rec:  # MixedCut.from_dict iterates any value present
        check_transforms(rec["transforms"], "transforms")
    entries = [(t, f"tracks[{i}].") for i, t in enumerate(tracks_raw)]
    if rec.get("snr_reference") is not None:
        entries.append((rec["snr_reference"], "snr_reference."))
    tracks: list[tuple[_Track, float, bool]] = []
    for track, where in entries:
        if not isinstance(track, dict) or not isinstance(track.get("cut"), dict):
            raise RecordError(f"field '{where}cut' expected an object")
        check_keys(track, "track", where)
        track_type = track["type"]
        if track_type not in ("MonoCut", "MultiCut", "PaddingCut", "Cut"):
            raise RecordError(f"field '{where}type' is {track_type!r}; unsupported in a MixedCut")
        check_data_cut(track["cut"], track_type, where + "cut.", nested=True)
        offset = _number(track, "offset", where) if "offset" in track else 0.0
        mute = bool(track.get("mute", False)) or where == "snr_reference."
        tracks.append((_Track(track["cut"], track_type, where + "cut."), offset, mute))
    audible = [t for t in tracks if not t[2]] or tracks
    duration = round(max(offset + t.duration for t, offset, _ in audible), ndigits=8)
    first = next((t for t, _, _ in audible if not t.is_padding), audible[0][0])
    num_frames = num_features = MISSING
    if first.has_features:
        if first.frame_shift is None or first.sampling_rate is None:
            raise RecordError("a MixedCut track with features lacks frame_shift or sampling_rate")
        num_frames = compute_num_frames(duration, first.frame_shift, first.sampling_rate)
        num_features = _int_or_missing(first.num_features, "num_features")
    num_samples = (
        compute_num_samples(duration, first.sampling_rate)
        if first.sampling_rate is not None
        else MISSING
    )
    supervisions = [s for t, _, _ in audible for s in t.supervisions]
    n_sup, tokens = _text_stats(supervisions, "tracks[*].cut.")
    return CutFields(
        cut_id,
        CUT_TYPE_CODE["MixedCut"],
        float(duration),
        num_frames,
        num_samples,
        num_features,
        tokens,
        n_sup,
    )
