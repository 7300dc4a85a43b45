/* A trace prepared for replay: see replay.c. */
#ifndef ALLOCBENCH_REPLAY_H
#define ALLOCBENCH_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "trace.h"

#define AB_NO_SLOT UINT32_MAX

typedef struct ab_replay {
    uint64_t n;               /* events, in their recorded global order */
    uint8_t *op;              /* enum ab_trace_op; 0: nothing to replay (free(NULL), a failed call) */
    uint32_t *in, *out;       /* the slot freed or passed to realloc; the slot made (AB_NO_SLOT: none) */
    uint64_t *size, *align;
    uint32_t nslots;          /* the most blocks live at once */
    uint64_t peak_live_bytes; /* bytes requested and held at the trace's peak */
} ab_replay;

int ab_replay_load(const char *path, ab_replay *r, char *err, size_t cap);

#endif
