# cython: language_level=3
"""64-bit hashes of cut ids for the index's id -> row lookup (FNV-1a, then a murmur3 finaliser).

Reference twin: ``tests/index/test_idhash.py::py_hash``.
"""

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint8_t, uint64_t

cnp.import_array()


cdef inline uint64_t _hash_bytes(const uint8_t[::1] blob, int64_t start, int64_t end) noexcept nogil:
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


def hash_spans(const uint8_t[::1] blob, const int64_t[::1] offsets):
    """Hash ``blob[offsets[i]:offsets[i+1]]`` for every i; returns uint64 array of len(offsets)-1."""
    cdef Py_ssize_t n = offsets.shape[0] - 1
    if n < 0:
        raise ValueError("offsets must hold at least one element")
    if n > 0 and (offsets[0] < 0 or offsets[n] > blob.shape[0]):
        raise ValueError("offsets point outside the blob")
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] out_view = out
    with nogil:
        _hash_spans(blob, offsets, out_view)
    return out


def hash_id(bytes cut_id):
    """Hash one id (UTF-8 bytes) exactly as :func:`hash_spans` does."""
    cdef const uint8_t[::1] view = cut_id
    return _hash_bytes(view, 0, view.shape[0])


cdef class IdLookup:
    """id -> row over the index's sorted id hashes (binary search, then compare the id bytes)."""

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
        cdef int64_t r, start, j
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.hashes[mid] < h:
                lo = mid + 1
            else:
                hi = mid
        while lo < self.hashes.shape[0] and self.hashes[lo] == h:
            r = self.rows[lo]
            start = self.offsets[r]
            if self.offsets[r + 1] - start == klen:
                j = 0
                while j < klen and self.blob[start + j] == k[j]:
                    j += 1
                if j == klen:
                    return r
            lo += 1
        return -1
