/* Exact, in-process counters for one measured window: the memory syscalls
 * (brk, mmap, munmap, mremap, madvise, mprotect), page faults, wall and CPU
 * time, and footprint snapshots.  Usable from C loops with no GIL and no malloc
 * inside the window. */
#ifndef ALLOCBENCH_COUNTERS_H
#define ALLOCBENCH_COUNTERS_H

#include <stdint.h>
#include <sys/types.h>
#include <sys/resource.h>
#include <stddef.h>
#include <time.h>

/* The counted syscalls, once: the names in records, tracepoints and strace's filter. */
/* the launcher's RSS samples per second, at most (allocbench exec --hz) */
#define AB_LAUNCH_MAX_HZ 10000

#define AB_SYSCALL_LIST(X) X(brk) X(mmap) X(munmap) X(mremap) X(madvise) X(mprotect)
enum {
#define AB_SYS_ENUM(name) AB_SYS_##name,
    AB_SYSCALL_LIST(AB_SYS_ENUM)
#undef AB_SYS_ENUM
    AB_NSYSCALLS
};
extern const char *const ab_syscall_names[AB_NSYSCALLS];

/* Counter methods, once, best first for "auto": X(enum, value, name). */
#define AB_METHOD_LIST(X)                                                              \
    X(AB_METHOD_PERF, 1, "perf")     /* perf_event_open tracepoints syscalls:sys_enter_* */ \
    X(AB_METHOD_STRACE, 2, "strace") /* strace attached to this process, window bounded by markers */ \
    X(AB_METHOD_NONE, 0, "none")     /* nothing works: syscall fields are not measured */
enum ab_method {
#define AB_METHOD_ENUM(e, v, name) e = v,
    AB_METHOD_LIST(AB_METHOD_ENUM)
#undef AB_METHOD_ENUM
    AB_NMETHODS = 3
};
extern const char *const ab_method_names[AB_NMETHODS];  /* indexed by enum ab_method */
extern const int ab_method_order[AB_NMETHODS];         /* best first */

/* mallinfo2()'s fields, once: the footprint snapshot, its JSON and Python's names. */
#define AB_MALLINFO2_LIST(X) \
    X(arena) X(ordblks) X(smblks) X(hblks) X(hblkhd) X(usmblks) X(fsmblks) X(uordblks) X(fordblks) X(keepcost)
enum {
#define AB_MI_ENUM(name) AB_MI_##name,
    AB_MALLINFO2_LIST(AB_MI_ENUM)
#undef AB_MI_ENUM
    AB_NMALLINFO2
};
extern const char *const ab_mallinfo2_names[AB_NMALLINFO2];

/* Paths a window's begin/end markers probe (faccessat, ENOENT).  An external
 * `strace -f` can count exactly what lies between them. */
#define AB_MARK_BEGIN "/.allocbench-window-begin"
#define AB_MARK_END "/.allocbench-window-end"
#define AB_MARK_ATTACHED "/.allocbench-strace-attached"  /* strace_begin: its log shows strace tracing */

typedef struct ab_counter {
    int method;
    pid_t task;                /* perf: the task counted (0: this process) */
    int no_inherit;            /* perf: count this task only, not the threads and children it starts */
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
    uint64_t mallinfo2[AB_NMALLINFO2];  /* indexed by AB_MI_* */
} ab_footprint;

/* Open counters with the given method (0 = none).  Returns 0, or -1 with
 * c->error saying why (the counter is then usable as AB_METHOD_NONE).
 * tracefs and strace_path may be NULL or "": ALLOCBENCH_TRACEFS, then
 * /sys/kernel/tracing, then /sys/kernel/debug/tracing; ALLOCBENCH_STRACE,
 * then strace on PATH. */
int ab_counter_open(ab_counter *c, int method, const char *tracefs,
                    const char *strace_path);

/* The one choice of method: "auto" (or NULL) means ALLOCBENCH_COUNTER_METHOD
 * when set, else perf, strace, none in that order; a named method is tried alone.  Returns the method's name, or NULL (unknown
 * name, or the named method cannot work).  `note` says why better ones failed. */
const char *ab_counter_open_named(ab_counter *c, const char *name, char *note, size_t cap);
void ab_counter_close(ab_counter *c);

/* Keep the counted syscalls' tracepoints registered while this process lives.
 * The kernel registers a syscall tracepoint (patching code, waiting for RCU)
 * when its first perf event opens and unregisters it when the last one
 * closes: about 40 ms each, 0.25 s per counted child.  A process that starts
 * many counted children holds one event of each (on itself, not inherited),
 * and each child's open then costs microseconds.  0, or -1 with err set. */
int ab_tracepoints_hold(char *err, size_t cap);

/* perf on another task (with inherit: its threads and children too), counting
 * from now; read the totals at any time, also after the task has exited. */
int ab_counter_open_task(ab_counter *c, pid_t task);
/* perf on the calling thread alone (not inherited), e.g. read around one call */
int ab_counter_open_thread(ab_counter *c);
int ab_counter_read_totals(ab_counter *c, int64_t out[AB_NSYSCALLS]);

/* strace, for the counter and for the launcher: the binary (given, else
 * ALLOCBENCH_STRACE, else the first on PATH), the one filter (the counted
 * syscalls, and faccessat for the window markers), and the one log parser:
 * counts each counted syscall's entries, between the markers when `bounded`,
 * else in the whole log.  stdio-free (read(2) and a stack buffer).  0 or -1
 * with err set. */
extern const char ab_strace_filter[];
int ab_strace_binary(const char *given, char *out, size_t cap, char *err, size_t err_cap);
int ab_strace_count_log(const char *log, int bounded, int64_t out[AB_NSYSCALLS], char *err, size_t err_cap);
/* strace -f attached to `target`, logging to a new file whose path goes to `log`: 0 once the log
 * shows AB_MARK_ATTACHED (what the target does next is traced), or -1 with err set (strace gone, with
 * its own message if it wrote one, or 10 s passed), the log removed and `log` empty.  strace's
 * messages go to a file beside the log, never to this process's stderr (ab_strace_remove removes
 * both).  The target makes the marker: this process itself when it is the target, else
 * ab_strace_await_attach in the target, which issues markers until `go` becomes readable. */
int ab_strace_attach(const char *strace_bin, pid_t target, char *log, size_t log_cap, pid_t *strace_pid,
                     char *err, size_t err_cap);
/* The log of an attach, and the file of strace's own messages beside it, removed. */
void ab_strace_remove(const char *log);
void ab_strace_await_attach(int go);

/* Open and close one window.  No malloc between begin returning and end
 * being called is made by these functions.  Return 0 or -1 (c->error). */
int ab_window_begin(ab_counter *c, ab_window *w);
int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out);

int ab_footprint_read(ab_footprint *f);
/* Resident memory now (statm: no malloc, no page-table walk), in bytes; -1 if unreadable. */
int64_t ab_resident_bytes(void);
/* Anonymous memory resident now (smaps_rollup's Anonymous), in bytes; -1 if unreadable. */
int64_t ab_anon_bytes(void);
/* The program break, from the kernel: sbrk(0) would make glibc note it, and its
 * first heap growth would then skip the brk(0) that a fresh process's makes. */
uintptr_t ab_heap_top(void);
/* glibc's non-main arena heaps mapped now: anonymous rw mappings at a 64 MiB
 * boundary (HEAP_MAX_SIZE), read from /proc/self/maps without malloc; -1 if unreadable */
int ab_arena_heaps(void);
/* The same, and in *bytes the heaps' usable (read-write) part, out of 64 MiB reserved each. */
int ab_arena_heaps_sized(int64_t *bytes);
/* The written (copy-on-write) pages of file mappings, in bytes (/proc/self/smaps):
 * libraries' data and relocations, counted as anonymous memory but not malloc's. */
int64_t ab_file_backed_anon_bytes(void);
void ab_mallinfo2_read(uint64_t out[AB_NMALLINFO2]);
int ab_reset_peak_rss(void);

#endif
