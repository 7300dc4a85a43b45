# Extern declarations for counters.h (cimported by allocbench/_native.pyx).
from libc.stdint cimport int64_t, uint64_t, uint32_t, uintptr_t

cdef extern from "counters.h" nogil:
    enum: AB_LAUNCH_MAX_HZ
    enum: AB_NSYSCALLS
    const char *AB_MARK_BEGIN
    const char *AB_MARK_END
    const char *AB_MARK_ATTACHED
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
    int ab_tracepoints_hold(char *err, size_t cap)
    void ab_counter_close(ab_counter *c)
    int ab_window_begin(ab_counter *c, ab_window *w)
    int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out)
    const char *ab_counter_open_named(ab_counter *c, const char *name, char *note, size_t cap)
    int ab_strace_count_log(const char *log, int bounded, int64_t *out, char *err, size_t err_cap)
    int ab_footprint_read(ab_footprint *f)
    void ab_mallinfo2_read(uint64_t *out)
    int ab_arena_heaps_sized(int64_t *bytes)
