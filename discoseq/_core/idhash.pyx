# cython: language_level=3
"""64-bit hashes of cut ids for the index's id -> row lookup (FNV-1a, then a murmur3 finaliser).

Reference twin: ``tests/_core/test_idhash.py::py_hash``.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint64_t


cdef inline uint64_t _hash_bytes(const uint8_t[::1] blob, int64_t start,
                                  int64_t end) noexcept nogil:
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef int64_t i
    for i in range(start, end):
        h = (h ^ blob[i]) * 0x100000001b3ULL
    h ^= h >> 33
    h *= 0xff51afd7ed558ccdULL
    h ^= h >> 33
    h *= 0xc4ceb9fe1a85ec53ULL
    h ^= h >> 33
    return h


cdef int _hash_spans(
    const uint8_t[::1] blob, const int64_t[::1] offsets, uint64_t[::1] out
) noexcept nogil:
    cdef Py_ssize_t i, n = out.shape[0]
    for i in range(n):
        out[i] = _hash_bytes(blob, offsets[i], offsets[i + 1])
    return 0


cdef Py_ssize_t _first_outside(const int64_t[::1] offsets, int64_t size) noexcept nogil:
    """The first ``i`` with ``offsets[i]`` outside ``[0, size]``, or -1."""
    cdef Py_ssize_t i
    for i in range(offsets.shape[0]):
        if <uint64_t>offsets[i] > <uint64_t>size:
            return i
    return -1


def hash_spans(const uint8_t[::1] blob, const int64_t[::1] offsets):
    """Hash ``blob[offsets[i]:offsets[i+1]]`` for every i; returns uint64 array of len(offsets)-1.

    Every offset must lie in ``[0, len(blob)]``; a span with ``offsets[i] > offsets[i+1]`` hashes
    as the empty id."""
    cdef Py_ssize_t n = offsets.shape[0] - 1
    if n < 0:
        raise ValueError("offsets must hold at least one element")
    cdef Py_ssize_t bad
    with nogil:
        bad = _first_outside(offsets, blob.shape[0])
    if bad >= 0:
        raise ValueError(
            f"offsets[{bad}]={offsets[bad]} points outside the blob (expected 0 <= offset <= "
            f"{blob.shape[0]})"
        )
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] out_view = out
    with nogil:
        _hash_spans(blob, offsets, out_view)
    return out


cdef class IdLookup:
    """id -> row over the index's sorted id hashes (binary search, then compare the id bytes).

    Each candidate row is checked against the arrays before it is read, so a corrupt index raises
    ValueError instead of reading out of bounds."""

    cdef const uint64_t[::1] hashes
    cdef const int64_t[::1] rows
    cdef const int64_t[::1] offsets
    cdef const uint8_t[::1] blob

    def __init__(self, hashes, rows, offsets, blob):
        if hashes.shape[0] != rows.shape[0] or offsets.shape[0] != rows.shape[0] + 1:
            raise ValueError("id lookup arrays have inconsistent lengths")
        self.hashes = hashes
        self.rows = rows
        self.offsets = offsets
        self.blob = blob

    def find(self, bytes key):
        """The row whose id is ``key`` (UTF-8), or -1."""
        cdef const uint8_t[::1] k = key
        cdef Py_ssize_t klen = k.shape[0]
        cdef uint64_t h = _hash_bytes(k, 0, klen)
        cdef Py_ssize_t lo = 0, hi = self.hashes.shape[0], mid
        cdef int64_t r, start, end, j
        cdef int64_t nrows = self.rows.shape[0], nblob = self.blob.shape[0]
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.hashes[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        while lo < self.hashes.shape[0] and self.hashes[lo] == h:
            r = self.rows[lo]
            if r < 0 or r >= nrows:
                raise ValueError(
                    f"id lookup: rows[{lo}]={r} is not a row in [0, {nrows}); the index is "
                    "corrupt, rebuild it"
                )
            start = self.offsets[r]
            end = self.offsets[r + 1]
            if not 0 <= start <= end <= nblob:
                raise ValueError(
                    f"id lookup: the id of row {r} spans [{start}, {end}), outside the id blob "
                    f"[0, {nblob}); the index is corrupt, rebuild it"
                )
            if end - start == klen:
                j = 0
                while j < klen and self.blob[start + j] == k[j]:
                    j += 1
                if j == klen:
                    return r
            lo += 1
        return -1
