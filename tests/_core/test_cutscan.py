"""The compiled cut-line scanner (``discoseq._core.cutscan``) against Lhotse itself.

The oracle is ``lhotse.cut.set.deserialize_cut(orjson.loads(line))``: a row the scanner marks
``status == 0`` must carry exactly Lhotse's values; anything Lhotse rejects must be ``status 1``.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import string
import time
import warnings

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from lhotse.cut.set import deserialize_cut
from lhotse.utils import compute_num_frames, compute_num_samples

from discoseq._core.cutscan import SCHEMA, scan_cut_lines

TYPE_CODES = {"MonoCut": 0, "MixedCut": 1, "PaddingCut": 2, "MultiCut": 3}
INT_FIELDS = ("num_frames", "num_samples", "num_features", "num_tokens", "num_supervisions")


class _Unrepresentable(Exception):
    pass


def _as_int(value) -> int:
    if value is None:
        return -1
    if type(value) is not int:  # a float/bool where Lhotse keeps it: fast path cannot match
        raise _Unrepresentable
    return value


def lhotse_truth(line: bytes) -> dict | None:
    """Lhotse's view of one line, or None when Lhotse cannot load it (=> status must be 1)."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    type_name = raw.get("type")
    if type_name == "MixedCut":
        return {"type": "MixedCut"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cut = deserialize_cut(copy.deepcopy(raw))
            sups = cut.supervisions
            texts = [s.text for s in sups if s.text is not None]
            duration = cut.duration
            if type(duration) not in (int, float) or not isinstance(cut.id, str):
                raise _Unrepresentable
            return {
                "type": type_name,
                "id": cut.id,
                "duration": float(duration),
                "num_frames": _as_int(cut.num_frames),
                "num_samples": _as_int(cut.num_samples),
                "num_features": _as_int(cut.num_features),
                "num_supervisions": len(sups),
                "num_tokens": sum(len(t) for t in texts) if texts else -1,
            }
    except Exception:
        return None


def check_rows(buf: bytes, res: dict, lines: list[bytes], expect_slow: list[bool] | None = None):
    """``lines[i]`` is the i-th non-blank line of ``buf``; compare every fast row with Lhotse.

    ``expect_slow[i]`` False means the line must take the fast path (status 0)."""
    assert len(res["status"]) == len(lines)
    for i, line in enumerate(lines):
        start, end = int(res["start"][i]), int(res["end"][i])
        assert buf[start:end] == line
        truth = lhotse_truth(line)
        status = int(res["status"][i])
        if truth is not None and truth["type"] == "MixedCut":
            assert status == 1
            assert res["cut_type"][i] == TYPE_CODES["MixedCut"]
            continue
        if expect_slow is not None and not expect_slow[i]:
            assert status == 0, line
        if status == 1:
            continue
        assert truth is not None, line
        assert res["cut_type"][i] == TYPE_CODES[truth["type"]]
        assert buf[int(res["id_start"][i]) : int(res["id_end"][i])].decode() == truth["id"]
        dur = float(res["duration"][i])
        assert dur == truth["duration"] and np.signbit(dur) == np.signbit(truth["duration"])
        for name in INT_FIELDS:
            assert int(res[name][i]) == truth[name], (name, line)


def scan(buf: bytes | bytearray | memoryview | np.ndarray) -> dict:
    res = scan_cut_lines(buf)
    n = len(res["status"])
    assert all(len(v) == n for v in res.values())
    return res


# ------------------------------------------------------------------------------------------------
# fixtures shipped with Lhotse
# ------------------------------------------------------------------------------------------------


def fixture_lines(fixtures_dir) -> list[bytes]:
    lines = []
    for path in sorted(fixtures_dir.glob("*_cuts*.json")):
        lines += [orjson.dumps(d) for d in orjson.loads(path.read_bytes())]
    with gzip.open(fixtures_dir / "lsmix_cuts.000000.jsonl.gz", "rb") as f:
        lines += [ln.rstrip(b"\n") for ln in f if ln.strip()]
    return lines


def test_lhotse_fixtures(fixtures_dir):
    lines = fixture_lines(fixtures_dir)
    assert len(lines) >= 8
    buf = b"\n".join(lines) + b"\n"
    res = scan(buf)
    # legacy "Cut" type is always routed to the slow path; everything else here is fast
    expect_slow = [orjson.loads(ln)["type"] not in TYPE_CODES for ln in lines]
    check_rows(buf, res, lines, expect_slow)
    assert (res["status"] == np.array(expect_slow, np.uint8)).all()


def test_lhotse_fixtures_as_written_by_lhotse(fixtures_dir, tmp_path):
    """Round-trip through Lhotse's own JSONL writer (key order, number format as in the wild)."""
    from lhotse import CutSet

    cuts = []
    for path in sorted(fixtures_dir.glob("*_cuts*.json")):
        cuts += list(CutSet.from_file(path))
    out = tmp_path / "cuts.jsonl"
    CutSet.from_cuts(cuts).to_file(out)
    buf = out.read_bytes()
    lines = [ln for ln in buf.split(b"\n") if ln.strip()]
    res = scan(buf)
    check_rows(buf, res, lines, [False] * len(lines))


# ------------------------------------------------------------------------------------------------
# hypothesis-generated cuts
# ------------------------------------------------------------------------------------------------

SPECIAL_TEXTS = [
    "",
    'say "hi"',
    "back\\slash \\n not a newline",
    "tab\tnew\nline\r\x00\x1f\x7f",
    "😀🎉 emoji 👩‍👩‍👧",
    "é vs e\u0301, ß, 中文, Ελληνικά",
    "\u2028\u2029 separators",
    "/ slash </script>",
]
texts = st.one_of(st.text(max_size=40), st.sampled_from(SPECIAL_TEXTS))
id_alphabet = string.ascii_letters + string.digits + "-_.:/ é中😀"
ids = st.text(alphabet=id_alphabet, min_size=1, max_size=24)
junk_keys = st.text(alphabet="abcxyz_", max_size=5)  # never "width"/"sources" (see cutscan)
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(junk_keys, c, max_size=3),
    max_leaves=8,
)
sampling_rates = st.sampled_from([8000, 16000, 22050, 24000, 44100, 48000, 16000.0, 44100.0])
frame_shifts = st.sampled_from([0.01, 0.0125, 0.02, 0.04, 0.010000000000000002])
durations = st.one_of(
    st.floats(min_value=1e-3, max_value=3600.0, allow_nan=False),
    st.integers(min_value=1, max_value=5000),
    st.integers(min_value=1, max_value=10**6).map(lambda k: k / 16000),
    st.integers(min_value=1, max_value=10**6).map(lambda k: k / 22050),
    st.decimals(min_value="0.01", max_value="500", places=4).map(float),
    st.sampled_from([0.1 + 0.2, 1.0111875000000001, 2.6399999999999997, 9.8545, 22.3800625]),
)
small_floats = st.floats(min_value=0, max_value=100, allow_nan=False)


@st.composite
def supervision_dicts(draw, rec_id: str):
    sup = {
        "id": draw(ids),
        "recording_id": rec_id,
        "start": draw(small_floats),
        "duration": draw(small_floats),
        "channel": 0,
    }
    text_mode = draw(st.sampled_from(["text", "text", "null", "missing"]))
    if text_mode == "text":
        sup["text"] = draw(texts)
    elif text_mode == "null":
        sup["text"] = None
    for key in ("language", "speaker", "gender"):
        if draw(st.booleans()):
            sup[key] = draw(st.one_of(st.none(), texts))
    if draw(st.booleans()):
        sup["custom"] = draw(st.dictionaries(junk_keys, junk, max_size=3))
    if draw(st.booleans()):
        item = st.tuples(texts, small_floats, small_floats).map(list) | st.tuples(
            texts, small_floats, small_floats, st.none() | small_floats
        ).map(list)
        sup["alignment"] = {"word": draw(st.lists(item, max_size=3))}
    return sup


@st.composite
def data_cut_dicts(draw, kind: str):
    """A MonoCut / MultiCut dict plus whether the fast path must decline it."""
    cut_id = draw(ids)
    duration = draw(durations)
    channels = [0] if kind == "MonoCut" else [0, 1]
    d = {
        "id": cut_id,
        "start": draw(st.sampled_from([0, 0.0, 1.5])),
        "duration": duration,
        "channel": 0 if kind == "MonoCut" else channels,
    }
    sr = draw(sampling_rates)
    if draw(st.booleans()):
        d["supervisions"] = draw(st.lists(supervision_dicts("rec"), max_size=4))
    has_features = draw(st.booleans())
    has_recording = draw(st.booleans())
    if has_features:
        d["features"] = {
            "type": "fbank",
            "num_frames": 1000,
            "num_features": draw(st.sampled_from([40, 80, 128])),
            "frame_shift": draw(frame_shifts),
            "sampling_rate": sr,
            "start": 0,
            "duration": 10.0,
            "storage_type": "numpy_files",
            "storage_path": "some/path",
            "storage_key": "key.npy",
            "recording_id": "rec",
            "channels": 0 if kind == "MonoCut" else channels,
        }
    rec_sr = sr if (has_features or draw(st.booleans())) else draw(sampling_rates)
    if has_recording:
        d["recording"] = {
            "id": "rec",
            "sources": [{"type": "file", "channels": channels, "source": 'a "b".wav'}],
            "sampling_rate": rec_sr,
            "num_samples": 160000,
            "duration": 10.0,
        }
        if draw(st.booleans()):
            d["recording"]["channel_ids"] = channels
        if draw(st.booleans()):
            name = draw(st.sampled_from(["Speed", "Tempo", "Volume"]))
            d["recording"]["transforms"] = [{"name": name, "kwargs": {"factor": 0.9}}]
    if draw(st.booleans()):
        d["custom"] = draw(st.dictionaries(junk_keys, junk, max_size=3))
    slow = False
    if has_recording:
        y = duration * (sr if has_features else rec_sr)
        slow = abs(y - round(y)) >= 1e-6  # compute_num_samples needs the exact Decimal path
    return d, slow


@st.composite
def padding_cut_dicts(draw):
    d = {
        "id": draw(ids),
        "duration": draw(durations),
        "sampling_rate": draw(sampling_rates),
        "feat_value": -23.0,
    }
    for key in ("num_frames", "num_features", "num_samples"):
        mode = draw(st.sampled_from(["int", "null", "missing"]))
        if mode == "int":
            d[key] = draw(st.integers(min_value=0, max_value=10**9))
        elif mode == "null":
            d[key] = None
    if draw(st.booleans()):
        d["frame_shift"] = draw(frame_shifts)
    if draw(st.booleans()):
        d["video"] = None
    if draw(st.booleans()):
        d["custom"] = draw(junk)
    return d, False


@st.composite
def cut_dicts(draw):
    kind = draw(st.sampled_from(["MonoCut", "MonoCut", "MultiCut", "PaddingCut", "MixedCut"]))
    if kind == "PaddingCut":
        d, slow = draw(padding_cut_dicts())
    elif kind == "MixedCut":
        track, _ = draw(data_cut_dicts("MonoCut"))
        pad, _ = draw(padding_cut_dicts())
        d = {
            "id": draw(ids),
            "tracks": [
                {"cut": track, "type": "MonoCut", "offset": 0.0},
                {"cut": pad, "type": "PaddingCut", "offset": 1.0, "snr": 10.0},
            ],
            "type": "MixedCut",
        }
        return d, True
    else:
        d, slow = draw(data_cut_dicts(kind))
    d["type"] = kind
    return d, slow


def shuffled(obj, rnd: random.Random):
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [shuffled(v, rnd) for v in obj]
    return obj


SERIALIZERS = {
    "orjson": orjson.dumps,
    "json": lambda d: json.dumps(d).encode(),
    "json_utf8": lambda d: json.dumps(d, ensure_ascii=False).encode(),
    "compact": lambda d: json.dumps(d, separators=(",", ":")).encode(),
    "spacey": lambda d: json.dumps(d, separators=(" , ", " :\t")).encode(),
    "indent": lambda d: json.dumps(d, indent=2, ensure_ascii=False).replace("\n", " ").encode(),
    "indent_tabs": lambda d: json.dumps(d, indent="\t").replace("\n", "\r\t").encode(),
}


@given(
    cuts=st.lists(cut_dicts(), min_size=1, max_size=6),
    rnd=st.randoms(use_true_random=False),
    how=st.sampled_from(sorted(SERIALIZERS)),
    newline=st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n \t\n"]),
)
def test_generated_cuts_match_lhotse(cuts, rnd, how, newline):
    dumps = SERIALIZERS[how]
    lines, expect_slow = [], []
    for d, slow in cuts:
        lines.append(b" " * rnd.randint(0, 1) + dumps(shuffled(d, rnd)))
        id_escaped = b"\\" in dumps(d["id"])
        expect_slow.append(slow or id_escaped)
    buf = newline.join(lines) + rnd.choice([b"", b"\n", newline])
    res = scan(buf)
    check_rows(buf, res, lines, expect_slow)


@given(data=st.data(), base=cut_dicts())
def test_mutated_lines_never_disagree(data, base):
    """Byte-level mutations: whatever the scanner accepts must be exactly what Lhotse says."""
    line = bytearray(orjson.dumps(base[0]))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["replace", "delete", "insert", "truncate"]))
        pos = data.draw(st.integers(0, max(len(line) - 1, 0)))
        byte = data.draw(st.sampled_from(list(b'{}[]",:\\ 0123456789.eE-+tfnul\x00\xc3\xa9\xff')))
        if op == "replace" and line:
            line[pos] = byte
        elif op == "delete" and line:
            del line[pos]
        elif op == "insert":
            line.insert(pos, byte)
        else:
            del line[pos:]
    mutated = bytes(line).replace(b"\n", b" ")
    res = scan(mutated)
    if not mutated.strip(b" \t\r\x0b\x0c"):
        assert len(res["status"]) == 0
        return
    check_rows(mutated, res, [mutated[:-1] if mutated.endswith(b"\r") else mutated])


# ------------------------------------------------------------------------------------------------
# hand-written edge cases
# ------------------------------------------------------------------------------------------------


def mono(**over) -> dict:
    d = {
        "id": "cut-1",
        "start": 0.0,
        "duration": 10.0,
        "channel": 0,
        "supervisions": [
            {"id": "s", "recording_id": "r", "start": 0.0, "duration": 1.0, "text": "AB"}
        ],
        "features": {
            "type": "fbank",
            "num_frames": 1000,
            "num_features": 80,
            "frame_shift": 0.01,
            "sampling_rate": 16000,
            "start": 0,
            "duration": 10.0,
            "storage_type": "numpy_files",
            "storage_path": "p",
            "storage_key": "k",
        },
        "recording": {
            "id": "r",
            "sources": [{"type": "file", "channels": [0], "source": "x.wav"}],
            "sampling_rate": 16000,
            "num_samples": 160000,
            "duration": 10.0,
        },
        "type": "MonoCut",
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


def one(line: bytes) -> dict:
    res = scan(line)
    assert len(res["status"]) == 1
    check_rows(line, res, [line])
    return {k: v[0].item() for k, v in res.items()}


def test_basic_values():
    r = one(orjson.dumps(mono()))
    assert r["status"] == 0
    assert (r["cut_type"], r["duration"], r["num_frames"], r["num_samples"]) == (
        0,
        10.0,
        1000,
        160000,
    )
    assert (r["num_features"], r["num_supervisions"], r["num_tokens"]) == (80, 1, 2)
    assert (r["id_start"], r["id_end"]) == (7, 12)


@pytest.mark.parametrize(
    ("raw_text", "n"),
    [
        (rb'"a\u00e9\n\"\\\/"', 6),
        (rb'"\ud83d\ude00x"', 2),  # surrogate pair = one code point
        ('"é😀中"'.encode(), 3),
        (rb'"\u0000"', 1),
        (b'""', 0),
    ],
)
def test_num_tokens_counts_code_points(raw_text, n):
    line = orjson.dumps(
        mono(
            supervisions=[
                {"id": "s", "recording_id": "r", "start": 0, "duration": 1, "text": "PLACEHOLDER"}
            ]
        )
    )
    line = line.replace(b'"PLACEHOLDER"', raw_text)
    r = one(line)
    assert r["status"] == 0 and r["num_tokens"] == n


@pytest.mark.parametrize(
    "line",
    [
        b"[1,2]",
        b'"str"',
        b"garbage",
        b"null",
        b"{}",
        b"{",
        b'{"type":"MonoCut"}',
        b"{} x",
        b"\xef\xbb\xbf" + orjson.dumps(mono()),
        orjson.dumps(mono()) + b",",
        orjson.dumps(mono()).replace(b'"AB"', rb'"\ud800"'),  # lone surrogate
        orjson.dumps(mono()).replace(b'"AB"', rb'"\udc00\ud800"'),
        orjson.dumps(mono()).replace(b'"AB"', b'"\xff"'),  # invalid UTF-8
        orjson.dumps(mono()).replace(b'"AB"', b'"\xed\xa0\x80"'),  # UTF-8 encoded surrogate
        orjson.dumps(mono()).replace(b'"AB"', b'"a\x01b"'),  # raw control character
        orjson.dumps(mono()).replace(b'"AB"', rb'"\x"'),
        orjson.dumps(mono()).replace(b"10.0,", b"010.0,", 1),
        orjson.dumps(mono()).replace(b"10.0,", b"1e400,", 1),
        orjson.dumps(mono()).replace(b"10.0,", b"NaN,", 1),
        orjson.dumps(mono(custom={"x": [[[[[[0]]]]]] * 2})).replace(
            b"[0]", b"[" * 600 + b"]" * 600
        ),
    ],
)
def test_malformed_lines_are_slow(line):
    res = scan(line)
    assert list(res["status"]) == [1]
    assert lhotse_truth(line) is None


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"type": "MixedCut"}, "mixed"),
        ({"type": "Cut"}, "legacy"),
        ({"type": "Other"}, "unknown type"),
        ({"type": ...}, "missing type"),
        ({"id": "a\\b"}, "escaped id"),
        ({"id": 5}, "non-string id"),
        ({"duration": 0}, "zero duration"),
        ({"duration": -1.0}, "negative duration"),
        ({"duration": "10"}, "string duration"),
        ({"duration": ...}, "missing duration"),
        ({"duration": 10.0000312}, "inexact num_samples"),
        ({"features": None}, "null features"),
        ({"recording": None}, "null recording"),
        ({"supervisions": None}, "null supervisions"),
        ({"custom": [1]}, "custom not a dict"),
        ({"custom": {"img": {"width": 3}}}, "custom image"),
        ({"extra": 1}, "unknown key"),
        ({"channel": ...}, "missing channel"),
        (
            {
                "supervisions": [
                    {"id": "s", "recording_id": "r", "start": 0, "duration": 1, "text": 5}
                ]
            },
            "int text",
        ),
        ({"supervisions": [{"id": "s", "start": 0, "duration": 1}]}, "sup missing key"),
        (
            {
                "supervisions": [
                    {"id": "s", "recording_id": "r", "start": 0, "duration": 1, "alignment": None}
                ]
            },
            "null alignment",
        ),
    ],
)
def test_declined_cases(over, why):
    line = orjson.dumps(mono(**over))
    r = one(line)
    assert r["status"] == 1, why


def test_duplicate_keys_are_slow():
    line = orjson.dumps(mono()).replace(b'"duration":10.0', b'"duration":10.0,"duration":5.0', 1)
    assert one(line)["status"] == 1


def test_nested_keys_not_confused_with_top_level():
    d = mono(duration=3.5)
    d["recording"]["duration"] = 99.0
    d["recording"]["num_samples"] = 7
    d["features"]["duration"] = 77.0
    d["supervisions"][0]["duration"] = 55.0
    d["custom"] = {
        "duration": 1.0,
        "id": "nope",
        "type": "PaddingCut",
        "s": '}{][\\"',
        "x": [{"a": {}}],
    }
    r = one(orjson.dumps(shuffled(d, random.Random(0))))
    assert (r["status"], r["duration"], r["num_samples"], r["num_frames"]) == (0, 3.5, 56000, 350)


def test_padding_cut():
    d = {
        "id": "pad",
        "duration": 2.5,
        "sampling_rate": 16000,
        "feat_value": -23.0,
        "num_frames": 250,
        "num_features": 80,
        "frame_shift": 0.01,
        "num_samples": None,
        "type": "PaddingCut",
    }
    r = one(orjson.dumps(d))
    assert (r["status"], r["cut_type"], r["num_frames"], r["num_samples"], r["num_features"]) == (
        0,
        2,
        250,
        -1,
        80,
    )
    assert (r["num_supervisions"], r["num_tokens"]) == (0, -1)
    assert one(orjson.dumps({**d, "num_frames": 250.0}))["status"] == 1  # Lhotse keeps a float


def test_line_numbers_and_spans():
    a = orjson.dumps(mono(id="a"))
    b = orjson.dumps(mono(id="b"))
    buf = b"\n" + a + b"\r\n" + b" \t\r\n" + b"\n" + b"[1]\r\n" + b"\x0c\n" + b"  " + b
    res = scan(buf)
    assert res["line_no"].tolist() == [1, 4, 6]
    spans = list(zip(res["start"].tolist(), res["end"].tolist(), strict=True))
    assert [buf[s:e] for s, e in spans] == [a, b"[1]", b"  " + b]
    assert res["status"].tolist() == [0, 1, 0]
    assert [
        buf[s:e] for s, e in zip(res["id_start"][[0, 2]], res["id_end"][[0, 2]], strict=True)
    ] == [b"a", b"b"]
    for empty in (b"", b"\n", b"\n\r\n  \n"):
        res = scan(empty)
        assert all(len(v) == 0 for v in res.values())


def test_accepts_readonly_buffers():
    line = orjson.dumps(mono()) + b"\n"
    arr = np.frombuffer(line, np.uint8)
    assert not arr.flags.writeable
    for obj in (line, memoryview(line), bytearray(line), arr):
        assert scan(obj)["status"].tolist() == [0]


def test_many_short_lines_grow_the_outputs():
    good = orjson.dumps(mono(id="g"))
    lines = [b"[%d]" % i if i % 1000 else good for i in range(20_000)]
    buf = b"\n".join(lines)  # no trailing newline: the last line still counts
    res = scan(buf)
    assert res["line_no"].tolist() == list(range(20_000))
    assert res["status"].tolist() == [0 if i % 1000 == 0 else 1 for i in range(20_000)]
    assert int(res["end"][-1]) == len(buf)


def bench_lines(fixtures_dir, n: int) -> tuple[list[bytes], list[float]]:
    """Realistic ~1 KB MonoCut lines: the LibriSpeech fixture with varied ids and durations."""
    from lhotse import CutSet

    template = CutSet.from_file(fixtures_dir / "libri_cuts.json")[0].to_dict()
    template["supervisions"][0]["text"] = (
        "AND THE OTHER ONE WAS A LITTLE GIRL WHO HAD BEEN BROUGHT UP"
    )
    template["supervisions"][0]["language"] = "English"
    rnd = random.Random(1234)
    lines, durs = [], []
    for i in range(n):
        d = copy.deepcopy(template)
        dur = rnd.randint(8000, 560000) / 16000
        d["id"] = f"1088-134315-{i:06d}-{rnd.randrange(10**8):08d}"
        d["duration"] = dur
        d["supervisions"][0]["duration"] = dur
        lines.append(orjson.dumps(d))
        durs.append(dur)
    return lines, durs


def test_large_buffer_and_rate(fixtures_dir):
    n = 50_000
    lines, durs = bench_lines(fixtures_dir, n)
    buf = b"\n".join(lines) + b"\n"
    res = scan(buf)
    assert (res["status"] == 0).all()
    assert res["line_no"].tolist() == list(range(n))
    assert res["duration"].tolist() == durs
    assert res["num_samples"].tolist() == [compute_num_samples(d, 16000) for d in durs]
    assert res["num_frames"].tolist() == [compute_num_frames(d, 0.01, 16000) for d in durs]
    ids = [buf[s:e] for s, e in zip(res["id_start"].tolist(), res["id_end"].tolist(), strict=True)]
    assert ids == [orjson.loads(ln)["id"].encode() for ln in lines]
    sample = random.Random(0).sample(range(n), 200)
    check_rows(buf, {k: v[sample] for k, v in res.items()}, [lines[i] for i in sample])

    # rate (printed, not asserted): CPU time, best of 3, same lines for both
    t_scan = t_orjson = float("inf")
    for _ in range(3):
        t0 = time.thread_time()
        scan_cut_lines(buf)
        t_scan = min(t_scan, time.thread_time() - t0)
        t0 = time.thread_time()
        for ln in lines:
            orjson.loads(ln)
        t_orjson = min(t_orjson, time.thread_time() - t0)
    print(
        f"\ncutscan: {n / t_scan:,.0f} lines/s, orjson.loads: {n / t_orjson:,.0f} lines/s "
        f"({len(buf) / n:.0f} B/line, {t_orjson / t_scan:.1f}x)"
    )


# ------------------------------------------------------------------------------------------------
# the schema tables (cutscan.SCHEMA), key by key
# ------------------------------------------------------------------------------------------------


def full_mono(kind: str = "MonoCut") -> dict:
    """A cut that has every object level of the schema (all fast)."""
    d = mono(type=kind, channel=0 if kind == "MonoCut" else [0, 1])
    d["supervisions"][0].update(
        channel=0,
        language="en",
        speaker="s",
        gender=None,
        custom={"k": 1},
        alignment={"word": [["AB", 0.0, 1.0]]},
    )
    d["features"].update(recording_id="r", channels=0)
    d["recording"].update(
        channel_ids=[0], transforms=[{"name": "Speed", "kwargs": {"factor": 1.1}}]
    )
    d["custom"] = {"img": {"a": 1}}
    return d


def full_padding() -> dict:
    return {
        "id": "pad",
        "duration": 2.5,
        "sampling_rate": 16000,
        "feat_value": -23.0,
        "num_frames": 250,
        "num_features": 80,
        "frame_shift": 0.01,
        "num_samples": 40000,
        "video": None,
        "custom": {"k": 1},
        "type": "PaddingCut",
    }


SCHEMA_LEVELS = {  # level -> (a cut that has it, the path to it)
    "cut/MonoCut": (full_mono, ()),
    "cut/MultiCut": (lambda: full_mono("MultiCut"), ()),
    "cut/PaddingCut": (full_padding, ()),
    "supervision": (full_mono, ("supervisions", 0)),
    "features": (full_mono, ("features",)),
    "recording": (full_mono, ("recording",)),
    "source": (full_mono, ("recording", "sources", 0)),
    "transform": (full_mono, ("recording", "transforms", 0)),
    "transform kwargs": (full_mono, ("recording", "transforms", 0, "kwargs")),
    "custom value": (full_mono, ("custom", "img")),
}


def at(d: dict, path: tuple) -> dict:
    for step in path:
        d = d[step]
    return d


def one_status(line: bytes) -> int:
    res = scan(line)
    check_rows(line, res, [line])  # a fast row always carries Lhotse's values
    return int(res["status"][0])


def test_schema_lists_every_level():
    assert set(SCHEMA) == set(SCHEMA_LEVELS)
    for table in SCHEMA.values():
        assert table["unknown"] in ("slow", "ignored")
        assert set(table["keys"].values()) <= {"required", "optional", "slow"}
        assert set(table["read"]) <= set(table["keys"])


@pytest.mark.parametrize("level", sorted(SCHEMA_LEVELS))
def test_schema_tables_key_by_key(level):
    make, path = SCHEMA_LEVELS[level]
    table = SCHEMA[level]
    assert one_status(orjson.dumps(make())) == 0
    for key, presence in table["keys"].items():
        d = make()
        obj = at(d, path)
        if key not in obj:  # only "slow" keys are left out of the sample cuts
            assert presence == "slow", (level, key)
            obj[key] = 1
            assert one_status(orjson.dumps(d)) == 1, (level, key)
            continue
        value = obj.pop(key)
        assert one_status(orjson.dumps(d)) == (presence == "required"), (level, key, "missing")
        obj["__DUP__"] = value
        obj[key] = value
        line = orjson.dumps(d).replace(b'"__DUP__"', orjson.dumps(key))
        assert one_status(line) == 1, (level, key, "repeated")
        del obj[key]
        escaped = f'"\\u{ord(key[0]):04x}{key[1:]}"'.encode()
        assert one_status(orjson.dumps(d).replace(b'"__DUP__"', escaped)) == 1, (level, key)
    d = make()
    at(d, path)["zzz"] = 1
    assert one_status(orjson.dumps(d)) == (table["unknown"] == "slow"), (level, "unknown key")


@pytest.mark.parametrize("kind", ["MonoCut", "MultiCut", "PaddingCut"])
def test_schema_keys_of_other_cut_types_are_slow(kind):
    keys = set().union(*(SCHEMA[f"cut/{k}"]["keys"] for k in ("MonoCut", "PaddingCut")))
    for key in sorted(keys - set(SCHEMA[f"cut/{kind}"]["keys"])):
        d = full_padding() if kind == "PaddingCut" else full_mono(kind)
        d[key] = None
        assert one_status(orjson.dumps(d)) == 1, (kind, key)
