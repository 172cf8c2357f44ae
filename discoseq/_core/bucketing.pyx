"""Bucket edges and bucket grouping.

Edges (reference twin: ``tests/reference_plan.py::estimate_edges``)
    Let the keys of the surviving rows be sorted, ``x(1) <= ... <= x(n)``, with integer weights
    ``w`` (milliseconds for durations, the count itself for frames / numel / tokens) and prefix
    sums ``S(i)``, total ``T``. Edge ``k`` (``k = 1 .. B-1``) is ``x(i)`` for the smallest ``i``
    with ``B * S(i) >= k * T``: each bucket holds about ``T / B`` of the total cost, computed on
    the full column (not a sample). Integer weights make the result independent of summation
    order, so the fast kernel and the sorted reference agree bit for bit. Unlike Lhotse's
    ``estimate_duration_buckets`` (which resets a running total) the targets are global, so
    rounding does not drift into the last bucket. Edges may repeat (e.g. all keys equal): the
    buckets between equal edges are then empty, and bucket ids stay ``0 .. B-1``.

    The kernel finds the edges without sorting the column: one pass for min/max, one pass for a
    histogram of counts and weights over 65536 bins of the keys' IEEE bit patterns (monotone for
    non-negative doubles, log-spaced, so outliers do not squash the bins), then only the few bins
    that hold an edge are collected and sorted.

Assignment
    ``bucket(x) = number of edges < x`` (``searchsorted(edges, x, side="left")``): bucket ``b``
    holds keys in ``(edge[b-1], edge[b]]``. 2D (NeMo's duration x tokens): the duration bucket
    ``b`` is found first, then the token sub-bucket ``j`` against the token edges of row ``b``;
    the flat bucket id is ``b * T + j``. Grouping is a stable counting sort, so within a bucket
    rows keep index order.
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t, INT64_MAX, UINT64_MAX
from libc.stdlib cimport calloc, free, malloc, qsort
from libc.string cimport memcpy

from discoseq._core.types cimport (
    Columns, DS_ERR_BOUNDS, DS_ERR_NOMEM, DS_ERR_OVERFLOW, DS_ERR_ROW, DS_OK, KEY_DURATION,
    KEY_FRAMES, KEY_NUMEL, KEY_TOKENS, check_rows, f64_ptr, i64_ptr, key_of, row_outside,
    weight_of,
)

KEY_KINDS = {"duration": KEY_DURATION, "num_frames": KEY_FRAMES, "num_features": KEY_NUMEL,
             "num_tokens": KEY_TOKENS}

cdef enum:
    NBINS = 65536


cdef inline int64_t _row(const int64_t* rows, int64_t i) noexcept nogil:
    """Row ``i`` of the selection; ``rows == NULL`` selects every row (no index array needed)."""
    return i if rows == NULL else rows[i]


cdef inline uint64_t _bits(double x) noexcept nogil:
    cdef uint64_t b
    memcpy(&b, &x, 8)
    return b


cdef int _cmp_f64(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0]
    cdef double y = (<const double*>b)[0]
    return (x > y) - (x < y)


cdef inline bint _is_sorted(const double* a, int64_t n) noexcept nogil:
    """Whether ``a`` is non-decreasing: a bin of keys that all equal one value (durations rounded
    to 10 ms put ~100k equal keys in an edge's bin at 100M rows) needs no sort."""
    cdef int64_t i
    for i in range(1, n):
        if a[i] < a[i - 1]:
            return False
    return True


cdef inline int _key_bits_range(const int64_t* rows, int64_t n, const Columns* c, int kind,
                                int64_t ncol, uint64_t* minb, uint64_t* maxb) noexcept nogil:
    """The least and greatest bit pattern of the keys (inline: a loop per constant kind);
    DS_ERR_ROW for a row outside the ``ncol`` rows of the columns (before it is read)."""
    cdef int64_t i, row
    cdef uint64_t b, lo = UINT64_MAX, hi = 0
    for i in range(n):
        row = _row(rows, i)
        if rows != NULL and row_outside(row, ncol):
            return DS_ERR_ROW
        b = _bits(key_of(c, kind, row))
        lo = b if b < lo else lo
        hi = b if b > hi else hi
    minb[0] = lo
    maxb[0] = hi
    return DS_OK


cdef inline int _histogram(const int64_t* rows, int64_t n, const Columns* c, int kind,
                           int64_t ncol, int shift, uint64_t base, int64_t nbins, int64_t* hist,
                           int64_t* total_out) noexcept nogil:
    """Pass 1 of :func:`_estimate`: count and weight of the keys in each bin, their total
    weight; DS_ERR_ROW for a row outside the ``ncol`` rows of the columns (before it is read:
    the first pass over the rows checks them). Inline so that each call with a constant
    ``kind`` gets its own loop."""
    cdef int64_t i, j, w, row, total = 0
    cdef uint64_t b
    cdef double x
    for i in range(n):
        row = _row(rows, i)
        if rows != NULL and row_outside(row, ncol):
            return DS_ERR_ROW
        x = key_of(c, kind, row)
        b = (_bits(x) >> shift) - base
        if b >= <uint64_t>nbins:  # a key outside the given bounds
            return DS_ERR_BOUNDS
        j = <int64_t>b
        w = weight_of(kind, x)
        if total > INT64_MAX - w:
            return DS_ERR_OVERFLOW
        total += w
        hist[2 * j] += 1
        hist[2 * j + 1] += w
    total_out[0] = total
    return DS_OK


cdef inline void _collect(const int64_t* rows, int64_t n, const Columns* c, int kind,
                          int shift, uint64_t base, const int32_t* slot_of, double* buf,
                          const int64_t* soff, int64_t* sfill) noexcept nogil:
    """Pass 2 of :func:`_estimate`: the keys of the bins with a slot (those holding an edge)
    into ``buf``. Inline for the same reason as :func:`_histogram`."""
    cdef int64_t i, sl
    cdef double x
    for i in range(n):
        x = key_of(c, kind, _row(rows, i))
        sl = slot_of[<int64_t>((_bits(x) >> shift) - base)]
        if sl >= 0:
            buf[soff[sl] + sfill[sl]] = x
            sfill[sl] += 1


cdef int _estimate(const int64_t* rows, int64_t n, const Columns* c, int kind, int64_t ncol,
                   int64_t nb, double* out, double lo, double hi, int64_t* sizes) noexcept nogil:
    """Edges into ``out[0 .. nb-2]``; returns DS_OK or an error code (DS_ERR_ROW: a row
    outside the ``ncol`` rows of the columns, found by the first pass before it is read).
    Requires n >= 1, nb >= 2.
    ``lo <= hi`` are known bounds of the keys (saves a pass), or ``lo > hi`` when unknown.
    ``sizes`` (or NULL): the rows of each of the ``nb`` buckets, from the histogram (see
    :func:`_bucket_sizes`)."""
    cdef int64_t i, k, j, w, total = 0
    cdef uint64_t b, minb = UINT64_MAX, maxb = 0, base
    cdef double x
    cdef int shift = 0, rc = DS_OK
    if lo <= hi:
        minb = _bits(lo)
        maxb = _bits(hi)
    elif kind == KEY_DURATION:
        rc = _key_bits_range(rows, n, c, KEY_DURATION, ncol, &minb, &maxb)
    elif kind == KEY_FRAMES:
        rc = _key_bits_range(rows, n, c, KEY_FRAMES, ncol, &minb, &maxb)
    elif kind == KEY_NUMEL:
        rc = _key_bits_range(rows, n, c, KEY_NUMEL, ncol, &minb, &maxb)
    else:
        rc = _key_bits_range(rows, n, c, KEY_TOKENS, ncol, &minb, &maxb)
    if rc != DS_OK:
        return rc
    while (maxb >> shift) - (minb >> shift) >= NBINS:
        shift += 1
    base = minb >> shift
    cdef int64_t nbins = <int64_t>((maxb >> shift) - base + 1)
    # counts[j] and weight sums wsum[j] of bin j side by side: one cache line per increment
    cdef int64_t* hist = <int64_t*>calloc(2 * nbins, sizeof(int64_t))
    cdef int32_t* slot_of = <int32_t*>malloc(nbins * sizeof(int32_t))
    cdef int64_t* tbin = <int64_t*>malloc(nb * sizeof(int64_t))
    cdef int64_t* tprev = <int64_t*>malloc(nb * sizeof(int64_t))
    cdef int64_t* soff = <int64_t*>malloc((nb + 1) * sizeof(int64_t))
    cdef int64_t* sfill = <int64_t*>malloc(nb * sizeof(int64_t))
    cdef double* buf = NULL
    cdef int64_t cum, nslots, sl, target, acc, e
    if (hist == NULL or slot_of == NULL or tbin == NULL or tprev == NULL
            or soff == NULL or sfill == NULL):
        rc = DS_ERR_NOMEM
    else:
        # a loop per key kind (and for duration keys without a row array): no test of them per row
        if kind == KEY_DURATION and rows == NULL:
            rc = _histogram(NULL, n, c, KEY_DURATION, ncol, shift, base, nbins, hist, &total)
        elif kind == KEY_DURATION:
            rc = _histogram(rows, n, c, KEY_DURATION, ncol, shift, base, nbins, hist, &total)
        elif kind == KEY_FRAMES:
            rc = _histogram(rows, n, c, KEY_FRAMES, ncol, shift, base, nbins, hist, &total)
        elif kind == KEY_NUMEL:
            rc = _histogram(rows, n, c, KEY_NUMEL, ncol, shift, base, nbins, hist, &total)
        else:
            rc = _histogram(rows, n, c, KEY_TOKENS, ncol, shift, base, nbins, hist, &total)
        if rc == DS_OK and total > INT64_MAX // nb:
            rc = DS_ERR_OVERFLOW
    if rc == DS_OK:
        # The bin holding each target: smallest j with nb * C(j) >= k * total.
        j = 0
        cum = hist[1]
        for k in range(1, nb):
            target = k * total
            while nb * cum < target:
                j += 1
                cum += hist[2 * j + 1]
            tbin[k] = j
            tprev[k] = cum - hist[2 * j + 1]
        for j in range(nbins):
            slot_of[j] = -1
        nslots = 0
        soff[0] = 0
        for k in range(1, nb):
            if slot_of[tbin[k]] < 0:
                slot_of[tbin[k]] = <int32_t>nslots
                soff[nslots + 1] = soff[nslots] + hist[2 * tbin[k]]
                sfill[nslots] = 0
                nslots += 1
        buf = <double*>malloc((soff[nslots] if soff[nslots] > 0 else 1) * sizeof(double))
        if buf == NULL:
            rc = DS_ERR_NOMEM
        else:
            if kind == KEY_DURATION and rows == NULL:
                _collect(NULL, n, c, KEY_DURATION, shift, base, slot_of, buf, soff, sfill)
            elif kind == KEY_DURATION:
                _collect(rows, n, c, KEY_DURATION, shift, base, slot_of, buf, soff, sfill)
            elif kind == KEY_FRAMES:
                _collect(rows, n, c, KEY_FRAMES, shift, base, slot_of, buf, soff, sfill)
            elif kind == KEY_NUMEL:
                _collect(rows, n, c, KEY_NUMEL, shift, base, slot_of, buf, soff, sfill)
            else:
                _collect(rows, n, c, KEY_TOKENS, shift, base, slot_of, buf, soff, sfill)
            for sl in range(nslots):
                if not _is_sorted(&buf[soff[sl]], soff[sl + 1] - soff[sl]):
                    qsort(&buf[soff[sl]], soff[sl + 1] - soff[sl], sizeof(double), _cmp_f64)
            for k in range(1, nb):
                sl = slot_of[tbin[k]]
                target = k * total
                acc = tprev[k]
                for e in range(soff[sl], soff[sl + 1]):
                    acc += weight_of(kind, buf[e])
                    if nb * acc >= target:
                        out[k - 1] = buf[e]
                        break
            if sizes != NULL:
                _bucket_sizes(hist, nbins, slot_of, buf, soff, shift, base, out, nb, sizes)
    free(hist)
    free(slot_of)
    free(tbin)
    free(tprev)
    free(soff)
    free(sfill)
    free(buf)
    return rc


cdef inline int64_t _lower_bound(const double* edges, int64_t ne, double x) noexcept nogil:
    """Number of edges strictly less than x (edges non-decreasing). Branch-free search (the loop
    count depends on ``ne`` only; the comparison becomes a conditional move)."""
    if ne == 0:
        return 0
    cdef const double* base = edges
    cdef int64_t n = ne, half
    while n > 1:
        half = n >> 1
        base = base + half if base[half] < x else base
        n -= half
    return (base - edges) + (1 if base[0] < x else 0)


cdef void _bucket_sizes(const int64_t* hist, int64_t nbins, const int32_t* slot_of,
                        const double* buf, const int64_t* soff, int shift, uint64_t base,
                        const double* edges, int64_t nb, int64_t* sizes) noexcept nogil:
    """The number of keys in each bucket of ``edges`` (``bucket(x)`` = edges < x), from the
    histogram of :func:`_estimate`: no edge lies in a bin without a slot, so all its keys share
    one bucket (the edges of earlier bins); the keys of a bin with a slot are in ``buf``. Grouping
    then needs no counting pass over the rows."""
    cdef int64_t j, e = 0, i, sl
    for j in range(nb):
        sizes[j] = 0
    for j in range(nbins):
        sl = slot_of[j]
        if sl >= 0:
            for i in range(soff[sl], soff[sl + 1]):
                sizes[_lower_bound(edges, nb - 1, buf[i])] += 1
        elif hist[2 * j] > 0:
            while e < nb - 1 and <int64_t>((_bits(edges[e]) >> shift) - base) < j:
                e += 1
            sizes[e] += hist[2 * j]


cdef struct BucketTable:
    # Direct lookup of the bucket of a key by its IEEE bit pattern (monotone for keys >= 0):
    # bins ``(bits >> shift) - lo``, from the bin of the first edge to that of the last. An
    # entry ``e >= 0`` counts the edges before the bin, which holds at most one edge (then
    # ``edges[e]``, else ``edges[e]`` lies beyond it): the bucket of ``x`` is
    # ``e + (edges[e] < x)``, with no branch on the key. -1 marks a bin holding two or more edges
    # (then binary search). Keys below/above the table's range take its first/last bin.
    int32_t* table
    int64_t nbins
    int shift
    uint64_t lo


cdef int _build_table(BucketTable* t, const double* edges, int64_t ne) noexcept nogil:
    """Fill ``t`` (``t.table`` stays NULL when a table cannot be used: no edges, an edge <= 0)."""
    t.table = NULL
    if ne == 0 or not (edges[0] > 0.0):
        return DS_OK
    cdef uint64_t lob = _bits(edges[0]), hib = _bits(edges[ne - 1])
    cdef int shift = 0
    while (hib >> shift) - (lob >> shift) >= NBINS:
        shift += 1
    t.shift = shift
    t.lo = lob >> shift
    t.nbins = <int64_t>((hib >> shift) - t.lo + 1)
    t.table = <int32_t*>malloc(t.nbins * sizeof(int32_t))
    if t.table == NULL:
        return DS_ERR_NOMEM
    cdef int64_t j, e = 0, inside
    for j in range(t.nbins):
        # edges before bin j: count them; then those inside bin j.
        while e < ne and <int64_t>((_bits(edges[e]) >> shift) - t.lo) < j:
            e += 1
        inside = 0
        while e + inside < ne and <int64_t>((_bits(edges[e + inside]) >> shift) - t.lo) == j:
            inside += 1
        t.table[j] = -1 if inside > 1 else <int32_t>e
    return DS_OK


cdef inline int64_t _bucket1(const BucketTable* t, const double* edges, int64_t ne,
                             double x) noexcept nogil:
    cdef uint64_t kb, j
    cdef int64_t e
    if t.table != NULL:
        kb = _bits(x) >> t.shift
        j = kb - t.lo if kb >= t.lo else 0
        j = j if j < <uint64_t>t.nbins else <uint64_t>(t.nbins - 1)
        e = t.table[j]
        if e >= 0:
            return e + (1 if edges[e] < x else 0)
    return _lower_bound(edges, ne, x)


cdef inline int64_t _bucket(const Columns* c, int kind, int64_t row, const BucketTable* t,
                            const double* edges, int64_t ne, const double* tedges,
                            int64_t nt) noexcept nogil:
    cdef int64_t b = _bucket1(t, edges, ne, key_of(c, kind, row))
    if nt <= 1:
        return b
    return b * nt + _lower_bound(tedges + b * (nt - 1), nt - 1, <double>c.num_tokens[row])


cdef enum:
    WC = 16  # rows staged per bucket before they are written out together (2 cache lines)
    CHUNK = 2048  # rows whose buckets are found before they are staged


cdef inline int64_t _sub_bucket(const uint8_t* ids, int64_t i, const int64_t* rows,
                               const Columns* c, const uint8_t* flat,
                               int64_t width) noexcept nogil:
    """The flat bucket of row ``i``: ``ids[i]``, or with ``flat`` (2D) that of the
    first-dimension bucket ``ids[i]`` and the row's token value, from the table of every
    (bucket, token value) pair (``width`` values per bucket; no search per row)."""
    cdef int64_t b = ids[i]
    if flat == NULL:
        return b
    cdef uint64_t v = <uint64_t>c.num_tokens[_row(rows, i)]
    # checked in [0, width) by the histogram pass; clamped all the same (no read out of the
    # table should the column change meanwhile)
    return flat[b * width + <int64_t>(v if v < <uint64_t>width else 0)]


cdef void _scatter(const int64_t* rows, int64_t n, const uint8_t* ids, const Columns* c,
                   const uint8_t* flat, int64_t width, int64_t* out, int64_t* cursor,
                   int64_t nseg) noexcept nogil:
    """Row ``i`` to ``out[cursor[s]++]``, in order, ``s`` its flat bucket (see
    :func:`_sub_bucket`). Rows are staged per bucket and written ``WC`` at a time: writing
    each row straight to one of many buckets (90 for 30 x 3 2D buckets) touches a different
    page per row and thrashes the TLB (measured 1.8x slower)."""
    cdef int64_t i, s, k
    cdef int64_t* stage = <int64_t*>malloc(nseg * WC * sizeof(int64_t))
    cdef int64_t* fill = <int64_t*>calloc(nseg, sizeof(int64_t))
    if stage == NULL or fill == NULL:  # no room to stage: write row by row
        for i in range(n):
            s = _sub_bucket(ids, i, rows, c, flat, width)
            out[cursor[s]] = _row(rows, i)
            cursor[s] += 1
    else:
        for i in range(n):
            s = _sub_bucket(ids, i, rows, c, flat, width)
            k = fill[s]
            stage[s * WC + k] = _row(rows, i)
            k += 1
            if k == WC:
                memcpy(&out[cursor[s]], &stage[s * WC], WC * sizeof(int64_t))
                cursor[s] += WC
                k = 0
            fill[s] = k
        for s in range(nseg):
            memcpy(&out[cursor[s]], &stage[s * WC], fill[s] * sizeof(int64_t))
            cursor[s] += fill[s]
    free(stage)
    free(fill)


cdef inline int _chunk_buckets(const int64_t* rows, int64_t i0, int64_t i1, const Columns* c,
                               int kind, int64_t ncol, const BucketTable* t, const double* edges,
                               int64_t ne, const double* tedges, int64_t nt,
                               int32_t* ids) noexcept nogil:
    """The flat bucket of rows ``i0 .. i1 - 1`` into ``ids`` (inline: a loop per constant
    ``kind``, and one for 1D duration keys without a row array); DS_ERR_ROW for a row outside
    the ``ncol`` rows of the columns (before it is read)."""
    cdef int64_t i, row
    for i in range(i0, i1):
        row = _row(rows, i)
        if rows != NULL and row_outside(row, ncol):
            return DS_ERR_ROW
        ids[i - i0] = <int32_t>_bucket(c, kind, row, t, edges, ne, tedges, nt)
    return DS_OK


cdef int _scatter_sized(const int64_t* rows, int64_t n, const Columns* c, int kind,
                        int64_t ncol, const BucketTable* t, const double* edges, int64_t ne,
                        const double* tedges, int64_t nt, int64_t* out,
                        const int64_t* offsets, int64_t nseg) noexcept nogil:
    """Row ``i`` to the next free place of its bucket ``s`` (found from its key) within
    ``out[offsets[s]:offsets[s + 1]]``, in order, staged as :func:`_scatter`. DS_ERR_BOUNDS
    when a bucket's rows do not fill its range exactly (the sizes were not those of the rows):
    nothing is written outside a bucket's range; DS_ERR_ROW for a row outside the ``ncol``
    rows of the columns (the pass checks each before reading it)."""
    cdef int64_t i, s, k, i0, i1
    cdef int rc = DS_OK
    cdef int32_t ids[CHUNK]
    cdef int64_t* stage = <int64_t*>malloc(nseg * WC * sizeof(int64_t))
    cdef int64_t* fill = <int64_t*>calloc(nseg, sizeof(int64_t))
    cdef int64_t* cursor = <int64_t*>malloc(nseg * sizeof(int64_t))
    if stage == NULL or fill == NULL or cursor == NULL:
        rc = DS_ERR_NOMEM
    else:
        memcpy(cursor, offsets, nseg * sizeof(int64_t))
        i0 = 0
        while i0 < n and rc == DS_OK:
            # a block's buckets first, then its rows: two short loops run faster than one
            i1 = i0 + CHUNK if n - i0 > CHUNK else n
            if kind == KEY_DURATION and rows == NULL and nt <= 1:
                rc = _chunk_buckets(NULL, i0, i1, c, KEY_DURATION, ncol, t, edges, ne, NULL, 1,
                                    ids)
            elif kind == KEY_DURATION:
                rc = _chunk_buckets(rows, i0, i1, c, KEY_DURATION, ncol, t, edges, ne, tedges,
                                    nt, ids)
            else:
                rc = _chunk_buckets(rows, i0, i1, c, kind, ncol, t, edges, ne, tedges, nt, ids)
            if rc != DS_OK:
                break
            for i in range(i0, i1):
                s = ids[i - i0]
                k = fill[s]
                stage[s * WC + k] = _row(rows, i)
                k += 1
                if k == WC:
                    if cursor[s] + WC > offsets[s + 1]:
                        rc = DS_ERR_BOUNDS
                        break
                    memcpy(&out[cursor[s]], &stage[s * WC], WC * sizeof(int64_t))
                    cursor[s] += WC
                    k = 0
                fill[s] = k
            i0 = i1
        if rc == DS_OK:
            for s in range(nseg):
                if cursor[s] + fill[s] != offsets[s + 1]:
                    rc = DS_ERR_BOUNDS
                    break
        if rc == DS_OK:
            for s in range(nseg):
                if fill[s] > 0:
                    memcpy(&out[cursor[s]], &stage[s * WC], fill[s] * sizeof(int64_t))
    free(stage)
    free(fill)
    free(cursor)
    return rc


cdef int _group(const int64_t* rows, int64_t n, const Columns* c, int kind, int64_t ncol,
                const double* edges, int64_t ne, const double* tedges, int64_t nt,
                int64_t* out, int64_t* offsets, int64_t nseg,
                const int64_t* sizes) noexcept nogil:
    """Stable counting sort by bucket (two passes: count, scatter). With ``sizes`` (the rows of
    each bucket, known from estimating the edges) one pass: the scatter. The first pass checks
    each row before it reads it: DS_ERR_ROW for one outside the ``ncol`` rows of the
    columns."""
    cdef int64_t i, s, row
    cdef int rc
    cdef BucketTable t
    if _build_table(&t, edges, ne) < 0:
        return DS_ERR_NOMEM
    if sizes != NULL:
        offsets[0] = 0
        for s in range(nseg):
            offsets[s + 1] = offsets[s] + sizes[s]
        rc = _scatter_sized(rows, n, c, kind, ncol, &t, edges, ne, tedges, nt, out, offsets,
                            nseg)
        free(t.table)
        return rc
    # With <= 256 buckets, pass 1 keeps each row's bucket id in a byte, so the scatter pass reads
    # 1 byte per row instead of the key column and the lookup again.
    cdef uint8_t* ids = <uint8_t*>malloc(n if n > 0 else 1) if nseg <= 256 else NULL
    for s in range(nseg + 1):
        offsets[s] = 0
    if ids != NULL:
        for i in range(n):
            row = _row(rows, i)
            if rows != NULL and row_outside(row, ncol):
                break
            s = _bucket(c, kind, row, &t, edges, ne, tedges, nt)
            ids[i] = <uint8_t>s
            offsets[s + 1] += 1
    else:
        for i in range(n):
            row = _row(rows, i)
            if rows != NULL and row_outside(row, ncol):
                break
            offsets[_bucket(c, kind, row, &t, edges, ne, tedges, nt) + 1] += 1
    if rows != NULL and n > 0 and row_outside(row, ncol):
        free(ids)
        free(t.table)
        return DS_ERR_ROW
    for s in range(nseg):
        offsets[s + 1] += offsets[s]
    # offsets[s] now doubles as the write cursor of bucket s; restored below.
    if ids != NULL:
        _scatter(rows, n, ids, c, NULL, 0, out, offsets, nseg)
        free(ids)
    else:
        for i in range(n):
            row = _row(rows, i)
            s = _bucket(c, kind, row, &t, edges, ne, tedges, nt)
            out[offsets[s]] = row
            offsets[s] += 1
    s = nseg
    while s > 0:
        offsets[s] = offsets[s - 1]
        s -= 1
    offsets[0] = 0
    free(t.table)
    return DS_OK


# The wrappers below call the kernels through these pointers, set at import, so that the C
# compiler cannot inline a kernel into its Python wrapper. GCC inlines a static function that is
# called once, and the machine code of the hot loops then changes with every edit of the wrapper
# (measured: estimate_edges 20% slower after a validation was added to its wrapper).
ctypedef int (*estimate_fn)(const int64_t*, int64_t, const Columns*, int, int64_t, int64_t,
                            double*, double, double, int64_t*) noexcept nogil
ctypedef int (*group_fn)(const int64_t*, int64_t, const Columns*, int, int64_t, const double*,
                         int64_t, const double*, int64_t, int64_t*, int64_t*, int64_t,
                         const int64_t*) noexcept nogil
cdef estimate_fn estimate_kernel = _estimate
cdef group_fn group_kernel = _group

cdef Columns _columns(const double[::1] duration, const int64_t[::1] num_frames,
                      const int64_t[::1] num_features, const int64_t[::1] num_tokens):
    cdef Columns c
    c.duration = f64_ptr(duration)
    c.num_frames = i64_ptr(num_frames)
    c.num_features = i64_ptr(num_features)
    c.num_tokens = i64_ptr(num_tokens)
    return c


def _check_kind(int kind, const double[::1] duration, const int64_t[::1] num_frames,
                const int64_t[::1] num_features, const int64_t[::1] num_tokens):
    need = {KEY_DURATION: (duration,), KEY_FRAMES: (num_frames,),
            KEY_NUMEL: (num_frames, num_features), KEY_TOKENS: (num_tokens,)}.get(kind)
    if need is None:
        raise ValueError(f"unknown key kind {kind}")
    for col in need:
        if col is None or col.shape[0] == 0:
            raise ValueError(f"key kind {kind} needs a column that was not given")


def _column_length(str kernel, int kind, bint tokens, const double[::1] duration,
                   const int64_t[::1] num_frames, const int64_t[::1] num_features,
                   const int64_t[::1] num_tokens):
    """``(length, name)`` of the columns read for the key ``kind`` (and for the token sub-buckets
    with ``tokens``). One row id indexes each of them, so they must have one length."""
    _check_kind(kind, duration, num_frames, num_features, num_tokens)
    if tokens:
        _check_kind(KEY_TOKENS, duration, num_frames, num_features, num_tokens)
    used = []
    if kind == KEY_DURATION:
        used.append(("duration", duration.shape[0]))
    if kind == KEY_FRAMES or kind == KEY_NUMEL:
        used.append(("num_frames", num_frames.shape[0]))
    if kind == KEY_NUMEL:
        used.append(("num_features", num_features.shape[0]))
    if kind == KEY_TOKENS or tokens:
        used.append(("num_tokens", num_tokens.shape[0]))
    name0, length0 = used[0]
    for name, length in used[1:]:
        if length != length0:
            raise ValueError(f"{kernel}: column {name} has {length} rows but {name0} has "
                             f"{length0}; the columns must have one value per row")
    return length0, name0


def estimate_edges(const int64_t[::1] rows, int kind, const double[::1] duration,
                   const int64_t[::1] num_frames, const int64_t[::1] num_features,
                   const int64_t[::1] num_tokens, Py_ssize_t num_buckets, double lo=1.0,
                   double hi=0.0, int64_t[::1] sizes=None):
    """Equal-total-cost interior edges (``num_buckets - 1`` of them) of the keys of ``rows``
    (``None``: every row of the columns). ``lo <= hi``, when given, must bracket every key (they
    save one pass; a key outside them raises ValueError). ``sizes`` (int64, ``num_buckets``
    values), when given, receives the number of rows in each bucket of these edges, as
    :func:`group_by_bucket` assigns them (pass it there: grouping then skips its counting pass).

    The columns the key reads must have one length, and every row must lie in it (else
    ValueError). Reference: ``reference_plan.estimate_edges``.
    """
    if num_buckets < 1:
        raise ValueError(f"num_buckets={num_buckets} must be >= 1")
    ncol, column = _column_length("estimate_edges", kind, False, duration, num_frames,
                                  num_features, num_tokens)
    if sizes is not None and sizes.shape[0] != num_buckets:
        raise ValueError(f"sizes has {sizes.shape[0]} values, expected num_buckets={num_buckets}")
    cdef int64_t n = ncol if rows is None else rows.shape[0]
    out = np.zeros(max(num_buckets - 1, 0), dtype=np.float64)
    if num_buckets == 1 or n == 0:
        check_rows(rows, ncol, "estimate_edges", "rows", column)  # no kernel pass checks them
        if sizes is not None:
            sizes[:] = 0
            sizes[0] = n
        return out
    cdef double[::1] o = out
    cdef Columns c = _columns(duration, num_frames, num_features, num_tokens)
    cdef const int64_t* rp = i64_ptr(rows)
    cdef int64_t* sp = &sizes[0] if sizes is not None else NULL
    cdef int rc
    cdef int64_t nc = ncol
    with nogil:
        rc = estimate_kernel(rp, n, &c, kind, nc, num_buckets, &o[0], lo, hi, sp)
    if rc == DS_ERR_ROW:  # the kernel's first pass checks the rows: say which one
        check_rows(rows, ncol, "estimate_edges", "rows", column)
    if rc == DS_ERR_NOMEM:
        raise MemoryError("estimate_edges: out of memory")
    if rc == DS_ERR_BOUNDS:
        raise ValueError(f"estimate_edges: a key lies outside the given bounds [{lo}, {hi}]")
    if rc == DS_ERR_OVERFLOW:
        raise ValueError("estimate_edges: the total key weight overflows int64 "
                         "(too many buckets or keys too large)")
    return out


def _grouped_out(str name, out, int64_t n):
    """``out`` checked as the array of ``n`` grouped rows, or a new one."""
    if out is None:
        return np.empty(n, dtype=np.int64)
    if (not isinstance(out, np.ndarray) or out.dtype != np.int64 or out.shape != (n,)
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"{name}: out must be a writable contiguous int64 array of {n} rows")
    return out


def group_by_bucket(const int64_t[::1] rows, int kind, const double[::1] duration,
                    const int64_t[::1] num_frames, const int64_t[::1] num_features,
                    const int64_t[::1] num_tokens, const double[::1] edges not None,
                    const double[::1] token_edges not None, Py_ssize_t num_token_buckets,
                    const int64_t[::1] sizes=None, out=None):
    """Stable counting sort of ``rows`` (``None``: every row) by (flat) bucket id. The columns
    read must have one length, and every row must lie in it (else ValueError). ``sizes``: the
    number of rows of each (flat) bucket when known (from :func:`estimate_edges`), which saves
    the counting pass; sizes that are not those of the rows raise ValueError. ``out``: an int64
    array of one slot per row to write the grouped rows into (e.g. memory kept from an earlier
    plan), returned as ``grouped_rows``; None: a new one.

    :return: ``(grouped_rows, offsets)`` with ``offsets`` of length ``num_buckets + 1``.
    ``token_edges`` is the row-major ``(len(edges) + 1, num_token_buckets - 1)`` grid (empty in 1D).
    """
    cdef int64_t ne = edges.shape[0], nt = max(num_token_buckets, 1)
    ncol, column = _column_length("group_by_bucket", kind, nt > 1, duration, num_frames,
                                  num_features, num_tokens)
    if nt > 1 and token_edges.shape[0] != (ne + 1) * (nt - 1):
        raise ValueError(f"token_edges has {token_edges.shape[0]} values, expected "
                         f"{(ne + 1) * (nt - 1)}")
    cdef int64_t nseg = (ne + 1) * nt
    cdef Py_ssize_t i
    for i in range(1, ne):
        if not edges[i - 1] <= edges[i]:
            raise ValueError("edges must be non-decreasing")
    cdef int64_t n = ncol if rows is None else rows.shape[0]
    cdef const int64_t* szp = NULL
    if sizes is not None:
        if sizes.shape[0] != nseg:
            raise ValueError(f"sizes has {sizes.shape[0]} values, expected {nseg} buckets")
        if sizes.shape[0] and (np.asarray(sizes).min() < 0 or np.asarray(sizes).sum() != n):
            raise ValueError(f"sizes must be non-negative and sum to the {n} rows")
        szp = &sizes[0]
    grouped = _grouped_out("group_by_bucket", out, n)
    offsets = np.empty(nseg + 1, dtype=np.int64)
    cdef int64_t[::1] g = grouped
    cdef int64_t[::1] off = offsets
    cdef Columns c = _columns(duration, num_frames, num_features, num_tokens)
    cdef const double* ep = f64_ptr(edges)
    cdef const double* tp = f64_ptr(token_edges)
    cdef const int64_t* rp = i64_ptr(rows)
    cdef int64_t* gp = &g[0] if n > 0 else NULL
    cdef int rc
    cdef int64_t nc = ncol
    with nogil:
        rc = group_kernel(rp, n, &c, kind, nc, ep, ne, tp, nt, gp, &off[0], nseg, szp)
    if rc == DS_ERR_ROW:  # the kernel's first pass checks the rows: say which one
        check_rows(rows, ncol, "group_by_bucket", "rows", column)
    if rc == DS_ERR_BOUNDS:
        raise ValueError("group_by_bucket: sizes are not the numbers of rows in each bucket")
    if rc < 0:
        raise MemoryError("group_by_bucket: out of memory")
    return grouped, offsets


cdef int _token_edges(const int64_t* rows, int64_t n, const Columns* c, int kind,
                      const double* edges, int64_t ne, int64_t nt, int64_t maxv,
                      double* out) noexcept nogil:
    """Token edges of every first-dimension bucket in one pass: a histogram of token values per
    bucket, then per bucket edge ``k`` = the smallest present value ``v`` with
    ``nt * W(<= v) >= k * W`` (``W``: the token sum; the rule of ``_estimate`` on integer keys,
    so the result equals estimating each bucket's tokens on their own). ``out`` is the
    ``(ne + 1, nt - 1)`` grid, zero for an empty bucket. Tokens must lie in ``[0, maxv]``."""
    cdef int64_t nb = ne + 1, width = maxv + 1
    cdef int64_t* hist = <int64_t*>calloc(nb * width, sizeof(int64_t))
    cdef int rc = DS_ERR_NOMEM
    if hist != NULL:
        rc = _token_histogram(rows, n, c, kind, edges, ne, maxv, hist, NULL)
    if rc == DS_OK:
        rc = _edges_of_histogram(hist, nb, width, nt, out)
    free(hist)
    return rc


cdef int _token_histogram(const int64_t* rows, int64_t n, const Columns* c, int kind,
                          const double* edges, int64_t ne, int64_t maxv, int64_t* hist,
                          uint8_t* ids) noexcept nogil:
    """Count the token values of each first-dimension bucket into ``hist`` (``ne + 1`` rows of
    ``maxv + 1`` zeros); with ``ids`` (``ne + 1 <= 256``) also keep each row's bucket in
    ``ids[i]``, for the grouping that follows."""
    cdef int64_t width = maxv + 1
    cdef int64_t i, b, v, row
    cdef BucketTable t
    if _build_table(&t, edges, ne) < 0:
        return DS_ERR_NOMEM
    cdef int rc = DS_OK
    for i in range(n):
        row = _row(rows, i)
        v = c.num_tokens[row]
        if v < 0 or v > maxv:
            rc = DS_ERR_BOUNDS
            break
        b = _bucket1(&t, edges, ne, key_of(c, kind, row))
        if ids != NULL:
            ids[i] = <uint8_t>b
        hist[b * width + v] += 1
    free(t.table)
    return rc


cdef int _edges_of_histogram(const int64_t* hist, int64_t nb, int64_t width, int64_t nt,
                             double* out) noexcept nogil:
    """Per bucket ``b`` edge ``k`` = the smallest present value ``v`` with
    ``nt * W(<= v) >= k * W`` of its histogram ``hist[b * width : (b + 1) * width]``. (The
    token sum ``W`` comes from the histogram: summing per row would chain every row's update
    through one counter.)"""
    cdef int64_t b, v, k, cum, total
    for b in range(nb):
        total = 0
        for v in range(width):
            if hist[b * width + v]:
                if hist[b * width + v] > (INT64_MAX - total) // (v if v > 0 else 1):
                    return DS_ERR_OVERFLOW
                total += v * hist[b * width + v]
        if total > INT64_MAX // nt:
            return DS_ERR_OVERFLOW
        k = 1
        cum = 0
        for v in range(width):
            if hist[b * width + v] == 0:
                continue
            cum += v * hist[b * width + v]
            while k < nt and nt * cum >= k * total:
                out[b * (nt - 1) + k - 1] = <double>v
                k += 1
            if k >= nt:
                break
    return DS_OK


cdef int _group_2d(const int64_t* rows, int64_t n, const Columns* c, int kind,
                   const double* edges, int64_t ne, int64_t nt, int64_t maxv, double* tedges,
                   int64_t* out, int64_t* offsets) noexcept nogil:
    """Token edges (as :func:`_token_edges`) and the stable grouping by flat bucket (as
    :func:`_group`) in two passes over the rows instead of five: the first finds each row's
    first-dimension bucket once (kept in a byte) and the token histogram; the histogram gives
    the edges and every flat bucket's size; the second refines each row's bucket by its token
    sub-bucket and writes the row out. Needs ``(ne + 1) * nt <= 256``."""
    cdef int64_t nb = ne + 1, width = maxv + 1
    cdef int64_t s, b, v, nseg = nb * nt
    cdef uint8_t* ids = <uint8_t*>malloc(n if n > 0 else 1)
    cdef int64_t* hist = <int64_t*>calloc(nb * width, sizeof(int64_t))
    cdef uint8_t* flat = <uint8_t*>malloc(nb * width)  # the flat bucket of (bucket, token value)
    cdef int rc = DS_ERR_NOMEM
    if ids != NULL and hist != NULL and flat != NULL:
        rc = _token_histogram(rows, n, c, kind, edges, ne, maxv, hist, ids)
    if rc == DS_OK:
        rc = _edges_of_histogram(hist, nb, width, nt, tedges)
    if rc == DS_OK:
        for s in range(nseg + 1):
            offsets[s] = 0
        for b in range(nb):  # sub-bucket sizes: token value v lies in sub-bucket #edges < v
            for v in range(width):
                if hist[b * width + v]:  # the scatter looks up the pairs present only
                    s = b * nt + _lower_bound(tedges + b * (nt - 1), nt - 1, <double>v)
                    flat[b * width + v] = <uint8_t>s
                    offsets[s + 1] += hist[b * width + v]
                else:
                    flat[b * width + v] = 0
        for s in range(nseg):
            offsets[s + 1] += offsets[s]
        # offsets[s] is now the write cursor of bucket s; restored below
        _scatter(rows, n, ids, c, flat, width, out, offsets, nseg)
        s = nseg
        while s > 0:
            offsets[s] = offsets[s - 1]
            s -= 1
        offsets[0] = 0
    free(ids)
    free(hist)
    free(flat)
    return rc


ctypedef int (*token_edges_fn)(const int64_t*, int64_t, const Columns*, int, const double*,
                               int64_t, int64_t, int64_t, double*) noexcept nogil
cdef token_edges_fn token_edges_kernel = _token_edges
ctypedef int (*group_2d_fn)(const int64_t*, int64_t, const Columns*, int, const double*, int64_t,
                            int64_t, int64_t, double*, int64_t*, int64_t*) noexcept nogil
cdef group_2d_fn group_2d_kernel = _group_2d

MAX_TOKEN_HISTOGRAM = 1 << 24
"""The most histogram cells (buckets x token values) :func:`estimate_token_edges` allocates."""


def estimate_token_edges(const int64_t[::1] rows, int kind, const double[::1] duration,
                         const int64_t[::1] num_frames, const int64_t[::1] num_features,
                         const int64_t[::1] num_tokens, const double[::1] edges not None,
                         Py_ssize_t num_token_buckets, int64_t max_token):
    """The ``(len(edges) + 1, num_token_buckets - 1)`` token edges of 2D bucketing, each bucket's
    equal to ``estimate_edges`` over its own rows' tokens, computed in one pass without
    grouping. ``max_token`` bounds the tokens of ``rows`` (0 <= token <= max_token, else
    ValueError); ValueError too when the histogram would exceed ``MAX_TOKEN_HISTOGRAM`` cells
    (estimate bucket by bucket then). Reference: ``reference_plan.estimate_edges`` per bucket.
    """
    cdef int64_t ne = edges.shape[0], nt = num_token_buckets
    if nt < 2:
        raise ValueError(f"num_token_buckets={nt} must be >= 2")
    if max_token < 0:
        raise ValueError(f"max_token={max_token} must be >= 0")
    if (ne + 1) * (max_token + 1) > MAX_TOKEN_HISTOGRAM:
        raise ValueError(f"estimate_token_edges: {ne + 1} buckets x {max_token + 1} token values "
                         f"exceed {MAX_TOKEN_HISTOGRAM} histogram cells")
    ncol, column = _column_length("estimate_token_edges", kind, True, duration, num_frames,
                                  num_features, num_tokens)
    cdef Py_ssize_t i
    for i in range(1, ne):
        if not edges[i - 1] <= edges[i]:
            raise ValueError("edges must be non-decreasing")
    check_rows(rows, ncol, "estimate_token_edges", "rows", column)
    cdef int64_t n = ncol if rows is None else rows.shape[0]
    out = np.zeros((ne + 1, nt - 1), dtype=np.float64)
    cdef double[:, ::1] o = out
    cdef Columns c = _columns(duration, num_frames, num_features, num_tokens)
    cdef const double* ep = f64_ptr(edges)
    cdef const int64_t* rp = i64_ptr(rows)
    cdef int rc
    with nogil:
        rc = token_edges_kernel(rp, n, &c, kind, ep, ne, nt, max_token, &o[0, 0])
    if rc == DS_ERR_NOMEM:
        raise MemoryError("estimate_token_edges: out of memory")
    if rc == DS_ERR_BOUNDS:
        raise ValueError(f"estimate_token_edges: a token lies outside [0, {max_token}]")
    if rc == DS_ERR_OVERFLOW:
        raise ValueError("estimate_token_edges: a bucket's token sum overflows int64")
    return out


def group_by_bucket_2d(const int64_t[::1] rows, int kind, const double[::1] duration,
                       const int64_t[::1] num_frames, const int64_t[::1] num_features,
                       const int64_t[::1] num_tokens, const double[::1] edges not None,
                       Py_ssize_t num_token_buckets, int64_t max_token, out=None):
    """:func:`estimate_token_edges` then :func:`group_by_bucket` with those edges, in one call
    that finds each row's first-dimension bucket once (the same results, fewer passes). Needs
    ``(len(edges) + 1) * num_token_buckets <= 256`` and the histogram bound of
    :func:`estimate_token_edges` (else ValueError). ``out`` as for :func:`group_by_bucket`.

    :return: ``(grouped_rows, offsets, token_edges)``.
    """
    cdef int64_t ne = edges.shape[0], nt = num_token_buckets
    if nt < 2:
        raise ValueError(f"num_token_buckets={nt} must be >= 2")
    if (ne + 1) * nt > 256:
        raise ValueError(f"group_by_bucket_2d: {ne + 1} x {nt} buckets exceed 256")
    if max_token < 0:
        raise ValueError(f"max_token={max_token} must be >= 0")
    if (ne + 1) * (max_token + 1) > MAX_TOKEN_HISTOGRAM:
        raise ValueError(f"group_by_bucket_2d: {ne + 1} buckets x {max_token + 1} token values "
                         f"exceed {MAX_TOKEN_HISTOGRAM} histogram cells")
    ncol, column = _column_length("group_by_bucket_2d", kind, True, duration, num_frames,
                                  num_features, num_tokens)
    cdef Py_ssize_t i
    for i in range(1, ne):
        if not edges[i - 1] <= edges[i]:
            raise ValueError("edges must be non-decreasing")
    check_rows(rows, ncol, "group_by_bucket_2d", "rows", column)
    cdef int64_t n = ncol if rows is None else rows.shape[0]
    cdef int64_t nseg = (ne + 1) * nt
    token_edges = np.zeros((ne + 1, nt - 1), dtype=np.float64)
    grouped = _grouped_out("group_by_bucket_2d", out, n)
    offsets = np.empty(nseg + 1, dtype=np.int64)
    cdef double[:, ::1] te = token_edges
    cdef int64_t[::1] g = grouped
    cdef int64_t[::1] off = offsets
    cdef Columns c = _columns(duration, num_frames, num_features, num_tokens)
    cdef const double* ep = f64_ptr(edges)
    cdef const int64_t* rp = i64_ptr(rows)
    cdef int64_t* gp = &g[0] if n > 0 else NULL
    cdef int rc
    with nogil:
        rc = group_2d_kernel(rp, n, &c, kind, ep, ne, nt, max_token, &te[0, 0], gp, &off[0])
    if rc == DS_ERR_NOMEM:
        raise MemoryError("group_by_bucket_2d: out of memory")
    if rc == DS_ERR_BOUNDS:
        raise ValueError(f"group_by_bucket_2d: a token lies outside [0, {max_token}]")
    if rc == DS_ERR_OVERFLOW:
        raise ValueError("group_by_bucket_2d: a bucket's token sum overflows int64")
    return grouped, offsets, token_edges
