# cython: language_level=3
"""Compiled fast-path scanner for Lhotse cut manifests (JSON lines).

:func:`scan_cut_lines` walks a chunk of complete ``\\n``-separated JSON lines in C, without
the GIL and without creating any Python object per line, and extracts the handful of per-cut
values the index needs (type, id span, duration, num_frames, num_samples, num_features,
num_supervisions, num_tokens).

Every line is fully validated as JSON (grammar, UTF-8, escapes, surrogate pairs, number
syntax and range, nesting depth) and checked against what ``lhotse.cut.set.deserialize_cut``
(Lhotse 1.33) accepts *for the parts that influence the extracted values or may make Lhotse
raise*. Whenever the scanner is not certain that its answer equals Lhotse's, it returns
``status == 1`` for the line and the caller must take the slow Python path
(``orjson.loads`` + ``deserialize_cut``), which also produces precise error messages.

Routed to the slow path (status 1), besides invalid JSON / non-object lines: type MixedCut
(always), legacy "Cut", missing or unknown type; id missing, not a string, or containing a
backslash escape; duration missing, not a number, not finite or <= 0; duplicate keys at the
levels that are interpreted; keys the Lhotse constructors would reject (unknown, missing
required, or escaped keys) at the cut, features, recording, source, supervision and
transform levels; null features / recording / supervisions / alignment; non-dict custom;
custom values that are dicts with a "width" or "sources" key (Lhotse would try to build an
Image / Recording); source "video"; transforms other than Speed/Tempo/Volume(factor=...);
supervision text that is neither a string nor null; integer fields that are floats, negative
or beyond 2**53; a num_samples product not within 1e-6 of an integer; a hop of 0; nesting
deeper than 512.

Layers:

* ``jsongrammar.pxd``: the JSON grammar (strings, numbers, literals, containers, skipping a
  value), inline functions that know nothing of Lhotse.
* "Schema" below: per object level of a cut, one table of its known keys (required, optional or
  slow; value read or only validated) and what an unknown key means. The key masks are derived
  from the tables at import; :data:`SCHEMA` shows them to Python.
* The level parsers (``parse_supervision``, ``parse_features``, ...): one object loop each, which
  looks every key up in its level's table and reads only the values marked "read".
* ``parse_cut`` / ``decide`` / ``scan_line`` / ``scan_buffer``: one line, then a whole buffer;
  all ``cdef ... noexcept nogil`` over raw pointers. :func:`scan_cut_lines` only allocates the
  output arrays and releases the GIL around the scan.
"""

from libc.math cimport NAN, fabs, isfinite, rint
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memchr, memset

import numpy as np

from discoseq._core.jsongrammar cimport (
    TWO53, Num, Str, arr_open, arr_sep, cptr, eq_short, int_value, is_null, json_grammar_init,
    key_is, num_to_double, num_value, obj_key, obj_open, obj_sep, pstr, skipv, ws,
)

json_grammar_init()

# cut_type codes (public)
cdef enum:
    CT_MONO = 0
    CT_MIXED = 1
    CT_PADDING = 2
    CT_MULTI = 3
    CT_LEGACY = 4    # internal: "Cut" (reported as MonoCut, always slow)
    CT_UNKNOWN = 255


# ---------------------------------------------------------------------------------------------
# Schema: one table of known keys per object level, mirroring the Lhotse 1.33 constructor the
# level's dict goes to. Each row: (index, key, presence, value) (the cut level has one presence
# column per cut type), where presence is
#   REQ   required: without it the constructor raises             -> slow path
#   OPT   optional
#   SLOW  Lhotse accepts it, but its presence needs the slow path -> slow path
#   NO    (top level only) not a keyword of this cut type          -> slow path
# and value is READ (the level's parser interprets it) or SKIP (only validated as JSON).
# An unknown key is rejected (UNKNOWN_SLOW: the constructor takes **kwargs and raises TypeError)
# or ignored (UNKNOWN_IGNORED: from_dict reads only its known keys), per level. At every level a
# key with a backslash escape (it may decode to a known key) and a repeated known key (orjson
# keeps the last value; not modelled) send the line to the slow path. Index = bit in the
# level's `seen` mask.
# ---------------------------------------------------------------------------------------------

cdef enum Presence:
    NO = 0
    OPT = 1
    REQ = 2
    SLOW = 3

cdef enum Value:
    SKIP = 0
    READ = 1

cdef enum:
    UNKNOWN_SLOW = 0
    UNKNOWN_IGNORED = 1
    MAX_KEYS = 16        # per level (bits of a uint32_t seen mask)
    MAX_KEY_LEN = 16     # longest known key: "sampling_rate" (13)

# The cut itself: MonoCut / MultiCut / PaddingCut(**d) after "type" is popped (MixedCut and the
# legacy "Cut" always take the slow path). The presence of a key depends on the cut type, which
# may come last, so decide() checks it against the masks derived from the two columns below.
cdef enum CutKey:
    CUT_ID
    CUT_START
    CUT_DURATION
    CUT_CHANNEL
    CUT_SUPERVISIONS
    CUT_FEATURES
    CUT_RECORDING
    CUT_CUSTOM
    CUT_TYPE
    CUT_SAMPLING_RATE
    CUT_FEAT_VALUE
    CUT_NUM_FRAMES
    CUT_NUM_FEATURES
    CUT_FRAME_SHIFT
    CUT_NUM_SAMPLES
    CUT_VIDEO

_CUT_ROWS = (
    # index              key               Mono/MultiCut PaddingCut  value
    (CUT_ID,             b"id",            REQ,          REQ,        READ),  # a string, no escapes
    (CUT_START,          b"start",         REQ,          NO,         SKIP),
    (CUT_DURATION,       b"duration",      REQ,          REQ,        READ),  # a finite number > 0
    (CUT_CHANNEL,        b"channel",       REQ,          NO,         SKIP),
    (CUT_SUPERVISIONS,   b"supervisions",  OPT,          NO,         READ),  # list of SUPERVISION
    (CUT_FEATURES,       b"features",      OPT,          NO,         READ),  # FEATURES
    (CUT_RECORDING,      b"recording",     OPT,          NO,         READ),  # RECORDING
    (CUT_CUSTOM,         b"custom",        OPT,          OPT,        READ),  # see parse_custom
    (CUT_TYPE,           b"type",          REQ,          REQ,        READ),
    (CUT_SAMPLING_RATE,  b"sampling_rate", NO,           REQ,        SKIP),
    (CUT_FEAT_VALUE,     b"feat_value",    NO,           REQ,        SKIP),
    (CUT_NUM_FRAMES,     b"num_frames",    NO,           OPT,        READ),  # int >= 0 or null
    (CUT_NUM_FEATURES,   b"num_features",  NO,           OPT,        READ),  # int >= 0 or null
    (CUT_FRAME_SHIFT,    b"frame_shift",   NO,           OPT,        SKIP),
    (CUT_NUM_SAMPLES,    b"num_samples",   NO,           OPT,        READ),  # int >= 0 or null
    (CUT_VIDEO,          b"video",         NO,           OPT,        SKIP),
)

# SupervisionSegment.from_dict -> SupervisionSegment(**d)
cdef enum SupKey:
    SUP_ID
    SUP_RECORDING_ID
    SUP_START
    SUP_DURATION
    SUP_CHANNEL
    SUP_TEXT
    SUP_LANGUAGE
    SUP_SPEAKER
    SUP_GENDER
    SUP_CUSTOM
    SUP_ALIGNMENT

_SUPERVISION_ROWS = (
    (SUP_ID,           b"id",           REQ, SKIP),
    (SUP_RECORDING_ID, b"recording_id", REQ, SKIP),
    (SUP_START,        b"start",        REQ, SKIP),
    (SUP_DURATION,     b"duration",     REQ, SKIP),
    (SUP_CHANNEL,      b"channel",      OPT, SKIP),
    (SUP_TEXT,         b"text",         OPT, READ),  # str -> num_tokens; null; else slow
    (SUP_LANGUAGE,     b"language",     OPT, SKIP),
    (SUP_SPEAKER,      b"speaker",      OPT, SKIP),
    (SUP_GENDER,       b"gender",       OPT, SKIP),
    (SUP_CUSTOM,       b"custom",       OPT, READ),  # see parse_custom
    (SUP_ALIGNMENT,    b"alignment",    OPT, READ),  # see parse_alignment
)

# Features.from_dict -> Features(**d); from_dict sets a missing storage_path to None.
cdef enum FeatKey:
    FEAT_TYPE
    FEAT_NUM_FRAMES
    FEAT_NUM_FEATURES
    FEAT_FRAME_SHIFT
    FEAT_SAMPLING_RATE
    FEAT_START
    FEAT_DURATION
    FEAT_STORAGE_TYPE
    FEAT_STORAGE_KEY
    FEAT_STORAGE_PATH
    FEAT_RECORDING_ID
    FEAT_CHANNELS

_FEATURES_ROWS = (
    (FEAT_TYPE,          b"type",          REQ, SKIP),
    (FEAT_NUM_FRAMES,    b"num_frames",    REQ, SKIP),
    (FEAT_NUM_FEATURES,  b"num_features",  REQ, READ),  # a number (decide: an int >= 0)
    (FEAT_FRAME_SHIFT,   b"frame_shift",   REQ, READ),  # a number (decide: > 0)
    (FEAT_SAMPLING_RATE, b"sampling_rate", REQ, READ),  # a number (decide: > 0)
    (FEAT_START,         b"start",         REQ, SKIP),
    (FEAT_DURATION,      b"duration",      REQ, SKIP),
    (FEAT_STORAGE_TYPE,  b"storage_type",  REQ, SKIP),
    (FEAT_STORAGE_KEY,   b"storage_key",   REQ, SKIP),
    (FEAT_STORAGE_PATH,  b"storage_path",  OPT, SKIP),
    (FEAT_RECORDING_ID,  b"recording_id",  OPT, SKIP),
    (FEAT_CHANNELS,      b"channels",      OPT, SKIP),
)

# Recording.from_dict -> Recording(sources=..., transforms=..., **d)
cdef enum RecKey:
    REC_ID
    REC_SOURCES
    REC_SAMPLING_RATE
    REC_NUM_SAMPLES
    REC_DURATION
    REC_CHANNEL_IDS
    REC_TRANSFORMS

_RECORDING_ROWS = (
    (REC_ID,            b"id",            REQ, SKIP),
    (REC_SOURCES,       b"sources",       REQ, READ),  # a list of SOURCE
    (REC_SAMPLING_RATE, b"sampling_rate", REQ, READ),  # a number (decide: > 0)
    (REC_NUM_SAMPLES,   b"num_samples",   REQ, SKIP),
    (REC_DURATION,      b"duration",      REQ, SKIP),
    (REC_CHANNEL_IDS,   b"channel_ids",   OPT, SKIP),
    (REC_TRANSFORMS,    b"transforms",    OPT, READ),  # a list of TRANSFORM
)

# AudioSource.from_dict -> AudioSource(**d); "video" (VideoInfo.from_dict) is an unknown key
# here, so the slow path handles it. Recording.__post_init__ sorts all source channels.
cdef enum SrcKey:
    SRC_TYPE
    SRC_CHANNELS
    SRC_SOURCE

_SOURCE_ROWS = (
    (SRC_TYPE,     b"type",     REQ, SKIP),
    (SRC_CHANNELS, b"channels", REQ, READ),  # a list of integer literals
    (SRC_SOURCE,   b"source",   REQ, SKIP),
)

# AudioTransform.from_dict reads "name" and "kwargs" only; only Speed/Tempo/Volume(factor=...)
# are trusted.
cdef enum XformKey:
    XF_NAME
    XF_KWARGS

_TRANSFORM_ROWS = (
    (XF_NAME,   b"name",   REQ, READ),  # "Speed", "Tempo" or "Volume"
    (XF_KWARGS, b"kwargs", REQ, READ),  # TRANSFORM_KWARGS
)

cdef enum KwKey:
    KW_FACTOR

_TRANSFORM_KWARGS_ROWS = (
    (KW_FACTOR, b"factor", REQ, SKIP),
)

# A dict value inside a `custom` dict: Lhotse tries to deserialize it as a Recording (if it has
# id/sources/sampling_rate) or an Image (if it has "width"), either of which can raise.
cdef enum CustomValueKey:
    CV_WIDTH
    CV_SOURCES

_CUSTOM_VALUE_ROWS = (
    (CV_WIDTH,   b"width",   SLOW, SKIP),
    (CV_SOURCES, b"sources", SLOW, SKIP),
)


cdef struct KeyTable:
    int unknown                     # UNKNOWN_SLOW or UNKNOWN_IGNORED
    uint32_t required               # bits of the REQ keys (derived)
    uint32_t slow                   # bits of the SLOW keys (derived)
    uint8_t name[MAX_KEYS][MAX_KEY_LEN]   # zero-padded
    int8_t first[MAX_KEY_LEN + 1]   # first key of each length (-1: none) ...
    int8_t next[MAX_KEYS]           # ... and the next one of the same length


cdef KeyTable CUT_KEYS, SUPERVISION_KEYS, FEATURES_KEYS, RECORDING_KEYS, SOURCE_KEYS
cdef KeyTable TRANSFORM_KEYS, TRANSFORM_KWARGS_KEYS, CUSTOM_VALUE_KEYS
# presence of the top-level keys per cut type (derived from _CUT_ROWS)
cdef uint32_t DATA_ALLOWED = 0, DATA_REQUIRED = 0, PAD_ALLOWED = 0, PAD_REQUIRED = 0


cdef int _fill(KeyTable* t, rows, int unknown) except -1:
    """Fill ``t`` from ``(index, key, presence, value)`` rows (import time)."""
    cdef int i, n = len(rows)
    memset(t, 0, sizeof(KeyTable))
    t.unknown = unknown
    for i in range(MAX_KEY_LEN + 1):
        t.first[i] = -1
    if n > MAX_KEYS or sorted(row[0] for row in rows) != list(range(n)):
        raise RuntimeError(f"cutscan schema: row indices {[row[0] for row in rows]} are not "
                           f"0 .. {n - 1} (at most {MAX_KEYS})")
    for i, key, presence, value in rows:
        if not 1 <= len(key) <= MAX_KEY_LEN or presence == NO:
            raise RuntimeError(f"cutscan schema: bad row for key {key!r}")
        for j, byte in enumerate(key):
            t.name[i][j] = byte
        if presence == REQ:
            t.required |= (<uint32_t>1) << i
        elif presence == SLOW:
            t.slow |= (<uint32_t>1) << i
        t.next[i] = t.first[len(key)]
        t.first[len(key)] = i
    return 0


cdef int _fill_cut(rows) except -1:
    global DATA_ALLOWED, DATA_REQUIRED, PAD_ALLOWED, PAD_REQUIRED
    _fill(&CUT_KEYS, [(i, key, OPT, value) for i, key, _, _, value in rows], UNKNOWN_SLOW)
    for i, _, data, pad, _ in rows:
        if data != NO:
            DATA_ALLOWED |= (<uint32_t>1) << i
        if data == REQ:
            DATA_REQUIRED |= (<uint32_t>1) << i
        if pad != NO:
            PAD_ALLOWED |= (<uint32_t>1) << i
        if pad == REQ:
            PAD_REQUIRED |= (<uint32_t>1) << i
    return 0


_fill_cut(_CUT_ROWS)
_fill(&SUPERVISION_KEYS, _SUPERVISION_ROWS, UNKNOWN_SLOW)
_fill(&FEATURES_KEYS, _FEATURES_ROWS, UNKNOWN_SLOW)
_fill(&RECORDING_KEYS, _RECORDING_ROWS, UNKNOWN_SLOW)
_fill(&SOURCE_KEYS, _SOURCE_ROWS, UNKNOWN_SLOW)
_fill(&TRANSFORM_KEYS, _TRANSFORM_ROWS, UNKNOWN_IGNORED)
_fill(&TRANSFORM_KWARGS_KEYS, _TRANSFORM_KWARGS_ROWS, UNKNOWN_SLOW)
_fill(&CUSTOM_VALUE_KEYS, _CUSTOM_VALUE_ROWS, UNKNOWN_IGNORED)


def _describe(rows, unknown):
    presence = {OPT: "optional", REQ: "required", SLOW: "slow"}
    return {
        "unknown": "slow" if unknown == UNKNOWN_SLOW else "ignored",
        "keys": {key.decode(): presence[p] for _, key, p, _ in rows},
        "read": tuple(key.decode() for _, key, _, v in rows if v == READ),
    }


#: The schema tables as plain data (for tests and docs): level -> ``{"unknown": "slow" |
#: "ignored", "keys": {key: "required" | "optional" | "slow"}, "read": (keys whose value the
#: scanner interprets, ...)}``; the cut level once per cut type, without the keys it does not take.
SCHEMA = {
    **{
        f"cut/{name}": _describe(
            [(i, key, (data, pad)[which], value) for i, key, data, pad, value in _CUT_ROWS
             if (data, pad)[which] != NO],
            UNKNOWN_SLOW,
        )
        for name, which in (("MonoCut", 0), ("MultiCut", 0), ("PaddingCut", 1))
    },
    "supervision": _describe(_SUPERVISION_ROWS, UNKNOWN_SLOW),
    "features": _describe(_FEATURES_ROWS, UNKNOWN_SLOW),
    "recording": _describe(_RECORDING_ROWS, UNKNOWN_SLOW),
    "source": _describe(_SOURCE_ROWS, UNKNOWN_SLOW),
    "transform": _describe(_TRANSFORM_ROWS, UNKNOWN_IGNORED),
    "transform kwargs": _describe(_TRANSFORM_KWARGS_ROWS, UNKNOWN_SLOW),
    "custom value": _describe(_CUSTOM_VALUE_ROWS, UNKNOWN_IGNORED),
}


cdef inline int member(const KeyTable* t, const Str* key, uint32_t* seen, int* bad) noexcept nogil:
    """Look an object key up in its level's table: its index, or -1 if it is not a known key.
    Sets ``*bad`` (slow path) for an escaped key, an unknown key at an UNKNOWN_SLOW level, a
    repeated or a SLOW key; marks the key in ``*seen``."""
    cdef Py_ssize_t n = key.e - key.s
    cdef int i = -1
    cdef uint32_t bit
    if not key.esc and n <= MAX_KEY_LEN:
        i = t.first[n]
        while i >= 0 and not eq_short(key.s, t.name[i], n):
            i = t.next[i]
    if i < 0:
        if key.esc or t.unknown == UNKNOWN_SLOW:
            bad[0] = 1
        return -1
    bit = (<uint32_t>1) << i
    if (seen[0] & bit) or (t.slow & bit):
        bad[0] = 1
    seen[0] |= bit
    return i


cdef inline void end_object(const KeyTable* t, uint32_t seen, int* bad) noexcept nogil:
    """After an object's last member: every required key must have been seen."""
    if (seen & t.required) != t.required:
        bad[0] = 1


# ---------------------------------------------------------------------------------------------
# Level parsers: p at the value; return the position after it (NULL on a JSON syntax error) and
# set *bad = 1 if Lhotse could behave differently from the fast path's model. Each object loop
# looks its keys up with member() and reads only the values its table marks READ.
# ---------------------------------------------------------------------------------------------

cdef cptr parse_custom_value(cptr p, cptr end, int* bad) noexcept nogil:
    """A dict value inside a `custom` dict (_CUSTOM_VALUE_ROWS); arrays are deserialized inside
    try/except by Lhotse, so only dicts are looked at."""
    cdef Str key
    cdef int more
    cdef uint32_t seen = 0
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        member(&CUSTOM_VALUE_KEYS, &key, &seen, bad)
        p = skipv(p, end, 3)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&CUSTOM_VALUE_KEYS, seen, bad)
    return p


cdef cptr parse_custom(cptr p, cptr end, int* bad) noexcept nogil:
    """`custom` of a MonoCut/MultiCut/SupervisionSegment: null or a dict with any keys
    (deserialize_custom_field); its dict values are parse_custom_value."""
    cdef Str key
    cdef int more
    if is_null(p, end):
        return p + 4
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        if p[0] == 0x7B:
            p = parse_custom_value(p, end, bad)
        else:
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef cptr parse_alignment(cptr p, cptr end, int* bad) noexcept nogil:
    """{"word": [[sym, start, dur(, score)], ...], ...} (any keys) -> AlignmentItem(*item)."""
    cdef Str key
    cdef int more, amore, imore, nitems
    if p[0] != 0x7B:
        bad[0] = 1  # null or anything else: `.items()` fails
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        if p[0] != 0x5B:
            bad[0] = 1
            p = skipv(p, end, 2)
        else:
            p = arr_open(p, end, &amore)
            if p == NULL:
                return NULL
            while amore:
                if p[0] != 0x5B:
                    bad[0] = 1  # legacy dict items / anything else: slow path
                    p = skipv(p, end, 3)
                else:
                    p = arr_open(p, end, &imore)
                    if p == NULL:
                        return NULL
                    nitems = 0
                    while imore:
                        nitems += 1
                        p = skipv(p, end, 4)
                        if p == NULL:
                            return NULL
                        p = arr_sep(p, end, &imore)
                        if p == NULL:
                            return NULL
                    if nitems < 3 or nitems > 4:
                        bad[0] = 1
                if p == NULL:
                    return NULL
                p = arr_sep(p, end, &amore)
                if p == NULL:
                    return NULL
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef struct SupAcc:
    int32_t nsup
    int64_t ntok
    int has_text


cdef cptr parse_supervision(cptr p, cptr end, SupAcc* acc, int* bad) noexcept nogil:
    """One _SUPERVISION_ROWS object: counts it, and the code points of its text."""
    cdef Str key, txt
    cdef int more
    cdef uint32_t seen = 0
    cdef int k
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        k = member(&SUPERVISION_KEYS, &key, &seen, bad)
        if k == SUP_TEXT:
            if p[0] == 0x22:
                p = pstr(p, end, &txt)
                if p == NULL:
                    return NULL
                acc.ntok += txt.ncp
                acc.has_text = 1
            elif is_null(p, end):
                p += 4
            else:
                bad[0] = 1
                p = skipv(p, end, 1)
        elif k == SUP_CUSTOM:
            p = parse_custom(p, end, bad)
        elif k == SUP_ALIGNMENT:
            p = parse_alignment(p, end, bad)
        else:
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&SUPERVISION_KEYS, seen, bad)
    acc.nsup += 1
    return p


cdef cptr parse_supervisions(cptr p, cptr end, SupAcc* acc, int* bad) noexcept nogil:
    cdef int more
    if p[0] != 0x5B:
        bad[0] = 1  # null (iterating None fails) or anything else
        return skipv(p, end, 1)
    p = arr_open(p, end, &more)
    if p == NULL:
        return NULL
    while more:
        p = parse_supervision(p, end, acc, bad)
        if p == NULL:
            return NULL
        p = arr_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef struct FeatInfo:
    Num frame_shift
    Num sampling_rate
    Num num_features


cdef cptr parse_features(cptr p, cptr end, FeatInfo* fi, int* bad) noexcept nogil:
    """A _FEATURES_ROWS object: its three numbers that the cut's values depend on."""
    cdef Str key
    cdef int more, ok
    cdef uint32_t seen = 0
    cdef int k
    if p[0] != 0x7B:
        bad[0] = 1  # null or anything else makes Features.from_dict raise
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        ok = 1
        k = member(&FEATURES_KEYS, &key, &seen, bad)
        if k == FEAT_FRAME_SHIFT:
            p = num_value(p, end, &fi.frame_shift, &ok)
        elif k == FEAT_SAMPLING_RATE:
            p = num_value(p, end, &fi.sampling_rate, &ok)
        elif k == FEAT_NUM_FEATURES:
            p = num_value(p, end, &fi.num_features, &ok)
        else:
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        if not ok:
            bad[0] = 1
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&FEATURES_KEYS, seen, bad)
    return p


cdef cptr parse_source(cptr p, cptr end, int* bad) noexcept nogil:
    """A _SOURCE_ROWS object: its channels must be integer literals."""
    cdef Str key
    cdef int more, cmore, ok
    cdef uint32_t seen = 0
    cdef int k
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 2)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        k = member(&SOURCE_KEYS, &key, &seen, bad)
        if k == SRC_CHANNELS:
            if p[0] != 0x5B:
                bad[0] = 1
                p = skipv(p, end, 3)
            else:
                p = arr_open(p, end, &cmore)
                if p == NULL:
                    return NULL
                while cmore:
                    p = int_value(p, end, &ok)
                    if p == NULL:
                        return NULL
                    if not ok:
                        bad[0] = 1
                    p = arr_sep(p, end, &cmore)
                    if p == NULL:
                        return NULL
        else:
            p = skipv(p, end, 3)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&SOURCE_KEYS, seen, bad)
    return p


cdef cptr parse_transform(cptr p, cptr end, int* bad) noexcept nogil:
    """A _TRANSFORM_ROWS object: Speed/Tempo/Volume with kwargs {"factor": ...} only."""
    cdef Str key, name, kkey
    cdef int more, kmore
    cdef uint32_t seen = 0, kseen
    cdef int k
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 2)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        k = member(&TRANSFORM_KEYS, &key, &seen, bad)
        if k == XF_NAME:
            if p[0] != 0x22:
                bad[0] = 1
                p = skipv(p, end, 3)
            else:
                p = pstr(p, end, &name)
                if p == NULL:
                    return NULL
                if not (key_is(&name, b"Speed", 5) or key_is(&name, b"Tempo", 5)
                        or key_is(&name, b"Volume", 6)):
                    bad[0] = 1
        elif k == XF_KWARGS:
            if p[0] != 0x7B:
                bad[0] = 1
                p = skipv(p, end, 3)
            else:
                kseen = 0
                p = obj_open(p, end, &kmore)
                while kmore:
                    p = obj_key(p, end, &kkey)
                    if p == NULL:
                        return NULL
                    member(&TRANSFORM_KWARGS_KEYS, &kkey, &kseen, bad)
                    p = skipv(p, end, 4)
                    if p == NULL:
                        return NULL
                    p = obj_sep(p, end, &kmore)
                    if p == NULL:
                        return NULL
                end_object(&TRANSFORM_KWARGS_KEYS, kseen, bad)
        else:
            p = skipv(p, end, 3)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&TRANSFORM_KEYS, seen, bad)
    return p


cdef cptr parse_list_of(cptr p, cptr end, int which, int* bad) noexcept nogil:
    """A list of sources (which=0) or transforms (which=1)."""
    cdef int more
    if p[0] != 0x5B:
        bad[0] = 1
        return skipv(p, end, 1)
    p = arr_open(p, end, &more)
    if p == NULL:
        return NULL
    while more:
        if which == 0:
            p = parse_source(p, end, bad)
        else:
            p = parse_transform(p, end, bad)
        if p == NULL:
            return NULL
        p = arr_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef cptr parse_recording(cptr p, cptr end, Num* sampling_rate, int* bad) noexcept nogil:
    """A _RECORDING_ROWS object: its sampling rate, and its sources and transforms checked."""
    cdef Str key
    cdef int more, ok
    cdef uint32_t seen = 0
    cdef int k
    if p[0] != 0x7B:
        bad[0] = 1  # null: None.pop fails
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        ok = 1
        k = member(&RECORDING_KEYS, &key, &seen, bad)
        if k == REC_SAMPLING_RATE:
            p = num_value(p, end, sampling_rate, &ok)
        elif k == REC_SOURCES:
            p = parse_list_of(p, end, 0, bad)
        elif k == REC_TRANSFORMS:
            p = parse_list_of(p, end, 1, bad)
        else:
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        if not ok:
            bad[0] = 1
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    end_object(&RECORDING_KEYS, seen, bad)
    return p


# ---------------------------------------------------------------------------------------------
# numeric semantics (lhotse.utils.compute_num_frames / compute_num_samples)
# ---------------------------------------------------------------------------------------------

cdef int round_product(const Num* a, const Num* b, int64_t* out) noexcept nogil:
    """Python `round(a * b)` for positive a, b. 1 ok / 0 unsure or not representable."""
    cdef double da, db, y
    if a.is_int and b.is_int:
        if not (a.int_ok and b.int_ok) or a.ival <= 0 or b.ival <= 0:
            return 0
        if a.ival > TWO53 // b.ival:
            return 0
        out[0] = a.ival * b.ival
        return 1
    if not num_to_double(a, &da) or not num_to_double(b, &db):
        return 0
    y = da * db
    if not (y >= 0.0 and y < 4503599627370496.0):  # 2**52; also rejects NaN
        return 0
    out[0] = <int64_t>rint(y)  # round-half-even, like Python's round(float)
    return 1


cdef int num_samples_exact(const Num* dur, const Num* sr, int64_t* out) noexcept nogil:
    """int(Decimal(round(dur * sr, ndigits=8)).quantize(0, ROUND_HALF_UP)), when certain."""
    cdef double da, db, y, r
    if dur.is_int and sr.is_int:
        return round_product(dur, sr, out)
    if not num_to_double(dur, &da) or not num_to_double(sr, &db):
        return 0
    y = da * db
    if not (y >= 0.0 and y < 4503599627370496.0):
        return 0
    r = rint(y)
    if fabs(y - r) >= 1e-6:
        return 0  # not within 1e-6 of an integer: let Python do the exact Decimal dance
    out[0] = <int64_t>r
    return 1


cdef inline bint positive(const Num* n) noexcept nogil:
    cdef double v
    if n.is_int:
        return n.int_ok and n.ival > 0
    return num_to_double(n, &v) and isfinite(v) and v > 0.0


cdef inline int nonneg_int(const Num* n, int64_t* out) noexcept nogil:
    if n.is_int and n.int_ok and n.ival >= 0:
        out[0] = n.ival
        return 1
    return 0


# ---------------------------------------------------------------------------------------------
# one line
# ---------------------------------------------------------------------------------------------

cdef struct LineOut:
    uint8_t status
    uint8_t cut_type
    double duration
    int64_t num_frames
    int64_t num_samples
    int64_t num_features
    int64_t num_tokens
    int32_t num_supervisions
    int64_t id_start
    int64_t id_end


cdef inline cptr pad_int_field(cptr p, cptr end, Num* n, int* is_null_out,
                               int* bad) noexcept nogil:
    """PaddingCut num_frames / num_samples / num_features: a non-negative int or null."""
    cdef int ok
    if is_null(p, end):
        is_null_out[0] = 1
        return p + 4
    is_null_out[0] = 0
    p = num_value(p, end, n, &ok)
    if not ok or (p != NULL and not n.is_int):
        bad[0] = 1
    return p


cdef struct CutInfo:
    uint32_t seen
    int bad             # semantic doubt for any cut type
    int bad_data        # doubt only relevant for MonoCut / MultiCut
    int bad_pad         # doubt only relevant for PaddingCut
    int ctype
    int id_ok
    int64_t id_start
    int64_t id_end
    int dur_ok
    Num dur
    int has_features
    FeatInfo fi
    int has_recording
    int rec_sr_ok
    Num rec_sr
    SupAcc sup
    int nf_null
    int ns_null
    int nfeat_null
    Num pad_nf
    Num pad_ns
    Num pad_nfeat


cdef cptr parse_cut(const uint8_t* base, cptr p, cptr end, CutInfo* ci) noexcept nogil:
    """Parse one line's top-level object (_CUT_ROWS) into ci. Returns the position of the line's
    terminating '\\n' (or the buffer end), or NULL if the line is not valid JSON."""
    cdef Str key, sval
    cdef int more, k
    p = ws(p, end)
    if p >= end or p[0] != 0x7B:
        return NULL  # not an object (or garbage)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        # unknown keys are a TypeError for every non-mixed cut type
        k = member(&CUT_KEYS, &key, &ci.seen, &ci.bad)
        if k == CUT_ID:
            if p[0] == 0x22:
                p = pstr(p, end, &sval)
                if p == NULL:
                    return NULL
                ci.id_ok = not sval.esc
                ci.id_start = sval.s - base
                ci.id_end = sval.e - base
            else:
                ci.id_ok = 0
                p = skipv(p, end, 1)
        elif k == CUT_TYPE:
            ci.ctype = CT_UNKNOWN
            if p[0] == 0x22:
                p = pstr(p, end, &sval)
                if p == NULL:
                    return NULL
                if key_is(&sval, b"MonoCut", 7):
                    ci.ctype = CT_MONO
                elif key_is(&sval, b"MultiCut", 8):
                    ci.ctype = CT_MULTI
                elif key_is(&sval, b"PaddingCut", 10):
                    ci.ctype = CT_PADDING
                elif key_is(&sval, b"MixedCut", 8):
                    ci.ctype = CT_MIXED
                elif key_is(&sval, b"Cut", 3):
                    ci.ctype = CT_LEGACY
            else:
                p = skipv(p, end, 1)
        elif k == CUT_DURATION:
            p = num_value(p, end, &ci.dur, &ci.dur_ok)
        elif k == CUT_SUPERVISIONS:
            p = parse_supervisions(p, end, &ci.sup, &ci.bad_data)
        elif k == CUT_FEATURES:
            ci.has_features = 1
            p = parse_features(p, end, &ci.fi, &ci.bad_data)
        elif k == CUT_RECORDING:
            ci.has_recording = 1
            ci.rec_sr.s = NULL
            p = parse_recording(p, end, &ci.rec_sr, &ci.bad_data)
        elif k == CUT_CUSTOM:
            p = parse_custom(p, end, &ci.bad_data)  # PaddingCut keeps custom as-is
        elif k == CUT_NUM_FRAMES:
            p = pad_int_field(p, end, &ci.pad_nf, &ci.nf_null, &ci.bad_pad)
        elif k == CUT_NUM_SAMPLES:
            p = pad_int_field(p, end, &ci.pad_ns, &ci.ns_null, &ci.bad_pad)
        elif k == CUT_NUM_FEATURES:
            p = pad_int_field(p, end, &ci.pad_nfeat, &ci.nfeat_null, &ci.bad_pad)
        else:
            p = skipv(p, end, 1)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    p = ws(p, end)
    if p < end and p[0] != 0x0A:
        return NULL  # trailing content after the document
    return p


cdef void decide(const CutInfo* ci, LineOut* out) noexcept nogil:
    """Given a syntactically valid line, fill `out` if the fast path is certain (status 0)."""
    cdef int64_t v_frames = -1, v_samples = -1, v_feats = -1, ns, hop
    cdef double dval = 0.0
    cdef const Num* sr
    cdef int ctype = ci.ctype
    out.cut_type = CT_MONO if ctype == CT_LEGACY else ctype
    if ctype != CT_MONO and ctype != CT_MULTI and ctype != CT_PADDING:
        return  # MixedCut, legacy Cut, unknown/missing type: slow path
    if ci.bad or not ci.id_ok or not ci.dur_ok:
        return
    if ci.dur.is_int and not ci.dur.int_ok:
        return
    if not num_to_double(&ci.dur, &dval) or not isfinite(dval) or not dval > 0.0:
        return
    if ctype == CT_PADDING:
        if (ci.seen & ~PAD_ALLOWED) or (ci.seen & PAD_REQUIRED) != PAD_REQUIRED or ci.bad_pad:
            return
        if not ci.nf_null and not nonneg_int(&ci.pad_nf, &v_frames):
            return
        if not ci.ns_null and not nonneg_int(&ci.pad_ns, &v_samples):
            return
        if not ci.nfeat_null and not nonneg_int(&ci.pad_nfeat, &v_feats):
            return
        out.num_supervisions = 0
        out.num_tokens = -1
    else:
        if ((ci.seen & ~DATA_ALLOWED) or (ci.seen & DATA_REQUIRED) != DATA_REQUIRED
                or ci.bad_data):
            return
        if ci.has_features:
            if not positive(&ci.fi.frame_shift) or not positive(&ci.fi.sampling_rate):
                return
            if not nonneg_int(&ci.fi.num_features, &v_feats):
                return
            if not round_product(&ci.dur, &ci.fi.sampling_rate, &ns):
                return
            if not round_product(&ci.fi.frame_shift, &ci.fi.sampling_rate, &hop) or hop <= 0:
                return
            v_frames = (ns + hop // 2) // hop
        if ci.has_recording:
            sr = &ci.fi.sampling_rate if ci.has_features else &ci.rec_sr
            if sr.s == NULL or not positive(sr):
                return
            if not num_samples_exact(&ci.dur, sr, &v_samples):
                return
        out.num_supervisions = ci.sup.nsup
        out.num_tokens = ci.sup.ntok if ci.sup.has_text else -1
    out.id_start = ci.id_start
    out.id_end = ci.id_end
    out.duration = dval
    out.num_frames = v_frames
    out.num_samples = v_samples
    out.num_features = v_feats
    out.status = 0


cdef cptr scan_line(const uint8_t* base, cptr p, cptr end, LineOut* out) noexcept nogil:
    """Scan the line starting at p (end = end of the whole buffer) into `out`. Returns the
    position of its terminating '\\n' / the buffer end, or NULL on a JSON syntax error."""
    cdef CutInfo ci
    out.status = 1
    out.cut_type = CT_UNKNOWN
    out.duration = NAN
    out.num_frames = -1
    out.num_samples = -1
    out.num_features = -1
    out.num_tokens = -1
    out.num_supervisions = -1
    out.id_start = -1
    out.id_end = -1
    ci.seen = 0
    ci.bad = 0
    ci.bad_data = 0
    ci.bad_pad = 0
    ci.ctype = CT_UNKNOWN
    ci.id_ok = 0
    ci.dur_ok = 0
    ci.has_features = 0
    ci.has_recording = 0
    ci.rec_sr.s = NULL
    ci.fi.frame_shift.s = NULL
    ci.fi.sampling_rate.s = NULL
    ci.fi.num_features.s = NULL
    ci.sup.nsup = 0
    ci.sup.ntok = 0
    ci.sup.has_text = 0
    ci.nf_null = 1
    ci.ns_null = 1
    ci.nfeat_null = 1
    p = parse_cut(base, p, end, &ci)
    if p != NULL:
        decide(&ci, out)
    return p


# ---------------------------------------------------------------------------------------------
# whole buffer
# ---------------------------------------------------------------------------------------------

cdef struct Outputs:
    int64_t* line_no
    int64_t* start
    int64_t* end
    uint8_t* status
    uint8_t* cut_type
    double* duration
    int64_t* num_frames
    int64_t* num_samples
    int64_t* num_features
    int64_t* num_tokens
    int32_t* num_supervisions
    int64_t* id_start
    int64_t* id_end


cdef Py_ssize_t scan_buffer(const uint8_t* base, Py_ssize_t n, Outputs* o, Py_ssize_t cap,
                            Py_ssize_t* pos, int64_t* lineno) noexcept nogil:
    """Scan lines from base[pos[0]:] until the buffer ends or `cap` rows are filled.
    Updates pos / lineno to where it stopped; returns the number of rows written."""
    cdef const uint8_t* p = base + pos[0]
    cdef const uint8_t* end = base + n
    cdef const uint8_t* q
    cdef const uint8_t* le
    cdef const uint8_t* w
    cdef int64_t ln = lineno[0]
    cdef Py_ssize_t k = 0
    cdef LineOut lo
    while p < end:
        # blank = only ASCII whitespace, like bytes.strip(): ' ', \t, \r, \v, \f
        w = p
        while w < end and (w[0] == 0x20 or w[0] == 0x09 or w[0] == 0x0D or w[0] == 0x0B
                           or w[0] == 0x0C):
            w += 1
        if w >= end or w[0] == 0x0A:
            q = w
        else:
            if k == cap:
                break
            q = scan_line(base, p, end, &lo)
            if q == NULL:  # syntax error: find the end of the line
                q = <const uint8_t*>memchr(p, 0x0A, end - p)
                if q == NULL:
                    q = end
            le = q
            if le > p and (le - 1)[0] == 0x0D:
                le -= 1
            o.line_no[k] = ln
            o.start[k] = p - base
            o.end[k] = le - base
            o.status[k] = lo.status
            o.cut_type[k] = lo.cut_type
            o.duration[k] = lo.duration
            o.num_frames[k] = lo.num_frames
            o.num_samples[k] = lo.num_samples
            o.num_features[k] = lo.num_features
            o.num_tokens[k] = lo.num_tokens
            o.num_supervisions[k] = lo.num_supervisions
            o.id_start[k] = lo.id_start
            o.id_end[k] = lo.id_end
            k += 1
        ln += 1
        p = q + 1
    pos[0] = p - base if p < end else n
    lineno[0] = ln
    return k


cdef int64_t count_lines_with_text(const uint8_t* p, const uint8_t* end) noexcept nogil:
    """The non-blank lines of ``p[:end - p]``, blank as :func:`scan_buffer` has it (only ASCII
    whitespace before the ``\\n``): one row each, or an error, when scanned."""
    cdef const uint8_t* q
    cdef int64_t k = 0
    while p < end:
        while p < end and (p[0] == 0x20 or p[0] == 0x09 or p[0] == 0x0D or p[0] == 0x0B
                           or p[0] == 0x0C):
            p += 1
        if p >= end:
            break
        if p[0] != 0x0A:
            k += 1
            q = <const uint8_t*>memchr(p, 0x0A, end - p)
            if q == NULL:
                break
            p = q
        p += 1
    return k


def count_records(const uint8_t[::1] buf not None):
    """How many rows :func:`scan_cut_lines` returns for ``buf`` (its non-blank lines), counted
    at memory speed without the GIL: a parallel build places a file's rows by the rows of the
    files before it before they are scanned."""
    cdef Py_ssize_t n = buf.shape[0]
    cdef int64_t k = 0
    if n == 0:
        return 0
    with nogil:
        k = count_lines_with_text(&buf[0], &buf[0] + n)
    return k


_FIELDS = (
    ("line_no", np.int64),
    ("start", np.int64),
    ("end", np.int64),
    ("status", np.uint8),
    ("cut_type", np.uint8),
    ("duration", np.float64),
    ("num_frames", np.int64),
    ("num_samples", np.int64),
    ("num_features", np.int64),
    ("num_tokens", np.int64),
    ("num_supervisions", np.int32),
    ("id_start", np.int64),
    ("id_end", np.int64),
)

#: cut_type codes
MONO_CUT = CT_MONO
MIXED_CUT = CT_MIXED
PADDING_CUT = CT_PADDING
MULTI_CUT = CT_MULTI
UNKNOWN_CUT = CT_UNKNOWN
CUT_TYPE_NAMES = {CT_MONO: "MonoCut", CT_MIXED: "MixedCut", CT_PADDING: "PaddingCut",
                  CT_MULTI: "MultiCut"}


def scan_cut_lines(const uint8_t[::1] buf not None):
    """Scan a chunk of complete JSON lines (Lhotse cuts); see the module docstring.

    Returns a dict of equal-length numpy arrays, one row per non-blank line:
    ``line_no, start, end, status, cut_type, duration, num_frames, num_samples, num_features,
    num_tokens, num_supervisions, id_start, id_end``. Rows with ``status == 1`` must be
    re-parsed by the caller (their other values are placeholders, except ``line_no``,
    ``start``, ``end`` and, when recognisable, ``cut_type``).
    """
    cdef Py_ssize_t n = buf.shape[0]
    cdef const uint8_t* base
    cdef Py_ssize_t cap, k, total = 0, pos = 0
    cdef int64_t lineno = 0
    cdef Outputs o
    cdef int64_t[::1] a_line_no, a_start, a_end, a_nfr, a_nsa, a_nfe, a_ntok, a_ids, a_ide
    cdef uint8_t[::1] a_status, a_type
    cdef double[::1] a_dur
    cdef int32_t[::1] a_nsup
    if n == 0:
        return {name: np.empty(0, dtype=dt) for name, dt in _FIELDS}
    base = &buf[0]
    cap = max(64, n // 400)  # grown geometrically if the lines are shorter than that
    arrays = {name: np.empty(cap, dtype=dt) for name, dt in _FIELDS}
    while True:
        a_line_no = arrays["line_no"]
        a_start = arrays["start"]
        a_end = arrays["end"]
        a_status = arrays["status"]
        a_type = arrays["cut_type"]
        a_dur = arrays["duration"]
        a_nfr = arrays["num_frames"]
        a_nsa = arrays["num_samples"]
        a_nfe = arrays["num_features"]
        a_ntok = arrays["num_tokens"]
        a_nsup = arrays["num_supervisions"]
        a_ids = arrays["id_start"]
        a_ide = arrays["id_end"]
        o.line_no = &a_line_no[total]
        o.start = &a_start[total]
        o.end = &a_end[total]
        o.status = &a_status[total]
        o.cut_type = &a_type[total]
        o.duration = &a_dur[total]
        o.num_frames = &a_nfr[total]
        o.num_samples = &a_nsa[total]
        o.num_features = &a_nfe[total]
        o.num_tokens = &a_ntok[total]
        o.num_supervisions = &a_nsup[total]
        o.id_start = &a_ids[total]
        o.id_end = &a_ide[total]
        with nogil:
            k = scan_buffer(base, n, &o, cap - total, &pos, &lineno)
        total += k
        if pos >= n:
            break
        cap *= 2
        grown = {name: np.empty(cap, dtype=dt) for name, dt in _FIELDS}
        for name, arr in arrays.items():
            grown[name][:total] = arr[:total]
        arrays = grown
    if total != cap:
        arrays = {name: arr[:total] for name, arr in arrays.items()}
    return arrays
