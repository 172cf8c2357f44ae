# cython: language_level=3
"""64-bit hashes of cut ids for the index's id -> row lookup (FNV-1a, then a murmur3 finaliser),
and the merge of sorted runs of them (a parallel build's parts, each sorted in its worker).

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


cdef inline bint _before(const uint64_t[::1] hashes, const int64_t[::1] pos,
                         Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Run ``a``'s head comes before run ``b``'s: a smaller hash, or an equal one and a lower run
    (the merge is stable: equal hashes keep their runs' order)."""
    cdef uint64_t ha = hashes[pos[a]], hb = hashes[pos[b]]
    return ha < hb or (ha == hb and a < b)


cdef void _sift_down(const uint64_t[::1] hashes, const int64_t[::1] pos, int64_t[::1] heap,
                     Py_ssize_t size, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t child, top = heap[i]
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(hashes, pos, heap[child + 1], heap[child]):
            child += 1
        if not _before(hashes, pos, heap[child], top):
            break
        heap[i] = heap[child]
        i = child
    heap[i] = top


cdef void _merge_runs(const uint64_t[::1] hashes, const int64_t[::1] rows,
                      const int64_t[::1] bounds, int64_t[::1] pos, int64_t[::1] heap,
                      uint64_t[::1] out_hashes, int64_t[::1] out_rows) noexcept nogil:
    """k-way merge with a binary heap of the runs' heads: O(n log k)."""
    cdef Py_ssize_t k = bounds.shape[0] - 1, size = 0, r, o = 0
    cdef int64_t p
    for r in range(k):
        pos[r] = bounds[r]
        if bounds[r] < bounds[r + 1]:
            heap[size] = r
            size += 1
    for r in range(size // 2 - 1, -1, -1):
        _sift_down(hashes, pos, heap, size, r)
    while size > 0:
        r = heap[0]
        p = pos[r]
        out_hashes[o] = hashes[p]
        out_rows[o] = bounds[r] + rows[p]
        o += 1
        pos[r] = p + 1
        if p + 1 == bounds[r + 1]:  # run exhausted: its place goes to the heap's last run
            size -= 1
            heap[0] = heap[size]
        if size > 0:
            _sift_down(hashes, pos, heap, size, 0)


cdef Py_ssize_t _first_unsorted(const uint64_t[::1] hashes, const int64_t[::1] bounds) noexcept nogil:
    """The first ``i`` where ``hashes[i] > hashes[i + 1]`` inside one run, or -1."""
    cdef Py_ssize_t r, i
    for r in range(bounds.shape[0] - 1):
        for i in range(bounds[r], bounds[r + 1] - 1):
            if hashes[i] > hashes[i + 1]:
                return i
    return -1


def merge_sorted_runs(const uint64_t[::1] hashes, const int64_t[::1] rows,
                      const int64_t[::1] bounds):
    """Merge the sorted runs ``hashes[bounds[r]:bounds[r+1]]`` into one sorted array, with the
    row of each hash: ``bounds[r] + rows[i]`` (``rows[i]``: its position within its run, i.e.
    each run's stable argsort). Equal hashes keep run order, so the rows equal
    ``argsort(all hashes, kind="stable")`` of the unsorted runs. Returns (hashes, rows)."""
    cdef Py_ssize_t n = hashes.shape[0], k = bounds.shape[0] - 1, r
    if rows.shape[0] != n:
        raise ValueError(f"rows holds {rows.shape[0]} values for {n} hashes")
    if k < 0 or bounds[0] != 0 or bounds[k] != n:
        raise ValueError(f"bounds must run from 0 to {n} (the number of hashes)")
    for r in range(k):
        if bounds[r] > bounds[r + 1]:
            raise ValueError(f"bounds must not decrease: bounds[{r}]={bounds[r]} > "
                             f"bounds[{r + 1}]={bounds[r + 1]}")
    cdef Py_ssize_t bad
    with nogil:
        bad = _first_unsorted(hashes, bounds)
    if bad >= 0:
        raise ValueError(f"hashes[{bad}] > hashes[{bad + 1}] inside a run: runs must be sorted")
    out_hashes = np.empty(n, dtype=np.uint64)
    out_rows = np.empty(n, dtype=np.int64)
    pos = np.empty(max(k, 1), dtype=np.int64)
    heap = np.empty(max(k, 1), dtype=np.int64)
    cdef uint64_t[::1] oh = out_hashes
    cdef int64_t[::1] orows = out_rows, pv = pos, hv = heap
    with nogil:
        _merge_runs(hashes, rows, bounds, pv, hv, oh, orows)
    return out_hashes, out_rows


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
