/* When a thread was off its CPU, from the kernel's own context-switch records
 * (perf_event_open with context_switch=1 on a software dummy event, timed on
 * CLOCK_MONOTONIC): every switch-out and switch-in of the thread, written to a
 * ring by the kernel as it switches, at no cost to the thread's own code.  A
 * switch-out marked PERF_RECORD_MISC_SWITCH_OUT_PREEMPT was a preemption (the
 * thread could have run on); any other was the thread blocking in the kernel.
 *
 * calltime.c opens one per thread for the latency passes' timed pass and
 * reads it afterwards, so a slow call can be told apart as preempted. */
#ifndef ALLOCBENCH_OFFCPU_H
#define ALLOCBENCH_OFFCPU_H

#include <stddef.h>
#include <stdint.h>

#define AB_OFFCPU_PAGES 256  /* the ring's data pages: about 40,000 switches, touched only as written */

typedef struct ab_offcpu_span {
    uint64_t out_ns, in_ns;  /* CLOCK_MONOTONIC */
    int preempted;           /* switched out while it could run; 0: it blocked */
} ab_offcpu_span;

typedef struct ab_offcpu {
    int fd;
    void *ring;
    size_t bytes;
    char error[160];
} ab_offcpu;

/* Start recording this thread's switches: 0, or -1 with o->error. */
int ab_offcpu_open(ab_offcpu *o);
/* Stop, and the spans off CPU since the open, in time order: *spans mapped
 * (munmap(*spans, *mapped) when not NULL), *lost nonzero where the kernel
 * dropped switch records (a full ring: spans after the loss are missing). */
int ab_offcpu_close(ab_offcpu *o, ab_offcpu_span **spans, uint32_t *n, size_t *mapped, uint64_t *lost);

#endif
