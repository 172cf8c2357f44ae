"""Best-fit-decreasing bin packing of rows into packs of bounded integer cost.

Specification (reference twin: ``tests/plan/test_packrows.py::reference_bfd``). Within each
segment, rows are taken in decreasing order of their cost ``units[row]`` (ties: their order in
the segment). A row whose cost exceeds ``capacity`` gets a pack of its own. Every other row goes
into the open pack with the *smallest* remaining room that still holds it (among packs with the
same room: the one that reached that room last); if none holds it, a new pack is opened. Packs
are numbered in the order they were opened, segment after segment.

The open packs are kept in one free list per remaining room ``0..capacity`` and a three-level
64-ary bitset of the non-empty lists, so finding the best fit is three word scans: a whole epoch
of 10M rows packs in well under a second. The costs are sorted by a counting sort (``O(n +
capacity)`` per segment), which is why ``capacity`` is bounded (:data:`MAX_CAPACITY`).
"""

import numpy as np

from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.stdlib cimport free, malloc, calloc
from libc.string cimport memset

from discoseq._core.types cimport check_rows

MAX_CAPACITY = 1 << 22
"""The largest pack capacity in cost units (the counting sort and the free lists hold one slot
per unit of room)."""

cdef extern from *:
    """
    #define DS_CTZ(x) __builtin_ctzll(x)
    """
    int DS_CTZ(uint64_t x) noexcept nogil


cdef struct Rooms:
    # bins with a given remaining room: head[r] -> bin, nxt[bin] -> bin (LIFO lists), and a
    # three-level bitset of the rooms whose list is not empty
    int64_t* head
    int64_t* nxt
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
    s.nxt[b] = s.head[r]
    s.head[r] = b


cdef inline int64_t _pop(Rooms* s, int64_t r) noexcept nogil:
    cdef int64_t b = s.head[r]
    s.head[r] = s.nxt[b]
    if s.head[r] < 0:
        _clear(s, r)
    return b


cdef void _bfd(const int64_t* seg_off, int64_t nseg, const int64_t* units,
               int64_t cap, int32_t* u, int64_t* order, int64_t* count, Rooms* s,
               int64_t* pack_of, int64_t* seg_pack_off) noexcept nogil:
    cdef int64_t seg, i, lo, hi, k, r, b, nbins = 0, base, top = cap + 1, total
    cdef int32_t x
    seg_pack_off[0] = 0
    for seg in range(nseg):
        lo = seg_off[seg]
        hi = seg_off[seg + 1]
        # the costs of the segment's rows, clamped to cap + 1 ("alone"), and a counting sort of
        # the positions by decreasing cost (stable)
        memset(count, 0, (top + 2) * sizeof(int64_t))
        for i in range(lo, hi):
            x = <int32_t>(units[i] if units[i] <= cap else top)
            u[i] = x
            count[top - x] += 1
        total = 0
        for k in range(top + 1):
            r = count[k]
            count[k] = total
            total += r
        for i in range(lo, hi):
            k = top - u[i]
            order[lo + count[k]] = i
            count[k] += 1
        memset(s.w0, 0, s.n0 * sizeof(uint64_t))
        memset(s.w1, 0, s.n1 * sizeof(uint64_t))
        memset(s.w2, 0, s.n2 * sizeof(uint64_t))
        for r in range(cap + 1):
            s.head[r] = -1
        base = nbins
        for k in range(lo, hi):
            i = order[k]
            x = u[i]
            if x > cap:  # alone
                pack_of[i] = nbins
                nbins += 1
                continue
            r = _next_room(s, x)
            if r < 0:
                b = nbins - base
                nbins += 1
                r = cap
            else:
                b = _pop(s, r)
            pack_of[i] = base + b
            _push(s, r - x, b)
        seg_pack_off[seg + 1] = nbins


def best_fit_decreasing(const int64_t[::1] seg_offsets not None, const int64_t[::1] units not None,
                        int64_t capacity):
    """Assign each position (grouped into segments by ``seg_offsets``) to a pack, by the rule of
    the module docstring. ``units[i]`` is position ``i``'s cost (``>= 0``), ``capacity`` a
    pack's room in the same units (``0 <= capacity <= MAX_CAPACITY``).

    :return: ``(pack_of, segment_pack_offsets)``: the pack of each position, and the packs of
        segment ``s`` as ``segment_pack_offsets[s]:[s + 1]``.
    """
    cdef int64_t nseg = seg_offsets.shape[0] - 1, n = units.shape[0], s, i
    if nseg < 0 or seg_offsets[0] != 0 or seg_offsets[nseg] != n:
        raise ValueError("seg_offsets must start at 0 and end at len(rows)")
    for s in range(nseg):
        if seg_offsets[s] > seg_offsets[s + 1]:
            raise ValueError("seg_offsets must be non-decreasing")
    if not 0 <= capacity <= MAX_CAPACITY:
        raise ValueError(f"capacity={capacity} must be in [0, {MAX_CAPACITY}]")
    for i in range(n):
        if units[i] < 0:
            raise ValueError(f"best_fit_decreasing: units[{i}]={units[i]} is negative")
    pack_of_arr = np.empty(n, dtype=np.int64)
    seg_pack_arr = np.zeros(nseg + 1, dtype=np.int64)
    cdef int64_t[::1] pack_of = pack_of_arr
    cdef int64_t[::1] seg_pack = seg_pack_arr
    cdef Rooms st
    st.n0 = (capacity + 1 + 63) >> 6
    st.n1 = (st.n0 + 63) >> 6
    st.n2 = (st.n1 + 63) >> 6
    cdef int64_t m = n if n > 0 else 1
    cdef int32_t* u = <int32_t*>malloc(m * sizeof(int32_t))
    cdef int64_t* order = <int64_t*>malloc(m * sizeof(int64_t))
    cdef int64_t* count = <int64_t*>malloc((capacity + 3) * sizeof(int64_t))
    st.head = <int64_t*>malloc((capacity + 1) * sizeof(int64_t))
    st.nxt = <int64_t*>malloc(m * sizeof(int64_t))
    st.w0 = <uint64_t*>calloc(st.n0, sizeof(uint64_t))
    st.w1 = <uint64_t*>calloc(st.n1, sizeof(uint64_t))
    st.w2 = <uint64_t*>calloc(st.n2, sizeof(uint64_t))
    cdef const int64_t* up = &units[0] if n > 0 else NULL
    cdef int64_t* pp = &pack_of[0] if n > 0 else NULL
    try:
        if (u == NULL or order == NULL or count == NULL or st.head == NULL or st.nxt == NULL
                or st.w0 == NULL or st.w1 == NULL or st.w2 == NULL):
            raise MemoryError("best_fit_decreasing: out of memory")
        with nogil:
            _bfd(&seg_offsets[0], nseg, up, capacity, u, order, count, &st, pp,
                 &seg_pack[0])
    finally:
        free(u)
        free(order)
        free(count)
        free(st.head)
        free(st.nxt)
        free(st.w0)
        free(st.w1)
        free(st.w2)
    return pack_of_arr, seg_pack_arr


def group_packs(const int64_t[::1] rows not None, const int64_t[::1] pack_of not None,
                const int64_t[::1] pack_rank not None, const double[::1] cost not None,
                const double[::1] duration not None):
    """The positions of ``rows`` grouped by pack, packs in the order ``pack_rank`` gives them
    (pack ``p`` becomes pack number ``pack_rank[p]``; a permutation), members of a pack in
    their order in ``rows`` (a stable counting sort); ``cost`` and ``duration`` (one per
    position) summed per pack, members in that order.

    :return: ``(rows_out, pack_offsets, pack_cost, pack_duration)``: pack ``k`` is
        ``rows_out[pack_offsets[k]:[k + 1]]``.
    """
    cdef int64_t n = rows.shape[0], npk = pack_rank.shape[0], i, p, total
    if pack_of.shape[0] != n or cost.shape[0] != n or duration.shape[0] != n:
        raise ValueError("pack_of, cost and duration need one value per row")
    check_rows(pack_of, npk, "group_packs", "pack_of", "pack_rank")
    seen_arr = np.zeros(npk, dtype=np.uint8)
    cdef unsigned char[::1] seen = seen_arr
    for p in range(npk):
        if not 0 <= pack_rank[p] < npk or seen[pack_rank[p]]:
            raise ValueError("group_packs: pack_rank must be a permutation of range(len(pack_rank))")
        seen[pack_rank[p]] = 1
    out_arr = np.empty(n, dtype=np.int64)
    off_arr = np.zeros(npk + 1, dtype=np.int64)
    pc_arr = np.zeros(npk, dtype=np.float64)
    pd_arr = np.zeros(npk, dtype=np.float64)
    cdef int64_t[::1] out = out_arr
    cdef int64_t[::1] off = off_arr
    cdef double[::1] pc = pc_arr
    cdef double[::1] pd = pd_arr
    with nogil:
        for i in range(n):
            off[pack_rank[pack_of[i]] + 1] += 1
        total = 0
        for p in range(npk):
            total += off[p + 1]
            off[p + 1] = total
        for i in range(n):
            p = pack_rank[pack_of[i]]
            out[off[p]] = rows[i]
            off[p] += 1
            pc[p] += cost[i]  # members in their order: the order of the additions is fixed
            pd[p] += duration[i]
        # off[p] now ends pack p: shift back
        for p in range(npk, 0, -1):
            off[p] = off[p - 1]
        off[0] = 0
    return out_arr, off_arr, pc_arr, pd_arr
