# cython: language_level=3
"""JSON grammar primitives for the scanners in ``discoseq._core`` (cimported, all inline).

Strict RFC 8259 JSON exactly as orjson accepts it: UTF-8 (no surrogates, no overlong forms),
escapes and surrogate pairs, no raw control characters in strings, number syntax, no literal
whose double is infinite, nesting bounded by the caller (``MAX_DEPTH``). Nothing here knows
Lhotse: the cut schema lives in ``cutscan.pyx``.

Style: every function takes the current position and returns the new one (NULL = JSON syntax
error), so that the position lives in a register, not in memory; all are ``cdef inline ...
noexcept nogil`` over raw pointers, so a cimporting module compiles them into its own code (no
cross-module call). A line is bounded by the end of the whole buffer; no valid token contains a
raw ``\n``, so a parser stops at the end of its line by itself.

Containers (objects; arrays alike with ``arr_open`` / ``arr_sep``)::

    p = obj_open(p, end, &more)            # p at '{'
    while more:
        p = obj_key(p, end, &key)          # p now at the member's value
        p = <value parser>(p, end, ...)
        p = obj_sep(p, end, &more)

with a NULL check after each step; ``obj_key`` / ``arr_sep`` guarantee ``p < end`` for a value.

A module that cimports this file calls :func:`json_grammar_init` once at import (it creates the
"C" locale for the rare literals parsed with ``strtod_l``; until then those go to the slow path).
"""

from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcmp, memcpy


cdef extern from *:
    """
    #include <locale.h>
    #include <stdlib.h>
    #include <string.h>
    #define DS_TWO53 9007199254740992LL  /* 2**53: integers up to this are exact doubles */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #endif
    #if defined(__GNUC__)
    #define DS_INLINE static inline __attribute__((always_inline))
    #else
    #define DS_INLINE static inline
    #endif
    /* First byte in [p, end) that is a quote, a backslash, a control character (< 0x20) or
       non-ASCII. */
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
    /* a == b for 1 <= n <= 16 bytes, reading only a[0..n) and b[0..n): two overlapping words. */
    DS_INLINE int ds_eq_short(const unsigned char* a, const unsigned char* b, size_t n) {
        uint64_t x, y, u, v;
        uint32_t x4, y4, u4, v4;
        if (n >= 8) {
            memcpy(&x, a, 8); memcpy(&y, b, 8);
            memcpy(&u, a + n - 8, 8); memcpy(&v, b + n - 8, 8);
            return ((x ^ y) | (u ^ v)) == 0;
        }
        if (n >= 4) {
            memcpy(&x4, a, 4); memcpy(&y4, b, 4);
            memcpy(&u4, a + n - 4, 4); memcpy(&v4, b + n - 4, 4);
            return ((x4 ^ y4) | (u4 ^ v4)) == 0;
        }
        return a[0] == b[0] && a[n >> 1] == b[n >> 1] && a[n - 1] == b[n - 1];
    }
    /* Byte classes inside a string: 0 plain ASCII, 1 '"', 2 '\\', 3 invalid (control
       character, stray continuation, bad lead byte), 4/5/6 lead of a 2/3/4-byte UTF-8 sequence. */
    static const unsigned char ds_str_class[256] = {
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x00 */
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x10 */
        0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x20 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x30 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x40 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,  /* 0x50 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x60 */
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* 0x70 */
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x80 */
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0x90 */
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0xA0 */
        3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0xB0 */
        3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,  /* 0xC0 */
        4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,  /* 0xD0 */
        5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,  /* 0xE0 */
        6, 6, 6, 6, 6, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,  /* 0xF0 */
    };
    /* 10**k, k = 0 .. 22: exact doubles. */
    static const double ds_pow10[23] = {
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
        1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    };
    /* glibc's strtod_l is correctly rounded; with an explicit "C" locale a process-wide
       setlocale(LC_NUMERIC, ...) cannot change the decimal separator. */
    static locale_t ds_c_locale = (locale_t)0;
    static int ds_json_grammar_init(void) {
        if (ds_c_locale == (locale_t)0) ds_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        return ds_c_locale != (locale_t)0;
    }
    """
    ctypedef void* locale_t
    locale_t C_LOCALE "ds_c_locale"
    double strtod_l(const char* nptr, char** endptr, locale_t loc) noexcept nogil
    int json_grammar_init "ds_json_grammar_init"() noexcept nogil
    int64_t TWO53 "DS_TWO53"
    const uint8_t STR_CLASS "ds_str_class"[256]
    const double POW10 "ds_pow10"[23]
    const uint8_t* plain_run "ds_plain_run"(const uint8_t* p, const uint8_t* end) noexcept nogil
    const uint8_t* plain_string "ds_plain_string"(const uint8_t* p,
                                                  const uint8_t* end) noexcept nogil
    bint eq_short "ds_eq_short"(const uint8_t* a, const uint8_t* b, size_t n) noexcept nogil

cdef enum:
    MAX_DEPTH = 512  # orjson's own limit is 1024; deeper lines go to the slow path

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


cdef inline cptr pstr_full(cptr p, cptr end, Str* out) noexcept nogil:
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


cdef inline cptr pstr_slow(cptr p, cptr end, Str* out) noexcept nogil:
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


cdef inline int num_to_double(const Num* n, double* out) noexcept nogil:
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


cdef inline cptr pnum(cptr p, cptr end, Num* out) noexcept nogil:
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


# Containers: see the pattern in the module docstring.

cdef inline cptr obj_open(cptr p, cptr end, int* more) noexcept nogil:
    p = ws(p + 1, end)
    if p < end and p[0] == 0x7D:
        more[0] = 0
        return p + 1
    more[0] = 1
    return p


cdef inline cptr obj_key_slow(cptr p, cptr end, Str* key) noexcept nogil:
    p = pstr_slow(p, end, key)
    if p == NULL:
        return NULL
    return colon(p, end)


cdef inline cptr colon(cptr p, cptr end) noexcept nogil:
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


cdef inline cptr skipv(cptr p, cptr end, int depth) noexcept nogil:
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
