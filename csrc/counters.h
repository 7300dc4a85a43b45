/* Exact, in-process counters for one measured window: the memory syscalls
 * (brk, mmap, munmap, mremap, madvise, mprotect), page faults, wall and CPU
 * time, and footprint snapshots.  Usable from C loops with no GIL and no malloc
 * inside the window. */
#ifndef ALLOCBENCH_COUNTERS_H
#define ALLOCBENCH_COUNTERS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/resource.h>
#include <time.h>

#define AB_NSYSCALLS 6
extern const char *const ab_syscall_names[AB_NSYSCALLS];

enum ab_method {
    AB_METHOD_NONE = 0,   /* nothing works: syscall fields are not measured */
    AB_METHOD_PERF = 1,   /* perf_event_open tracepoints syscalls:sys_enter_* */
    AB_METHOD_STRACE = 2, /* strace attached to this process, window bounded by markers */
};

/* Paths a window's begin/end markers probe (faccessat, ENOENT).  An external
 * `strace -f` can count exactly what lies between them. */
#define AB_MARK_BEGIN "/.allocbench-window-begin"
#define AB_MARK_END "/.allocbench-window-end"

typedef struct ab_counter {
    int method;
    int group_fd;              /* perf: the group leader; -1 when unused */
    int fds[AB_NSYSCALLS];
    char strace_path[256];     /* strace: the binary */
    char strace_log[256];      /* strace: its output file for the current window */
    pid_t strace_pid;
    char error[512];           /* why open or a window failed */
} ab_counter;

typedef struct ab_window {
    uint64_t perf_begin[1 + AB_NSYSCALLS];
    struct rusage ru_begin;
    struct timespec wall_begin, cpu_begin, thread_cpu_begin;
} ab_window;

typedef struct ab_counts {
    int64_t syscalls[AB_NSYSCALLS];  /* -1 when the method measured nothing */
    int64_t minor_faults, major_faults;
    int64_t wall_ns, cpu_ns, thread_cpu_ns;
} ab_counts;

typedef struct ab_footprint {
    int64_t rss_bytes, anon_bytes;  /* /proc/self/smaps_rollup */
    int64_t peak_rss_bytes;         /* VmHWM since the last ab_reset_peak_rss() */
    uintptr_t heap_top;             /* sbrk(0) */
    /* mallinfo2(), glibc's view only (a preloaded allocator keeps its own books) */
    uint64_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks,
        uordblks, fordblks, keepcost;
} ab_footprint;

/* Open counters with the given method (0 = none).  Returns 0, or -1 with
 * c->error saying why (the counter is then usable as AB_METHOD_NONE). */
int ab_counter_open(ab_counter *c, int method, const char *tracefs,
                    const char *strace_path);
void ab_counter_close(ab_counter *c);

/* Open and close one window.  No malloc between begin returning and end
 * being called is made by these functions.  Return 0 or -1 (c->error). */
int ab_window_begin(ab_counter *c, ab_window *w);
int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out);

int ab_footprint_read(ab_footprint *f);
int ab_reset_peak_rss(void);

#endif
