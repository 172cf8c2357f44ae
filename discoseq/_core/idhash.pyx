# cython: language_level=3
"""64-bit hashes of cut ids for the index's id -> row lookup (FNV-1a, then a murmur3 finaliser),
their stable sort (a radix sort) and the merge of sorted runs of them (a parallel build's parts,
each sorted in its worker; optionally in threads); and the gathering of a chunk's ids into
the id blob.

Reference twin: ``tests/_core/test_idhash.py::py_hash``.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.string cimport memcpy


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


cdef Py_ssize_t _first_bad_span(const int64_t[::1] starts, const int64_t[::1] ends,
                                int64_t size) noexcept nogil:
    """The first ``i`` whose span is not inside ``[0, size]`` (or runs backwards), or -1."""
    cdef Py_ssize_t i
    for i in range(starts.shape[0]):
        if not 0 <= starts[i] <= ends[i] <= size:
            return i
    return -1


def gather_spans(const uint8_t[::1] data, const int64_t[::1] starts, const int64_t[::1] ends):
    """``data[starts[i]:ends[i]]`` concatenated, and each span's length (int64): a chunk's ids
    (or frames) gathered into the column that holds them, one copy a span."""
    cdef Py_ssize_t n = starts.shape[0], i, bad
    cdef int64_t total = 0, o = 0
    if ends.shape[0] != n:
        raise ValueError(f"{n} starts but {ends.shape[0]} ends")
    with nogil:
        bad = _first_bad_span(starts, ends, data.shape[0])
    if bad >= 0:
        raise ValueError(
            f"span {bad} [{starts[bad]}, {ends[bad]}) is not inside the data [0, {data.shape[0]})"
        )
    lengths = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] lv = lengths
    with nogil:
        for i in range(n):
            lv[i] = ends[i] - starts[i]
            total += lv[i]
    out = np.empty(total, dtype=np.uint8)
    cdef uint8_t[::1] ov = out
    if total:
        with nogil:
            for i in range(n):
                if lv[i]:  # (an empty span may sit at the very end)
                    memcpy(&ov[o], &data[starts[i]], lv[i])
                    o += lv[i]
    return out, lengths


cdef void _merge_two(const uint64_t* ha, const int64_t* ra, int64_t na, int64_t base_a,
                     const uint64_t* hb, const int64_t* rb, int64_t nb, int64_t base_b,
                     uint64_t* ho, int64_t* ro) noexcept nogil:
    """Merge two sorted runs, ``a`` first on equal hashes, adding each run's ``base`` to its
    rows; branch-free in the loop (which run a value comes from is unpredictable)."""
    cdef int64_t i = 0, j = 0, o = 0, take_b, x_r, y_r
    cdef uint64_t x, y
    while i < na and j < nb:
        x = ha[i]  # both sides loaded first, so the choice compiles to conditional moves
        y = hb[j]
        x_r = ra[i] + base_a
        y_r = rb[j] + base_b
        take_b = y < x
        ho[o] = y if take_b else x
        ro[o] = y_r if take_b else x_r
        j += take_b
        i += 1 - take_b
        o += 1
    while i < na:
        ho[o] = ha[i]
        ro[o] = ra[i] + base_a
        i += 1
        o += 1
    while j < nb:
        ho[o] = hb[j]
        ro[o] = rb[j] + base_b
        j += 1
        o += 1


cdef void _merge_runs(const uint64_t* hashes, const int64_t* rows, const int64_t* starts,
                      const int64_t* bases, int64_t* bounds, Py_ssize_t k, uint64_t* out_h,
                      int64_t* out_r, uint64_t* tmp_h, int64_t* tmp_r) noexcept nogil:
    """Merge ``k`` non-empty runs pairwise, level by level (ceil(log2 k) passes over the data),
    between ``out`` and ``tmp`` so that the last level lands in ``out``. Run ``r`` is
    ``hashes[starts[r]:starts[r] + n_r]`` (``n_r = bounds[r + 1] - bounds[r]``, its place in
    the output); the first level reads the runs where they lie and adds ``bases[r]`` to their
    rows. ``bounds`` is reused for the merged runs' bounds."""
    cdef Py_ssize_t levels = 0, width = 1, r, m
    cdef const uint64_t* src_h = hashes
    cdef const int64_t* src_r = rows
    cdef uint64_t* dst_h
    cdef int64_t* dst_r
    cdef bint first = True
    cdef int64_t sa, sb
    while width < k:
        width *= 2
        levels += 1
    if levels == 0:  # one run: its hashes as they are, its rows moved by its base
        _merge_two(hashes + starts[0], rows + starts[0], bounds[1], bases[0], hashes, rows, 0,
                   0, out_h, out_r)
        return
    while k > 1:
        levels -= 1
        dst_h = out_h if levels % 2 == 0 else tmp_h
        dst_r = out_r if levels % 2 == 0 else tmp_r
        m = 0
        for r in range(0, k, 2):
            sa = starts[r] if first else bounds[r]
            if r + 1 < k:
                sb = starts[r + 1] if first else bounds[r + 1]
                _merge_two(src_h + sa, src_r + sa, bounds[r + 1] - bounds[r],
                           bases[r] if first else 0,
                           src_h + sb, src_r + sb, bounds[r + 2] - bounds[r + 1],
                           bases[r + 1] if first else 0,
                           dst_h + bounds[r], dst_r + bounds[r])
            else:  # the odd run out is carried to the next level
                _merge_two(src_h + sa, src_r + sa, bounds[r + 1] - bounds[r],
                           bases[r] if first else 0, src_h, src_r, 0, 0,
                           dst_h + bounds[r], dst_r + bounds[r])
            bounds[m + 1] = bounds[min(r + 2, k)]
            m += 1
        k = m
        first = False
        src_h = dst_h
        src_r = dst_r


DEF _DIGIT_BITS = 11
DEF _DIGITS = 6  # 6 x 11 bits cover a 64-bit hash


cdef void _radix_sort(const uint64_t* keys, Py_ssize_t n, uint64_t* out_k, int64_t* out_i,
                      uint64_t* tmp_k, int64_t* tmp_i, int64_t* counts) noexcept nogil:
    """LSD radix sort of ``keys`` with their positions, 11 bits a pass (stable: equal keys keep
    their order). The first pass reads ``keys`` and numbers them; passes alternate between
    ``tmp`` and ``out`` and end in ``out``. ``counts``: _DIGITS x 2048 zeroed int64."""
    cdef Py_ssize_t i, d, b, mask = (1 << _DIGIT_BITS) - 1
    cdef int64_t total, c
    cdef uint64_t key
    cdef int64_t* cnt
    cdef const uint64_t* src_k = keys
    cdef const int64_t* src_i = NULL
    cdef uint64_t* dst_k
    cdef int64_t* dst_i
    for i in range(n):  # every digit's histogram in one pass
        key = keys[i]
        for d in range(_DIGITS):
            counts[(d << _DIGIT_BITS) + ((key >> (d * _DIGIT_BITS)) & mask)] += 1
    for d in range(_DIGITS):
        cnt = counts + (d << _DIGIT_BITS)
        total = 0
        for b in range(1 << _DIGIT_BITS):  # counts -> first position of each digit value
            c = cnt[b]
            cnt[b] = total
            total += c
        dst_k = out_k if (_DIGITS - 1 - d) % 2 == 0 else tmp_k
        dst_i = out_i if (_DIGITS - 1 - d) % 2 == 0 else tmp_i
        for i in range(n):
            key = src_k[i]
            b = cnt[(key >> (d * _DIGIT_BITS)) & mask]
            cnt[(key >> (d * _DIGIT_BITS)) & mask] = b + 1
            dst_k[b] = key
            dst_i[b] = i if src_i == NULL else src_i[i]
        src_k = dst_k
        src_i = dst_i


#: Fewest hashes a thread of :func:`merge_sorted_runs` is given (fewer: fewer threads; starting
#: one costs more than merging this many).
MIN_THREAD_HASHES = 1 << 16


def _in_threads(work, Py_ssize_t count):
    """Call ``work(t)`` for ``t`` in ``range(count)``, ``t >= 1`` each in a thread of its own
    and 0 in this one (``work`` releases the GIL for its loops); re-raises a thread's error."""
    import threading

    errors = []

    def run(t):
        try:
            work(t)
        except BaseException as e:  # pragma: no cover - work raises only on a bug
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(1, count)]
    for thread in threads:
        thread.start()
    run(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


DEF _MAX_BUCKET = 64  # larger buckets (equal or clustered hashes): the radix sort instead


cdef bint _bucket_sort(const uint64_t* keys, Py_ssize_t n, int bits, uint64_t* out_k,
                       int64_t* out_i, int64_t* counts) noexcept nogil:
    """Stable sort of ``keys`` (with their positions) that are spread evenly over the 64-bit
    range, as id hashes are: placed by their top ``bits`` bits into buckets of a few keys each
    (2 passes), each bucket then sorted by insertion. Returns False, having sorted nothing,
    when a bucket would hold more than ``_MAX_BUCKET`` keys. ``counts``: 2**bits + 1 zeroed."""
    cdef Py_ssize_t i, j, b, nb = (<Py_ssize_t>1) << bits, start, end
    cdef int shift = 64 - bits
    cdef int64_t total = 0, c, pos, idx
    cdef uint64_t key
    for i in range(n):
        counts[keys[i] >> shift] += 1
    for b in range(nb):
        if counts[b] > _MAX_BUCKET:
            return False
    for b in range(nb):  # counts -> each bucket's first position; counts[nb]: the end
        c = counts[b]
        counts[b] = total
        total += c
    counts[nb] = total
    for i in range(n):  # in input order: a stable placement
        key = keys[i]
        pos = counts[key >> shift]
        counts[key >> shift] = pos + 1
        out_k[pos] = key
        out_i[pos] = i
    start = 0
    for b in range(nb):  # counts[b] is now bucket b's end
        end = counts[b]
        for j in range(start + 1, end):
            key = out_k[j]
            idx = out_i[j]
            i = j - 1
            while i >= start and out_k[i] > key:  # strictly: equal keys keep their order
                out_k[i + 1] = out_k[i]
                out_i[i + 1] = out_i[i]
                i -= 1
            out_k[i + 1] = key
            out_i[i + 1] = idx
        start = end
    return True


def _sort_block(const uint64_t[::1] hashes, uint64_t[::1] out_k, int64_t[::1] out_i,
                uint64_t[::1] tmp_k, int64_t[::1] tmp_i, Py_ssize_t start, Py_ssize_t end):
    """Sort ``hashes[start:end]`` into ``out_*[start:end]`` (positions within the block): by
    buckets (:func:`_bucket_sort`) when the hashes are spread evenly, else by radix."""
    cdef Py_ssize_t n = end - start
    cdef int bits = max(1, min(26, (n // 16).bit_length()))  # 8-16 keys a bucket
    cdef bint done = False
    if n == 0:
        return
    buckets = np.zeros(((<Py_ssize_t>1) << bits) + 1, dtype=np.int64)
    cdef int64_t[::1] bv = buckets
    with nogil:
        done = _bucket_sort(&hashes[start], n, bits, &out_k[start], &out_i[start], &bv[0])
    if done:
        return
    counts = np.zeros(_DIGITS << _DIGIT_BITS, dtype=np.int64)
    cdef int64_t[::1] cv = counts
    with nogil:
        _radix_sort(&hashes[start], n, &out_k[start], &out_i[start], &tmp_k[start],
                    &tmp_i[start], &cv[0])


def _outputs(str kernel, out, Py_ssize_t n):
    """The (hashes, rows) arrays a kernel writes its ``n`` results into: ``out`` checked (e.g.
    the mapped column files of an index, written in place), or new ones. ``out`` must not
    overlap the kernel's inputs (not checked: the callers pass new files)."""
    if out is None:
        return np.empty(n, dtype=np.uint64), np.empty(n, dtype=np.int64)
    hashes, rows = out
    for a, dtype, name in ((hashes, np.uint64, "hashes"), (rows, np.int64, "rows")):
        if (not isinstance(a, np.ndarray) or a.dtype != dtype or a.shape != (n,)
                or not a.flags.c_contiguous or not a.flags.writeable):
            raise ValueError(f"{kernel}: out's {name} must be a writable contiguous "
                             f"{np.dtype(dtype).name} array of {n} values")
    return hashes, rows


def sort_hashes(const uint64_t[::1] hashes, out=None):
    """``hashes`` sorted, and each one's position: ``(hashes[order], order)`` with
    ``order = argsort(hashes, kind="stable")``: id hashes are spread evenly over the 64-bit
    range, so they are placed into buckets of a few each by their top bits and each bucket is
    sorted by insertion (2 passes over the data); an LSD radix sort (6 passes) when a bucket
    would be large (equal or clustered hashes). Both are several times faster than NumPy's
    stable sort on random 64-bit keys; 16 bytes of memory a hash besides the result (only the
    radix sort touches them). ``out``: the (hashes, order) arrays to write into (None: new)."""
    cdef Py_ssize_t n = hashes.shape[0]
    out_hashes, order = _outputs("sort_hashes", out, n)
    if n:
        _sort_block(hashes, out_hashes, order, np.empty(n, dtype=np.uint64),
                    np.empty(n, dtype=np.int64), 0, n)
    return out_hashes, order


cdef Py_ssize_t _first_unsorted(const uint64_t[::1] hashes, const int64_t[::1] bounds) noexcept nogil:
    """The first ``i`` where ``hashes[i] > hashes[i + 1]`` inside one run, or -1."""
    cdef Py_ssize_t r, i
    for r in range(bounds.shape[0] - 1):
        for i in range(bounds[r], bounds[r + 1] - 1):
            if hashes[i] > hashes[i + 1]:
                return i
    return -1


def _value_splits(count):
    """The ``count - 1`` hash values that cut the 64-bit range in ``count`` equal spans."""
    return [(1 << 64) * i // count for i in range(1, count)]


def _merge_part(const uint64_t[::1] hashes, const int64_t[::1] rows, int64_t[::1] starts,
                int64_t[::1] bases, int64_t[::1] bounds, uint64_t[::1] out_h,
                int64_t[::1] out_r, uint64_t[::1] tmp_h, int64_t[::1] tmp_r,
                Py_ssize_t offset, Py_ssize_t tmp_offset):
    """Merge the (non-empty) runs ``starts``/``bases``/``bounds`` (see ``_merge_runs``) into
    ``out_*[offset:]``, using ``tmp_*[tmp_offset:]`` between levels."""
    cdef Py_ssize_t k = starts.shape[0]
    with nogil:
        _merge_runs(&hashes[0], &rows[0], &starts[0], &bases[0], &bounds[0], k, &out_h[offset],
                    &out_r[offset], &tmp_h[tmp_offset], &tmp_r[tmp_offset])


def merge_sorted_runs(const uint64_t[::1] hashes, const int64_t[::1] rows,
                      const int64_t[::1] bounds, Py_ssize_t threads=1, out=None):
    """Merge the sorted runs ``hashes[bounds[r]:bounds[r+1]]`` into one sorted array, with the
    row of each hash: ``bounds[r] + rows[i]`` (``rows[i]``: its position within its run, i.e.
    each run's stable argsort). Equal hashes keep run order, so the rows equal
    ``argsort(all hashes, kind="stable")`` of the unsorted runs. Returns (hashes, rows).

    With ``threads`` > 1 the range of hash values is cut in that many equal spans (id hashes are
    spread evenly over it), each merged in a thread of its own into its place in the output:
    the same arrays (equal hashes fall in one span), sooner on idle cores. ``out``: the
    (hashes, rows) arrays to write into (None: new ones)."""
    cdef Py_ssize_t n = hashes.shape[0], k = bounds.shape[0] - 1, r, t
    if threads < 1:
        raise ValueError(f"threads must be at least 1, found {threads}")
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
    out_hashes, out_rows = _outputs("merge_sorted_runs", out, n)
    if n == 0:
        return out_hashes, out_rows
    runs = np.asarray(bounds)
    runs = np.concatenate([[0], runs[1:][runs[1:] > runs[:k]]]).astype(np.int64)  # non-empty
    k = runs.shape[0] - 1
    threads = max(1, min(threads, n // MIN_THREAD_HASHES))
    # each span's share of every run: cut[r, t] = where run r's hashes of span t begin
    values = np.asarray(hashes)
    cut = np.empty((k, threads + 1), np.int64)
    splits = np.array(_value_splits(threads), np.uint64)
    for r in range(k):
        cut[r, 0], cut[r, threads] = runs[r], runs[r + 1]
        cut[r, 1:threads] = runs[r] + np.searchsorted(values[runs[r] : runs[r + 1]], splits)
    sizes = np.diff(cut, axis=1)  # sizes[r, t]: run r's hashes in span t
    offsets = np.concatenate([[0], np.cumsum(sizes.sum(axis=0))]).astype(np.int64)
    spans = []
    for t in range(threads):
        present = np.flatnonzero(sizes[:, t])
        starts = np.ascontiguousarray(cut[present, t])
        bases = np.ascontiguousarray(runs[:k][present])
        span_bounds = np.concatenate([[0], np.cumsum(sizes[present, t])]).astype(np.int64)
        spans.append((starts, bases, span_bounds))
    big = any(s[0].shape[0] > 2 for s in spans)  # a level between two others: tmp arrays
    tmp_hashes = np.empty(n if big else 1, dtype=np.uint64)
    tmp_rows = np.empty(n if big else 1, dtype=np.int64)

    def merge(t):
        starts, bases, span_bounds = spans[t]
        if starts.shape[0]:
            _merge_part(hashes, rows, starts, bases, span_bounds, out_hashes, out_rows,
                        tmp_hashes, tmp_rows, offsets[t], offsets[t] if big else 0)

    _in_threads(merge, threads)
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
