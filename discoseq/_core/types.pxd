# cython: language_level=3
"""Shared C-level types of the engine: column pointers, key kinds, error codes, row checks.

Every kernel reads the index columns through :c:type:`Columns` (raw pointers into the
caller's, possibly read-only, arrays); a missing column is ``NULL`` and the Python layer
guarantees that a kernel is only asked for a column that is present, and (:func:`check_rows`)
that every row id it is given lies inside the columns: the kernels never bounds-check, except
that a kernel may test each row in its first pass over them, before the row is read, instead
of a pass of its own (then :func:`row_outside`, ``DS_ERR_ROW``, and ``check_rows`` for the
message: the same ValueError).
"""

from libc.stdint cimport int32_t, int64_t, uint64_t

cdef extern from *:
    """
    #define DS_PREFETCH(p) __builtin_prefetch((p), 0, 0)
    #define DS_PREFETCH_W(p) __builtin_prefetch((p), 1, 0)
    """
    # a hint to fetch the cache line of ``p`` for a read / a write soon (rows read at random)
    void DS_PREFETCH(const void* p) noexcept nogil
    void DS_PREFETCH_W(void* p) noexcept nogil

# What a bucketing key is made of (see ``key_of``).
cdef enum KeyKind:
    KEY_DURATION = 0   # duration, seconds
    KEY_FRAMES = 1     # num_frames
    KEY_NUMEL = 2      # num_frames * num_features (feature-matrix element count)
    KEY_TOKENS = 3     # num_tokens

# Kernel return codes (>= 0 means success / a count).
cdef enum ErrCode:
    DS_OK = 0
    DS_ERR_NOMEM = -1
    DS_ERR_OVERFLOW = -2
    DS_ERR_BOUNDS = -3
    DS_ERR_ROW = -4  # a row outside the columns (found before it was read)

cdef struct Columns:
    const double* duration
    const int64_t* num_frames
    const int64_t* num_features
    const int64_t* num_tokens


cdef inline double key_of(const Columns* c, int kind, int64_t row) noexcept nogil:
    """The bucketing key of one row as a double (integer kinds are exact below 2**53)."""
    if kind == KEY_DURATION:
        return c.duration[row]
    elif kind == KEY_FRAMES:
        return <double>c.num_frames[row]
    elif kind == KEY_NUMEL:
        return <double>(c.num_frames[row] * c.num_features[row])
    else:
        return <double>c.num_tokens[row]


cdef inline int64_t weight_of(int kind, double key) noexcept nogil:
    """Integer weight of a key for edge estimation: milliseconds for durations, the count itself
    otherwise. Integer weights make the cumulative sums exact and independent of summation order."""
    if kind == KEY_DURATION:
        return <int64_t>(key * 1000.0 + 0.5)
    return <int64_t>key


cdef inline const double* f64_ptr(const double[::1] a) noexcept:
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef inline const int64_t* i64_ptr(const int64_t[::1] a) noexcept:
    return NULL if a is None or a.shape[0] == 0 else &a[0]


cdef inline bint row_outside(int64_t row, int64_t ncol) noexcept nogil:
    """``row`` is not a row of columns of ``ncol`` rows (one unsigned comparison)."""
    return <uint64_t>row >= <uint64_t>ncol


cdef inline Py_ssize_t first_bad_row(const int64_t* rows, Py_ssize_t n,
                                      int64_t ncol) noexcept nogil:
    """The first ``i`` with ``rows[i]`` outside ``[0, ncol)``, or -1.

    One branch-free pass in the common case: ``row`` is outside iff ``row < 0`` or
    ``ncol - 1 - row < 0``, so each block of rows ORs both values and tests the sign bit once
    (plain integer ops that the compiler vectorises); only a failing block is searched again."""
    cdef Py_ssize_t i = 0, j, stop
    cdef uint64_t acc
    cdef uint64_t last = <uint64_t>(ncol - 1)
    if n > 0 and ncol <= 0:
        return 0
    while i < n:
        stop = i + 2048 if i + 2048 < n else n
        acc = 0
        for j in range(i, stop):
            acc |= <uint64_t>rows[j] | (last - <uint64_t>rows[j])
        if acc >> 63:
            for j in range(i, stop):
                if rows[j] < 0 or rows[j] >= ncol:
                    return j
        i = stop
    return -1


cdef inline int check_rows(const int64_t[::1] rows, int64_t ncol, str kernel, str arg,
                           str column) except -1:
    """Raise ValueError unless every ``rows[i]`` is a row of ``column`` (``0 <= row < ncol``).

    The Python-boundary check of every kernel that indexes columns with caller-given row ids
    (they read through raw pointers, so a bad row would read out of bounds even in the release
    build). ``rows`` None (meaning every row) passes."""
    cdef Py_ssize_t bad
    if rows is None or rows.shape[0] == 0:
        return 0
    with nogil:
        bad = first_bad_row(&rows[0], rows.shape[0], ncol)
    if bad >= 0:
        raise ValueError(
            f"{kernel}: {arg}[{bad}]={rows[bad]} is not a row of {column} "
            f"(expected 0 <= row < {ncol})"
        )
    return 0


ctypedef fused Amount:
    int64_t
    double


cdef inline Amount with_one_more(int64_t n, Amount most, Amount total, Amount x,
                                 bint sum_mode) noexcept nogil:
    """A batch's cost of one limit once ``x`` joins its ``n`` items (largest ``most``, sum
    ``total``): the sum, or ``n + 1`` times the largest (Lhotse's padded meaning of a cap). The
    one rule of packing cuts into batches and packs into batches."""
    if sum_mode:
        return total + x
    return (n + 1) * (most if most > x else x)
