# Extern declarations for allocbench's own C in csrc/: counters, the allocator
# tables of workloads.h, and the toy allocator.
from libc.stdint cimport int64_t, uint64_t, uint32_t, uintptr_t

cdef extern from "counters.h" nogil:
    enum: AB_NSYSCALLS
    const char *ab_syscall_names[]
    enum:
        AB_METHOD_NONE
        AB_METHOD_PERF
        AB_METHOD_STRACE

    ctypedef struct ab_counter:
        int method
        char error[512]

    ctypedef struct ab_window:
        pass

    ctypedef struct ab_counts:
        int64_t syscalls[6]
        int64_t minor_faults, major_faults
        int64_t wall_ns, cpu_ns, thread_cpu_ns

    ctypedef struct ab_footprint:
        int64_t rss_bytes, anon_bytes, peak_rss_bytes
        uintptr_t heap_top
        uint64_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks
        uint64_t uordblks, fordblks, keepcost

    int ab_counter_open(ab_counter *c, int method, const char *tracefs, const char *strace_path)
    void ab_counter_close(ab_counter *c)
    int ab_window_begin(ab_counter *c, ab_window *w)
    int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out)
    int ab_footprint_read(ab_footprint *f)

cdef extern from "workloads.h" nogil:
    ctypedef struct ab_allocator:
        void *(*malloc)(size_t) noexcept nogil
        void (*free)(void *) noexcept nogil
        void *(*realloc)(void *, size_t) noexcept nogil
        void *(*calloc)(size_t, size_t) noexcept nogil
        size_t (*usable_size)(void *) noexcept nogil
        int glibc_chunks

    const ab_allocator ab_libc_allocator

    enum: AB_NPATTERNS
    const char *ab_pattern_names[]
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
