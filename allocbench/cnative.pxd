# Extern declarations for allocbench's own C in csrc/: counters, the allocator
# tables of workloads.h, and the toy allocator.
from libc.stdint cimport int64_t, uint64_t, uint32_t, uintptr_t

cdef extern from "counters.h" nogil:
    enum: AB_NSYSCALLS
    const char *ab_syscall_names[]
    enum: AB_NMETHODS
    const char *ab_method_names[]
    const int ab_method_order[]
    enum: AB_NMALLINFO2
    const char *ab_mallinfo2_names[]

    ctypedef struct ab_counter:
        int method
        char error[512]

    ctypedef struct ab_window:
        pass

    ctypedef struct ab_counts:
        int64_t syscalls[AB_NSYSCALLS]
        int64_t minor_faults, major_faults
        int64_t wall_ns, cpu_ns, thread_cpu_ns

    ctypedef struct ab_footprint:
        int64_t rss_bytes, anon_bytes, peak_rss_bytes
        uintptr_t heap_top
        uint64_t mallinfo2[AB_NMALLINFO2]

    int ab_counter_open(ab_counter *c, int method, const char *tracefs, const char *strace_path)
    void ab_counter_close(ab_counter *c)
    int ab_window_begin(ab_counter *c, ab_window *w)
    int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out)
    const char *ab_counter_open_named(ab_counter *c, const char *name, char *note, size_t cap)
    int ab_footprint_read(ab_footprint *f)
    void ab_mallinfo2_read(uint64_t *out)

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

    ctypedef struct ab_replay:
        uint64_t n

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
        uint64_t mapped_bytes, live_bytes, cached_bytes
        uint64_t mmap_calls, munmap_calls, mremap_calls, madvise_calls

    void *toy_memalign(size_t align, size_t size)
    int toy_is_direct(void *p)
    int toy_configure(const toy_config *c)
    void toy_get_config(toy_config *c)
    void toy_get_stats(toy_stats *s)
