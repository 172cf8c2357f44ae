# cython: language_level=3
"""Shared C-level types of the engine: column pointers, key kinds and error codes.

Every kernel reads the index columns through :c:type:`Columns` (raw pointers into the
caller's, possibly read-only, arrays); a missing column is ``NULL`` and the Python layer
guarantees that a kernel is only asked for a column that is present.
"""

from libc.stdint cimport int32_t, int64_t, uint64_t

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
