/* Call latency: a clock that costs no syscall, and log-linear histograms at
 * two significant digits (HdrHistogram's layout: values below 256 exact, then
 * 128 sub-buckets per power of two, so a bucket is within 1/128 of its value).
 * Counts are kept in clock ticks and turned into nanoseconds when read, with
 * the ratio of ticks to CLOCK_MONOTONIC measured over the whole run.
 *
 * Nothing here allocates: the preload shim times calls inside other
 * programs' malloc (csrc/preload/latency_shim.c), the cell its own (calltime.c). */
#ifndef ALLOCBENCH_LATENCY_H
#define ALLOCBENCH_LATENCY_H

#include <stdint.h>
#include <time.h>
#include <x86intrin.h>

/* The timed call kinds, once: X(enum, name).  "aligned" is memalign,
 * posix_memalign, aligned_alloc, valloc and pvalloc. */
#define AB_LATENCY_KINDS(X)                                                                        \
    X(AB_LK_MALLOC, "malloc") X(AB_LK_CALLOC, "calloc") X(AB_LK_REALLOC, "realloc")                \
    X(AB_LK_FREE, "free") X(AB_LK_ALIGNED, "aligned") X(AB_LK_TRIM, "malloc_trim")
enum ab_latency_kind {
#define AB_LK_ENUM(e, name) e,
    AB_LATENCY_KINDS(AB_LK_ENUM)
#undef AB_LK_ENUM
    AB_NLATENCY_KINDS
};
extern const char *const ab_latency_kind_names[AB_NLATENCY_KINDS];

#define AB_HIST_SUB 128          /* sub-buckets per power of two */
#define AB_HIST_MAX_SHIFT 32     /* the last bucket holds everything from 2^40 ticks up */
#define AB_HIST_BUCKETS (2 * AB_HIST_SUB + AB_HIST_MAX_SHIFT * AB_HIST_SUB)

typedef struct ab_hist {
    uint64_t count, max;  /* in ticks */
    uint64_t b[AB_HIST_BUCKETS];
} ab_hist;

static inline unsigned ab_hist_index(uint64_t v)
{
    if (v < 2 * AB_HIST_SUB)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v) - 7u;  /* v >> e is in [128, 256) */
    if (e > AB_HIST_MAX_SHIFT)
        return AB_HIST_BUCKETS - 1;
    return 2 * AB_HIST_SUB + (e - 1) * AB_HIST_SUB + (unsigned)((v >> e) - AB_HIST_SUB);
}

/* The highest value a bucket holds (a percentile reads as "at most this"). */
static inline uint64_t ab_hist_upper(unsigned i)
{
    if (i < 2 * AB_HIST_SUB)
        return i;
    unsigned k = i - 2 * AB_HIST_SUB, e = k / AB_HIST_SUB + 1;
    return ((uint64_t)(k % AB_HIST_SUB + AB_HIST_SUB + 1) << e) - 1;
}

static inline void ab_hist_add(ab_hist *h, uint64_t v)
{
    h->b[ab_hist_index(v)]++;
    h->count++;
    if (v > h->max)
        h->max = v;
}

void ab_hist_merge(ab_hist *into, const ab_hist *from);
/* The q-quantile (0 < q <= 1) in ticks: the upper edge of its bucket, at most the max. */
uint64_t ab_hist_quantile(const ab_hist *h, double q);

/* The clock: the TSC where it is constant and keeps running (rdtsc, about
 * 10 ns here), else CLOCK_MONOTONIC through the vDSO. */
typedef struct ab_clock {
    int tsc;
    uint64_t ticks0;     /* at ab_clock_init: the span to CLOCK_MONOTONIC gives the ratio */
    uint64_t mono0_ns;
    double overhead_ticks;  /* one reading, from back-to-back pairs (the median) */
} ab_clock;

static inline uint64_t ab_mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static inline uint64_t ab_ticks(const ab_clock *c)
{
    return c->tsc ? __rdtsc() : ab_mono_ns();
}

void ab_clock_init(ab_clock *c);
/* Nanoseconds per tick, from the span since ab_clock_init (1 for CLOCK_MONOTONIC). */
double ab_clock_ns_per_tick(const ab_clock *c);
/* "tsc (constant, nonstop), 2.995 GHz against CLOCK_MONOTONIC" or the vDSO clock's name. */
void ab_clock_describe(const ab_clock *c, char *out, size_t cap);

#endif
