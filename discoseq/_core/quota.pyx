"""Keyed selection of a mixture source's cycle: which cuts lie at given positions of a cycle.

Specification (reference twin: ``tests/reference_plan.py::reference_select``). A cycle of a
source is the order of its member cuts by ``(u(i), i)``, ``i`` the cut's offset in the source:
shuffled, ``u(i)`` is output ``i`` of the SplitMix64 stream of the cycle's key
(``mix64(key + (i + 1) * 0x9E3779B97F4A7C15)``); not shuffled, ``u(i) = i`` (the index
order). A run of positions is then a range of keys, so it is found in passes over the source
(a histogram of the keys' top bits, the few cuts of one bin, then one pass that emits the run)
without building or shuffling a permutation. Microseconds are ``rint(duration * 1e6)`` as in
NumPy.

A *set* of a source's cuts, under one key, is given by ``keep`` (one flag per cut, empty: all
cuts), ``excl`` (one flag per cut, or empty) and ``mode``: 0 every kept cut, 1 the kept cuts
not flagged in ``excl``, 2 the kept cuts flagged in ``excl`` or at ``(u, i) >= (tu, ti)``.
Inputs are checked here, at the boundary; the loops run without the GIL.
"""

import numpy as np

from libc.math cimport rint
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

from discoseq._core.rng cimport ds_mix64

NUM_BINS = 1 << 14  # 512 KiB of sums: the histogram's scattered adds stay in L2

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef double TWO52 = 4503599627370496.0


cdef inline int64_t _us(double duration) noexcept nogil:
    """``rint(duration * 1e6)`` without a call into libm (the loops call it per cut): below
    2**52, adding and taking away 2**52 rounds to an integer in the nearest-even mode, as rint."""
    cdef double x = duration * 1e6
    if 0.0 <= x < TWO52:
        return <int64_t>((x + TWO52) - TWO52)
    return <int64_t>rint(x)


cdef struct KeyedSet:
    const uint8_t* keep
    const uint8_t* excl
    int mode
    uint64_t key
    bint shuffled
    uint64_t tu
    int64_t ti


cdef inline uint64_t _u(const KeyedSet* s, int64_t i) noexcept nogil:
    if s.shuffled:
        return ds_mix64(s.key + <uint64_t>(i + 1) * GOLDEN)
    return <uint64_t>i


cdef inline bint _below(uint64_t u, int64_t i, uint64_t tu, int64_t ti) noexcept nogil:
    return u < tu or (u == tu and i < ti)


cdef inline bint _within(uint64_t u, int64_t i, uint64_t lo_u, int64_t lo_i, uint64_t hi_u,
                         int64_t hi_i) noexcept nogil:
    """``(lo_u, lo_i) <= (u, i) < (hi_u, hi_i)``, without branches: shuffled keys fall in or
    out of a run at random, and a mispredicted branch per cut costs more than the test."""
    return (((u > lo_u) | ((u == lo_u) & (i >= lo_i)))
            & ((u < hi_u) | ((u == hi_u) & (i < hi_i))))


cdef inline bint _has(const KeyedSet* s, int64_t i, uint64_t u) noexcept nogil:
    if s.keep != NULL and s.keep[i] == 0:
        return False
    if s.mode == 0:
        return True
    if s.mode == 1:
        return s.excl[i] == 0
    return s.excl[i] != 0 or not _below(u, i, s.tu, s.ti)


cdef KeyedSet _set(Py_ssize_t n, const uint8_t[::1] keep, const uint8_t[::1] excl, int mode,
                   uint64_t key, bint shuffled, uint64_t tu, int64_t ti) except *:
    cdef KeyedSet s
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    if mode not in (0, 1, 2):
        raise ValueError(f"mode={mode} must be 0, 1 or 2")
    if mode != 0 and excl.shape[0] != n:
        raise ValueError(f"excl needs one flag per cut ({n}), got {excl.shape[0]}")
    s.keep = &keep[0] if keep.shape[0] else NULL
    s.excl = &excl[0] if excl.shape[0] else NULL
    s.mode = mode
    s.key = key
    s.shuffled = shuffled
    s.tu = tu
    s.ti = ti
    return s


def bin_shift(Py_ssize_t n, bint shuffled) -> int:
    """The right shift from a key to its histogram bin: about 32 cuts per bin, at most
    ``NUM_BINS`` bins (shuffled: the top bits of the key; the index order: of the offset).
    More bins would make the histogram's scattered adds miss the cache."""
    cdef int bits = 0
    if shuffled:
        while bits < 14 and (<int64_t>32 << bits) < n:
            bits += 1
        return 64 - max(bits, 1)
    while (<int64_t>1 << bits) < n:
        bits += 1
    return max(bits - 14, 0)


def num_bins(Py_ssize_t n, bint shuffled, int shift) -> int:
    """How many bins the keys of ``n`` cuts fall in (see :func:`bin_shift`)."""
    if shuffled:
        return min(NUM_BINS, 1 << (64 - shift))
    return min(NUM_BINS, ((max(n, 1) - 1) >> shift) + 1)


def _check_shift(int shift):
    if not 0 <= shift <= 63:
        raise ValueError(f"shift={shift} must be in [0, 63]")


cdef inline uint64_t _binc(uint64_t u, int shift, uint64_t nbins) noexcept nogil:
    cdef uint64_t b = u >> shift
    return b if b < nbins else nbins - 1


def histogram(const double[::1] duration not None, const uint8_t[::1] keep not None,
              const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
              uint64_t tu, int64_t ti, int shift):
    """Per bin of the keys (``u >> shift``): the set's cuts and their microseconds; and the
    same for the cuts of the set not flagged in ``excl`` (mode 0 with ``excl``; else zeros)."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti)
    _check_shift(shift)
    cdef bint split = mode == 0 and excl.shape[0] == n and n > 0
    if mode == 0 and excl.shape[0] not in (0, n):
        raise ValueError(f"excl needs one flag per cut ({n}), got {excl.shape[0]}")
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    acc = np.zeros((nb, 4), dtype=np.int64)  # per bin: the four sums side by side (one line)
    cdef int64_t[:, ::1] a = acc
    cdef const uint8_t* ex = &excl[0] if split else NULL
    cdef Py_ssize_t i
    cdef uint64_t u, b
    cdef int64_t d
    cdef int64_t out
    with nogil:
        for i in range(n):
            u = _u(&s, i)
            if _has(&s, i, u):
                b = _binc(u, shift, nb)
                d = _us(duration[i])
                a[b, 0] += 1
                a[b, 1] += d
                if split:
                    out = ex[i] == 0
                    a[b, 2] += out
                    a[b, 3] += d * out
    return tuple(np.ascontiguousarray(acc[:, k]) for k in range(4))


def bin_members(const double[::1] duration not None, const uint8_t[::1] keep not None,
                const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
                uint64_t tu, int64_t ti, int shift, uint64_t bin, Py_ssize_t count):
    """The ``count`` cuts of the set in one bin, sorted by ``(u, i)``: offsets, keys,
    microseconds."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti)
    _check_shift(shift)
    ids = np.empty(count, dtype=np.int64)
    keys = np.empty(count, dtype=np.uint64)
    us = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] o = ids
    cdef uint64_t[::1] k = keys
    cdef int64_t[::1] t = us
    cdef Py_ssize_t i, j = 0
    cdef uint64_t u
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    with nogil:
        for i in range(n):
            u = _u(&s, i)
            if _binc(u, shift, nb) == bin and _has(&s, i, u):
                if j == count:
                    j += 1
                    break
                o[j] = i
                k[j] = u
                t[j] = _us(duration[i])
                j += 1
    if j != count:
        raise ValueError(f"bin {bin} holds a different number of cuts than {count}")
    order = np.lexsort((ids, keys))
    return ids[order], keys[order], us[order]


def collect_rows(Py_ssize_t n, const uint8_t[::1] keep not None,
                 const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
                 uint64_t tu, int64_t ti, uint64_t lo_u, int64_t lo_i, uint64_t hi_u,
                 int64_t hi_i, int64_t base, int64_t[::1] out not None,
                 int32_t[::1] seen not None, int32_t[::1] rounds not None) -> int:
    """Write ``base + i`` of every cut of the set with ``(lo_u, lo_i) <= (u, i) < (hi_u,
    hi_i)`` to ``out`` in index order; with ``seen`` (one counter per cut, else empty) also
    each one's round (how often it was emitted before) to ``rounds``, and count it. Returns how
    many."""
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti)
    cdef bint counting = seen.shape[0] != 0
    if counting and (seen.shape[0] != n or rounds.shape[0] < out.shape[0]):
        raise ValueError("seen needs one counter per cut and rounds one slot per output")
    cdef Py_ssize_t i, j = 0, cap = out.shape[0]
    cdef uint64_t u
    cdef bint hit
    with nogil:
        if counting:
            for i in range(n):
                u = _u(&s, i)
                if _within(u, i, lo_u, lo_i, hi_u, hi_i) and _has(&s, i, u):
                    if j == cap:
                        j += 1
                        break
                    out[j] = base + i
                    rounds[j] = seen[i]
                    seen[i] += 1
                    j += 1
        else:
            for i in range(n):  # every cut written at the next slot, which a hit keeps
                u = _u(&s, i)
                hit = _within(u, i, lo_u, lo_i, hi_u, hi_i) & _has(&s, i, u)
                if j < cap:
                    out[j] = base + i
                j += hit
    if j > cap:
        raise ValueError(f"more than {cap} cuts lie in the range")
    return j


def collect_mask(const uint8_t[::1] keep not None, const uint8_t[::1] excl not None, int mode,
                 uint64_t key, bint shuffled, uint64_t tu, int64_t ti, uint64_t lo_u,
                 int64_t lo_i, uint64_t hi_u, int64_t hi_i, uint8_t[::1] mask not None) -> int:
    """Set ``mask[i] = 1`` for every cut of the set with ``(lo_u, lo_i) <= (u, i) < (hi_u,
    hi_i)`` (``mask``: one flag per cut). Returns how many."""
    cdef Py_ssize_t n = mask.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti)
    cdef Py_ssize_t i, j = 0
    cdef uint64_t u
    with nogil:
        for i in range(n):
            u = _u(&s, i)
            if not _below(u, i, lo_u, lo_i) and _below(u, i, hi_u, hi_i) and _has(&s, i, u):
                mask[i] = 1
                j += 1
    return j


def tail_split(const double[::1] duration not None, const uint8_t[::1] keep not None,
               const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
               uint64_t tu, int64_t ti, uint64_t lo_u, int64_t lo_i, uint64_t hi_u, int64_t hi_i,
               uint64_t next_key, int shift, int64_t[::1] out not None,
               uint8_t[::1] mask not None):
    """One pass for an epoch that crosses into the next cycle: the cuts of the set (under
    ``key``) at keys in ``[(lo_u, lo_i), (hi_u, hi_i))`` — the tail it takes — written to
    ``out`` (offsets, index order) and flagged in ``mask``; and, under ``next_key``, the
    histograms of the next cycle's cuts and of those not in the tail (as :func:`histogram`).
    Returns how many were written and the four histogram arrays."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti)
    cdef KeyedSet nxt = _set(n, keep, excl, 0, next_key, shuffled, 0, 0)
    _check_shift(shift)
    if mask.shape[0] != n:
        raise ValueError(f"mask needs one flag per cut ({n}), got {mask.shape[0]}")
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    acc = np.zeros((nb, 4), dtype=np.int64)  # per bin: the four sums side by side (one line)
    cdef int64_t[:, ::1] a = acc
    cdef Py_ssize_t i, j = 0, cap = out.shape[0]
    cdef uint64_t u, b
    cdef int64_t d
    cdef bint in_tail
    with nogil:
        for i in range(n):
            if nxt.keep != NULL and nxt.keep[i] == 0:
                continue
            u = _u(&s, i)
            in_tail = _within(u, i, lo_u, lo_i, hi_u, hi_i) & _has(&s, i, u)
            if j < cap:  # written at the next slot, which a cut of the tail keeps
                out[j] = i
            j += in_tail
            mask[i] |= in_tail
            b = _binc(_u(&nxt, i), shift, nb)
            d = _us(duration[i])
            a[b, 0] += 1
            a[b, 1] += d
            a[b, 2] += 1 - in_tail
            a[b, 3] += d * (1 - in_tail)
    if j > cap:
        raise ValueError(f"more than {cap} cuts lie in the range")
    return (j, *(np.ascontiguousarray(acc[:, k]) for k in range(4)))


def fingerprint(const double[::1] duration not None, const uint8_t[::1] keep not None):
    """A source's kept cuts, their microseconds, the longest one's, and a 64-bit hash of every
    kept cut's offset and exact duration (a process keeps a source's cycles under it)."""
    cdef Py_ssize_t n = duration.shape[0]
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef Py_ssize_t i
    cdef int64_t count = 0, total = 0, longest = 0, d
    cdef uint64_t h = 0
    cdef const uint64_t* bits = <const uint64_t*>&duration[0] if n else NULL
    with nogil:
        for i in range(n):
            if k == NULL or k[i] != 0:
                d = _us(duration[i])
                count += 1
                total += d
                if d > longest:
                    longest = d
                h += ds_mix64(bits[i] ^ (<uint64_t>(i + 1) * GOLDEN))
    return count, total, longest, h


def count_rounds(const int64_t[::1] run not None, int32_t[::1] seen not None,
                 int32_t[::1] rounds not None):
    """For each cut of ``run`` (offsets, each once): its round, how often the runs before took
    it (``seen``, one counter per cut of the source, then counts it), written to ``rounds``.
    Returns the smallest and largest round (``(0, -1)`` for an empty run)."""
    cdef Py_ssize_t k, m = run.shape[0], n = seen.shape[0]
    if rounds.shape[0] != m:
        raise ValueError(f"rounds needs one slot per cut of the run ({m}), got {rounds.shape[0]}")
    cdef int64_t i, bad = -1
    cdef int32_t r, lo = 0x7FFFFFFF, hi = -1
    with nogil:
        for k in range(m):
            i = run[k]
            if i < 0 or i >= n:
                bad = k
                break
            r = seen[i]
            seen[i] = r + 1
            rounds[k] = r
            if r < lo:
                lo = r
            if r > hi:
                hi = r
    if bad >= 0:
        raise ValueError(f"run[{bad}]={run[bad]} is not a cut of the source ({n} cuts)")
    if m == 0:
        return 0, -1
    return lo, hi
