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


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define DS_RNG_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
    #else
    #define DS_RNG_PREFETCH_W(p) ((void)(p))
    #endif
    """
    void DS_RNG_PREFETCH_W(const void* p) noexcept nogil


cdef enum:
    SHUFFLE_AHEAD = 16  # swaps whose partner is drawn (and prefetched) ahead; a power of 2


cdef inline void shuffle_i64(int64_t* a, int64_t n, uint64_t key) noexcept nogil:
    """Forward Fisher–Yates: for i = 1 .. n-1, swap a[i] with a[bounded(i + 1)].

    The stream does not depend on the data, so the partners of the next ``SHUFFLE_AHEAD`` swaps
    are drawn ahead and prefetched: a segment larger than the caches (26 MB per bucket of a
    100M-row epoch) costs a cache miss per swap, and those misses then overlap."""
    cdef uint64_t state = key
    cdef int64_t i, j, tmp, ahead = 1
    cdef int64_t ring[SHUFFLE_AHEAD]
    while ahead < n and ahead <= SHUFFLE_AHEAD:
        j = <int64_t>ds_bounded(&state, <uint64_t>(ahead + 1))
        ring[ahead & (SHUFFLE_AHEAD - 1)] = j
        DS_RNG_PREFETCH_W(&a[j])
        ahead += 1
    for i in range(1, n):
        j = ring[i & (SHUFFLE_AHEAD - 1)]
        if ahead < n:  # the partner of swap i + SHUFFLE_AHEAD takes the slot of swap i
            tmp = <int64_t>ds_bounded(&state, <uint64_t>(ahead + 1))
            ring[ahead & (SHUFFLE_AHEAD - 1)] = tmp
            DS_RNG_PREFETCH_W(&a[tmp])
            ahead += 1
        tmp = a[i]
        a[i] = a[j]
        a[j] = tmp
