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

Layering: ``scan_buffer`` / ``scan_line`` / ``parse_cut`` / ``decide`` and the JSON helpers
are ``cdef ... noexcept nogil`` functions over raw pointers (each takes the current position
and returns the next one, NULL on a syntax error); :func:`scan_cut_lines` only allocates the
output arrays and releases the GIL around the scan.
"""

from libc.math cimport NAN, fabs, isfinite, rint
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memchr, memcmp, memcpy

import numpy as np


cdef extern from "<locale.h>" nogil:
    ctypedef void* locale_t
    int LC_ALL_MASK
    locale_t newlocale(int category_mask, const char* locale, locale_t base)

cdef extern from "<stdlib.h>" nogil:
    # glibc: correctly rounded, and with an explicit "C" locale so that a process-wide
    # setlocale(LC_NUMERIC, ...) cannot change the decimal separator.
    double strtod_l(const char* nptr, char** endptr, locale_t loc)


# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------

cdef extern from *:
    """
    #define DS_TWO53 9007199254740992LL  /* 2**53: integers up to this are exact doubles */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    /* First byte in [p, end) that is a quote, a backslash, a control character (< 0x20) or non-ASCII. */
    #if defined(__GNUC__)
    #define DS_INLINE static inline __attribute__((always_inline))
    #else
    #define DS_INLINE static inline
    #endif
    DS_INLINE const unsigned char* ds_plain_run(const unsigned char* p,
                                                const unsigned char* end) {
    #if defined(__SSE2__)
        const __m128i quote = _mm_set1_epi8(0x22);
        const __m128i bslash = _mm_set1_epi8(0x5C);
        const __m128i space = _mm_set1_epi8(0x20);
        while (end - p >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i*)p);
            /* signed compare: 0x00-0x1F and 0x80-0xFF are both "less than 0x20" */
            __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote),
                                                  _mm_cmpeq_epi8(v, bslash)),
                                     _mm_cmplt_epi8(v, space));
            int mask = _mm_movemask_epi8(m);
            if (mask) return p + __builtin_ctz((unsigned)mask);
            p += 16;
        }
    #endif
        while (p < end) {
            unsigned char c = *p;
            if (c == 0x22 || c == 0x5C || c < 0x20 || c >= 0x80) break;
            p++;
        }
        return p;
    }
    /* p at an opening quote: the position of the closing quote if the string is plain
       (printable ASCII, no escapes), else NULL (not a string, or needs the full parser). */
    DS_INLINE const unsigned char* ds_plain_string(const unsigned char* p,
                                                   const unsigned char* end) {
        const unsigned char* q;
        if (p >= end || *p != 0x22) return NULL;
        q = ds_plain_run(p + 1, end);
        return (q < end && *q == 0x22) ? q : NULL;
    }
    """
    int64_t TWO53 "DS_TWO53"
    const uint8_t* plain_run "ds_plain_run"(const uint8_t* p, const uint8_t* end) noexcept nogil
    const uint8_t* plain_string "ds_plain_string"(const uint8_t* p, const uint8_t* end) noexcept nogil

cdef enum:
    MAX_DEPTH = 512  # orjson's own limit is 1024; deeper lines go to the slow path

# cut_type codes (public)
cdef enum:
    CT_MONO = 0
    CT_MIXED = 1
    CT_PADDING = 2
    CT_MULTI = 3
    CT_LEGACY = 4    # internal: "Cut" (reported as MonoCut, always slow)
    CT_UNKNOWN = 255

# top-level keys (bit positions)
cdef enum:
    TK_ID = 0
    TK_START = 1
    TK_DURATION = 2
    TK_CHANNEL = 3
    TK_SUPERVISIONS = 4
    TK_FEATURES = 5
    TK_RECORDING = 6
    TK_CUSTOM = 7
    TK_TYPE = 8
    TK_SAMPLING_RATE = 9
    TK_FEAT_VALUE = 10
    TK_NUM_FRAMES = 11
    TK_NUM_FEATURES = 12
    TK_FRAME_SHIFT = 13
    TK_NUM_SAMPLES = 14
    TK_VIDEO = 15
    TK_UNKNOWN = 31

# ---------------------------------------------------------------------------------------------
# byte classes for string scanning
# 0 plain ASCII, 1 '"', 2 '\\', 3 invalid (control char, stray continuation, bad lead byte),
# 4 lead of a 2-byte UTF-8 sequence, 5 lead of 3-byte, 6 lead of 4-byte
# ---------------------------------------------------------------------------------------------

cdef uint8_t STR_CLASS[256]
cdef int _i
for _i in range(256):
    if _i < 0x20:
        STR_CLASS[_i] = 3
    elif _i == 0x22:
        STR_CLASS[_i] = 1
    elif _i == 0x5C:
        STR_CLASS[_i] = 2
    elif _i < 0x80:
        STR_CLASS[_i] = 0
    elif _i < 0xC2:
        STR_CLASS[_i] = 3
    elif _i < 0xE0:
        STR_CLASS[_i] = 4
    elif _i < 0xF0:
        STR_CLASS[_i] = 5
    elif _i < 0xF5:
        STR_CLASS[_i] = 6
    else:
        STR_CLASS[_i] = 3

cdef double POW10[23]
POW10[0] = 1.0
for _i in range(1, 23):
    POW10[_i] = POW10[_i - 1] * 10.0  # exact up to 1e22

cdef locale_t C_LOCALE = newlocale(LC_ALL_MASK, b"C", NULL)


# ---------------------------------------------------------------------------------------------
# parser primitives. Style: every function takes the current position and returns the new
# one (NULL = JSON syntax error), so that the position lives in a register, not in memory.
# ---------------------------------------------------------------------------------------------

ctypedef const uint8_t* cptr

cdef struct Str:
    cptr s                # content start (after the opening quote)
    cptr e                # content end (at the closing quote)
    int esc               # contains a backslash escape
    int64_t ncp           # number of Unicode code points after decoding

cdef struct Num:
    cptr s
    cptr e
    int is_int            # integer literal (no fraction, no exponent) -> Python int
    int int_ok            # is_int and |value| <= 2**53
    int64_t ival
    uint64_t mant         # significant decimal digits (valid if sig <= 15)
    int sig               # number of significant digits
    int64_t exp10         # value == mant * 10**exp10 (when sig <= 15)
    int neg


cdef inline cptr ws(cptr p, cptr end) noexcept nogil:
    # JSON whitespace minus '\n': the parser is bounded by the end of the whole buffer, and a
    # line ends at its first '\n' (no valid token contains a raw newline, so none is consumed).
    while p < end and (p[0] == 0x20 or p[0] == 0x09 or p[0] == 0x0D):
        p += 1
    return p


cdef inline int hex4(cptr p) noexcept nogil:
    cdef int v = 0
    cdef int k
    cdef uint8_t c
    for k in range(4):
        c = p[k]
        if 0x30 <= c <= 0x39:
            v = v * 16 + (c - 0x30)
        elif 0x61 <= c <= 0x66:
            v = v * 16 + (c - 0x61 + 10)
        elif 0x41 <= c <= 0x46:
            v = v * 16 + (c - 0x41 + 10)
        else:
            return -1
    return v


cdef inline bint is_cont(uint8_t c) noexcept nogil:
    return (c & 0xC0) == 0x80


cdef cptr pstr_full(cptr p, cptr end, Str* out) noexcept nogil:
    """A string with escapes / non-ASCII (or an invalid one); p just after the opening quote.
    Validates exactly like orjson (UTF-8, escapes, surrogate pairs, no raw control chars)."""
    cdef cptr run
    cdef int64_t ncp = 0
    cdef int esc = 0
    cdef uint8_t c, c1, k
    cdef int cp, lo
    out.s = p
    while True:
        run = p
        p = plain_run(p, end)
        ncp += p - run
        if p >= end:
            return NULL
        c = p[0]
        if c == 0x22:
            break
        k = STR_CLASS[c]
        if k == 2:
            esc = 1
            if p + 1 >= end:
                return NULL
            c1 = p[1]
            if (c1 == 0x22 or c1 == 0x5C or c1 == 0x2F or c1 == 0x62 or c1 == 0x66
                    or c1 == 0x6E or c1 == 0x72 or c1 == 0x74):
                p += 2
            elif c1 == 0x75:  # \uXXXX
                if p + 6 > end:
                    return NULL
                cp = hex4(p + 2)
                if cp < 0:
                    return NULL
                p += 6
                if 0xD800 <= cp <= 0xDBFF:
                    if p + 6 > end or p[0] != 0x5C or p[1] != 0x75:
                        return NULL  # lone high surrogate
                    lo = hex4(p + 2)
                    if lo < 0xDC00 or lo > 0xDFFF:
                        return NULL
                    p += 6
                elif 0xDC00 <= cp <= 0xDFFF:
                    return NULL  # lone low surrogate
            else:
                return NULL
            ncp += 1
        elif k == 4:
            if p + 2 > end or not is_cont(p[1]):
                return NULL
            p += 2
            ncp += 1
        elif k == 5:
            if p + 3 > end:
                return NULL
            c1 = p[1]
            if c == 0xE0:
                if c1 < 0xA0 or c1 > 0xBF:
                    return NULL
            elif c == 0xED:
                if c1 < 0x80 or c1 > 0x9F:
                    return NULL  # UTF-8 encoded surrogate
            elif not is_cont(c1):
                return NULL
            if not is_cont(p[2]):
                return NULL
            p += 3
            ncp += 1
        elif k == 6:
            if p + 4 > end:
                return NULL
            c1 = p[1]
            if c == 0xF0:
                if c1 < 0x90 or c1 > 0xBF:
                    return NULL
            elif c == 0xF4:
                if c1 < 0x80 or c1 > 0x8F:
                    return NULL
            elif not is_cont(c1):
                return NULL
            if not is_cont(p[2]) or not is_cont(p[3]):
                return NULL
            p += 4
            ncp += 1
        else:
            return NULL  # raw control character, stray continuation byte, invalid lead byte
    out.e = p
    out.esc = esc
    out.ncp = ncp
    return p + 1


cdef cptr pstr_slow(cptr p, cptr end, Str* out) noexcept nogil:
    if p >= end or p[0] != 0x22:
        return NULL
    return pstr_full(p + 1, end, out)


cdef inline cptr pstr(cptr p, cptr end, Str* out) noexcept nogil:
    """A string at p (the opening quote is checked). Returns the position after it, or NULL."""
    cdef cptr q = plain_string(p, end)
    if q == NULL:
        return pstr_slow(p, end, out)
    out.s = p + 1  # the common case: plain ASCII, no escapes
    out.e = q
    out.esc = 0
    out.ncp = q - (p + 1)
    return q + 1


cdef int num_to_double(const Num* n, double* out) noexcept nogil:
    """Exactly Python's float() of the literal. 1 ok / 0 cannot (caller -> slow path)."""
    cdef double v
    cdef char tmp[128]
    cdef char* endp
    cdef Py_ssize_t ln
    if n.is_int and n.int_ok:
        out[0] = <double>n.ival
        return 1
    if n.sig <= 15 and -22 <= n.exp10 <= 22:
        # Clinger's fast path: mant and 10**|e| are exact doubles, one correct rounding.
        v = <double>n.mant
        if n.exp10 >= 0:
            v = v * POW10[n.exp10]
        else:
            v = v / POW10[-n.exp10]
        out[0] = -v if n.neg else v
        return 1
    ln = n.e - n.s
    if ln >= 127 or C_LOCALE == NULL:
        return 0
    memcpy(tmp, n.s, ln)
    tmp[ln] = 0
    v = strtod_l(tmp, &endp, C_LOCALE)
    if endp != tmp + ln:
        return 0
    out[0] = v
    return 1


cdef cptr pnum(cptr p, cptr end, Num* out) noexcept nogil:
    """A number we need: strict JSON grammar, rejects what orjson rejects (infinite doubles)."""
    cdef uint64_t ival = 0
    cdef uint64_t mant = 0
    cdef int nd = 0          # integer-part digits (0 when the integer part is "0")
    cdef int sig = 0
    cdef int64_t nfrac = 0
    cdef int64_t ex = 0
    cdef int exneg = 0
    cdef int is_int = 1
    cdef uint8_t d
    cdef double dummy
    out.s = p
    out.neg = 0
    if p < end and p[0] == 0x2D:
        out.neg = 1
        p += 1
    if p >= end:
        return NULL
    if p[0] == 0x30:
        p += 1
    elif 0x31 <= p[0] <= 0x39:
        while p < end and 0x30 <= p[0] <= 0x39:
            d = p[0] - 0x30
            if nd < 19:
                ival = ival * 10 + d
            nd += 1
            if sig < 16:
                mant = mant * 10 + d
            if sig > 0 or d != 0:
                sig += 1
            p += 1
    else:
        return NULL
    if p < end and p[0] == 0x2E:
        is_int = 0
        p += 1
        if p >= end or not (0x30 <= p[0] <= 0x39):
            return NULL
        while p < end and 0x30 <= p[0] <= 0x39:
            d = p[0] - 0x30
            if sig < 16:
                mant = mant * 10 + d
            if sig > 0 or d != 0:
                sig += 1
            if nfrac < 1000000:
                nfrac += 1
            p += 1
    if p < end and (p[0] == 0x65 or p[0] == 0x45):
        is_int = 0
        p += 1
        if p < end and (p[0] == 0x2B or p[0] == 0x2D):
            exneg = p[0] == 0x2D
            p += 1
        if p >= end or not (0x30 <= p[0] <= 0x39):
            return NULL
        while p < end and 0x30 <= p[0] <= 0x39:
            if ex < 1000000:
                ex = ex * 10 + (p[0] - 0x30)
            p += 1
        if exneg:
            ex = -ex
    out.e = p
    out.is_int = is_int
    out.int_ok = is_int and nd <= 16 and ival <= <uint64_t>TWO53
    out.ival = -<int64_t>ival if out.neg else <int64_t>ival
    out.mant = mant
    out.sig = sig
    out.exp10 = ex - nfrac
    # orjson rejects literals whose double value is infinite; only possible when huge.
    if (nd + ex) > 300 or (is_int and nd > 300):
        if not num_to_double(out, &dummy) or not isfinite(dummy):
            return NULL
    return p


cdef inline cptr skipnum(cptr p, cptr end) noexcept nogil:
    """A number we do not need (same grammar and range rules as pnum)."""
    cdef cptr s0 = p
    cdef cptr s
    cdef Py_ssize_t nd = 0
    cdef int64_t ex = 0
    cdef int exneg = 0
    cdef Num n
    if p < end and p[0] == 0x2D:
        p += 1
    if p >= end:
        return NULL
    if p[0] == 0x30:
        p += 1
    elif 0x31 <= p[0] <= 0x39:
        s = p
        while p < end and 0x30 <= p[0] <= 0x39:
            p += 1
        nd = p - s
    else:
        return NULL
    if p < end and p[0] == 0x2E:
        p += 1
        if p >= end or not (0x30 <= p[0] <= 0x39):
            return NULL
        while p < end and 0x30 <= p[0] <= 0x39:
            p += 1
    if p < end and (p[0] == 0x65 or p[0] == 0x45):
        p += 1
        if p < end and (p[0] == 0x2B or p[0] == 0x2D):
            exneg = p[0] == 0x2D
            p += 1
        if p >= end or not (0x30 <= p[0] <= 0x39):
            return NULL
        while p < end and 0x30 <= p[0] <= 0x39:
            if ex < 1000000:
                ex = ex * 10 + (p[0] - 0x30)
            p += 1
        if exneg:
            ex = -ex
    if nd + ex > 300 or nd > 300:
        return pnum(s0, end, &n)  # rare: full parse with the infinity check
    return p


cdef inline cptr lit(cptr p, cptr end, const char* word, Py_ssize_t n) noexcept nogil:
    if end - p < n or memcmp(p, word, n) != 0:
        return NULL
    return p + n


# Containers. Pattern (objects; arrays alike with arr_open / arr_sep):
#     p = obj_open(p, end, &more)            # p at '{'
#     while more:
#         p = obj_key(p, end, &key)          # p now at the member's value
#         p = <value parser>(p, end, ...)
#         p = obj_sep(p, end, &more)
# with a NULL check after each step. obj_key / arr_sep guarantee p < end for a value.

cdef inline cptr obj_open(cptr p, cptr end, int* more) noexcept nogil:
    p = ws(p + 1, end)
    if p < end and p[0] == 0x7D:
        more[0] = 0
        return p + 1
    more[0] = 1
    return p


cdef cptr obj_key_slow(cptr p, cptr end, Str* key) noexcept nogil:
    p = pstr_slow(p, end, key)
    if p == NULL:
        return NULL
    return colon(p, end)


cdef cptr colon(cptr p, cptr end) noexcept nogil:
    p = ws(p, end)
    if p >= end or p[0] != 0x3A:
        return NULL
    p = ws(p + 1, end)
    if p >= end:
        return NULL
    return p


cdef inline cptr obj_key(cptr p, cptr end, Str* key) noexcept nogil:
    cdef cptr q = plain_string(p, end)
    if q == NULL:
        return obj_key_slow(p, end, key)
    key.s = p + 1
    key.e = q
    key.esc = 0
    key.ncp = q - (p + 1)
    p = q + 1
    if end - p >= 2 and p[0] == 0x3A and p[1] > 0x20:  # compact `"key":value`
        return p + 1
    return colon(p, end)


cdef inline cptr obj_sep(cptr p, cptr end, int* more) noexcept nogil:
    if p < end and p[0] <= 0x20:
        p = ws(p, end)
    if p >= end:
        return NULL
    if p[0] == 0x2C:
        more[0] = 1
        p += 1
        if p < end and p[0] <= 0x20:
            p = ws(p, end)
        return p
    if p[0] == 0x7D:
        more[0] = 0
        return p + 1
    return NULL


cdef inline cptr arr_open(cptr p, cptr end, int* more) noexcept nogil:
    p = ws(p + 1, end)
    if p >= end:
        return NULL
    if p[0] == 0x5D:
        more[0] = 0
        return p + 1
    more[0] = 1
    return p


cdef inline cptr arr_sep(cptr p, cptr end, int* more) noexcept nogil:
    if p < end and p[0] <= 0x20:
        p = ws(p, end)
    if p >= end:
        return NULL
    if p[0] == 0x2C:
        p += 1
        if p < end and p[0] <= 0x20:
            p = ws(p, end)
        if p >= end:
            return NULL
        more[0] = 1
        return p
    if p[0] == 0x5D:
        more[0] = 0
        return p + 1
    return NULL


cdef cptr skipv(cptr p, cptr end, int depth) noexcept nogil:
    """Validate and skip one JSON value starting at p (whitespace already skipped)."""
    cdef Str s
    cdef uint8_t c
    cdef int more
    if p >= end:
        return NULL
    c = p[0]
    if c == 0x22:
        return pstr(p, end, &s)
    if c == 0x7B:
        if depth >= MAX_DEPTH:
            return NULL
        p = obj_open(p, end, &more)
        while more:
            p = obj_key(p, end, &s)
            if p == NULL:
                return NULL
            p = skipv(p, end, depth + 1)
            if p == NULL:
                return NULL
            p = obj_sep(p, end, &more)
            if p == NULL:
                return NULL
        return p
    if c == 0x5B:
        if depth >= MAX_DEPTH:
            return NULL
        p = arr_open(p, end, &more)
        if p == NULL:
            return NULL
        while more:
            p = skipv(p, end, depth + 1)
            if p == NULL:
                return NULL
            p = arr_sep(p, end, &more)
            if p == NULL:
                return NULL
        return p
    if c == 0x74:
        return lit(p, end, b"true", 4)
    if c == 0x66:
        return lit(p, end, b"false", 5)
    if c == 0x6E:
        return lit(p, end, b"null", 4)
    if c == 0x2D or 0x30 <= c <= 0x39:
        return skipnum(p, end)
    return NULL


cdef inline bint key_is(const Str* k, const char* word, Py_ssize_t n) noexcept nogil:
    return (not k.esc) and (k.e - k.s) == n and memcmp(k.s, word, n) == 0


cdef inline bint is_null(cptr p, cptr end) noexcept nogil:
    return end - p >= 4 and memcmp(p, b"null", 4) == 0


cdef inline cptr num_value(cptr p, cptr end, Num* n, int* ok) noexcept nogil:
    """A value expected to be a number: ok=1 if it is one, else it is skipped with ok=0."""
    cdef uint8_t c = p[0]
    if c == 0x2D or 0x30 <= c <= 0x39:
        ok[0] = 1
        return pnum(p, end, n)
    ok[0] = 0
    return skipv(p, end, 1)


cdef inline cptr int_value(cptr p, cptr end, int* ok) noexcept nogil:
    """A value expected to be an integer literal (ok=0 if it is anything else)."""
    cdef Num n
    cdef uint8_t c = p[0]
    if c == 0x2D or 0x30 <= c <= 0x39:
        p = pnum(p, end, &n)
        ok[0] = p != NULL and n.is_int
        return p
    ok[0] = 0
    return skipv(p, end, 1)


# ---------------------------------------------------------------------------------------------
# Lhotse-specific sub-parsers: p at the value; return the position after it (NULL on a JSON
# syntax error) and set *bad = 1 if Lhotse could behave differently from the fast path's model.
# ---------------------------------------------------------------------------------------------

cdef cptr parse_custom_value_keys(cptr p, cptr end, int* bad) noexcept nogil:
    """A dict value inside a `custom` dict: Lhotse tries to deserialize it as a Recording
    (if it has id/sources/sampling_rate) or an Image (if it has "width"), either of which can
    raise. Route any such dict to the slow path; arrays are deserialized inside try/except."""
    cdef Str key
    cdef int more
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        if key.esc or key_is(&key, b"width", 5) or key_is(&key, b"sources", 7):
            bad[0] = 1
        p = skipv(p, end, 3)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef cptr parse_custom(cptr p, cptr end, int* bad) noexcept nogil:
    """`custom` of a MonoCut/MultiCut/SupervisionSegment: null or a dict (deserialize_custom_field)."""
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
            p = parse_custom_value_keys(p, end, bad)
        else:
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    return p


cdef cptr parse_alignment(cptr p, cptr end, int* bad) noexcept nogil:
    """{"word": [[sym, start, dur(, score)], ...], ...} -> AlignmentItem(*item)."""
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
    cdef Str key, txt
    cdef int more
    cdef uint32_t seen = 0
    cdef uint32_t bit
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        bit = 0
        if key_is(&key, b"text", 4):
            bit = 1 << 5
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
        elif key_is(&key, b"custom", 6):
            bit = 1 << 9
            p = parse_custom(p, end, bad)
        elif key_is(&key, b"alignment", 9):
            bit = 1 << 10
            p = parse_alignment(p, end, bad)
        else:
            if key_is(&key, b"id", 2):
                bit = 1 << 0
            elif key_is(&key, b"recording_id", 12):
                bit = 1 << 1
            elif key_is(&key, b"start", 5):
                bit = 1 << 2
            elif key_is(&key, b"duration", 8):
                bit = 1 << 3
            elif key_is(&key, b"channel", 7):
                bit = 1 << 4
            elif key_is(&key, b"language", 8):
                bit = 1 << 6
            elif key_is(&key, b"speaker", 7):
                bit = 1 << 7
            elif key_is(&key, b"gender", 6):
                bit = 1 << 8
            else:
                bad[0] = 1  # unexpected keyword argument
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        if bit:
            if seen & bit:
                bad[0] = 1  # duplicate key
            seen |= bit
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    if (seen & 0xF) != 0xF:
        bad[0] = 1  # id, recording_id, start, duration are required
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
    """Features.from_dict -> Features(**data)."""
    cdef Str key
    cdef int more, ok
    cdef uint32_t seen = 0
    cdef uint32_t bit
    if p[0] != 0x7B:
        bad[0] = 1  # null or anything else makes Features.from_dict raise
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        bit = 0
        ok = 1
        if key_is(&key, b"frame_shift", 11):
            bit = 1 << 3
            p = num_value(p, end, &fi.frame_shift, &ok)
        elif key_is(&key, b"sampling_rate", 13):
            bit = 1 << 4
            p = num_value(p, end, &fi.sampling_rate, &ok)
        elif key_is(&key, b"num_features", 12):
            bit = 1 << 2
            p = num_value(p, end, &fi.num_features, &ok)
        else:
            if key_is(&key, b"type", 4):
                bit = 1 << 0
            elif key_is(&key, b"num_frames", 10):
                bit = 1 << 1
            elif key_is(&key, b"start", 5):
                bit = 1 << 5
            elif key_is(&key, b"duration", 8):
                bit = 1 << 6
            elif key_is(&key, b"storage_type", 12):
                bit = 1 << 7
            elif key_is(&key, b"storage_key", 11):
                bit = 1 << 8
            elif key_is(&key, b"storage_path", 12):
                bit = 1 << 9
            elif key_is(&key, b"recording_id", 12):
                bit = 1 << 10
            elif key_is(&key, b"channels", 8):
                bit = 1 << 11
            else:
                bad[0] = 1
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        if not ok:
            bad[0] = 1
        if bit:
            if seen & bit:
                bad[0] = 1
            seen |= bit
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    # type, num_frames, num_features, frame_shift, sampling_rate, start, duration, storage_type,
    # storage_key are required; storage_path may be missing (from_dict sets it to None).
    if (seen & 0x1FF) != 0x1FF:
        bad[0] = 1
    return p


cdef cptr parse_source(cptr p, cptr end, int* bad) noexcept nogil:
    """AudioSource.from_dict; Recording.__post_init__ sorts all source channels."""
    cdef Str key
    cdef int more, cmore, ok
    cdef uint32_t seen = 0
    cdef uint32_t bit
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 2)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        bit = 0
        if key_is(&key, b"channels", 8):
            bit = 1 << 1
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
            if key_is(&key, b"type", 4):
                bit = 1 << 0
            elif key_is(&key, b"source", 6):
                bit = 1 << 2
            else:
                bad[0] = 1  # includes "video" (VideoInfo.from_dict / multiple videos)
            p = skipv(p, end, 3)
        if p == NULL:
            return NULL
        if bit:
            if seen & bit:
                bad[0] = 1
            seen |= bit
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    if seen != 0x7:
        bad[0] = 1
    return p


cdef cptr parse_transform(cptr p, cptr end, int* bad) noexcept nogil:
    """AudioTransform.from_dict: only Speed/Tempo/Volume(factor=...) are trusted."""
    cdef Str key, name, kkey
    cdef int more, kmore, nkw, has_name = 0, has_kwargs = 0
    if p[0] != 0x7B:
        bad[0] = 1
        return skipv(p, end, 2)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        if key_is(&key, b"name", 4):
            has_name += 1
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
        elif key_is(&key, b"kwargs", 6):
            has_kwargs += 1
            if p[0] != 0x7B:
                bad[0] = 1
                p = skipv(p, end, 3)
            else:
                nkw = 0
                p = obj_open(p, end, &kmore)
                while kmore:
                    p = obj_key(p, end, &kkey)
                    if p == NULL:
                        return NULL
                    nkw += 1
                    if not key_is(&kkey, b"factor", 6):
                        bad[0] = 1
                    p = skipv(p, end, 4)
                    if p == NULL:
                        return NULL
                    p = obj_sep(p, end, &kmore)
                    if p == NULL:
                        return NULL
                if nkw != 1:
                    bad[0] = 1
        else:
            if key.esc:
                bad[0] = 1  # might decode to "name" / "kwargs"
            p = skipv(p, end, 3)  # other keys are ignored by from_dict
        if p == NULL:
            return NULL
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    if has_name != 1 or has_kwargs != 1:
        bad[0] = 1
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
    """Recording.from_dict -> Recording(sources=..., transforms=..., **data)."""
    cdef Str key
    cdef int more, ok
    cdef uint32_t seen = 0
    cdef uint32_t bit
    if p[0] != 0x7B:
        bad[0] = 1  # null: None.pop fails
        return skipv(p, end, 1)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        bit = 0
        ok = 1
        if key_is(&key, b"sampling_rate", 13):
            bit = 1 << 2
            p = num_value(p, end, sampling_rate, &ok)
        elif key_is(&key, b"sources", 7):
            bit = 1 << 1
            p = parse_list_of(p, end, 0, bad)
        elif key_is(&key, b"transforms", 10):
            bit = 1 << 6
            p = parse_list_of(p, end, 1, bad)
        else:
            if key_is(&key, b"id", 2):
                bit = 1 << 0
            elif key_is(&key, b"num_samples", 11):
                bit = 1 << 3
            elif key_is(&key, b"duration", 8):
                bit = 1 << 4
            elif key_is(&key, b"channel_ids", 11):
                bit = 1 << 5
            else:
                bad[0] = 1
            p = skipv(p, end, 2)
        if p == NULL:
            return NULL
        if not ok:
            bad[0] = 1
        if bit:
            if seen & bit:
                bad[0] = 1
            seen |= bit
        p = obj_sep(p, end, &more)
        if p == NULL:
            return NULL
    if (seen & 0x1F) != 0x1F:
        bad[0] = 1  # id, sources, sampling_rate, num_samples, duration are required
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


cdef inline int top_key(const Str* k) noexcept nogil:
    cdef Py_ssize_t n
    if k.esc:
        return TK_UNKNOWN
    n = k.e - k.s
    if n == 2:
        if key_is(k, b"id", 2):
            return TK_ID
    elif n == 4:
        if key_is(k, b"type", 4):
            return TK_TYPE
    elif n == 5:
        if key_is(k, b"start", 5):
            return TK_START
        if key_is(k, b"video", 5):
            return TK_VIDEO
    elif n == 6:
        if key_is(k, b"custom", 6):
            return TK_CUSTOM
    elif n == 7:
        if key_is(k, b"channel", 7):
            return TK_CHANNEL
    elif n == 8:
        if key_is(k, b"duration", 8):
            return TK_DURATION
        if key_is(k, b"features", 8):
            return TK_FEATURES
    elif n == 9:
        if key_is(k, b"recording", 9):
            return TK_RECORDING
    elif n == 10:
        if key_is(k, b"feat_value", 10):
            return TK_FEAT_VALUE
        if key_is(k, b"num_frames", 10):
            return TK_NUM_FRAMES
    elif n == 11:
        if key_is(k, b"frame_shift", 11):
            return TK_FRAME_SHIFT
        if key_is(k, b"num_samples", 11):
            return TK_NUM_SAMPLES
    elif n == 12:
        if key_is(k, b"supervisions", 12):
            return TK_SUPERVISIONS
        if key_is(k, b"num_features", 12):
            return TK_NUM_FEATURES
    elif n == 13:
        if key_is(k, b"sampling_rate", 13):
            return TK_SAMPLING_RATE
    return TK_UNKNOWN


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


cdef uint32_t DATA_ALLOWED = (
    (1 << TK_ID) | (1 << TK_START) | (1 << TK_DURATION) | (1 << TK_CHANNEL)
    | (1 << TK_SUPERVISIONS) | (1 << TK_FEATURES) | (1 << TK_RECORDING)
    | (1 << TK_CUSTOM) | (1 << TK_TYPE))
cdef uint32_t DATA_REQUIRED = (
    (1 << TK_ID) | (1 << TK_START) | (1 << TK_DURATION) | (1 << TK_CHANNEL) | (1 << TK_TYPE))
cdef uint32_t PAD_ALLOWED = (
    (1 << TK_ID) | (1 << TK_DURATION) | (1 << TK_SAMPLING_RATE)
    | (1 << TK_FEAT_VALUE) | (1 << TK_NUM_FRAMES) | (1 << TK_NUM_FEATURES)
    | (1 << TK_FRAME_SHIFT) | (1 << TK_NUM_SAMPLES) | (1 << TK_VIDEO)
    | (1 << TK_CUSTOM) | (1 << TK_TYPE))
cdef uint32_t PAD_REQUIRED = (
    (1 << TK_ID) | (1 << TK_DURATION) | (1 << TK_SAMPLING_RATE)
    | (1 << TK_FEAT_VALUE) | (1 << TK_TYPE))


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
    """Parse one line's top-level object into ci. Returns the position of the line's
    terminating '\\n' (or the buffer end), or NULL if the line is not valid JSON."""
    cdef Str key, sval
    cdef int more, tk
    p = ws(p, end)
    if p >= end or p[0] != 0x7B:
        return NULL  # not an object (or garbage)
    p = obj_open(p, end, &more)
    while more:
        p = obj_key(p, end, &key)
        if p == NULL:
            return NULL
        tk = top_key(&key)
        if tk != TK_UNKNOWN:
            if ci.seen & ((<uint32_t>1) << tk):
                ci.bad = 1  # duplicate key: orjson keeps the last one; keep it simple
            ci.seen |= ((<uint32_t>1) << tk)
        else:
            ci.bad = 1  # unknown key for every non-mixed cut type (TypeError in Lhotse)
        if tk == TK_ID:
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
        elif tk == TK_TYPE:
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
        elif tk == TK_DURATION:
            p = num_value(p, end, &ci.dur, &ci.dur_ok)
        elif tk == TK_SUPERVISIONS:
            p = parse_supervisions(p, end, &ci.sup, &ci.bad_data)
        elif tk == TK_FEATURES:
            ci.has_features = 1
            p = parse_features(p, end, &ci.fi, &ci.bad_data)
        elif tk == TK_RECORDING:
            ci.has_recording = 1
            ci.rec_sr.s = NULL
            p = parse_recording(p, end, &ci.rec_sr, &ci.bad_data)
        elif tk == TK_CUSTOM:
            p = parse_custom(p, end, &ci.bad_data)  # PaddingCut keeps custom as-is
        elif tk == TK_NUM_FRAMES:
            p = pad_int_field(p, end, &ci.pad_nf, &ci.nf_null, &ci.bad_pad)
        elif tk == TK_NUM_SAMPLES:
            p = pad_int_field(p, end, &ci.pad_ns, &ci.ns_null, &ci.bad_pad)
        elif tk == TK_NUM_FEATURES:
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
