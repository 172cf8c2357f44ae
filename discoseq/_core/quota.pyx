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
not flagged in ``excl``, 2 the kept cuts flagged in ``excl`` or at ``(u, i) >= (tu, ti)``;
and ``codes``, the top byte of every cut's key (:func:`key_codes`, empty: none). A cycle's keys
are hashed once, into its codes: the later passes compare a cut's code with a threshold's and
hash only the cuts whose code ties it (one in 256), so they run at memory speed; the histogram
bins are the codes. Inputs are checked here, at the boundary; the loops run without the GIL.
"""

import numpy as np

from libc.math cimport INFINITY, rint
from libc.string cimport memchr, memcpy, memset
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint32_t, uint64_t

from discoseq._core.rng cimport ds_mix64

cdef enum:
    SHIFT = 56  # a key's code: its top byte
    NUM_CODES = 256

NUM_BINS = 256  # shuffled: a bin per value of the key's top byte (its code)
CODE_SHIFT = SHIFT

cdef uint64_t GOLDEN = 0x9E3779B97F4A7C15ULL
cdef double TWO52 = 4503599627370496.0
# flip the lanes' keys for a cut the filters removed, in the fingerprint
cdef uint32_t DROPPED_A = 0xD15C0DE5u, DROPPED_B = 0x0DE0DEADu


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
    const uint8_t* codes
    int mode
    uint64_t key
    bint shuffled
    uint64_t tu
    int64_t ti


cdef inline uint64_t _shuffled_key(uint64_t key, int64_t i) noexcept nogil:
    """Cut ``i``'s key in the shuffled cycle under ``key`` (its code: the top byte)."""
    return ds_mix64(key + <uint64_t>(i + 1) * GOLDEN)


cdef inline uint8_t _code(uint64_t key, int64_t i) noexcept nogil:
    return <uint8_t>(_shuffled_key(key, i) >> SHIFT)


cdef inline uint64_t _u(const KeyedSet* s, int64_t i) noexcept nogil:
    if s.shuffled:
        return _shuffled_key(s.key, i)
    return <uint64_t>i


cdef inline bint _below(const KeyedSet* s, int64_t i, uint64_t tu, int64_t ti) noexcept nogil:
    """``(u(i), i) < (tu, ti)``: by the cut's code alone unless it ties the threshold's."""
    cdef uint64_t c, tc, u
    if s.codes != NULL:
        c = s.codes[i]
        tc = tu >> SHIFT
        if c != tc:
            return c < tc
    u = _u(s, i)
    return (u < tu) | ((u == tu) & (i < ti))


cdef inline bint _within(const KeyedSet* s, int64_t i, uint64_t lo_u, int64_t lo_i,
                         uint64_t hi_u, int64_t hi_i) noexcept nogil:
    """``(lo_u, lo_i) <= (u(i), i) < (hi_u, hi_i)``, without branches on the outcome: shuffled
    keys fall in or out of a run at random, and a mispredicted branch per cut costs more than
    the test."""
    return (not _below(s, i, lo_u, lo_i)) & _below(s, i, hi_u, hi_i)


cdef inline bint _has(const KeyedSet* s, int64_t i) noexcept nogil:
    if s.keep != NULL and s.keep[i] == 0:
        return False
    if s.mode == 0:
        return True
    if s.mode == 1:
        return s.excl[i] == 0
    return (s.excl[i] != 0) | (not _below(s, i, s.tu, s.ti))


cdef inline uint64_t _bin(const KeyedSet* s, int64_t i, int shift, uint64_t nb) noexcept nogil:
    cdef uint64_t b
    if s.codes != NULL:
        return s.codes[i]
    b = _u(s, i) >> shift
    return b if b < nb else nb - 1


cdef KeyedSet _set(Py_ssize_t n, const uint8_t[::1] keep, const uint8_t[::1] excl, int mode,
                   uint64_t key, bint shuffled, uint64_t tu, int64_t ti,
                   const uint8_t[::1] codes) except *:
    cdef KeyedSet s
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    if mode not in (0, 1, 2):
        raise ValueError(f"mode={mode} must be 0, 1 or 2")
    if mode != 0 and excl.shape[0] != n:
        raise ValueError(f"excl needs one flag per cut ({n}), got {excl.shape[0]}")
    if codes.shape[0] not in (0, n) or (codes.shape[0] and not shuffled):
        raise ValueError(f"codes: one per cut ({n}) of a shuffled set, got {codes.shape[0]}")
    s.keep = &keep[0] if keep.shape[0] else NULL
    s.excl = &excl[0] if excl.shape[0] else NULL
    s.codes = &codes[0] if codes.shape[0] else NULL
    s.mode = mode
    s.key = key
    s.shuffled = shuffled
    s.tu = tu
    s.ti = ti
    return s


def bin_shift(Py_ssize_t n, bint shuffled) -> int:
    """The right shift from a key to its histogram bin, at most ``NUM_BINS`` bins (shuffled:
    the key's top byte, its code; the index order: the offset's top bits)."""
    cdef int bits = 0
    if shuffled:
        return CODE_SHIFT
    while (<int64_t>1 << bits) < n:
        bits += 1
    return max(bits - 8, 0)


def num_bins(Py_ssize_t n, bint shuffled, int shift) -> int:
    """How many bins the keys of ``n`` cuts fall in (see :func:`bin_shift`)."""
    if shuffled:
        return min(NUM_BINS, 1 << (64 - shift))
    return min(NUM_BINS, ((max(n, 1) - 1) >> shift) + 1)


def _check_shift(int shift, bint shuffled, const uint8_t[::1] codes):
    if not 0 <= shift <= 63:
        raise ValueError(f"shift={shift} must be in [0, 63]")
    if codes.shape[0] and shift != CODE_SHIFT:
        raise ValueError(f"with codes the bins are the codes: shift must be {CODE_SHIFT}")


def key_codes(uint64_t key, uint8_t[::1] codes not None) -> None:
    """The code of every cut of a shuffled cycle under ``key``: its key's top byte (the one
    pass that hashes the cycle's cuts; one flag-sized array kept per cycle)."""
    cdef Py_ssize_t i, n = codes.shape[0]
    with nogil:
        for i in range(n):
            codes[i] = _code(key, i)


def histogram(const double[::1] duration not None, const uint8_t[::1] keep not None,
              const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
              uint64_t tu, int64_t ti, const uint8_t[::1] codes not None, int shift):
    """Per bin of the keys (``u >> shift``): the set's cuts and their microseconds; and the
    same for the cuts of the set not flagged in ``excl`` (mode 0 with ``excl``; else zeros)."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti, codes)
    _check_shift(shift, shuffled, codes)
    cdef bint split = mode == 0 and excl.shape[0] == n and n > 0
    if mode == 0 and excl.shape[0] not in (0, n):
        raise ValueError(f"excl needs one flag per cut ({n}), got {excl.shape[0]}")
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    acc = np.zeros((nb, 4), dtype=np.int64)  # per bin: the four sums side by side (one line)
    cdef int64_t[:, ::1] a = acc
    cdef const uint8_t* ex = &excl[0] if split else NULL
    cdef Py_ssize_t i
    cdef uint64_t b
    cdef int64_t d
    cdef int64_t out
    with nogil:
        for i in range(n):
            if _has(&s, i):
                b = _bin(&s, i, shift, nb)
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
                uint64_t tu, int64_t ti, const uint8_t[::1] codes not None, int shift,
                uint64_t bin, Py_ssize_t count):
    """The ``count`` cuts of the set in one bin, sorted by ``(u, i)``: offsets, keys,
    microseconds. Only the bin's cuts are visited: with codes, those whose code is the bin
    (found by ``memchr``, a vector scan); in the index order, the bin's range of offsets."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, key, shuffled, tu, ti, codes)
    _check_shift(shift, shuffled, codes)
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    cdef int64_t lo = 0, hi = n
    if codes.shape[0]:
        hi = n if bin < nb else 0
    elif not shuffled:  # the bin is a range of offsets (the last one to the end)
        lo = min(<int64_t>(bin << shift), n) if bin < nb else n
        hi = n if bin == nb - 1 else min(<int64_t>((bin + 1) << shift), n)
    ids = np.empty(count, dtype=np.int64)
    keys = np.empty(count, dtype=np.uint64)
    us = np.empty(count, dtype=np.int64)
    cdef int64_t[::1] o = ids
    cdef uint64_t[::1] k = keys
    cdef int64_t[::1] t = us
    cdef Py_ssize_t i, j = 0
    cdef const uint8_t* at
    with nogil:
        i = lo
        while i < hi:
            if s.codes != NULL:  # the next cut of the bin's code (a vector scan)
                at = <const uint8_t*>memchr(s.codes + i, <int>bin, hi - i)
                if at == NULL:
                    break
                i = at - s.codes
            if _bin(&s, i, shift, nb) == bin and _has(&s, i):
                if j == count:
                    j += 1
                    break
                o[j] = i
                k[j] = _u(&s, i)
                t[j] = _us(duration[i])
                j += 1
            i += 1
    if j != count:
        raise ValueError(f"bin {bin} holds a different number of cuts than {count}")
    order = np.argsort(keys)
    sorted_keys = keys[order]
    if count > 1 and (sorted_keys[1:] == sorted_keys[: count - 1]).any():  # ties of u: by i
        order = np.lexsort((ids, keys))
        sorted_keys = keys[order]
    return ids[order], sorted_keys, us[order]


cdef enum:
    BLOCK = 2048  # cuts per block of a coded pass (its flag bytes stay in L1)
    MAX_PIECES = 8  # a cut's pieces as the bits of one byte
    SPARSE = 32  # the groups of fewer than one cut in this many: written in one pass together

EMIT_PIECES = MAX_PIECES


cdef void _block_hits(const KeyedSet* s, uint64_t lo_u, int64_t lo_i, uint64_t hi_u,
                      int64_t hi_i, Py_ssize_t blk, Py_ssize_t bn, uint8_t* hits,
                      uint8_t* ties) noexcept nogil:
    """``hits[t]``: cut ``blk + t`` is in the coded set ``s`` at ``(lo_u, lo_i) <= (u, i) <
    (hi_u, hi_i)``, for ``t < bn``: from the codes in vector loops, then the few cuts whose
    code ties a threshold decided by their key."""
    cdef uint8_t loc = lo_u >> SHIFT, hic = hi_u >> SHIFT, tc = s.tu >> SHIFT, c
    cdef const uint8_t* cd = s.codes + blk
    cdef const uint8_t* kp
    cdef const uint8_t* ex
    cdef Py_ssize_t t, q, w
    cdef uint64_t word
    for t in range(bn):  # strictly inside by code; a tie is decided below
        c = cd[t]
        hits[t] = (c > loc) & (c < hic)
        ties[t] = (c == loc) | (c == hic)
    if s.keep != NULL:
        kp = s.keep + blk
        for t in range(bn):
            hits[t] &= kp[t] != 0
    if s.mode == 1:
        ex = s.excl + blk
        for t in range(bn):
            hits[t] &= ex[t] == 0
    elif s.mode == 2:
        ex = s.excl + blk
        for t in range(bn):
            hits[t] &= (ex[t] != 0) | (cd[t] > tc)
            ties[t] |= cd[t] == tc
    t = 0
    while t < bn:  # ties are rare: eight flags looked at at once
        w = min(<Py_ssize_t>8, bn - t)
        word = 0
        memcpy(&word, ties + t, w)
        if word != 0:
            for q in range(t, t + w):
                if ties[q]:
                    hits[q] = _within(s, blk + q, lo_u, lo_i, hi_u, hi_i) & _has(s, blk + q)
        t += w


cdef struct Piece:
    KeyedSet s
    bint whole  # every kept cut: no key asked
    uint64_t lo_u
    int64_t lo_i
    uint64_t hi_u
    int64_t hi_i


cdef inline bint _in_piece(const Piece* p, int64_t i) noexcept nogil:
    if p.whole:
        return p.s.keep == NULL or p.s.keep[i] != 0
    return _within(&p.s, i, p.lo_u, p.lo_i, p.hi_u, p.hi_i) & _has(&p.s, i)


cdef void _piece_hits(const Piece* p, Py_ssize_t blk, Py_ssize_t bn, uint8_t* hits,
                      uint8_t* ties) noexcept nogil:
    """``hits[t]``: cut ``blk + t`` is in piece ``p``, for ``t < bn``."""
    cdef Py_ssize_t t
    if p.s.codes != NULL and not p.whole:
        _block_hits(&p.s, p.lo_u, p.lo_i, p.hi_u, p.hi_i, blk, bn, hits, ties)
    else:
        for t in range(bn):
            hits[t] = _in_piece(p, blk + t)


cdef int64_t _write_piece(const Piece* p, Py_ssize_t n, int64_t base, int64_t* out,
                          int64_t cap) noexcept nogil:
    """Write ``base + i`` of every cut of piece ``p`` to ``out`` in index order (at most
    ``cap``), block by block; returns how many cuts the piece holds."""
    cdef uint8_t hits[BLOCK]
    cdef uint8_t ties[BLOCK]
    cdef Py_ssize_t blk = 0, bn, t
    cdef int64_t j = 0
    while blk < n:
        bn = min(<Py_ssize_t>BLOCK, n - blk)
        _piece_hits(p, blk, bn, hits, ties)
        for t in range(bn):  # every cut written at the next slot, which a hit keeps
            if j < cap:
                out[j] = base + blk + t
            j += hits[t]
        blk += bn
    return j


def collect_rows(Py_ssize_t n, const uint8_t[::1] keep not None,
                 const uint8_t[::1] excl not None, int mode, uint64_t key, bint shuffled,
                 uint64_t tu, int64_t ti, const uint8_t[::1] codes not None, uint64_t lo_u,
                 int64_t lo_i, uint64_t hi_u, int64_t hi_i, int64_t base,
                 int64_t[::1] out not None) -> int:
    """Write ``base + i`` of every cut of the set with ``(lo_u, lo_i) <= (u, i) < (hi_u,
    hi_i)`` to ``out`` in index order. Returns how many. Block by block (with codes, see
    :func:`_block_hits`), then the block's rows written."""
    cdef Piece p
    p.s = _set(n, keep, excl, mode, key, shuffled, tu, ti, codes)
    p.whole = False
    p.lo_u, p.lo_i, p.hi_u, p.hi_i = lo_u, lo_i, hi_u, hi_i
    cdef int64_t j, cap = out.shape[0]
    with nogil:
        j = _write_piece(&p, n, base, &out[0] if cap else NULL, cap)
    if j > cap:
        raise ValueError(f"more than {cap} cuts lie in the range")
    return j


cdef void _marks(const Piece* ps, Py_ssize_t P, Py_ssize_t blk, Py_ssize_t bn,
                 uint8_t* marks, uint8_t* hits, uint8_t* ties) noexcept nogil:
    """``marks[t]``: the pieces of cut ``blk + t`` as bits, for ``t < bn`` (a coded piece's
    flags as :func:`_block_hits` finds them)."""
    cdef Py_ssize_t t, k
    for t in range(bn):
        marks[t] = 0
    for k in range(P):
        if ps[k].whole:
            for t in range(bn):
                marks[t] |= <uint8_t>((ps[k].s.keep == NULL or ps[k].s.keep[blk + t] != 0) << k)
        elif ps[k].s.codes != NULL:
            _block_hits(&ps[k].s, ps[k].lo_u, ps[k].lo_i, ps[k].hi_u, ps[k].hi_i, blk, bn,
                        hits, ties)
            for t in range(bn):
                marks[t] |= <uint8_t>(hits[t] << k)
        else:
            for t in range(bn):
                marks[t] |= <uint8_t>(_in_piece(&ps[k], blk + t) << k)


cdef _check_base(int64_t base, Py_ssize_t n):
    if base < 0 or base > INT64_MAX - n:
        raise ValueError(f"base {base} must be at least 0 (and base + n an int64)")


cdef list _pieces_of(Py_ssize_t n, const uint8_t[::1] keep, list pieces, Piece* ps,
                     list held):
    """The pieces' specs (see :func:`emit_runs`) into ``ps`` (room for ``MAX_PIECES``),
    checked; their sizes. ``held`` keeps the pieces' arrays alive while the loops read them."""
    cdef Py_ssize_t k
    cdef const uint8_t[::1] ex, co
    if len(pieces) > MAX_PIECES:
        raise ValueError(f"{len(pieces)} pieces: at most {MAX_PIECES} at once")
    sizes = []
    for k, piece in enumerate(pieces):
        sizes.append(int(piece[0]))
        if sizes[k] < 0:
            raise ValueError(f"piece {k} has a negative size")
        if piece[1] is None:
            ps[k].s = _set(n, keep, keep, 0, 0, False, 0, 0, keep[:0])
            ps[k].whole = True
            continue
        ex, co = piece[1], piece[7]
        held.append((ex, co))
        ps[k].s = _set(n, keep, ex, piece[2], piece[3], piece[4], piece[5], piece[6], co)
        ps[k].whole = False
        ps[k].lo_u, ps[k].lo_i, ps[k].hi_u, ps[k].hi_i = piece[8], piece[9], piece[10], piece[11]
    return sizes


def collect_union(Py_ssize_t n, const uint8_t[::1] keep not None, list pieces not None,
                  int64_t base, int64_t[::1] out not None) -> int:
    """Write ``base + i`` of every cut in any of ``pieces`` (as :func:`emit_runs` takes them;
    an epoch's runs that take no cut twice) to ``out`` in index order, in one pass block by
    block: the pieces' flags or-ed, then the block's rows written. Returns how many."""
    cdef Py_ssize_t P = len(pieces), k, t, blk, bn
    _check_base(base, n)
    cdef Piece ps[MAX_PIECES]
    held = []
    _pieces_of(n, keep, pieces, ps, held)
    cdef uint8_t hits[BLOCK]
    cdef uint8_t one[BLOCK]
    cdef uint8_t ties[BLOCK]
    cdef int64_t j = 0, cap = out.shape[0]
    cdef int64_t* o = &out[0] if cap else NULL
    with nogil:
        blk = 0
        while blk < n:
            bn = min(<Py_ssize_t>BLOCK, n - blk)
            memset(hits, 0, bn)
            for k in range(P):
                _piece_hits(&ps[k], blk, bn, one, ties)
                for t in range(bn):
                    hits[t] |= one[t]
            for t in range(bn):  # every cut written at the next slot, which a hit keeps
                if j < cap:
                    o[j] = base + blk + t
                j += hits[t]
            blk += bn
    if j > cap:
        raise ValueError(f"more than {cap} cuts lie in the pieces")
    return j


def emit_runs(Py_ssize_t n, const uint8_t[::1] keep not None, list pieces not None,
              int64_t base, int64_t[::1] out not None, uint8_t[::1] again not None):
    """Write the runs an epoch takes from one source to ``out`` as index rows (``base + i``):
    round by round (round ``r``: the cuts taken for the ``r + 1``-th time, those in more than
    ``r`` of the pieces), each round in index order. A piece is ``(size, excl, mode, key,
    shuffled, tu, ti, codes, lo_u, lo_i, hi_u, hi_i)``: the ``size`` cuts of that set at
    ``(lo_u, lo_i) <= (u, i) < (hi_u, hi_i)``, or ``(size, None)``: every kept cut (a whole
    cycle, no key asked); at most ``EMIT_PIECES``. A first pass over the source, block by
    block, finds each cut's pieces (a bit each, kept as a byte per cut), counts the cuts of
    each set of pieces and sets the bit in ``again`` (one per index row, or empty) of every
    cut taken more than once; a second writes each round's rows from those bits. Returns the
    number of cuts of each round."""
    cdef Py_ssize_t P = len(pieces), k, g, t, blk, bn
    _check_base(base, n)
    if again.shape[0] and again.shape[0] * 8 < base + n:
        raise ValueError(f"again needs one bit per row up to {base + n}")
    cdef Piece ps[MAX_PIECES]
    held = []  # the pieces' arrays, alive while the loops read them
    sizes = _pieces_of(n, keep, pieces, ps, held)
    counts = np.zeros((max(P, 1), max(P, 1)), dtype=np.int64)  # [round, piece]
    cdef int64_t[:, ::1] cnt = counts
    cdef int64_t hist[256]
    cdef int64_t hist4[4][256]
    cdef uint8_t marks[BLOCK]
    cdef uint8_t* kept_marks  # the counting pass's marks, read again by the writing one
    cdef uint8_t[::1] all_marks
    cdef uint8_t hits[BLOCK]
    cdef uint8_t ties[BLOCK]
    cdef uint8_t mk
    cdef int64_t row
    cdef bint flag_again = again.shape[0] != 0
    cdef int r
    memset(hist4, 0, sizeof(hist4))
    all_marks = np.empty(max(n, 1), dtype=np.uint8)
    kept_marks = &all_marks[0]
    with nogil:  # the counting pass: each cut's pieces
        blk = 0
        while blk < n:
            bn = min(<Py_ssize_t>BLOCK, n - blk)
            _marks(ps, P, blk, bn, kept_marks + blk, hits, ties)
            for t in range(bn):
                mk = kept_marks[blk + t]
                hist4[t & 3][mk] += 1  # four tables: a run of equal marks is no chain
                if flag_again and (mk & (mk - 1)):  # two pieces or more: taken again
                    row = base + blk + t
                    again[row >> 3] |= <uint8_t>(1 << (row & 7))
            blk += bn
    for t in range(256):
        hist[t] = hist4[0][t] + hist4[1][t] + hist4[2][t] + hist4[3][t]
    # a cut with pieces mk is in round r of piece k for each bit k of mk, r: the bits below k
    for t in range(1, 256):
        r = 0
        for k in range(P):
            if t >> k & 1:
                cnt[r, k] += hist[t]
                r += 1
    got = counts.sum(axis=0)
    for k in range(P):
        if got[k] != sizes[k]:
            raise ValueError(f"piece {k} holds {got[k]} cuts, not {sizes[k]}")
    if int(counts.sum()) != out.shape[0]:
        raise ValueError(f"the pieces hold {int(counts.sum())} cuts, out has {out.shape[0]} slots")
    per_round = counts.sum(axis=1)
    cdef uint8_t match[MAX_PIECES][256]  # per round: the marks of its cuts (more than r bits)
    cdef int64_t* start[MAX_PIECES]
    cdef int64_t* stop[MAX_PIECES]
    cdef bint sparse[MAX_PIECES]  # a round of few cuts: written by a branch
    cdef uint8_t rare[256]  # the marks of a sparse round
    cdef bint any_sparse = False
    memset(rare, 0, sizeof(rare))
    cdef int G = 0
    cdef int64_t at = 0
    cdef int64_t* o = &out[0] if out.shape[0] else NULL
    for r in range(P):  # the output's order: round by round
        if per_round[r] == 0:
            continue
        for t in range(256):
            match[G][t] = _popcount8(t) > r
        start[G] = o + at
        sparse[G] = per_round[r] * SPARSE < n
        if sparse[G]:
            any_sparse = True
            for t in range(256):
                rare[t] |= match[G][t]
        at += per_round[r]
        stop[G] = o + at
        G += 1
    cdef int64_t* p
    cdef int64_t* e
    cdef const uint8_t* tab
    cdef int64_t sink = 0
    with nogil:  # block by block: each round's rows from the cuts' marks
        blk = 0
        while blk < n:
            bn = min(<Py_ssize_t>BLOCK, n - blk)
            memcpy(marks, kept_marks + blk, bn)
            for g in range(G):  # every cut written at the next slot, which a match keeps
                if sparse[g]:
                    continue
                p, e, tab = start[g], stop[g], match[g]
                if p + bn <= e:
                    for t in range(bn):
                        p[0] = base + blk + t
                        p += tab[marks[t]]
                else:  # near the round's end: a slot past it is written aside
                    for t in range(bn):
                        (p if p < e else &sink)[0] = base + blk + t
                        p += tab[marks[t]]
                start[g] = p
            if any_sparse:  # the rounds of few cuts, together: a branch per cut, rarely taken
                for t in range(bn):
                    if rare[marks[t]]:
                        for g in range(G):
                            if sparse[g] and match[g][marks[t]] and start[g] < stop[g]:
                                start[g][0] = base + blk + t
                                start[g] += 1
            blk += bn
    for g in range(G):
        if start[g] != stop[g]:
            raise ValueError("the pieces hold a different number of cuts than their sizes")
    last = int(np.flatnonzero(per_round).max()) + 1 if per_round.any() else 1
    return [int(c) for c in per_round[:last]]


cdef inline int _popcount8(int x) noexcept nogil:
    cdef int c = 0
    while x:
        x &= x - 1
        c += 1
    return c


cdef enum:
    EXACT_BITS = 42  # below 2**42 microseconds: BLOCK of them sum exactly in a double (2**53)
cdef uint64_t TWO52_BITS = 0x4330000000000000ULL  # the bits of the double 2**52


cdef struct CodeHist:  # per code: kept cuts and their microseconds
    int64_t count[NUM_CODES]
    int64_t us[NUM_CODES]


cdef inline bint _block_micros(const double* dur, const uint8_t* keep, Py_ssize_t bn,
                               double* du) noexcept nogil:
    """``du[t]``: cut ``t``'s microseconds as :func:`_us` rounds them (0 for a cut the filters
    removed), as doubles: a vector loop, where :func:`_us` is one conversion per cut. False
    when a duration lies outside ``[0, 2**42)`` microseconds (or is NaN): then ``du`` is
    not used, the block's sums of integers are. The test is on bits, so it vectorises:
    ``x + 2**52`` for ``0 <= x < 2**42`` differs from 2**52's bits in the low 42 bits only."""
    cdef Py_ssize_t t
    cdef double y, two52 = TWO52  # a local: no store to du can change it
    cdef uint64_t acc = 0, bits
    for t in range(bn):
        y = dur[t] * 1e6 + two52  # rint below 2**52 (see _us)
        memcpy(&bits, &y, 8)
        acc |= bits ^ TWO52_BITS
        du[t] = y - two52
    if keep != NULL:
        for t in range(bn):
            du[t] = du[t] if keep[t] != 0 else 0.0
    return (acc >> EXACT_BITS) == 0


cdef inline bint _add_block(CodeHist* h, const uint8_t* codes, const double* dur,
                            const uint8_t* keep, Py_ssize_t bn, double* du) noexcept nogil:
    """Add a block of ``bn <= BLOCK`` cuts to ``h`` by their codes. The microseconds are
    summed per code as doubles, exact (each below 2**42, ``BLOCK`` of them below
    2**53), then added as integers: twice as fast as an integer conversion per cut. ``du``:
    scratch of ``BLOCK``; returns True when it holds each cut's microseconds (0 if not kept),
    False when a duration was out of range and the block was summed as :func:`_us` integers."""
    cdef double s[NUM_CODES]
    cdef Py_ssize_t t
    if keep == NULL:
        for t in range(bn):
            h.count[codes[t]] += 1
    else:
        for t in range(bn):
            h.count[codes[t]] += keep[t] != 0
    if _block_micros(dur, keep, bn, du):
        memset(s, 0, sizeof(s))
        for t in range(bn):
            s[codes[t]] += du[t]
        for t in range(NUM_CODES):
            h.us[t] += <int64_t>s[t]
        return True
    for t in range(bn):  # a duration out of range: integers, as _us rounds them
        h.us[codes[t]] += _us(dur[t]) * (keep == NULL or keep[t] != 0)
    return False


cdef tuple _hist_arrays(const CodeHist* h):
    counts = np.empty(NUM_CODES, dtype=np.int64)
    us = np.empty(NUM_CODES, dtype=np.int64)
    cdef int64_t[::1] c = counts
    cdef int64_t[::1] u = us
    cdef Py_ssize_t t
    for t in range(NUM_CODES):
        c[t] = h.count[t]
        u[t] = h.us[t]
    return counts, us


def key_histogram(const double[::1] duration not None, const uint8_t[::1] keep not None,
                  uint64_t key, uint8_t[::1] codes not None):
    """One pass over a shuffled cycle under ``key``: every cut's code (as :func:`key_codes`)
    and, per code, the kept cuts and their microseconds (the cycle's histogram). Block by
    block (see :func:`_block_micros`)."""
    cdef Py_ssize_t n = duration.shape[0], blk, bn, t
    if keep.shape[0] not in (0, n) or codes.shape[0] != n:
        raise ValueError(f"keep (or empty) and codes need one flag per cut ({n})")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef CodeHist h
    cdef double du[BLOCK]
    with nogil:
        memset(&h, 0, sizeof(h))
        blk = 0
        while blk < n:
            bn = min(<Py_ssize_t>BLOCK, n - blk)
            for t in range(bn):
                codes[blk + t] = _code(key, blk + t)
            _add_block(&h, &codes[blk], &duration[blk], k + blk if k != NULL else NULL, bn, du)
            blk += bn
    return _hist_arrays(&h)


def cross_pass(const double[::1] duration not None, const uint8_t[::1] keep not None,
               uint64_t key, uint8_t[::1] codes not None, const uint8_t[::1] excl not None,
               int mode, uint64_t tail_key, uint64_t tu, int64_t ti,
               const uint8_t[::1] tail_codes not None, uint64_t lo_u, int64_t lo_i,
               uint64_t hi_u, int64_t hi_i, int64_t[::1] rows not None,
               uint8_t[::1] mask not None):
    """One pass, block by block, for an epoch that crosses from a shuffled cycle into the next
    (under ``key``): that cycle's codes (as :func:`key_codes`) and histogram (as
    :func:`key_histogram`); the tail it takes of the cycle before — the cuts of the coded set
    ``(excl, mode, tail_key, tu, ti, tail_codes)`` at ``[(lo_u, lo_i), (hi_u, hi_i))`` —
    written to ``rows`` (offsets, index order) and flagged in ``mask``; and the tail's
    histogram under ``key``. Returns how many rows, the cycle's histogram, the tail's."""
    cdef Py_ssize_t n = duration.shape[0]
    cdef KeyedSet s = _set(n, keep, excl, mode, tail_key, True, tu, ti, tail_codes)
    if codes.shape[0] != n or mask.shape[0] != n or tail_codes.shape[0] != n:
        raise ValueError(f"codes, tail codes and mask need one per cut ({n})")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef CodeHist cyc, tail
    cdef double tail_us[NUM_CODES]
    cdef uint8_t hits[BLOCK]
    cdef uint8_t ties[BLOCK]
    cdef double du[BLOCK]
    cdef Py_ssize_t i, j = 0, j0, cap = rows.shape[0], blk, bn, t
    cdef uint8_t b
    cdef bint exact
    with nogil:
        memset(&cyc, 0, sizeof(cyc))
        memset(&tail, 0, sizeof(tail))
        blk = 0
        while blk < n:
            bn = min(<Py_ssize_t>BLOCK, n - blk)
            _block_hits(&s, lo_u, lo_i, hi_u, hi_i, blk, bn, hits, ties)
            j0 = j
            for t in range(bn):  # every cut written at the next slot, which a hit keeps
                if j < cap:
                    rows[j] = blk + t
                j += hits[t]
            memcpy(&mask[blk], hits, bn)
            for t in range(bn):
                codes[blk + t] = _code(key, blk + t)
            exact = _add_block(&cyc, &codes[blk], &duration[blk], k + blk if k != NULL else NULL,
                               bn, du)
            # the block's tail cuts, under the cycle's key: all kept (_block_hits and _has test
            # keep), so du (0 for a cut not kept) holds each one's microseconds
            if j <= cap:
                if exact:
                    memset(tail_us, 0, sizeof(tail_us))
                    for t in range(j - j0):
                        i = rows[j0 + t]
                        b = codes[i]
                        tail.count[b] += 1
                        tail_us[b] += du[i - blk]
                    for t in range(NUM_CODES):
                        tail.us[t] += <int64_t>tail_us[t]
                else:
                    for t in range(j - j0):
                        i = rows[j0 + t]
                        b = codes[i]
                        tail.count[b] += 1
                        tail.us[b] += _us(duration[i])
            blk += bn
    if j != cap:
        raise ValueError(f"the tail holds {j} cuts, not {cap}")
    return (*_hist_arrays(&cyc), *_hist_arrays(&tail))


def rows_histogram(const double[::1] duration not None, const int64_t[::1] rows not None,
                   bint shuffled, const uint8_t[::1] codes not None, int shift,
                   uint8_t[::1] mask not None):
    """Per bin of a cycle's keys (its ``codes``; the index order: ``i >> shift``), the cuts at
    offsets ``rows`` and their microseconds; each one flagged in ``mask`` (one per cut)."""
    cdef Py_ssize_t n = duration.shape[0], j, m = rows.shape[0]
    if mask.shape[0] != n or codes.shape[0] != (n if shuffled else 0):
        raise ValueError(f"mask (and a shuffled cycle's codes) need one flag per cut ({n})")
    _check_shift(shift, shuffled, codes)
    cdef uint64_t nb = num_bins(n, shuffled, shift)
    counts = np.zeros(nb, dtype=np.int64)
    us = np.zeros(nb, dtype=np.int64)
    cdef int64_t[::1] c = counts
    cdef int64_t[::1] t = us
    cdef int64_t i, bad = -1
    cdef uint64_t b
    with nogil:
        for j in range(m):
            i = rows[j]
            if i < 0 or i >= n:
                bad = j
                break
            if shuffled:
                b = codes[i]
            else:
                b = min(<uint64_t>i >> shift, nb - 1)
            c[b] += 1
            t[b] += _us(duration[i])
            mask[i] = 1
    if bad >= 0:
        raise ValueError(f"rows[{bad}]={rows[bad]} is not a cut of the source ({n} cuts)")
    return counts, us


def fingerprint(const double[::1] duration not None, const uint8_t[::1] keep not None) -> int:
    """A 64-bit hash of a source's cuts (each one's offset, exact duration and whether the
    filters kept it), under which a process keeps the source's cycles: two independent lanes
    of multiply-add hashing (NH) with keys drawn from the offset, which compile to vector
    multiplies and run at memory speed (the selection pays it every epoch)."""
    cdef Py_ssize_t n = duration.shape[0]
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef const uint64_t* bits = <const uint64_t*>&duration[0] if n else NULL
    cdef Py_ssize_t i
    cdef uint64_t x, h1 = 0, h2 = 0
    cdef uint32_t f
    # the lanes' keys at offset i: k + i * step (mod 2**32), stepped as the loop goes; a cut
    # the filters removed is hashed under other keys (the keys flipped by a marker), not with
    # its bits changed: a changed duration could equal a kept cut's, and hash the same
    cdef uint32_t a1 = 0x2545F491u, b1 = 0x9E3779B9u, a2 = 0x85EBCA6Bu, b2 = 0xC2B2AE35u
    with nogil:
        for i in range(n):
            x = bits[i]
            f = 0
            if k != NULL:
                f = <uint32_t>0 - <uint32_t>(k[i] == 0)
            h1 += (<uint64_t>(<uint32_t>x + (a1 ^ (f & DROPPED_A)))
                   * <uint64_t>(<uint32_t>(x >> 32) + (b1 ^ (f & DROPPED_B))))
            h2 += (<uint64_t>(<uint32_t>x + (a2 ^ (f & DROPPED_B)))
                   * <uint64_t>(<uint32_t>(x >> 32) + (b2 ^ (f & DROPPED_A))))
            a1 += 0x6C8E9CF5u
            b1 += 0x7FEB352Du
            a2 += 0x846CA68Bu
            b2 += 0x5BD1E995u
    return ds_mix64(ds_mix64(h1 ^ <uint64_t>n) ^ h2)


def column_totals(const double[::1] duration not None, const uint8_t[::1] keep not None):
    """A source's kept cuts, their microseconds and the longest one's; and over all its cuts
    the shortest and longest duration (seconds) and how many are not positive finite."""
    cdef Py_ssize_t n = duration.shape[0]
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef Py_ssize_t i
    cdef int64_t count = 0, total = 0, longest = 0, d, bad = 0
    cdef double x, lo = INFINITY, hi = -INFINITY
    with nogil:
        for i in range(n):
            x = duration[i]
            if not (x > 0.0 and x < INFINITY):
                bad += 1
            lo = x if x < lo else lo
            hi = x if x > hi else hi
            if k == NULL or k[i] != 0:
                d = _us(x)
                count += 1
                total += d
                if d > longest:
                    longest = d
    return count, total, longest, lo, hi, bad


def kept_rows(const uint8_t[::1] keep not None, Py_ssize_t n, int64_t base,
              int64_t[::1] out not None) -> None:
    """``base + i`` of every kept cut ``i`` of a source of ``n`` cuts (``keep`` one flag per
    cut, or empty: every cut), in index order, into ``out`` (exactly one slot per kept cut):
    a whole pass over the source, written in one loop without a temporary array."""
    if keep.shape[0] not in (0, n):
        raise ValueError(f"keep needs one flag per cut ({n}), got {keep.shape[0]}")
    cdef const uint8_t* k = &keep[0] if keep.shape[0] else NULL
    cdef Py_ssize_t i, j = 0, cap = out.shape[0]
    if k == NULL and cap != n:
        raise ValueError(f"out has {cap} slots for the {n} kept cuts")
    with nogil:
        if k == NULL:
            for i in range(n):
                out[i] = base + i
            j = n
        else:
            for i in range(n):  # every cut written at the next slot, which a kept one keeps
                if j < cap:
                    out[j] = base + i
                j += k[i] != 0
    if j != cap:
        raise ValueError(f"out has {cap} slots for the {j} kept cuts")
