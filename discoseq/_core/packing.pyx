"""Greedy packing of rows into batches under hard limits.

Specification (reference twin: ``tests/reference_plan.py::pack``). Within each segment (a bucket,
or the whole input), rows are taken in plan order. A cut's duration cost is ``c = d`` or, with
``quadratic_duration = q``, ``c = d + d * d / q``. A batch of ``n`` cuts with largest cost ``m``
and cost sum ``s`` has cost ``n * m`` (``padded``, Lhotse's meaning of max_duration) or ``s``
(``sum``); frames likewise with ``num_frames``, and tokens with each cut's token cost ``t`` (or,
with ``quadratic_tokens = p``, ``t + t * t / p`` in floating point, as duration). Before a
cut joins the current batch, the batch *with* the cut is checked against every active limit
(segment's duration cap, segment's cut cap, frame cap, token cap); if any would be exceeded the current batch is closed first. So no batch ever exceeds
a cap, except a cut that alone exceeds one ("oversize"): it is put in a batch of its own
(``exclude=False``; the current batch is closed first) or left out (``exclude=True``); both are
counted. Rows are compacted in place (excluded rows removed).
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, INT64_MAX
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memset

from discoseq._core.types cimport (
    DS_ERR_NOMEM, DS_ERR_ROW, DS_OK, check_rows, row_outside, with_one_more,
)

cdef extern from *:
    """
    #define DS_PREFETCH(p) __builtin_prefetch((p), 0, 0)
    """
    void DS_PREFETCH(const void* p) noexcept nogil


cdef struct BatchBuf:
    int64_t* ends
    int32_t* seg
    double* cost
    double* dur
    int64_t n
    int64_t cap


cdef int _push(BatchBuf* b, int64_t end, int32_t seg, double cost, double dur) noexcept nogil:
    cdef int64_t newcap
    cdef void* p
    if b.n == b.cap:
        newcap = b.cap * 2 + 16
        p = realloc(b.ends, newcap * sizeof(int64_t))
        if p == NULL:
            return DS_ERR_NOMEM
        b.ends = <int64_t*>p
        p = realloc(b.seg, newcap * sizeof(int32_t))
        if p == NULL:
            return DS_ERR_NOMEM
        b.seg = <int32_t*>p
        p = realloc(b.cost, newcap * sizeof(double))
        if p == NULL:
            return DS_ERR_NOMEM
        b.cost = <double*>p
        p = realloc(b.dur, newcap * sizeof(double))
        if p == NULL:
            return DS_ERR_NOMEM
        b.dur = <double*>p
        b.cap = newcap
    b.ends[b.n] = end
    b.seg[b.n] = seg
    b.cost[b.n] = cost
    b.dur[b.n] = dur
    b.n += 1
    return DS_OK


cdef union TokenCost:
    int64_t t  # a token count
    double q  # its quadratic cost t + t * t / p


cdef struct DurTok:
    # a row's duration and token cost side by side: with a token cap, packing reads both from
    # one cache line (two columns read through shuffled rows cost two cache misses per row)
    double d
    TokenCost k


cdef void _dur_tokens(DurTok* out, const double* dur, const int64_t* tokens, int64_t n,
                      double rate, double tq) noexcept nogil:
    """One sequential pass: each row's duration and token count, its text tokens (0 without
    text) plus ``ceil(duration x rate - 1e-9)`` audio tokens when ``rate > 0``; with
    ``tq > 0`` the count's quadratic cost ``t + t * t / tq`` instead (divisions in a
    sequential loop rather than in the packing loop)."""
    cdef int64_t r, t, a
    cdef double x
    for r in range(n):
        t = tokens[r] if tokens[r] > 0 else 0
        if rate > 0.0:
            # ceil(x) for x > -1 (durations are positive), without a call into libm: the
            # truncation, one more when it lies below x
            x = dur[r] * rate - 1e-9
            a = <int64_t>x
            t += a + (1 if <double>a < x else 0)
        out[r].d = dur[r]
        if tq > 0.0:
            out[r].k.q = <double>t + <double>t * <double>t / tq
        else:
            out[r].k.t = t


cdef inline bint _bit(const uint8_t* bits, int64_t i) noexcept nogil:
    return (bits[i >> 3] >> (i & 7)) & 1


cdef inline bint _flagged(const uint8_t* copies, int64_t id_lo, int64_t num_ids,
                          int64_t row) noexcept nogil:
    """``copies`` flags row ``row`` (its id ``row - id_lo`` lies in ``[0, num_ids)`` and its
    bit is set). Without branches: rows in and out of the ids come in random order, and a
    mispredicted branch per row costs more than the test."""
    cdef uint64_t cid = <uint64_t>(row - id_lo)
    cdef bint inside = cid < <uint64_t>num_ids
    return inside & _bit(copies, <int64_t>(cid * inside))


cdef struct CopySet:
    # a hash set of rows: open addressing over (row, generation) slots, a slot of an earlier
    # generation counting as empty, so a new generation starts empty without clearing anything;
    # the table stays as small as the most rows one generation holds (in cache)
    int64_t* row
    int64_t* gen
    int64_t mask  # slots - 1 (a power of two)
    int64_t n  # rows of the current generation in it
    int64_t cur  # the current generation


cdef inline int64_t _slot(const CopySet* c, int64_t row) noexcept nogil:
    """The slot of ``row`` in the current generation, or the empty slot where it would go."""
    cdef int64_t k = <int64_t>((<uint64_t>row * 0x9E3779B97F4A7C15ULL) >> 32) & c.mask
    while c.gen[k] == c.cur and c.row[k] != row:
        k = (k + 1) & c.mask
    return k


cdef int _set_add(CopySet* c, int64_t row) noexcept nogil:
    """Put ``row`` in the current generation (twice as many slots once it is half full)."""
    cdef int64_t k, j, size, old_mask = c.mask
    cdef int64_t* old_row = c.row
    cdef int64_t* old_gen = c.gen
    if c.row == NULL or 2 * (c.n + 1) > c.mask + 1:
        size = 64 if c.row == NULL else 2 * (c.mask + 1)
        c.row = <int64_t*>malloc(size * sizeof(int64_t))
        c.gen = <int64_t*>malloc(size * sizeof(int64_t))
        if c.row == NULL or c.gen == NULL:
            free(c.row)
            free(c.gen)
            c.row, c.gen = old_row, old_gen
            return DS_ERR_NOMEM
        c.mask = size - 1
        for j in range(size):
            c.gen[j] = -1
        if old_row != NULL:
            for j in range(old_mask + 1):
                if old_gen[j] == c.cur:
                    k = _slot(c, old_row[j])
                    c.row[k] = old_row[j]
                    c.gen[k] = c.cur
        free(old_row)
        free(old_gen)
    k = _slot(c, row)
    c.row[k] = row
    c.gen[k] = c.cur
    c.n += 1
    return DS_OK


cdef enum:
    SIG_WORDS = 8  # the open batch's filter of flagged rows: 512 bits, one cache line
    SCAN_MAX = 32  # flagged rows of the open batch that are scanned; more: a hash set


cdef struct OpenCopies:
    # The flagged rows of the open batch, as :func:`_pack` keeps them: in a 512-bit filter of
    # its own (bit ``_sig_bit(row)`` set for each; a local array, which no store through the
    # rows can alias) that settles most flagged rows in one test and no branch (a row whose
    # bit is clear is not in the batch), and here, for the rows whose bit is set (their cut,
    # or another that shares the bit): their list ``rows`` (``cap`` slots), scanned, or for a
    # batch of many flagged rows a hash set of ``rows[0:indexed]`` (filled as needed). Emptied
    # as a batch closes: the size follows the open batch, not the number of repeated cuts.
    int64_t* rows
    int64_t cap
    int64_t indexed
    CopySet table
    # a few flagged cuts (at most FEW_MAX): a filter of FEW_BITS bits (bit ``_few_bit(row)``
    # set for each), which settles nearly every row with one test in L1, the copy bits read
    # for the rest; NULL for many
    uint64_t* few


cdef enum:
    FEW_SHIFT = 48  # the few filter: 2**16 bits (8 KB)
    FEW_WORDS = 1024
    FEW_MAX = 2048  # flagged cuts the filter takes: at most 1 in 32 of its bits set


FEW_COPIES = FEW_MAX  # flagged cuts up to which :func:`pack` filters the rows (few copies)


cdef inline uint64_t _few_bit(int64_t row) noexcept nogil:
    """The few filter's bit of ``row`` (the top 16 bits of a multiplicative hash)."""
    return (<uint64_t>row * 0xD6E8FEB86659FD93ULL) >> FEW_SHIFT


cdef uint64_t* _few_filter(const uint8_t* copies, int64_t id_lo, int64_t num_ids) noexcept nogil:
    """The few filter of the flagged ids, or NULL when more than FEW_MAX are flagged (or no
    memory): then every row reads its copy bit. Stops at the (FEW_MAX + 1)-th."""
    cdef uint64_t* f = <uint64_t*>calloc(FEW_WORDS, sizeof(uint64_t))
    cdef int64_t k, nbytes = (num_ids + 7) >> 3, found = 0, j
    cdef uint64_t w, h
    cdef uint8_t b
    if f == NULL:
        return NULL
    k = 0
    while k < nbytes:
        if k + 8 <= nbytes:  # eight bytes of no flag at once
            memcpy(&w, copies + k, 8)
            if w == 0:
                k += 8
                continue
        b = copies[k]
        for j in range(8):
            if (b >> j) & 1 and (k << 3) + j < num_ids:
                found += 1
                if found > FEW_MAX:
                    free(f)
                    return NULL
                h = _few_bit(id_lo + (k << 3) + j)
                f[h >> 6] |= (<uint64_t>1) << (h & 63)
        k += 1
    return f


cdef inline uint64_t _sig_bit(int64_t row) noexcept nogil:
    """The filter bit of ``row`` (the top 9 bits of a multiplicative hash)."""
    return (<uint64_t>row * 0x9E3779B97F4A7C15ULL) >> 55


cdef inline void _copies_reset(OpenCopies* o, uint64_t* sig) noexcept nogil:
    """The open batch closed: no flagged row in the next one (its filter ``sig`` cleared)."""
    memset(sig, 0, SIG_WORDS * sizeof(uint64_t))
    o.indexed = 0
    o.table.cur += 1
    o.table.n = 0


cdef int _copies_hold(OpenCopies* o, int64_t n, int64_t row) noexcept nogil:
    """1 when ``row`` is among the open batch's ``n`` flagged rows, else 0 (DS_ERR_NOMEM: no
    memory for the hash set)."""
    cdef int64_t k
    if n <= SCAN_MAX:
        for k in range(n):
            if o.rows[k] == row:
                return 1
        return 0
    while o.indexed < n:
        if _set_add(&o.table, o.rows[o.indexed]) < 0:
            return DS_ERR_NOMEM
        o.indexed += 1
    return o.table.gen[_slot(&o.table, row)] == o.table.cur


cdef int _copies_grow(OpenCopies* o) noexcept nogil:
    """Twice the slots for the open batch's flagged rows."""
    cdef void* p = realloc(o.rows, 2 * o.cap * sizeof(int64_t))
    if p == NULL:
        return DS_ERR_NOMEM
    o.rows = <int64_t*>p
    o.cap *= 2
    return DS_OK


ctypedef fused Limits:
    DurationLimits
    TokenLimits
    CopyLimits
    FewCopyLimits
    AnyLimits


# The kinds of plan :func:`_pack` is compiled for (empty tags of a fused type: Cython writes one
# C function per kind, without the code of the limits the kind lacks).
cdef struct DurationLimits:  # caps on duration and cuts only (the common plan)
    char tag


cdef struct TokenLimits:  # and a token cap
    char tag


cdef struct CopyLimits:  # caps on duration and cuts, a mixture's copies (its common plan)
    char tag


cdef struct FewCopyLimits:  # caps on duration and cuts, a few copies (the few filter)
    char tag


cdef struct AnyLimits:  # any limits, a mixture's copies
    char tag


cdef int64_t _pack(const Limits* kind, int64_t* rows, const int64_t* seg_off, int64_t nseg,
                   const double* dur, int64_t ncol, const int64_t* frames, const double* cap_dur,
                   const int64_t* cap_cuts, int64_t max_frames, const DurTok* dt,
                   int64_t max_tokens, double tq, double q, bint sum_mode, bint exclude,
                   const uint8_t* copies, int64_t id_lo, int64_t num_ids,
                   OpenCopies* open_copies, BatchBuf* out, int64_t* seg_batch_off,
                   int64_t* n_oversize) noexcept nogil:
    """Returns the number of rows kept, or a negative error code (DS_ERR_ROW: a row outside
    the ``ncol`` rows of the columns, found before it is read). With ``copies`` (a bit per
    copy id ``row - id_lo`` in ``[0, num_ids)``; ``open_copies`` the open batch's flagged rows)
    a flagged row whose cut is already in the open batch closes it first: no batch holds a cut
    twice (a mixture's common plan, caps on duration and cuts and copies, has a loop of its
    own: ``CopyLimits``). With ``dt`` (a token cap) durations and token costs are read from
    it, not from ``dur``: with ``tq > 0`` each cut's quadratic cost (a double, which
    ``max_tokens`` caps), else its integer token count; ``frames`` NULL: no frame cap.
    ``kind`` (its type only) says which limits the caller has: the rule is written once, and
    the loop of a kind without frames, tokens or copies carries none of their work (the open
    batch's sums are locals, kept in registers: half the time per row of a general loop)."""
    cdef int64_t s, i, row, w = 0, f = 0, nf, t = 0, nt, capc, end
    cdef bint closes, oversize, checked = False, maybe = False
    cdef uint64_t h = 0
    cdef int held
    # the open batch's flagged rows (see OpenCopies): the filter and their number in locals
    cdef uint64_t sig[SIG_WORDS]
    cdef int64_t on = 0, ocap = 0
    cdef int64_t* orows = NULL
    cdef double d, c, nd, capd, tc = 0.0, ntc
    # the open batch: cuts, longest cost, cost sum, duration sum, most and sum of frames and of
    # tokens, most and sum of quadratic token costs
    cdef int64_t bn, bmf, bsf, bmt, bst
    cdef double bm, bsm, bdsum, bmq, bsq
    cdef bint use_frames, use_tokens, quad_tokens, use_copies, few = False
    cdef const uint64_t* fewf = open_copies.few
    cdef uint64_t fb
    if Limits is DurationLimits:
        use_frames = use_tokens = use_copies = False
    elif Limits is TokenLimits:
        use_frames = use_copies = False
        use_tokens = True
    elif Limits is CopyLimits:
        use_frames = use_tokens = False
        use_copies = True
    elif Limits is FewCopyLimits:
        use_frames = use_tokens = False
        use_copies = few = True
    else:
        use_frames = frames != NULL
        use_tokens = dt != NULL
        use_copies = copies != NULL
    quad_tokens = use_tokens and tq > 0.0
    # with quadratic token costs the cap applies to them (as a double), not to the integers
    cdef double max_tq = <double>max_tokens if quad_tokens else 0.0
    if quad_tokens:
        max_tokens = INT64_MAX
    seg_batch_off[0] = 0
    for s in range(nseg):
        capd = cap_dur[s]
        capc = cap_cuts[s]
        end = seg_off[s + 1]
        bn = bmf = bsf = bmt = bst = 0
        bm = bsm = bdsum = bmq = bsq = 0.0
        if use_copies:
            _copies_reset(open_copies, sig)
            on = 0
            orows = open_copies.rows
            ocap = open_copies.cap
        for i in range(seg_off[s], end):
            if i + 64 < end:
                if use_tokens:
                    DS_PREFETCH(&dt[rows[i + 64]])
                else:
                    DS_PREFETCH(&dur[rows[i + 64]])
                if use_frames:
                    DS_PREFETCH(&frames[rows[i + 64]])
            row = rows[i]
            if row_outside(row, ncol):
                return DS_ERR_ROW
            if use_copies and few:  # branches: nearly every row passes the filter's test
                checked = maybe = False
                fb = _few_bit(row)
                if (fewf[fb >> 6] >> (fb & 63)) & 1:
                    checked = _flagged(copies, id_lo, num_ids, row)
                    if checked:
                        h = _sig_bit(row)
                        maybe = (sig[h >> 6] >> (h & 63)) & 1
            elif use_copies:
                checked = _flagged(copies, id_lo, num_ids, row)
                h = _sig_bit(row)
                maybe = checked & ((sig[h >> 6] >> (h & 63)) & 1)
            if use_tokens:
                d = dt[row].d
                if quad_tokens:
                    tc = dt[row].k.q
                else:
                    t = dt[row].k.t
            else:
                d = dur[row]
            c = d if q <= 0.0 else d + d * d / q
            if use_frames:
                f = frames[row]
            oversize = (c > capd or (use_frames and f > max_frames)
                        or (use_tokens and (t > max_tokens or tc > max_tq)))
            if oversize:
                n_oversize[0] += 1
                if exclude:
                    continue
            if bn > 0:  # does the open batch take this cut? (an oversize one goes alone)
                closes = oversize
                if not oversize:
                    nd = with_one_more(bn, bm, bsm, c, sum_mode)
                    closes = (bn + 1 > capc) | (nd > capd)
                    if use_frames:
                        nf = with_one_more(bn, bmf, bsf, f, sum_mode)
                        closes = closes | (nf > max_frames)
                    if use_tokens:
                        nt = with_one_more(bn, bmt, bst, t, sum_mode)
                        ntc = with_one_more(bn, bmq, bsq, tc, sum_mode)
                        closes = closes | (nt > max_tokens) | (ntc > max_tq)
                    if maybe and not closes:  # is its cut in the open batch already?
                        held = _copies_hold(open_copies, on, row)
                        if held < 0:
                            return DS_ERR_NOMEM
                        closes = held
                if closes:
                    if _push(out, w, <int32_t>s, bsm if sum_mode else bn * bm, bdsum) < 0:
                        return DS_ERR_NOMEM
                    bn = bmf = bsf = bmt = bst = 0
                    bm = bsm = bdsum = bmq = bsq = 0.0
                    if use_copies:
                        _copies_reset(open_copies, sig)
                        on = 0
            if oversize:  # a batch of its own
                rows[w] = row
                w += 1
                if _push(out, w, <int32_t>s, c, d) < 0:
                    return DS_ERR_NOMEM
                continue
            if use_copies and (checked or not few):  # among the open batch's flagged rows
                sig[h >> 6] |= (<uint64_t>checked) << (h & 63)  # (many: when flagged, no branch)
                orows[on] = row
                on += checked
                if on == ocap:
                    if _copies_grow(open_copies) < 0:
                        return DS_ERR_NOMEM
                    orows = open_copies.rows
                    ocap = open_copies.cap
            rows[w] = row
            w += 1
            bn += 1
            if c > bm:
                bm = c
            bsm = bsm + c
            bdsum = bdsum + d
            if use_frames:
                if f > bmf:
                    bmf = f
                bsf += f
            if use_tokens:
                if t > bmt:
                    bmt = t
                bst += t
                if tc > bmq:
                    bmq = tc
                bsq = bsq + tc
        if bn > 0 and _push(out, w, <int32_t>s, bsm if sum_mode else bn * bm, bdsum) < 0:
            return DS_ERR_NOMEM
        seg_batch_off[s + 1] = out.n
    return w



# The wrapper calls each kind's loop through these pointers, set at import, so that the C compiler
# cannot inline the loops into the wrapper (nor into one another): their machine code then does
# not change with the other kinds' code (measured: the duration-only loop 7% slower once the
# copies' loop changed, all four inlined into the wrapper).
ctypedef int64_t (*duration_fn)(
    const DurationLimits*, int64_t*, const int64_t*, int64_t, const double*, int64_t,
    const int64_t*, const double*, const int64_t*, int64_t, const DurTok*, int64_t, double,
    double, bint, bint, const uint8_t*, int64_t, int64_t, OpenCopies*, BatchBuf*, int64_t*,
    int64_t*) noexcept nogil
ctypedef int64_t (*token_fn)(
    const TokenLimits*, int64_t*, const int64_t*, int64_t, const double*, int64_t,
    const int64_t*, const double*, const int64_t*, int64_t, const DurTok*, int64_t, double,
    double, bint, bint, const uint8_t*, int64_t, int64_t, OpenCopies*, BatchBuf*, int64_t*,
    int64_t*) noexcept nogil
ctypedef int64_t (*copy_fn)(
    const CopyLimits*, int64_t*, const int64_t*, int64_t, const double*, int64_t,
    const int64_t*, const double*, const int64_t*, int64_t, const DurTok*, int64_t, double,
    double, bint, bint, const uint8_t*, int64_t, int64_t, OpenCopies*, BatchBuf*, int64_t*,
    int64_t*) noexcept nogil
ctypedef int64_t (*few_fn)(
    const FewCopyLimits*, int64_t*, const int64_t*, int64_t, const double*, int64_t,
    const int64_t*, const double*, const int64_t*, int64_t, const DurTok*, int64_t, double,
    double, bint, bint, const uint8_t*, int64_t, int64_t, OpenCopies*, BatchBuf*, int64_t*,
    int64_t*) noexcept nogil
ctypedef int64_t (*any_fn)(
    const AnyLimits*, int64_t*, const int64_t*, int64_t, const double*, int64_t,
    const int64_t*, const double*, const int64_t*, int64_t, const DurTok*, int64_t, double,
    double, bint, bint, const uint8_t*, int64_t, int64_t, OpenCopies*, BatchBuf*, int64_t*,
    int64_t*) noexcept nogil
cdef duration_fn pack_durations = _pack[DurationLimits]
cdef token_fn pack_tokens = _pack[TokenLimits]
cdef copy_fn pack_copies = _pack[CopyLimits]
cdef few_fn pack_few_copies = _pack[FewCopyLimits]
cdef any_fn pack_any = _pack[AnyLimits]


def pack(int64_t[::1] rows not None, const int64_t[::1] seg_offsets not None,
         const double[::1] duration not None, const int64_t[::1] num_frames,
         const double[::1] cap_duration not None, const int64_t[::1] cap_cuts not None,
         max_frames, quadratic_duration, bint sum_mode, bint exclude_oversize,
         const int64_t[::1] tokens=None, max_tokens=None, audio_rate=None,
         quadratic_tokens=None, const uint8_t[::1] copies=None, int64_t id_lo=0,
         int64_t num_ids=0, int64_t[::1] layout=None):
    """Pack ``rows`` (grouped into segments by ``seg_offsets``) into batches; ``rows`` is compacted
    in place. ``cap_duration``/``cap_cuts`` hold one cap per segment (``inf`` / ``2**63-1`` for
    none); ``max_frames``, ``max_tokens`` and ``quadratic_duration`` may be None. ``num_frames``
    may be empty when ``max_frames`` is None; ``tokens`` (each cut's text tokens, -1 for none)
    is needed with ``max_tokens`` only, which caps a cut's token cost like frames (cuts x most,
    or the sum): its text tokens (0 for none) plus ``ceil(duration x audio_rate - 1e-9)``
    audio tokens when ``audio_rate`` is given, and with ``quadratic_tokens = p`` that cost ``t``
    counts as ``t + t * t / p`` (the rule of ``plan.pack.token_costs_of``). Every row must
    be a row of ``duration`` (else ValueError). A mixture's ``rows`` are a multiset (a cut it
    takes twice is there twice): ``copies`` (a bit per copy id, bit ``k % 8`` of byte
    ``k // 8``; a row's id is ``row - id_lo``, the rows outside ``[id_lo, id_lo + num_ids)``
    are not flagged) flags the rows whose cut the mixture takes more than once: a flagged row
    whose cut is already in the open batch closes it first, so no batch holds a cut twice (the
    open batch's flagged rows are kept in a 512-bit filter and a list of their own, which most
    rows pass in one test without a branch: their size follows the most copies one batch
    holds, not the number of ids). With at most ``FEW_COPIES`` flagged ids (a mixture whose
    hours quotas take a few cuts twice) and no frame or token cap, a filter of 8 KB of them
    settles nearly every row in one test, and only the rows it lets through read their bit
    (the check's time per row halves: the bits of a 10M-cut plan's ids do not stay in cache).
    With ``max_tokens`` the kernel first
    lays out each row's duration and token count side by side in ``layout`` (a caller's
    scratch of at least ``2 x len(duration)`` int64, overwritten, which it may keep for the
    next call instead of fresh memory; None: allocated for this call), so a shuffled row costs
    one cache miss, not two.

    :return: ``(n_kept, batch_offsets (B+1), batch_segment int32, batch_cost, batch_duration,
        segment_batch_offsets (S+1), n_oversize)``.
    """
    cdef int64_t nseg = seg_offsets.shape[0] - 1
    cdef int64_t s
    if nseg < 0 or cap_duration.shape[0] != nseg or cap_cuts.shape[0] != nseg:
        raise ValueError("need len(cap_duration) == len(cap_cuts) == len(seg_offsets) - 1")
    if seg_offsets[0] != 0 or seg_offsets[nseg] != rows.shape[0]:
        raise ValueError("seg_offsets must start at 0 and end at len(rows)")
    for s in range(nseg):
        if seg_offsets[s] > seg_offsets[s + 1]:
            raise ValueError("seg_offsets must be non-decreasing")
        if cap_cuts[s] < 1:
            raise ValueError(f"cap_cuts[{s}]={cap_cuts[s]} must be >= 1")
    cdef int64_t mf = INT64_MAX if max_frames is None else int(max_frames)
    cdef double q = 0.0 if quadratic_duration is None else float(quadratic_duration)
    cdef const int64_t* fp = NULL
    if max_frames is not None:
        if num_frames is None or num_frames.shape[0] != duration.shape[0]:
            raise ValueError("max_frames needs the num_frames column")
        if num_frames.shape[0] > 0:
            fp = &num_frames[0]
    cdef int64_t mt = INT64_MAX if max_tokens is None else int(max_tokens)
    cdef double ar = 0.0 if audio_rate is None else float(audio_rate)
    cdef double tq = 0.0 if quadratic_tokens is None else float(quadratic_tokens)
    if quadratic_tokens is not None and not tq > 0.0:
        raise ValueError(f"quadratic_tokens={quadratic_tokens!r} must be > 0")
    if max_tokens is not None:
        if tokens is None or tokens.shape[0] != duration.shape[0]:
            raise ValueError("max_tokens needs the tokens column (one value per row)")
    if exclude_oversize:  # rows move as excluded ones are dropped: checked before any does
        check_rows(rows, duration.shape[0], "pack", "rows", "duration")
    # else the loop checks each row before it reads it (and moves none: ``rows`` unchanged)
    cdef const uint8_t* bp = NULL
    cdef OpenCopies oc
    memset(&oc, 0, sizeof(oc))
    oc.table.cur = 0  # no generation yet holds a slot (an empty slot holds -1)
    cdef int64_t ncol = duration.shape[0]
    cdef DurTok* dt = NULL
    cdef const double* dp = &duration[0] if ncol > 0 else NULL
    if copies is not None:
        if num_ids < 0:
            raise ValueError(f"num_ids={num_ids} must be >= 0")
        if num_ids > <int64_t>copies.shape[0] * 8:  # (num_ids + 7) // 8 would overflow
            raise ValueError(f"copies needs one bit per copy id ({num_ids})")
        if num_ids > 0:
            bp = &copies[0]
    if max_tokens is not None and ncol > 0:
        if layout is None:
            layout = np.empty(2 * ncol, dtype=np.int64)  # NumPy asks for huge pages
        elif layout.shape[0] < 2 * ncol:
            raise ValueError(
                f"pack: layout needs {2 * ncol} int64 (2 per row of duration) with max_tokens"
            )
        dt = <DurTok*>&layout[0]
    seg_batch = np.empty(nseg + 1, dtype=np.int64)  # (before any malloc: nothing leaks)
    if bp != NULL:
        oc.cap = 64
        oc.rows = <int64_t*>malloc(oc.cap * sizeof(int64_t))
        if oc.rows == NULL:
            raise MemoryError("pack: out of memory")
        if dt == NULL and fp == NULL:  # the common plan's loop: a few copies get a filter
            with nogil:
                oc.few = _few_filter(bp, id_lo, num_ids)
    cdef int64_t[::1] sb = seg_batch
    cdef BatchBuf buf
    buf.n = 0
    buf.cap = rows.shape[0] // 8 + 16
    buf.ends = <int64_t*>malloc(buf.cap * sizeof(int64_t))
    buf.seg = <int32_t*>malloc(buf.cap * sizeof(int32_t))
    buf.cost = <double*>malloc(buf.cap * sizeof(double))
    buf.dur = <double*>malloc(buf.cap * sizeof(double))
    cdef int64_t kept = DS_ERR_NOMEM
    cdef DurationLimits durations_only
    cdef TokenLimits token_cap
    cdef CopyLimits copy_check
    cdef FewCopyLimits few_copies
    cdef AnyLimits any_limits
    cdef int64_t n_over = 0
    cdef int64_t* rp = &rows[0] if rows.shape[0] > 0 else NULL
    cdef int64_t[::1] ov
    cdef int32_t[::1] sv
    cdef double[::1] cv, dv
    try:
        if buf.ends != NULL and buf.seg != NULL and buf.cost != NULL and buf.dur != NULL:
            with nogil:
                if dt != NULL:
                    _dur_tokens(dt, dp, &tokens[0], ncol, ar, tq)
                if dt == NULL and fp == NULL and bp == NULL:  # caps on duration and cuts
                    kept = pack_durations(
                        &durations_only, rp, &seg_offsets[0], nseg, dp, ncol, NULL,
                        &cap_duration[0], &cap_cuts[0], INT64_MAX, NULL, INT64_MAX, 0.0, q,
                        sum_mode, exclude_oversize, NULL, 0, 0, &oc, &buf, &sb[0], &n_over)
                elif fp == NULL and bp == NULL:  # and a token cap
                    kept = pack_tokens(
                        &token_cap, rp, &seg_offsets[0], nseg, dp, ncol, NULL, &cap_duration[0],
                        &cap_cuts[0], INT64_MAX, dt, mt, tq, q, sum_mode, exclude_oversize, NULL,
                        0, 0, &oc, &buf, &sb[0], &n_over)
                elif dt == NULL and fp == NULL and oc.few != NULL:  # and a few copies
                    kept = pack_few_copies(
                        &few_copies, rp, &seg_offsets[0], nseg, dp, ncol, NULL,
                        &cap_duration[0], &cap_cuts[0], INT64_MAX, NULL, INT64_MAX, 0.0, q,
                        sum_mode, exclude_oversize, bp, id_lo, num_ids, &oc, &buf, &sb[0],
                        &n_over)
                elif dt == NULL and fp == NULL:  # caps on duration and cuts, copies
                    kept = pack_copies(
                        &copy_check, rp, &seg_offsets[0], nseg, dp, ncol, NULL,
                        &cap_duration[0], &cap_cuts[0], INT64_MAX, NULL, INT64_MAX, 0.0, q,
                        sum_mode, exclude_oversize, bp, id_lo, num_ids, &oc, &buf, &sb[0],
                        &n_over)
                else:
                    kept = pack_any(
                        &any_limits, rp, &seg_offsets[0], nseg, dp, ncol, fp, &cap_duration[0],
                        &cap_cuts[0], mf, dt, mt, tq, q, sum_mode, exclude_oversize, bp, id_lo,
                        num_ids, &oc, &buf, &sb[0], &n_over)
        if kept == DS_ERR_ROW:
            check_rows(rows, ncol, "pack", "rows", "duration")
        if kept < 0:
            raise MemoryError("pack: out of memory")
        offsets = np.empty(buf.n + 1, dtype=np.int64)
        bseg = np.empty(buf.n, dtype=np.int32)
        bcost = np.empty(buf.n, dtype=np.float64)
        bdur = np.empty(buf.n, dtype=np.float64)
        offsets[0] = 0
        if buf.n > 0:
            ov = offsets
            sv = bseg
            cv = bcost
            dv = bdur
            memcpy(&ov[1], buf.ends, buf.n * sizeof(int64_t))
            memcpy(&sv[0], buf.seg, buf.n * sizeof(int32_t))
            memcpy(&cv[0], buf.cost, buf.n * sizeof(double))
            memcpy(&dv[0], buf.dur, buf.n * sizeof(double))
    finally:
        free(oc.few)
        free(oc.rows)
        free(oc.table.row)
        free(oc.table.gen)
        free(buf.ends)
        free(buf.seg)
        free(buf.cost)
        free(buf.dur)
    return kept, offsets, bseg, bcost, bdur, seg_batch, n_over


cdef struct KeyPos:
    double key
    int64_t pos


cdef void _stable_sort(KeyPos* a, KeyPos* tmp, int64_t n) noexcept nogil:
    """Stable sort by key: insertion sort of runs of 16, then bottom-up merging (ping-pong
    between ``a`` and ``tmp``; the result ends in ``a``). Keys are never NaN here."""
    cdef int64_t i, j, lo, mid, hi, width, p, q, k
    cdef KeyPos x
    cdef KeyPos* src = a
    cdef KeyPos* dst = tmp
    cdef KeyPos* sw
    lo = 0
    while lo < n:
        hi = lo + 16 if lo + 16 < n else n
        for i in range(lo + 1, hi):
            x = a[i]
            j = i
            while j > lo and a[j - 1].key > x.key:
                a[j] = a[j - 1]
                j -= 1
            a[j] = x
        lo = hi
    width = 16
    while width < n:
        lo = 0
        while lo < n:
            mid = lo + width if lo + width < n else n
            hi = lo + 2 * width if lo + 2 * width < n else n
            p = lo
            q = mid
            k = lo
            while p < mid and q < hi:
                if src[q].key < src[p].key:
                    dst[k] = src[q]
                    q += 1
                else:
                    dst[k] = src[p]
                    p += 1
                k += 1
            while p < mid:
                dst[k] = src[p]
                p += 1
                k += 1
            while q < hi:
                dst[k] = src[q]
                q += 1
                k += 1
            lo = hi
        sw = src
        src = dst
        dst = sw
        width *= 2
    if src != a:
        memcpy(a, src, n * sizeof(KeyPos))


def sort_pools(int64_t[::1] rows not None, const int64_t[::1] seg_offsets not None,
               const double[::1] duration not None, int64_t pool):
    """Sort each run of ``pool`` consecutive rows of every segment by duration, stably (ties keep
    their order), in place. Runs restart at each segment; the last run of a segment may be
    shorter. Every row must be a row of ``duration`` (else ValueError).
    Reference: ``reference_plan.sort_pools``."""
    if pool < 2:
        raise ValueError(f"pool={pool} must be >= 2")
    cdef int64_t nseg = seg_offsets.shape[0] - 1, s, a, e, i
    if nseg < 0 or seg_offsets[nseg] > rows.shape[0]:
        raise ValueError("seg_offsets must end within rows")
    if seg_offsets[0] < 0:
        raise ValueError(f"seg_offsets[0]={seg_offsets[0]} must be >= 0")
    for s in range(nseg):
        if seg_offsets[s] > seg_offsets[s + 1]:
            raise ValueError("seg_offsets must be non-decreasing")
    check_rows(rows, duration.shape[0], "sort_pools", "rows", "duration")
    cdef KeyPos* buf = <KeyPos*>malloc(2 * pool * sizeof(KeyPos))
    if buf == NULL:
        raise MemoryError("sort_pools: out of memory")
    cdef int64_t* rp = &rows[0] if rows.shape[0] > 0 else NULL
    cdef const double* dp = &duration[0] if duration.shape[0] > 0 else NULL
    with nogil:
        for s in range(nseg):
            a = seg_offsets[s]
            while a < seg_offsets[s + 1]:
                e = a + pool if a + pool < seg_offsets[s + 1] else seg_offsets[s + 1]
                for i in range(a, e):
                    buf[i - a].key = dp[rp[i]]
                    buf[i - a].pos = i
                _stable_sort(buf, buf + pool, e - a)
                for i in range(a, e):  # slot -> row (read every row before writing any)
                    buf[i - a].pos = rp[buf[i - a].pos]
                for i in range(a, e):
                    rp[i] = buf[i - a].pos
                a = e
    free(buf)
