"""Per-cut values computed from a cut's JSON record exactly as Lhotse computes them.

This is the exact, readable path (and the specification of the compiled scanner in
``discoseq._core.cutscan``): every record the scanner does not handle with certainty comes
here, e.g. every MixedCut. It builds no Lhotse object; ``tests/index/test_build.py`` checks it
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


def compute_num_frames(duration: float, frame_shift: float, sampling_rate: float) -> int:
    """``lhotse.utils.compute_num_frames``."""
    num_samples = round(duration * sampling_rate)
    window_hop = round(frame_shift * sampling_rate)
    return int((num_samples + window_hop // 2) // window_hop)


def compute_num_samples(duration: float, sampling_rate: float) -> int:
    """``lhotse.utils.compute_num_samples`` with its default ROUND_HALF_UP."""
    return int(Decimal(round(duration * sampling_rate, ndigits=8)).quantize(0, ROUND_HALF_UP))


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


def describe_non_cut(rec: Mapping[str, Any]) -> str:
    """Say what a record without a cut ``type`` looks like, for the error message."""
    if "sources" in rec:
        return "this looks like a Lhotse recording manifest (RecordingSet), not a cut manifest"
    if "storage_type" in rec and "num_features" in rec:
        return "this looks like a Lhotse features manifest (FeatureSet), not a cut manifest"
    if "recording_id" in rec and "start" in rec:
        return "this looks like a Lhotse supervision manifest (SupervisionSet), not a cut manifest"
    return "field 'type' is missing: not a Lhotse cut record"


def fields_from_record(rec: Any) -> CutFields:
    """Compute a cut's index columns from its JSON record, as Lhotse would."""
    if not isinstance(rec, dict):
        raise RecordError(f"expected a JSON object (a cut), found {type(rec).__name__}")
    cut_type = rec.get("type")
    if cut_type is None:
        raise RecordError(describe_non_cut(rec))
    if cut_type not in CUT_TYPE_CODE:
        raise RecordError(
            f"field 'type' is {cut_type!r}; expected one of MonoCut, MultiCut, MixedCut, PaddingCut"
        )
    cut_id = rec.get("id")
    if not isinstance(cut_id, str) or not cut_id:
        raise RecordError(f"field 'id' expected a non-empty string, found {cut_id!r}")
    if cut_type == "MixedCut":
        return _mixed_fields(rec, cut_id)
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
    entries = [(t, f"tracks[{i}].") for i, t in enumerate(tracks_raw)]
    if rec.get("snr_reference") is not None:
        entries.append((rec["snr_reference"], "snr_reference."))
    tracks: list[tuple[_Track, float, bool]] = []
    for track, where in entries:
        if not isinstance(track, dict) or not isinstance(track.get("cut"), dict):
            raise RecordError(f"field '{where}cut' expected an object")
        track_type = track.get("type", track["cut"].get("type"))
        if track_type not in ("MonoCut", "MultiCut", "PaddingCut", "Cut"):
            raise RecordError(f"field '{where}type' is {track_type!r}; unsupported in a MixedCut")
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
