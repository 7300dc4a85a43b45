/* Synthetic allocation workloads: C loops that call an allocator through a
 * small function table, so one loop serves glibc, a preloaded allocator
 * (whose malloc has replaced glibc's symbol) and the in-process toy. */
#ifndef ALLOCBENCH_WORKLOADS_H
#define ALLOCBENCH_WORKLOADS_H

#include <stddef.h>
#include <stdint.h>
#include "counters.h"

typedef struct ab_allocator {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*realloc)(void *, size_t);
    void *(*calloc)(size_t, size_t);
    size_t (*usable_size)(void *);
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
    X(AB_FRAGMENT, "fragment", 0, "`live` pairs (64-byte long-lived, large short-lived), free the large")

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

typedef struct ab_workload {
    int pattern;
    size_t size_lo, size_hi;  /* equal for a fixed size */
    uint64_t ops;             /* allocations (reallocs for realloc-grow) per thread */
    uint64_t seed;
    int touch;                /* write every page of every block */
    uint32_t live;            /* K: live blocks for batch, windows and fragment */
    int threads;              /* workers; 1 = the calling thread, unless spawn */
    int spawn;                /* run even a single worker on a new thread (arenas) */
} ab_workload;

typedef struct ab_run_stats {
    uint64_t allocs, frees, reallocs, failed;
    uint64_t live_bytes_peak;      /* requested bytes held at the peak, all threads */
    uint64_t mmapped_blocks;       /* glibc only, and only for touched blocks */
    uint64_t checked_blocks;       /* blocks whose IS_MMAPPED bit was read */
    int peak_mallinfo_taken;
    uint64_t peak_arena_bytes, peak_hblkhd_bytes;  /* mallinfo2() at thread 0's peak */
    ab_counts counts;
    char error[600];
} ab_run_stats;

/* glibc's malloc (or whatever a preload put in its place). */
extern const ab_allocator ab_libc_allocator;
/* The toy allocator (csrc/toyalloc.c) inside this process. */
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
 * when `after` is read, then freed.  Returns 0, or -1 with stats->error. */
int ab_run(const ab_allocator *a, const ab_workload *w, ab_counter *c,
           ab_run_stats *stats, ab_footprint *before, ab_footprint *after);

#endif
