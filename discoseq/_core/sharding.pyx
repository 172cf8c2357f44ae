"""Batch order, tail handling and the final CSR layout.

Specification (reference twin: ``tests/reference_plan.py::order_batches``). Batches come out of
packing grouped by segment (bucket), in plan order. With ``W`` ranks:

1. Each segment contributes ``n_b // W`` *full groups* of ``W`` consecutive batches (one bucket
   per group: the ranks of one step see similar lengths, Lhotse's ``sync_buckets``).
2. The ``n_b % W`` leftover batches of every segment are laid out in segment order (so neighbours
   have similar lengths), rotated cyclically by ``bounded(L)`` from the ``PURPOSE_TAIL`` stream when
   shuffling (so it is not always the longest buckets that end up in the last, partial group), and
   cut into *mixed groups* of ``W``. Every bucket leaves fewer than ``W`` leftovers, so a mixed
   group holds batches of a few neighbouring buckets (similar lengths), except the one group that
   wraps around the rotation point. Only ``sum(n_b % W)`` batches (fewer than ``W`` per bucket)
   end up in mixed groups; every other step is bucket-pure.
3. The final ``p = L % W`` leftovers form a partial group: ``drop_last=True`` drops it (those cuts
   are not in the plan; counted), otherwise it is padded to ``W`` by repeating its own batches
   cyclically (``W - p < W`` repeats; counted and listed).
4. When shuffling, the order of the groups is shuffled with our Fisher–Yates on the
   ``PURPOSE_ORDER`` stream, except the padded group, which stays the last step: repeats come
   only at the tail of the epoch, as with PyTorch's ``DistributedSampler``, so every step before
   the last holds distinct cuts. Global batch ``s * W + r`` is step ``s`` of rank ``r``.
"""

import numpy as np

from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy

from discoseq._core.rng cimport ds_bounded, shuffle_i64


def order_batches(const int64_t[::1] seg_batch_offsets not None, int64_t world_size,
                  uint64_t tail_key, uint64_t order_key, bint shuffle, bint drop_last):
    """The global batch order.

    :return: ``(order, padding_positions, dropped)``: ``order`` holds ``G * W`` batch ids
        (repeats for padding), ``padding_positions`` the positions in ``order`` that are repeats,
        ``dropped`` the batch ids dropped by ``drop_last``.
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    cdef int64_t nseg = seg_batch_offsets.shape[0] - 1
    cdef int64_t W = world_size, s, i, j, g, nb, full, start
    if nseg < 0:
        raise ValueError("seg_batch_offsets must hold at least one value")
    cdef int64_t total = seg_batch_offsets[nseg] - seg_batch_offsets[0]
    cdef int64_t nfull = 0, L = 0
    for s in range(nseg):
        nb = seg_batch_offsets[s + 1] - seg_batch_offsets[s]
        if nb < 0:
            raise ValueError("seg_batch_offsets must be non-decreasing")
        nfull += nb // W
        L += nb % W
    cdef int64_t p = L % W
    cdef int64_t nmixed = L // W
    cdef int64_t ngroups = nfull + nmixed + (1 if (p > 0 and not drop_last) else 0)
    groups_arr = np.empty(ngroups * W, dtype=np.int64)
    left_arr = np.empty(L, dtype=np.int64)
    cdef int64_t[::1] groups = groups_arr
    cdef int64_t[::1] left = left_arr
    cdef uint64_t state = tail_key
    cdef int64_t rot = 0
    with nogil:
        g = 0
        j = 0
        for s in range(nseg):
            start = seg_batch_offsets[s]
            nb = seg_batch_offsets[s + 1] - start
            full = nb // W
            for i in range(full * W):
                groups[g] = start + i
                g += 1
            for i in range(full * W, nb):
                left[j] = start + i
                j += 1
        if shuffle and L > 0:
            rot = <int64_t>ds_bounded(&state, <uint64_t>L)
        for i in range(nmixed * W):
            groups[g] = left[(rot + i) % L]
            g += 1
    dropped_arr = np.empty(p if drop_last else 0, dtype=np.int64)
    pad_arr = np.empty(0 if (drop_last or p == 0) else W - p, dtype=np.int64)
    cdef int64_t[::1] dropped = dropped_arr
    if p > 0:
        if drop_last:
            for i in range(p):
                dropped[i] = left[(rot + nmixed * W + i) % L]
        else:
            for i in range(W):
                groups[g + i] = left[(rot + nmixed * W + i % p) % L]
    if pad_arr.shape[0] > 0:  # the padded group is always the last step
        pad_arr[:] = np.arange((ngroups - 1) * W + p, ngroups * W, dtype=np.int64)
    cdef int64_t nshuffled = ngroups - (1 if pad_arr.shape[0] > 0 else 0)
    if not shuffle or nshuffled <= 1:
        return groups_arr, pad_arr, dropped_arr
    perm_arr = np.arange(ngroups, dtype=np.int64)
    cdef int64_t[::1] perm = perm_arr
    with nogil:
        shuffle_i64(&perm[0], nshuffled, order_key)
    order_arr = np.empty(ngroups * W, dtype=np.int64)
    cdef int64_t[::1] order = order_arr
    with nogil:
        for g in range(ngroups):
            memcpy(&order[g * W], &groups[perm[g] * W], W * sizeof(int64_t))
    return order_arr, pad_arr, dropped_arr


def gather_batches(const int64_t[::1] rows not None, const int64_t[::1] batch_offsets not None,
                   const int64_t[::1] order not None, alloc=None):
    """CSR of the batches ``order[0], order[1], ...`` taken from ``(batch_offsets, rows)``.
    ``batch_offsets`` must be non-decreasing within ``[0, len(rows)]`` and every ``order[i]`` a
    batch id (else ValueError). ``alloc(n)``, when given, makes the int64 array of the ``n``
    rows out (e.g. from memory kept between plans); else a new one.

    :return: ``(rows_out, offsets_out)``.
    """
    cdef int64_t nb = batch_offsets.shape[0] - 1, n = order.shape[0], i, b, total = 0
    if nb < 0:
        raise ValueError("batch_offsets must hold at least one value")
    if not 0 <= batch_offsets[0] <= batch_offsets[nb] <= rows.shape[0]:
        raise ValueError(f"batch_offsets must lie within [0, len(rows)={rows.shape[0]}], found "
                         f"{batch_offsets[0]} .. {batch_offsets[nb]}")
    for i in range(nb):
        if batch_offsets[i] > batch_offsets[i + 1]:
            raise ValueError(f"batch_offsets must be non-decreasing, found batch_offsets[{i}]="
                             f"{batch_offsets[i]} > batch_offsets[{i + 1}]={batch_offsets[i + 1]}")
    offsets_arr = np.empty(n + 1, dtype=np.int64)
    cdef int64_t[::1] off = offsets_arr
    off[0] = 0
    for i in range(n):
        b = order[i]
        if b < 0 or b >= nb:
            raise ValueError(f"order[{i}]={b} is not a batch id in [0, {nb})")
        total += batch_offsets[b + 1] - batch_offsets[b]
        off[i + 1] = total
    out_arr = np.empty(total, dtype=np.int64) if alloc is None else alloc(total)
    if alloc is not None and (not isinstance(out_arr, np.ndarray) or out_arr.dtype != np.int64
                              or out_arr.shape != (total,)):
        raise ValueError(f"gather_batches: alloc({total}) must return an int64 array of {total}")
    cdef int64_t[::1] out = out_arr
    with nogil:
        for i in range(n):
            b = order[i]
            if off[i + 1] > off[i]:
                memcpy(&out[off[i]], &rows[batch_offsets[b]],
                       (off[i + 1] - off[i]) * sizeof(int64_t))
    return out_arr, offsets_arr
