"""Best-fit-decreasing bin packing of rows into packs of bounded integer cost
(:func:`best_fit_decreasing`, :func:`group_packs`), and the packs into batches
(:func:`pack_batches`).

Specification (reference twin: ``tests/plan/test_packrows.py::reference_bfd``). Within each
segment, rows are taken in decreasing order of their cost ``units[row]`` (ties: their order in
the segment). A row whose cost exceeds ``capacity`` gets a pack of its own. Every other row goes
into the open pack with the *smallest* remaining room that still holds it (among packs with the
same room: the one that reached that room last); if none holds it, a new pack is opened. Packs
are numbered in the order they were opened, segment after segment.

The open packs are kept in one free list per remaining room ``0..capacity`` and a three-level
64-ary bitset of the non-empty lists, so finding the best fit is three word scans. The rows are
ordered once by a sort of 64-bit keys (cost, then position) and the packing loop prefetches the
scattered reads and writes of the rows a few places ahead: a whole epoch of 10M rows packs in
about a second. ``capacity`` is bounded (:data:`MAX_CAPACITY`) because the lists and the bitset
hold one slot per unit of room.
"""

import numpy as np

from libc.math cimport floor
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memset

from discoseq._core.types cimport DS_PREFETCH, DS_PREFETCH_W, check_rows, with_one_more

DEF AHEAD = 16  # positions the packing loop prefetches ahead
DEF KEY_SHIFT = 36  # a sort key: (capacity + 1 - cost) << KEY_SHIFT | position in the segment

MAX_CAPACITY = 1 << 22
"""The largest pack capacity in cost units (the free lists hold one slot per unit of room)."""

cdef extern from *:
    """
    #define DS_CTZ(x) __builtin_ctzll(x)
    #define DS_KEY_MASK ((((uint64_t)1) << 36) - 1)
    """
    const uint64_t DS_KEY_MASK
    int DS_CTZ(uint64_t x) noexcept nogil


cdef struct Bin:
    int64_t nxt    # the next bin with the same room (a LIFO list per room)
    int64_t size   # cuts in the bin
    double cost    # their costs and durations, summed in packing order
    double dur


cdef struct Rooms:
    # bins with a given remaining room: head[r] -> bin, bins[b].nxt -> bin (LIFO lists), and a
    # three-level bitset of the rooms whose list is not empty
    int64_t* head
    Bin* bins
    int64_t nbins, cap_bins
    uint64_t* w0
    uint64_t* w1
    uint64_t* w2
    int64_t n0, n1, n2


cdef inline void _set(Rooms* s, int64_t r) noexcept nogil:
    s.w0[r >> 6] |= (<uint64_t>1) << (r & 63)
    s.w1[r >> 12] |= (<uint64_t>1) << ((r >> 6) & 63)
    s.w2[r >> 18] |= (<uint64_t>1) << ((r >> 12) & 63)


cdef inline void _clear(Rooms* s, int64_t r) noexcept nogil:
    s.w0[r >> 6] &= ~((<uint64_t>1) << (r & 63))
    if s.w0[r >> 6] == 0:
        s.w1[r >> 12] &= ~((<uint64_t>1) << ((r >> 6) & 63))
        if s.w1[r >> 12] == 0:
            s.w2[r >> 18] &= ~((<uint64_t>1) << ((r >> 12) & 63))


cdef inline int64_t _next_room(const Rooms* s, int64_t x) noexcept nogil:
    """The smallest room ``>= x`` with an open bin, or -1."""
    cdef int64_t i0 = x >> 6, i1, i2
    cdef uint64_t w
    if i0 >= s.n0:
        return -1
    w = s.w0[i0] & (~(<uint64_t>0) << (x & 63))
    if w:
        return (i0 << 6) + DS_CTZ(w)
    i0 += 1  # the next level-0 words: look them up in level 1
    if i0 >= s.n0:
        return -1
    i1 = i0 >> 6
    w = s.w1[i1] & (~(<uint64_t>0) << (i0 & 63))
    if not w:
        i1 += 1  # the next level-1 words: look them up in level 2
        if i1 >= s.n1:
            return -1
        i2 = i1 >> 6
        w = s.w2[i2] & (~(<uint64_t>0) << (i1 & 63))
        while not w:
            i2 += 1
            if i2 >= s.n2:
                return -1
            w = s.w2[i2]
        i1 = (i2 << 6) + DS_CTZ(w)
        w = s.w1[i1]
    i0 = (i1 << 6) + DS_CTZ(w)
    return (i0 << 6) + DS_CTZ(s.w0[i0])


cdef inline void _push(Rooms* s, int64_t r, int64_t b) noexcept nogil:
    if s.head[r] < 0:
        _set(s, r)
    s.bins[b].nxt = s.head[r]
    s.head[r] = b


cdef inline int64_t _pop(Rooms* s, int64_t r) noexcept nogil:
    cdef int64_t b = s.head[r]
    s.head[r] = s.bins[b].nxt
    if s.head[r] < 0:
        _clear(s, r)
    return b


cdef inline int64_t _new_bin(Rooms* s) noexcept nogil:
    """A new, empty bin (its number), or -1 out of memory."""
    cdef int64_t newcap
    cdef void* p
    if s.nbins == s.cap_bins:
        newcap = s.cap_bins * 2 + 1024
        p = realloc(s.bins, newcap * sizeof(Bin))
        if p == NULL:
            return -1
        s.bins = <Bin*>p
        s.cap_bins = newcap
    s.bins[s.nbins].nxt = -1
    s.bins[s.nbins].size = 0
    s.bins[s.nbins].cost = 0.0
    s.bins[s.nbins].dur = 0.0
    s.nbins += 1
    return s.nbins - 1


cdef inline bint _holds(const int64_t* pack_of, const int64_t* id_first, const int64_t* pos_next,
                        int64_t ident, int64_t b) noexcept nogil:
    """Whether bin ``b`` holds a position of id ``ident`` (the id's placed positions are a list)."""
    cdef int64_t p = id_first[ident]
    while p >= 0:
        if pack_of[p] == b:
            return True
        p = pos_next[p]
    return False


cdef int _bfd(const int64_t* seg_off, int64_t nseg, const uint64_t* keys, const double* cost,
              const double* dur, int64_t cap, Rooms* s, int64_t* pack_of,
              int64_t* seg_pack_off, const int64_t* ident, int64_t* id_first,
              int64_t* pos_next) noexcept nogil:
    """Returns 0, or -1 out of memory. ``keys`` holds each segment's positions sorted by
    decreasing cost (see :func:`best_fit_decreasing`). The loop prefetches what it reads and
    writes of the position ``AHEAD`` places on (scattered accesses, their latency overlapped).
    With ``ident`` (an id per position), a bin that holds the id is passed over: the next bin
    in best-fit order is taken."""
    cdef int64_t seg, i, lo, hi, k, r, b, prev, top = cap + 1
    cdef int64_t x
    seg_pack_off[0] = 0
    for seg in range(nseg):
        lo = seg_off[seg]
        hi = seg_off[seg + 1]
        memset(s.w0, 0, s.n0 * sizeof(uint64_t))
        memset(s.w1, 0, s.n1 * sizeof(uint64_t))
        memset(s.w2, 0, s.n2 * sizeof(uint64_t))
        for r in range(cap + 1):
            s.head[r] = -1
        for k in range(lo, hi):
            if k + AHEAD < hi:
                i = lo + <int64_t>(keys[k + AHEAD] & DS_KEY_MASK)
                DS_PREFETCH(&cost[i])
                DS_PREFETCH(&dur[i])
                DS_PREFETCH_W(&pack_of[i])
            i = lo + <int64_t>(keys[k] & DS_KEY_MASK)
            x = top - <int64_t>(keys[k] >> KEY_SHIFT)
            if x > cap:  # alone
                b = _new_bin(s)
                if b < 0:
                    return -1
            else:
                r = _next_room(s, x)
                b = -1
                prev = -1
                while r >= 0:  # best fit: smallest room first, then the list's order
                    b = s.head[r]
                    prev = -1
                    while b >= 0 and ident != NULL and _holds(pack_of, id_first, pos_next,
                                                             ident[i], b):
                        prev = b
                        b = s.bins[b].nxt
                    if b >= 0:
                        break
                    r = _next_room(s, r + 1)
                if b < 0:
                    b = _new_bin(s)
                    if b < 0:
                        return -1
                    r = cap
                elif prev < 0:
                    _pop(s, r)
                else:  # taken from inside the list (the bins before it hold the id)
                    s.bins[prev].nxt = s.bins[b].nxt
                _push(s, r - x, b)
            if ident != NULL:
                pos_next[i] = id_first[ident[i]]
                id_first[ident[i]] = i
            pack_of[i] = b
            s.bins[b].size += 1
            s.bins[b].cost += cost[i]
            s.bins[b].dur += dur[i]
        seg_pack_off[seg + 1] = s.nbins
    return 0


def cost_units(const double[::1] cost not None, double length, bint integer,
               double units_per_second=10000.0, const int64_t[::1] rows=None):
    """Integer costs for :func:`best_fit_decreasing` and the capacity in the same units, such
    that packs within the capacity hold at most ``length`` of real cost: ``integer`` costs
    (tokens; exact below 2**53) in units of ``f = ceil(length / MAX_CAPACITY)`` rounded up,
    capacity ``length // f``; other costs (seconds) at ``scale = min(units_per_second,
    MAX_CAPACITY / length)`` as ``floor(c * scale) + 1``, capacity ``floor(length * scale)``. A
    cost within ``length`` is at most the capacity (it may fill a pack alone), a cost above it
    is ``capacity + 1``. With ``rows``, the costs are ``cost[rows]`` (gathered, and returned).

    :return: ``(units, capacity)``, or with ``rows`` ``(units, capacity, cost[rows])``.
    """
    if not (length > 0 and length < 1e300):
        raise ValueError(f"length={length} must be a positive finite number")
    cdef int64_t n = cost.shape[0], i, cap, f = 1, L = 0, c
    cdef double scale = 0.0, x
    if integer:
        L = <int64_t>length
        f = (L + MAX_CAPACITY - 1) // MAX_CAPACITY
        if f < 1:
            f = 1
        cap = L // f
    else:
        scale = units_per_second if units_per_second < MAX_CAPACITY / length else MAX_CAPACITY / length
        cap = <int64_t>floor(length * scale)
    cdef const int64_t* rp = NULL
    if rows is not None:
        check_rows(rows, n, "cost_units", "rows", "cost")
        n = rows.shape[0]
        if n > 0:
            rp = &rows[0]
    units_arr = np.empty(n, dtype=np.int64)
    gathered_arr = np.empty(n if rows is not None else 0, dtype=np.float64)
    cdef int64_t[::1] units = units_arr
    cdef double[::1] gathered = gathered_arr
    with nogil:
        for i in range(n):
            if rp != NULL:
                if i + AHEAD < n:
                    DS_PREFETCH(&cost[rp[i + AHEAD]])
                x = cost[rp[i]]
                gathered[i] = x
            else:
                x = cost[i]
            if x > length:
                units[i] = cap + 1
                continue
            if integer:
                c = <int64_t>x
                c = (c + f - 1) // f
            else:
                c = <int64_t>floor(x * scale) + 1
            units[i] = c if c < cap else cap
    if rows is not None:
        return units_arr, int(cap), gathered_arr
    return units_arr, int(cap)


def best_fit_decreasing(const int64_t[::1] seg_offsets not None, const int64_t[::1] units not None,
                        int64_t capacity, const double[::1] cost=None,
                        const double[::1] duration=None, const int64_t[::1] identity=None,
                        int64_t num_ids=0):
    """Assign each position (grouped into segments by ``seg_offsets``) to a pack, by the rule of
    the module docstring. ``units[i]`` is position ``i``'s cost (``>= 0``), ``capacity`` a
    pack's room in the same units (``0 <= capacity <= MAX_CAPACITY``); ``cost`` and
    ``duration`` (one per position, default zeros) are summed per pack. ``identity`` (one id in
    ``[0, num_ids)`` per position), when given, keeps two positions of one id out of one pack
    (a mixture's copies of a cut): a pack that holds the id is passed over for the next one in
    best-fit order (smallest room, then the room's list order).

    :return: ``(pack_of, segment_pack_offsets, pack_size, pack_cost, pack_duration)``: the pack
        of each position, the packs of segment ``s`` as ``segment_pack_offsets[s]:[s + 1]``,
        and per pack its cuts and the sums of their ``cost`` and ``duration``.
    """
    cdef int64_t nseg = seg_offsets.shape[0] - 1, n = units.shape[0], s, i
    if nseg < 0 or seg_offsets[0] != 0 or seg_offsets[nseg] != n:
        raise ValueError("seg_offsets must start at 0 and end at len(units)")
    for s in range(nseg):
        if seg_offsets[s] > seg_offsets[s + 1]:
            raise ValueError("seg_offsets must be non-decreasing")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise ValueError(f"capacity={capacity} must be in [0, {MAX_CAPACITY}]")
    for i in range(n):
        if units[i] < 0:
            raise ValueError(f"best_fit_decreasing: units[{i}]={units[i]} is negative")
    zeros = np.zeros(n, dtype=np.float64)
    if cost is None:
        cost = zeros
    if duration is None:
        duration = zeros
    if cost.shape[0] != n or duration.shape[0] != n:
        raise ValueError("cost and duration need one value per position")
    pack_of_arr = np.empty(n, dtype=np.int64)
    seg_pack_arr = np.zeros(nseg + 1, dtype=np.int64)
    cdef int64_t[::1] pack_of = pack_of_arr
    cdef int64_t[::1] seg_pack = seg_pack_arr
    cdef Rooms st
    st.n0 = (capacity + 1 + 63) >> 6
    st.n1 = (st.n0 + 63) >> 6
    st.n2 = (st.n1 + 63) >> 6
    st.nbins = 0
    st.cap_bins = 0
    st.bins = NULL
    if n >= (<int64_t>1 << KEY_SHIFT):
        raise ValueError(f"best_fit_decreasing: {n} positions are more than 2**{KEY_SHIFT}")
    # sort keys: decreasing cost, then position (unique keys: the order is the stable one)
    keys_arr = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] keys = keys_arr
    cdef int64_t lo, hi, top = capacity + 1, x
    for s in range(nseg):
        lo, hi = seg_offsets[s], seg_offsets[s + 1]
        with nogil:
            for i in range(lo, hi):
                x = units[i] if units[i] <= capacity else top
                keys[i] = (<uint64_t>(top - x) << KEY_SHIFT) | <uint64_t>(i - lo)
        keys_arr[lo:hi].sort()
    cdef const int64_t* ip = NULL
    cdef int64_t* id_first = NULL
    cdef int64_t* pos_next = NULL
    if identity is not None:
        if identity.shape[0] != n:
            raise ValueError("identity needs one id per position")
        check_rows(identity, num_ids, "best_fit_decreasing", "identity", "the ids")
        if n > 0:
            ip = &identity[0]
    st.head = <int64_t*>malloc((capacity + 1) * sizeof(int64_t))
    st.w0 = <uint64_t*>calloc(st.n0, sizeof(uint64_t))
    st.w1 = <uint64_t*>calloc(st.n1, sizeof(uint64_t))
    st.w2 = <uint64_t*>calloc(st.n2, sizeof(uint64_t))
    cdef const double* cp = &cost[0] if n > 0 else NULL
    cdef const double* dp = &duration[0] if n > 0 else NULL
    cdef const uint64_t* kp = &keys[0] if n > 0 else NULL
    cdef int64_t* pp = &pack_of[0] if n > 0 else NULL
    cdef int rc = -1
    cdef int64_t b
    cdef int64_t[::1] size_v
    cdef double[::1] cost_v, dur_v
    try:
        if st.head == NULL or st.w0 == NULL or st.w1 == NULL or st.w2 == NULL:
            raise MemoryError("best_fit_decreasing: out of memory")
        if identity is not None:
            id_first = <int64_t*>malloc((num_ids if num_ids > 0 else 1) * sizeof(int64_t))
            pos_next = <int64_t*>malloc((n if n > 0 else 1) * sizeof(int64_t))
            if id_first == NULL or pos_next == NULL:
                raise MemoryError("best_fit_decreasing: out of memory")
            for i in range(num_ids):
                id_first[i] = -1
        with nogil:
            rc = _bfd(&seg_offsets[0], nseg, kp, cp, dp, capacity, &st, pp, &seg_pack[0], ip,
                      id_first, pos_next)
        if rc < 0:
            raise MemoryError("best_fit_decreasing: out of memory")
        size_arr = np.empty(st.nbins, dtype=np.int64)
        cost_arr = np.empty(st.nbins, dtype=np.float64)
        dur_arr = np.empty(st.nbins, dtype=np.float64)
        size_v = size_arr
        cost_v = cost_arr
        dur_v = dur_arr
        for b in range(st.nbins):
            size_v[b] = st.bins[b].size
            cost_v[b] = st.bins[b].cost
            dur_v[b] = st.bins[b].dur
    finally:
        free(id_first)
        free(pos_next)
        free(st.head)
        free(st.bins)
        free(st.w0)
        free(st.w1)
        free(st.w2)
    return pack_of_arr, seg_pack_arr, size_arr, cost_arr, dur_arr


def group_packs(const int64_t[::1] rows not None, const int64_t[::1] pack_of not None,
                const int64_t[::1] order not None, const int64_t[::1] pack_size not None,
                const double[::1] pack_cost not None, const double[::1] pack_duration not None):
    """The positions of ``rows`` grouped by pack, pack ``order[k]`` as the ``k``-th (``order``
    a permutation of the packs), members of a pack in their order in ``rows`` (a stable
    counting sort). ``pack_size``, ``pack_cost``, ``pack_duration``: per pack (as
    :func:`best_fit_decreasing` numbers them), put in the new order.

    :return: ``(rows_out, pack_offsets, cost, duration)``: pack ``k`` is
        ``rows_out[pack_offsets[k]:[k + 1]]``, its cost and duration ``cost[k]``,
        ``duration[k]``.
    """
    cdef int64_t n = rows.shape[0], npk = order.shape[0], i, p, k, total
    if pack_of.shape[0] != n:
        raise ValueError("pack_of needs one pack per row")
    if pack_size.shape[0] != npk or pack_cost.shape[0] != npk or pack_duration.shape[0] != npk:
        raise ValueError("pack_size, pack_cost and pack_duration need one value per pack")
    check_rows(pack_of, npk, "group_packs", "pack_of", "the packs")
    total = 0
    for p in range(npk):
        if pack_size[p] < 0:
            raise ValueError(f"group_packs: pack_size[{p}]={pack_size[p]} is negative")
        total += pack_size[p]
    if total != n:
        raise ValueError(f"group_packs: the pack sizes add up to {total}, not len(rows)={n}")
    out_arr = np.empty(n, dtype=np.int64)
    off_arr = np.zeros(npk + 1, dtype=np.int64)
    cost_arr = np.empty(npk, dtype=np.float64)
    dur_arr = np.empty(npk, dtype=np.float64)
    cdef int64_t[::1] out = out_arr
    cdef int64_t[::1] off = off_arr
    cdef double[::1] oc = cost_arr
    cdef double[::1] od = dur_arr
    cdef int64_t* nxt = <int64_t*>malloc((npk if npk > 0 else 1) * sizeof(int64_t))
    cdef bint bad = False
    if nxt == NULL:
        raise MemoryError("group_packs: out of memory")
    try:
        with nogil:
            for p in range(npk):
                nxt[p] = -1
            for k in range(npk):  # where each pack's first member goes
                if k + AHEAD < npk and 0 <= order[k + AHEAD] < npk:
                    p = order[k + AHEAD]
                    DS_PREFETCH_W(&nxt[p])
                    DS_PREFETCH(&pack_size[p])
                    DS_PREFETCH(&pack_cost[p])
                    DS_PREFETCH(&pack_duration[p])
                p = order[k]
                if not 0 <= p < npk or nxt[p] >= 0:  # not a permutation
                    bad = True
                    break
                nxt[p] = off[k]
                off[k + 1] = off[k] + pack_size[p]
                oc[k] = pack_cost[p]
                od[k] = pack_duration[p]
            if not bad:
                for i in range(n):
                    if i + AHEAD < n:
                        DS_PREFETCH_W(&nxt[pack_of[i + AHEAD]])
                    p = pack_of[i]
                    out[nxt[p]] = rows[i]
                    nxt[p] += 1
    finally:
        free(nxt)
    if bad:
        raise ValueError("group_packs: order must be a permutation of range(len(order))")
    return out_arr, off_arr, cost_arr, dur_arr


def pack_batches(const int64_t[::1] seg_packs not None, const double[::1] pack_cost not None,
                 const double[::1] cap_duration not None, const int64_t[::1] cap_cuts not None,
                 bint sum_mode, const int64_t[::1] pack_tokens=None, max_tokens=None,
                 const int64_t[::1] pack_offsets=None, const int64_t[::1] member_ids=None,
                 int64_t num_ids=0):
    """Packs (one segment after another, ``seg_packs``) into batches, greedily in order, by the
    rule of :func:`discoseq._core.packing.pack` with each pack as one row: before a pack joins
    the open batch, the batch with it is checked against the segment's duration cap (packs x
    the largest ``pack_cost``, or the sum with ``sum_mode``), its cut cap (``cap_cuts``: packs)
    and ``max_tokens`` (``pack_tokens`` likewise); if one would be exceeded, the batch is closed
    first. A pack that alone exceeds a cap is a batch of its own. With ``member_ids`` (an id in
    ``[0, num_ids)`` per member, pack ``p``'s members ``pack_offsets[p]:[p + 1]``), a pack
    holding an id already in the open batch closes it too: no batch holds an id twice.

    :return: ``(batch_pack_offsets, batch_segment int32, batch_cost, batch_duration,
        segment_batch_offsets)`` (the duration: the sum of ``pack_cost``).
    """
    cdef int64_t nseg = seg_packs.shape[0] - 1, npk = pack_cost.shape[0], s, p, j, nb = 0
    cdef int64_t mt = (1 << 62) if max_tokens is None else int(max_tokens)
    if nseg < 0 or seg_packs[0] != 0 or seg_packs[nseg] != npk:
        raise ValueError("seg_packs must start at 0 and end at len(pack_cost)")
    if cap_duration.shape[0] != nseg or cap_cuts.shape[0] != nseg:
        raise ValueError("need one duration and one cut cap per segment")
    for s in range(nseg):
        if seg_packs[s] > seg_packs[s + 1]:
            raise ValueError("seg_packs must be non-decreasing")
        if cap_cuts[s] < 1:
            raise ValueError(f"cap_cuts[{s}]={cap_cuts[s]} must be >= 1")
    if max_tokens is not None and (pack_tokens is None or pack_tokens.shape[0] != npk):
        raise ValueError("max_tokens needs one token cost per pack")
    cdef bint use_ids = member_ids is not None
    cdef bint use_tok = max_tokens is not None
    if use_ids:
        if pack_offsets is None or pack_offsets.shape[0] != npk + 1 or pack_offsets[0] != 0:
            raise ValueError("member_ids need pack_offsets (len(pack_cost) + 1, from 0)")
        if pack_offsets[npk] != member_ids.shape[0]:
            raise ValueError("pack_offsets must end at len(member_ids)")
        for p in range(npk):
            if pack_offsets[p] > pack_offsets[p + 1]:
                raise ValueError("pack_offsets must be non-decreasing")
        check_rows(member_ids, num_ids, "pack_batches", "member_ids", "the ids")
    ends_arr = np.empty(npk + 1, dtype=np.int64)
    seg_arr = np.empty(npk, dtype=np.int32)
    cost_arr = np.empty(npk, dtype=np.float64)
    dur_arr = np.empty(npk, dtype=np.float64)
    sb_arr = np.zeros(nseg + 1, dtype=np.int64)
    cdef int64_t[::1] ends = ends_arr
    cdef int32_t[::1] bseg = seg_arr
    cdef double[::1] bcost = cost_arr
    cdef double[::1] bdur = dur_arr
    cdef int64_t[::1] sb = sb_arr
    cdef int64_t* last = NULL
    if use_ids:
        last = <int64_t*>malloc((num_ids if num_ids > 0 else 1) * sizeof(int64_t))
        if last == NULL:
            raise MemoryError("pack_batches: out of memory")
        for j in range(num_ids):
            last[j] = -1
    cdef int64_t n, t, st, mtk, capc
    cdef double c, m, sm, capd, nd
    cdef int64_t nt
    cdef bint dup
    ends[0] = 0
    try:
        with nogil:
            for s in range(nseg):
                capd = cap_duration[s]
                capc = cap_cuts[s]
                n = 0
                m = 0.0
                sm = 0.0
                mtk = 0
                st = 0
                for p in range(seg_packs[s], seg_packs[s + 1]):
                    c = pack_cost[p]
                    t = pack_tokens[p] if use_tok else 0
                    if c > capd or t > mt:  # alone above a cap: a batch of its own
                        if n > 0:
                            ends[nb + 1] = p
                            bseg[nb] = <int32_t>s
                            bcost[nb] = sm if sum_mode else n * m
                            bdur[nb] = sm
                            nb += 1
                        ends[nb + 1] = p + 1
                        bseg[nb] = <int32_t>s
                        bcost[nb] = c
                        bdur[nb] = c
                        nb += 1
                        n = 0
                        m = 0.0
                        sm = 0.0
                        mtk = 0
                        st = 0
                        if use_ids:
                            for j in range(pack_offsets[p], pack_offsets[p + 1]):
                                last[member_ids[j]] = nb - 1
                        continue
                    if n > 0:
                        nd = with_one_more(n, m, sm, c, sum_mode)
                        nt = with_one_more(n, mtk, st, t, sum_mode)
                        dup = False
                        if use_ids:
                            for j in range(pack_offsets[p], pack_offsets[p + 1]):
                                if last[member_ids[j]] == nb:
                                    dup = True
                                    break
                        if n + 1 > capc or nd > capd or nt > mt or dup:
                            ends[nb + 1] = p
                            bseg[nb] = <int32_t>s
                            bcost[nb] = sm if sum_mode else n * m
                            bdur[nb] = sm
                            nb += 1
                            n = 0
                            m = 0.0
                            sm = 0.0
                            mtk = 0
                            st = 0
                    if use_ids:  # the open batch is batch nb
                        for j in range(pack_offsets[p], pack_offsets[p + 1]):
                            last[member_ids[j]] = nb
                    n += 1
                    if c > m:
                        m = c
                    sm += c
                    if t > mtk:
                        mtk = t
                    st += t
                if n > 0:
                    ends[nb + 1] = seg_packs[s + 1]
                    bseg[nb] = <int32_t>s
                    bcost[nb] = sm if sum_mode else n * m
                    bdur[nb] = sm
                    nb += 1
                sb[s + 1] = nb
    finally:
        free(last)
    return ends_arr[: nb + 1].copy(), seg_arr[:nb].copy(), cost_arr[:nb].copy(), \
        dur_arr[:nb].copy(), sb_arr
