# cython: language_level=3
"""Counter-based randomness shared by the kernels (inline, so every module gets the same code).

See ``rng.pyx`` for the specification; ``tests/reference_plan.py`` holds the Python twin.
"""

from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #define DS_GOLDEN 0x9E3779B97F4A7C15ULL
    static inline uint64_t ds_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    /* key = mix(mix(mix(seed ^ C1) ^ mix(epoch ^ C2)) ^ mix(purpose ^ C3)) */
    static inline uint64_t ds_derive_key(uint64_t seed, uint64_t epoch, uint64_t purpose) {
        uint64_t k = ds_mix64(seed ^ 0x6A09E667F3BCC908ULL);
        k = ds_mix64(k ^ ds_mix64(epoch ^ 0xBB67AE8584CAA73BULL));
        return ds_mix64(k ^ ds_mix64(purpose ^ 0x3C6EF372FE94F82BULL));
    }
    /* SplitMix64: state advances by the golden gamma, output is the mixed state. */
    static inline uint64_t ds_next(uint64_t *state) {
        *state += DS_GOLDEN;
        return ds_mix64(*state);
    }
    /* Lemire's nearly-divisionless unbiased integer in [0, n), n >= 1. */
    static inline uint64_t ds_bounded(uint64_t *state, uint64_t n) {
        uint64_t x = ds_next(state);
        unsigned __int128 m = (unsigned __int128)x * (unsigned __int128)n;
        uint64_t l = (uint64_t)m;
        if (l < n) {
            uint64_t t = (0 - n) % n;
            while (l < t) {
                x = ds_next(state);
                m = (unsigned __int128)x * (unsigned __int128)n;
                l = (uint64_t)m;
            }
        }
        return (uint64_t)(m >> 64);
    }
    """
    uint64_t ds_mix64(uint64_t z) noexcept nogil
    uint64_t ds_derive_key(uint64_t seed, uint64_t epoch, uint64_t purpose) noexcept nogil
    uint64_t ds_next(uint64_t* state) noexcept nogil
    uint64_t ds_bounded(uint64_t* state, uint64_t n) noexcept nogil


cdef inline void shuffle_i64(int64_t* a, int64_t n, uint64_t key) noexcept nogil:
    """Forward Fisher–Yates: for i = 1 .. n-1, swap a[i] with a[bounded(i + 1)].

    Each step touches only the prefix a[0..i], so the working set grows with i (cache friendly
    on the first pass through a segment)."""
    cdef uint64_t state = key
    cdef int64_t i, j, tmp
    for i in range(1, n):
        j = <int64_t>ds_bounded(&state, <uint64_t>(i + 1))
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp
