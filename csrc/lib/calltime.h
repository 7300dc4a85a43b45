/* The cell's latency passes (cell latency=1): two untimed repeats after the
 * timed ones, through an allocator that wraps the measured one.
 *
 * Pass 1 times every allocation call into per-thread histograms (latency.h)
 * and keeps each call's ticks by its index on its thread.  From them the
 * slowest calls are chosen: the top AB_SLOW_TOP and every call at or above
 * the p99.9 of all calls, AB_SLOW_MAX at most.  Pass 2 makes the same calls
 * (cells and replays are deterministic: the same seed or trace, the same
 * calls in the same order on each thread) and reads this thread's memory
 * syscall counters around them (perf, per thread), and around each chosen one
 * its page faults (getrusage(RUSAGE_THREAD)) and the program break, so each
 * slow call is named with what ran inside it.  Pass 2 reads the counters
 * around every call when there are at most AB_ATTRIBUTE_ALL_MAX calls, so
 * the totals by call kind cover them all.  Pass 2 also times each chosen call
 * again.  In pass 1 the kernel records every switch of each thread off its
 * CPU (offcpu.h), and each call long enough to have been switched out keeps
 * where it began, so a slow call is also named by how long its thread was off
 * the CPU inside it, and whether that was a preemption. */
#ifndef ALLOCBENCH_CALLTIME_H
#define ALLOCBENCH_CALLTIME_H

#include <stdint.h>

#include "counters.h"
#include "latency.h"
#include "offcpu.h"

#define AB_SLOW_TOP 64
#define AB_SLOW_MAX 4096
#define AB_ATTRIBUTE_ALL_MAX (1u << 20)
#define AB_MARK_MIN_NS 2000      /* a call shorter than a context switch's round trip was not switched out */
#define AB_MARKS_MAX (1u << 20)  /* long calls marked per thread (16 MiB reserved, touched as used) */

typedef struct ab_slow_call {
    uint32_t thread, kind;
    uint64_t index;              /* the call's place among its thread's calls */
    uint64_t size;               /* bytes asked for; a free: the block's usable size */
    uint64_t ticks;              /* pass 1 */
    int attributed;              /* pass 2 reached it with its counters open */
    int64_t syscalls[AB_NSYSCALLS], faults;
    int trimmed;                 /* the program break moved down inside it */
    uint64_t again_ticks;        /* pass 2: the same call, timed again */
    int64_t off_cpu_ns;          /* pass 1: how long the thread was off its CPU inside it; -1 unknown */
    int preempted;               /* pass 1: one of those switches was a preemption */
} ab_slow_call;

typedef struct ab_call_mark {
    uint64_t index, t0;          /* a pass-1 call long enough to have been switched out: where it began */
} ab_call_mark;

typedef struct ab_call_thread {
    ab_hist h[AB_NLATENCY_KINDS];
    uint64_t calls, cap;         /* this pass's calls; the ticks array's room */
    uint32_t *ticks;             /* pass 1: each call's ticks (saturating), by index */
    uint8_t *kinds;              /* pass 1: each call's kind, by index */
    uint8_t *chosen;             /* pass 2: a bit per call: name it */
    ab_counter counter;          /* pass 2: this thread's syscalls */
    int counter_state;           /* 0 not opened, 1 open, -1 failed */
    /* pass 2 totals, by kind: calls looked at, calls with each syscall, and the syscalls */
    uint64_t looked[AB_NLATENCY_KINDS], with[AB_NLATENCY_KINDS][AB_NSYSCALLS];
    uint64_t made[AB_NLATENCY_KINDS][AB_NSYSCALLS];
    /* pass 1: where its long calls began, and when the thread was off its CPU (offcpu.h) */
    ab_call_mark *marks;
    uint64_t nmarks, marks_cap;
    ab_offcpu off;
    int off_state;               /* 0 not opened, 1 recording, 2 read, -1 failed */
    ab_offcpu_span *spans;
    uint32_t nspans;
    size_t spans_mapped;
    uint64_t lost;
} ab_call_thread;

typedef struct ab_calltime {
    int pass;                    /* 1 or 2 */
    int attribute_all;
    int nthreads;
    ab_clock clock;
    ab_call_thread *threads;     /* nthreads of them, mapped */
    uint64_t threshold_ticks;    /* pass 1's p99.9 of all calls */
    uint64_t mark_ticks;         /* AB_MARK_MIN_NS in ticks */
    char off_why[200];           /* why pass 1's switches could not be read (empty: they were) */
    uint32_t nslow;
    ab_slow_call slow[AB_SLOW_MAX];  /* chosen after pass 1, sorted by (thread, index) */
    char why[1024];              /* pass 2 could not count (the counter method, perf) */
} ab_calltime;

/* Mapped, with room for `cap` calls' ticks on each thread; NULL if out of memory. */
ab_calltime *ab_calltime_new(int nthreads, uint64_t cap);
void ab_calltime_free(ab_calltime *c);
struct ab_allocator;
/* The wrapping allocator for the current pass into *out (one calltime per process). */
void ab_calltime_allocator(ab_calltime *c, const struct ab_allocator *inner, struct ab_allocator *out);
void ab_calltime_thread_begin(ab_calltime *c, int tid);
void ab_calltime_thread_end(void);
/* After pass 1: choose the slow calls and clear the counts for pass 2. */
void ab_calltime_choose(ab_calltime *c);
/* After pass 1: all threads' histogram of one kind. */
void ab_calltime_merged(const ab_calltime *c, int kind, ab_hist *out);

#endif
