"""Per-source totals of a mixture plan's rows: how many rows of each source, and their seconds.

A mixture's sources are consecutive row ranges of the columns (source ``s`` holds rows
``[ends[s - 1], ends[s])``, ``ends[-1]`` being 0), so a row's source is the number of ends at
or below it. One pass over the rows, the durations read through them with a prefetch (as
packing reads them): no array of sources nor of gathered durations (80 MB each at 10M rows).
"""

import numpy as np

from libc.stdint cimport int64_t

from discoseq._core.types cimport DS_PREFETCH, check_rows

cdef inline int64_t _source_of(const int64_t* ends, int64_t ns, int64_t row) noexcept nogil:
    """The number of ``ends`` at or below ``row`` (``ends`` non-decreasing; a branch-free
    search: the comparison becomes a conditional move)."""
    cdef const int64_t* base = ends
    cdef int64_t n = ns, half
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= row else base
        n -= half
    return (base - ends) + (1 if base[0] <= row else 0)


def source_totals(const int64_t[::1] rows not None, const int64_t[::1] ends not None,
                  const double[::1] duration not None):
    """The rows of each source among ``rows`` and the sum of their durations, added in the
    order of ``rows`` (as ``np.bincount(sources, weights=duration[rows])`` adds them: the same
    floats). Source ``s`` holds the rows below ``ends[s]`` and at or above ``ends[s - 1]``;
    ``ends`` must be non-decreasing, every row a row of ``duration`` below ``ends[-1]`` (else
    ValueError).

    :return: ``(counts int64, seconds float64)``, one value per source.
    """
    cdef int64_t ns = ends.shape[0], s, i, n = rows.shape[0], row
    if ns < 1:
        raise ValueError("ends needs at least one source")
    for s in range(1, ns):
        if ends[s - 1] > ends[s]:
            raise ValueError("ends must be non-decreasing")
    check_rows(rows, min(duration.shape[0], max(ends[ns - 1], 0)), "source_totals", "rows",
               "the sources' durations")
    counts = np.zeros(ns, dtype=np.int64)
    seconds = np.zeros(ns, dtype=np.float64)
    cdef int64_t[::1] c = counts
    cdef double[::1] sec = seconds
    cdef const int64_t* rp = &rows[0] if n > 0 else NULL
    cdef const double* dp = &duration[0] if duration.shape[0] > 0 else NULL
    cdef const int64_t* ep = &ends[0]
    with nogil:
        for i in range(n):
            if i + 64 < n:
                DS_PREFETCH(&dp[rp[i + 64]])
            row = rp[i]
            # ends[ns - 1] > row: the search over the others finds the source
            s = _source_of(ep, ns - 1, row) if ns > 1 else 0
            c[s] += 1
            sec[s] = sec[s] + dp[row]
    return counts, seconds
