# Extern declarations for workloads.h and replay.h (cimported by allocbench/_native.pyx).
from libc.stdint cimport uint64_t, uint32_t

cdef extern from "workloads.h" nogil:
    ctypedef struct ab_allocator:
        void *(*malloc)(size_t) noexcept nogil
        void (*free)(void *) noexcept nogil
        void *(*realloc)(void *, size_t) noexcept nogil
        void *(*calloc)(size_t, size_t) noexcept nogil
        size_t (*usable_size)(void *) noexcept nogil
        void *(*memalign)(size_t, size_t) noexcept nogil
        int glibc_chunks

    const ab_allocator ab_libc_allocator

    enum: AB_NPATTERNS
    const char *ab_pattern_names[]
    const char *ab_pattern_docs[]
    enum: AB_NTLCOLUMNS
    const char *ab_timeline_columns[]
    enum: AB_NTLKINDS
    const char *ab_timeline_kinds[]

    ctypedef struct ab_replay:
        uint64_t n
        uint32_t nthreads

    enum: AB_NREPLAY_MODES
    enum: AB_REPLAY_WINDOW_DEFAULT
    const char *ab_replay_mode_names[]
    int ab_replay_load(const char *path, int mode, uint64_t window, ab_replay *r, char *err, size_t cap)
    void ab_replay_free(ab_replay *r)

    ctypedef struct ab_workload:
        const ab_replay *replay
        int pattern
        size_t size_lo, size_hi
        uint64_t ops, seed
        int touch
        uint32_t live
        int threads, spawn

    ctypedef struct ab_cell_spec:
        ab_workload w
        uint64_t repeats, warmup

    const ab_cell_spec ab_cell_defaults
    int ab_pattern_of(const char *name)
    const char *ab_cell_check(const ab_cell_spec *s)
    const ab_allocator ab_toy_allocator
