"""Keyed selection of a mixture source's cycle: which cuts lie at given positions of a cycle.

Specification (reference twin: ``tests/reference_plan.py::reference_select``). A cycle of a
source is the order of its member cuts by ``(u(i), i)``, ``i`` the cut's offset in the source:
shuffled, ``u(i)`` is output ``i`` of the SplitMix64 stream of the cycle's key
(``mix64(key + (i + 1) * 0x9E3779B97F4A7C15)``); not shuffled, ``u(i) = i`` (the index
order). A run of positions is then a range of keys, so it is found in two passes over the
source (a histogram of the keys' top bits, then one pass that emits the run) without building
or shuffling a permutation. Microseconds are ``rint(duration * 1e6)`` as in NumPy.
Inputs are checked here, at the boundary; the loops run without the GIL.
"""

import numpy as np

from libc.math cimport rint
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from discoseq._core.rng cimport ds_mix64

NUM_BINS = 1 << 16

cdef uint64_t C_BINS = 1 << 16

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _u(uint64_t key, int64_t i, bint shuffled) noexcept nogil:
    if shuffled:
        return ds_mix64(key + <uint64_t>(i + 1) * GOLDEN)
    return <uint64_t>i


cdef inline bint _in(const uint8_t* m, int64_t i) noexcept nogil:
    return m == NULL or m[i] != 0


cdef inline bint _below(uint64_t u, int64_t i, uint64_t tu, int64_t ti) noexcept nogil:
    return u < tu or (u == tu and i < ti)


cdef const uint8_t* _member_ptr(const uint8_t[::1] member, Py_ssize_t n) except? NULL:
    if member.shape[0] == 0:
        return NULL
    if member.shape[0] != n:
        raise ValueError(f"member needs one flag per cut ({n}), got {member.shape[0]}")
    return &member[0]


def bin_shift(Py_ssize_t n, bint shuffled) -> int:
    """The right shift from a key to its histogram bin (top 16 bits; the index order: enough
    bits for ``n``)."""
    if shuffled:
        return 48
    cdef int bits = 0
    while (<int64_t>1 << bits) < n:
        bits += 1
    return max(bits - 16, 0)


def histogram(const double[::1] duration not None, const uint8_t[::1] member not None,
              uint64_t key, bint shuffled, int shift):
    """Per bin of the keys (``u >> shift``): the member cuts and their microseconds."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef const uint8_t* m = _member_ptr(member, n)
    if not 0 <= shift <= 63:
        raise ValueError(f"shift={shift} must be in [0, 63]")
    counts = np.zeros(NUM_BINS, dtype=np.int64)
    us = np.zeros(NUM_BINS, dtype=np.int64)
    cdef int64_t[::1] c = counts
    cdef int64_t[::1] s = us
    cdef Py_ssize_t i
    cdef uint64_t b
    with nogil:
        for i in range(n):
            if _in(m, i):
                b = _u(key, i, shuffled) >> shift
                if b >= C_BINS:
                    b = C_BINS - 1
                c[b] += 1
                s[b] += <int64_t>rint(duration[i] * 1e6)
    return counts, us


def bin_members(const double[::1] duration not None, const uint8_t[::1] member not None,
                uint64_t key, bint shuffled, int shift, uint64_t bin, Py_ssize_t count):
    """The ``count`` member cuts of one bin, sorted by ``(u, i)``: offsets, keys, microseconds."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef const uint8_t* m = _member_ptr(member, n)
    ids = np.empty(count, dtype=np.int64)
    keys = np.empty(count, dtype=np.uint64)
    us = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] o = ids
    cdef uint64_t[::1] k = keys
    cdef int64_t[::1] s = us
    cdef Py_ssize_t i, j = 0
    cdef uint64_t u, b
    with nogil:
        for i in range(n):
            if _in(m, i):
                u = _u(key, i, shuffled)
                b = u >> shift
                if b >= C_BINS:
                    b = C_BINS - 1
                if b == bin:
                    if j == count:
                        j += 1
                        break
                    o[j] = i
                    k[j] = u
                    s[j] = <int64_t>rint(duration[i] * 1e6)
                    j += 1
    if j != count:
        raise ValueError(f"bin {bin} holds a different number of members than {count}")
    order = np.lexsort((ids, keys))
    return ids[order], keys[order], us[order]


def collect_rows(const uint8_t[::1] member not None, Py_ssize_t n, uint64_t key, bint shuffled,
                 uint64_t lo_u, int64_t lo_i, uint64_t hi_u, int64_t hi_i, int64_t base,
                 int64_t[::1] out not None, int32_t[::1] seen not None,
                 int32_t[::1] rounds not None) -> int:
    """Write ``base + i`` of every member with ``(lo_u, lo_i) <= (u, i) < (hi_u, hi_i)`` to
    ``out`` in index order; with ``seen`` (one counter per cut, else empty) also each one's
    round (how often it was emitted before) to ``rounds``, and count it. Returns how many."""
    cdef const uint8_t* m = _member_ptr(member, n)
    cdef bint counting = seen.shape[0] != 0
    if counting and (seen.shape[0] != n or rounds.shape[0] < out.shape[0]):
        raise ValueError("seen needs one counter per cut and rounds one slot per output")
    cdef Py_ssize_t i, j = 0, cap = out.shape[0]
    cdef uint64_t u
    with nogil:
        for i in range(n):
            if _in(m, i):
                u = _u(key, i, shuffled)
                if not _below(u, i, lo_u, lo_i) and _below(u, i, hi_u, hi_i):
                    if j == cap:
                        j += 1
                        break
                    out[j] = base + i
                    if counting:
                        rounds[j] = seen[i]
                        seen[i] += 1
                    j += 1
    if j > cap:
        raise ValueError(f"more than {cap} cuts lie in the range")
    return j


def collect_mask(const uint8_t[::1] member not None, uint64_t key, bint shuffled,
                 uint64_t lo_u, int64_t lo_i, uint64_t hi_u, int64_t hi_i,
                 uint8_t[::1] mask not None) -> int:
    """Set ``mask[i] = 1`` for every member with ``(lo_u, lo_i) <= (u, i) < (hi_u, hi_i)``
    (``mask`` has one flag per cut). Returns how many."""
    cdef Py_ssize_t n = mask.shape[0]
    cdef const uint8_t* m = _member_ptr(member, n)
    cdef Py_ssize_t i, j = 0
    cdef uint64_t u
    with nogil:
        for i in range(n):
            if _in(m, i):
                u = _u(key, i, shuffled)
                if not _below(u, i, lo_u, lo_i) and _below(u, i, hi_u, hi_i):
                    mask[i] = 1
                    j += 1
    return j
