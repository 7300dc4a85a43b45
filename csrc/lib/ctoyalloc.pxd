# Extern declarations for toyalloc.h (cimported by allocbench/_native.pyx).
from libc.stdint cimport uint64_t

cdef extern from "toyalloc.h" nogil:
    enum:
        TOY_NPOLICIES
        TOY_MAX_THRESHOLD
        TOY_MAX_ALIGN

    const char *const toy_policy_names[]

    ctypedef struct toy_config:
        size_t threshold
        size_t cache_cap
        int policy

    ctypedef struct toy_stats:
        uint64_t cached_bytes
    enum: TOY_NSTATS
    const char *toy_stats_names[]

    void *toy_memalign(size_t align, size_t size)
    int toy_is_direct(void *p)
    int toy_configure(const toy_config *c)
    void toy_get_config(toy_config *c)
    void toy_get_stats(toy_stats *s)
