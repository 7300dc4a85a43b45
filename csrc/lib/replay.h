/* A trace prepared for replay: see replay.c. */
#ifndef ALLOCBENCH_REPLAY_H
#define ALLOCBENCH_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

#define AB_NO_SLOT UINT32_MAX
#define AB_MAX_REPLAY_THREADS 256

/* How a trace is replayed: ONE, every call on one thread in the recorded
 * global order; RECORDED, each recorded thread's calls on a thread of its
 * own (so glibc attaches arenas as in the program), kept in the global order
 * where it matters (replay.c). */
#define AB_REPLAY_MODES(X) X(AB_REPLAY_ONE, "one") X(AB_REPLAY_RECORDED, "recorded")
enum ab_replay_mode {
#define AB_RM_ENUM(e, name) e,
    AB_REPLAY_MODES(AB_RM_ENUM)
#undef AB_RM_ENUM
    AB_NREPLAY_MODES
};
extern const char *const ab_replay_mode_names[AB_NREPLAY_MODES];
#define AB_REPLAY_PUBLISH 1
#define AB_REPLAY_WINDOW_DEFAULT 1024  /* events a thread may run ahead of the slowest (recorded) */

/* One event as the replay loop reads it: 16 bytes, four to a cache line, so
 * the loop streams a quarter of what it would read from the 40-byte trace. */
typedef struct ab_replay_event {
    uint64_t size;  /* bytes requested; a free: the size of the block it frees */
    uint32_t slot;  /* the slot made (allocation, realloc) or freed (free); AB_NO_SLOT: none */
    uint8_t op;     /* enum ab_trace_op; 0: nothing to replay (free(NULL), a failed call, a thread event) */
    uint8_t flags;  /* AB_REPLAY_PUBLISH: another thread waits for the block this event makes */
    uint8_t pad[2];
} ab_replay_event;
_Static_assert(sizeof(ab_replay_event) == 16, "the replay loop streams 16-byte events");

typedef struct ab_replay {
    uint64_t n;               /* events, in their recorded global order */
    uint64_t mapped_n;        /* the events the arrays were mapped for (ab_replay_free) */
    ab_replay_event *ev;
    /* read only by the rare events that need them, indexed like ev: */
    uint32_t *in;             /* realloc: the slot passed in (AB_NO_SLOT: realloc(NULL, n)) */
    uint64_t *aux;            /* realloc: the old block's size; aligned allocations: the alignment */
    uint64_t allocs, frees, reallocs;  /* events of each kind to replay (aligned and calloc are allocs) */
    uint32_t nslots;          /* slots the replay needs (one mode: the most blocks live at once) */
    uint64_t peak_live_bytes; /* bytes requested and held at the trace's peak */
    uint64_t live_at_end_bytes;  /* bytes the program still held after its last event */
    uint64_t big_allocs, big_bytes;  /* allocations at or above AB_GLIBC_DEFAULT_BOUNDARY, and their bytes */
    uint32_t threads;         /* the trace's threads (each creation, and the initial thread) */
    uint64_t cross_frees;     /* frees and reallocs of a block another thread allocated */
    uint64_t unmatched;       /* thread 0's frees of blocks from before the recording (skipped) */
    uint64_t reordered;       /* recorded: calls a thread made after its exit marker (its exit moves after them) */
    /* recorded mode: */
    int mode;                 /* enum ab_replay_mode */
    uint64_t window;
    uint32_t nthreads;        /* replay threads (1 in one mode) */
    uint64_t *thread_start;   /* thread t's events are order[thread_start[t] .. thread_start[t + 1]) */
    uint64_t *order;          /* event indices, thread by thread, each in global order */
    uint32_t *wait_for;       /* per event: 1 + the allocation it must wait for (another thread's), or 0 */
    /* per thread: a thread whose exit the trace puts before another's first call has exited by
     * then, so glibc can hand its arena on as in the program; `joiner` joins it (-1: the end) */
    uint64_t *first_call, *exit_at;  /* events (UINT64_MAX: none) */
    int32_t *joiner;
} ab_replay;

/* Prepare `path` for replay in `mode` with `window`; 0, or -1 with err.  A
 * trace whose threads other than thread 0 (the first caller) free a block it
 * never allocated is refused: thread 0 may free blocks allocated before the
 * recording began (a forked child's, inherited from its parent), which are
 * skipped. */
int ab_replay_load(const char *path, int mode, uint64_t window, ab_replay *r, char *err, size_t cap);
/* Unmap what ab_replay_load mapped (after a failure too). */
void ab_replay_free(ab_replay *r);

#endif
