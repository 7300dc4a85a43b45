/* A trace prepared for replay: see replay.c. */
#ifndef ALLOCBENCH_REPLAY_H
#define ALLOCBENCH_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

#define AB_NO_SLOT UINT32_MAX

/* One event as the replay loop reads it: 16 bytes, four to a cache line, so
 * the loop streams a quarter of what it would read from the 40-byte trace. */
typedef struct ab_replay_event {
    uint64_t size;  /* bytes requested; a free: the size of the block it frees */
    uint32_t slot;  /* the slot made (allocation, realloc) or freed (free); AB_NO_SLOT: none */
    uint8_t op;     /* enum ab_trace_op; 0: nothing to replay (free(NULL), a failed call) */
    uint8_t pad[3];
} ab_replay_event;
_Static_assert(sizeof(ab_replay_event) == 16, "the replay loop streams 16-byte events");

typedef struct ab_replay {
    uint64_t n;               /* events, in their recorded global order */
    ab_replay_event *ev;
    /* read only by the rare events that need them, indexed like ev: */
    uint32_t *in;             /* realloc: the slot passed in (AB_NO_SLOT: realloc(NULL, n)) */
    uint64_t *aux;            /* realloc: the old block's size; aligned allocations: the alignment */
    uint64_t allocs, frees, reallocs;  /* events of each kind to replay (aligned and calloc are allocs) */
    uint32_t nslots;          /* the most blocks live at once */
    uint64_t peak_live_bytes; /* bytes requested and held at the trace's peak */
    uint64_t live_at_end_bytes;  /* bytes the program still held after its last event */
    uint64_t big_allocs, big_bytes;  /* allocations at or above AB_GLIBC_DEFAULT_BOUNDARY, and their bytes */
    uint32_t threads;         /* distinct threads that made the calls */
} ab_replay;

int ab_replay_load(const char *path, ab_replay *r, char *err, size_t cap);

#endif
