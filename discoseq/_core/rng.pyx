"""Deterministic randomness for epoch plans.

Specification (bit-exact; ``tests/reference_plan.py`` re-implements it in Python):

* ``mix64`` is SplitMix64's finaliser (Stafford variant 13).
* A stream key is derived from ``(seed, epoch, purpose)`` by chaining ``mix64`` over each part,
  each part first passed through its own ``mix64`` with a distinct constant, so that
  ``(seed, epoch)`` and ``(seed + 1, epoch - 1)`` share nothing (never ``seed + epoch``):
  ``k = mix(mix(mix(seed ^ C1) ^ mix(epoch ^ C2)) ^ mix(purpose ^ C3))``.
* The stream of a key is SplitMix64 started at that key: ``state += 0x9E3779B97F4A7C15;
  out = mix64(state)``. It is counter-based, so it is identical on every machine and does not
  depend on NumPy's generators or shuffle algorithms (which NumPy does not freeze).
* Bounded integers use Lemire's multiply-and-reject method (unbiased), and shuffles are our own
  forward Fisher–Yates (``i = 1 .. n-1``: swap ``a[i]`` with ``a[bounded(i + 1)]``).
* Purposes: ``PURPOSE_CUTS | segment`` shuffles the cuts of one bucket (segment 0 for RANDOM),
  ``PURPOSE_TAIL`` rotates the leftover batches, ``PURPOSE_ORDER`` shuffles the groups of batches.
  The rank never enters a key: every rank computes the same global plan.
"""

import numpy as np

from libc.stdint cimport int64_t, uint64_t

from discoseq._core.rng cimport ds_bounded, ds_derive_key, ds_mix64, ds_next, shuffle_i64

PURPOSE_CUTS = 1 << 32
PURPOSE_TAIL = 2 << 32
PURPOSE_ORDER = 3 << 32

_U64 = (1 << 64) - 1


def _u64(value, name):
    v = int(value)
    if v < 0 or v > _U64:
        raise ValueError(f"{name}={value!r} must be an integer in [0, 2**64)")
    return v


def mix64(z) -> int:
    """SplitMix64's finaliser of one 64-bit integer."""
    return ds_mix64(<uint64_t>_u64(z, "z"))


def derive_key(seed, epoch, purpose) -> int:
    """The stream key of ``(seed, epoch, purpose)``; each an integer in ``[0, 2**64)``."""
    return ds_derive_key(<uint64_t>_u64(seed, "seed"), <uint64_t>_u64(epoch, "epoch"),
                         <uint64_t>_u64(purpose, "purpose"))


def raw_stream(key, Py_ssize_t n):
    """The first ``n`` 64-bit outputs of the stream of ``key`` (uint64 array)."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    out = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] o = out
    cdef uint64_t state = <uint64_t>_u64(key, "key")
    cdef Py_ssize_t i
    with nogil:
        for i in range(n):
            o[i] = ds_next(&state)
    return out


def bounded_stream(key, const int64_t[::1] bounds):
    """Draw ``bounded(bounds[i])`` for each i in turn from the one stream of ``key``."""
    cdef Py_ssize_t i, n = bounds.shape[0]
    for i in range(n):
        if bounds[i] < 1:
            raise ValueError(f"bounds[{i}]={bounds[i]} must be >= 1")
    out = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] o = out
    cdef uint64_t state = <uint64_t>_u64(key, "key")
    with nogil:
        for i in range(n):
            o[i] = <int64_t>ds_bounded(&state, <uint64_t>bounds[i])
    return out


def shuffle(int64_t[::1] a not None, key) -> None:
    """Shuffle ``a`` in place with our Fisher–Yates on the stream of ``key``."""
    cdef uint64_t k = <uint64_t>_u64(key, "key")
    cdef int64_t n = a.shape[0]
    if n > 1:
        with nogil:
            shuffle_i64(&a[0], n, k)


def shuffle_segments(int64_t[::1] a not None, const int64_t[::1] offsets not None,
                     const uint64_t[::1] keys not None) -> None:
    """Shuffle each ``a[offsets[s]:offsets[s+1]]`` in place with the stream of ``keys[s]``."""
    cdef Py_ssize_t s, nseg = offsets.shape[0] - 1
    if nseg < 0 or keys.shape[0] != nseg:
        raise ValueError(f"need len(keys) == len(offsets) - 1, got {keys.shape[0]} and "
                         f"{offsets.shape[0]}")
    for s in range(nseg):
        if not (0 <= offsets[s] <= offsets[s + 1] <= a.shape[0]):
            raise ValueError(f"offsets must be non-decreasing within [0, {a.shape[0]}]")
    with nogil:
        for s in range(nseg):
            if offsets[s + 1] - offsets[s] > 1:
                shuffle_i64(&a[offsets[s]], offsets[s + 1] - offsets[s], keys[s])
