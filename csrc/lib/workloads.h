/* Synthetic allocation workloads: C loops that call an allocator through a
 * small function table, so one loop serves glibc, a preloaded allocator
 * (whose malloc has replaced glibc's symbol) and the in-process toy. */
#ifndef ALLOCBENCH_WORKLOADS_H
#define ALLOCBENCH_WORKLOADS_H

#include <stddef.h>
#include <stdint.h>
#include "counters.h"
#include "replay.h"

typedef struct ab_allocator {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*realloc)(void *, size_t);
    void *(*calloc)(size_t, size_t);
    size_t (*usable_size)(void *);
    void *(*memalign)(size_t, size_t);
    int glibc_chunks;  /* blocks carry glibc's chunk header (IS_MMAPPED bit readable) */
} ab_allocator;

/* The patterns, once: X(enum, name, size band: 0 fixed size, 1 size_lo < size_hi, what it does).
 * Adding one is a row here, its loop in workloads.c's table, and its test. */
#define AB_PATTERN_LIST(X)                                                                          \
    X(AB_CHURN, "churn", 0, "malloc, touch, free")                                                 \
    X(AB_BATCH, "batch", 0, "malloc `live` blocks, free them all; repeat")                         \
    X(AB_LIFO, "lifo", 0, "window of `live` blocks, newest freed first")                          \
    X(AB_FIFO, "fifo", 0, "window of `live` blocks, oldest freed first")                          \
    X(AB_RANDOM_FREE, "random-free", 0, "window of `live` blocks, a random one freed")           \
    X(AB_BAND, "band", 1, "random-free window, sizes uniform in [size_lo, size_hi]")              \
    X(AB_REALLOC_GROW, "realloc-grow", 1, "grow one block by size_lo steps up to size_hi, free, again") \
    X(AB_FRAGMENT, "fragment", 0, "`live` pairs (64-byte long-lived, large short-lived), free the large") \
    X(AB_GROW, "grow", 1, "Redis-like: `live` blocks of size_lo, free a random half, as many of size_hi; " \
      "then free all but 1 in 16 (survivors stay); repeat")                                       \
    X(AB_SAWTOOTH, "sawtooth", 0, "build up `live` blocks from the band, free all but 1 in 16 "  \
      "(survivors stay); repeat")                                                                 \
    X(AB_CHECKERBOARD, "checkerboard", 0, "`live` blocks, free every other one, then the rest; repeat") \
    X(AB_HANDOFF, "handoff", 0, "pairs of threads: one allocates into a ring of `live` blocks, the other " \
      "frees from it once it is full, so `live` blocks are always in flight (threads even)")     \
    X(AB_TRACE, "trace", 0, "a recorded program's calls, replayed in their global order on one thread, or each recorded thread's on a thread of its own (trace=FILE, replay_threads=recorded)")

enum ab_pattern {
#define AB_PATTERN_ENUM(e, name, band, doc) e,
    AB_PATTERN_LIST(AB_PATTERN_ENUM)
#undef AB_PATTERN_ENUM
    AB_NPATTERNS
};
extern const char *const ab_pattern_names[AB_NPATTERNS];
extern const char *const ab_pattern_docs[AB_NPATTERNS];
extern const int ab_pattern_band[AB_NPATTERNS];  /* 1: needs size_lo < size_hi */

#define AB_MAX_LIVE (1u << 20)
#define AB_MAX_THREADS 256
#define AB_FRAGMENT_SMALL 64  /* bytes of each long-lived block in `fragment` */

/* A memory timeline, taken in one untimed repeat (the first warm-up; with no
 * warm-up, one more repeat after the timed ones): columns of samples, one
 * before the first allocation, at least 64 evenly spaced (by thread 0's
 * allocations) and one at each phase boundary.  Every column but `op` is
 * bytes; glibc's columns are mallinfo2's. */
#define AB_TIMELINE_COLUMNS(X)                                                          \
    X(op)            /* thread 0's allocations so far */                               \
    X(live_bytes)    /* bytes requested and still held, all threads (the workload's count) */ \
    X(usable_bytes)  /* malloc_usable_size summed over live blocks */                    \
    X(rss_bytes)     /* process RSS minus the cell's baseline before its warm-up */      \
    X(anon_bytes)    /* its anonymous part (statm resident - shared): the allocator's pages, \
                        without the file pages (code) that fault in along the way */   \
    X(heap_bytes)    /* sbrk(0) growth over the baseline */                              \
    X(mapped_bytes)  /* private writable virtual memory growth outside the heap */      \
    X(arena) X(hblkhd) X(uordblks) X(fordblks) X(keepcost) /* glibc's mallinfo2 */     \
    X(live_mmapped_bytes) /* glibc: live bytes in chunks with IS_MMAPPED */
enum {
#define AB_TL_ENUM(name) AB_TL_##name,
    AB_TIMELINE_COLUMNS(AB_TL_ENUM)
#undef AB_TL_ENUM
    AB_NTLCOLUMNS
};
extern const char *const ab_timeline_columns[AB_NTLCOLUMNS];
/* why a sample was taken (start: before the first allocation, live 0) */
#define AB_TIMELINE_KINDS(X) X(start) X(periodic) X(peak) X(half) X(freed) X(end)
enum {
#define AB_TK_ENUM(name) AB_TK_##name,
    AB_TIMELINE_KINDS(AB_TK_ENUM)
#undef AB_TK_ENUM
    AB_NTLKINDS
};
extern const char *const ab_timeline_kinds[AB_NTLKINDS];
#define AB_TIMELINE_PERIODIC 64
#define AB_TIMELINE_MAX 512

typedef struct ab_timeline {
    int statm_fd;
    long page;
    int64_t base_rss_pages, base_data_pages, base_anon_pages;
    uintptr_t base_heap;
    uint64_t every;   /* a periodic sample every `every` allocations of thread 0 */
    int64_t harness_bytes;  /* the loop's own arrays, pre-faulted and left out of rss_bytes */
    uint32_t n;
    int glibc;        /* the mallinfo2 columns describe the blocks */
    int64_t col[AB_NTLCOLUMNS][AB_TIMELINE_MAX];
    uint8_t kind[AB_TIMELINE_MAX];
} ab_timeline;

/* Open /proc/self/statm and take the baseline (before the warm-up). */
int ab_timeline_init(ab_timeline *tl, int glibc);

typedef struct ab_workload {
    int pattern;
    size_t size_lo, size_hi;  /* equal for a fixed size */
    uint64_t ops;             /* allocations (reallocs for realloc-grow) per thread */
    uint64_t seed;
    int touch;                /* 0 none, 1 every page of every block, 2 each block's first page */
    uint32_t live;            /* K: live blocks for batch, windows and fragment */
    int threads;              /* workers; 1 = the calling thread, unless spawn */
    int spawn;                /* run even a single worker on a new thread (arenas) */
    ab_timeline *timeline;    /* NULL in timed repeats; set for the one untimed timeline repeat */
    const ab_replay *replay;  /* pattern trace: the events, made ready before the window opens */
    struct ab_calltime *calltime;  /* the latency passes (calltime.h): calls go through its allocator */
} ab_workload;

typedef struct ab_run_stats {
    uint64_t allocs, frees, reallocs, failed;
    uint64_t live_bytes_peak;      /* requested bytes held at the peak: per-thread peaks summed
                                      (handoff: per pair), an upper bound when threads peak apart */
    uint64_t live_at_end_bytes;    /* trace: bytes the program still held after its last event */
    uint64_t replay_peak_live_bytes;  /* trace on its recorded threads, timeline repeat: the replay's own peak */
    ab_footprint at_end;           /* trace: the footprint then, before those blocks are freed */
    uint64_t mmapped_blocks;       /* glibc only, and only for touched blocks */
    uint64_t checked_blocks;       /* blocks whose IS_MMAPPED bit was read */
    ab_counts counts;
    char error[600];
} ab_run_stats;

/* glibc's malloc (or whatever a preload put in its place). */
extern const ab_allocator ab_libc_allocator;
/* The toy allocator (csrc/lib/toyalloc.c) inside this process. */
extern const ab_allocator ab_toy_allocator;

/* A measured cell: the workload and how many times it runs in one process. */
typedef struct ab_cell_spec {
    ab_workload w;
    uint64_t repeats, warmup;
} ab_cell_spec;

/* The defaults, once (the cell program, the CLI and Python's make_spec use them). */
extern const ab_cell_spec ab_cell_defaults;

/* The pattern called `name`, or -1. */
int ab_pattern_of(const char *name);

/* Validate a workload; returns NULL or a static message. */
const char *ab_workload_check(const ab_workload *w);
/* Validate a whole cell (the workload, repeats and warm-up): the one validator. */
const char *ab_cell_check(const ab_cell_spec *s);

/* Run one repeat inside one counter window.  Blocks a pattern keeps on
 * purpose (fragment's small ones) are still live when the window closes and
 * when `after` is read, then freed.  A trace's blocks that the program never
 * freed are freed after the window closes (stats->at_end is read first), and
 * before `after` is read: a replay ends as a cell ends.  Returns 0, or -1
 * with stats->error. */
int ab_run(const ab_allocator *a, const ab_workload *w, ab_counter *c,
           ab_run_stats *stats, ab_footprint *before, ab_footprint *after);

#endif
