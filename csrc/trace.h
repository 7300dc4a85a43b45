/* The allocation trace format, once: written by the recorder (recorder.c),
 * read by the cell's replay (workloads.c) and by Python (allocbench/traces.py,
 * whose numpy dtype mirrors ab_event).
 *
 *   header: AB_TRACE_HEADER bytes: magic "ABTRACE1", u32 version, u32 header
 *           size, u32 record size, u32 flags, u64 events (0 when the program
 *           ended without running destructors: readers then stop at the first
 *           record whose op is 0), u64 start_ns, then NUL-terminated JSON
 *           (recorder settings, program, pid, environment) up to the header size.
 *   records: little-endian ab_event, in the global order of the calls. */
#ifndef ALLOCBENCH_TRACE_H
#define ALLOCBENCH_TRACE_H

#include <stdint.h>

#define AB_TRACE_MAGIC "ABTRACE1"
#define AB_TRACE_VERSION 1
#define AB_TRACE_HEADER 4096

/* The operations, once: X(enum, value, name). */
#define AB_TRACE_OPS(X)                 \
    X(AB_OP_MALLOC, 1, "malloc")        \
    X(AB_OP_FREE, 2, "free")            \
    X(AB_OP_CALLOC, 3, "calloc")        \
    X(AB_OP_REALLOC, 4, "realloc")      \
    X(AB_OP_REALLOCARRAY, 5, "reallocarray") \
    X(AB_OP_MEMALIGN, 6, "memalign")    \
    X(AB_OP_POSIX_MEMALIGN, 7, "posix_memalign") \
    X(AB_OP_ALIGNED_ALLOC, 8, "aligned_alloc") \
    X(AB_OP_VALLOC, 9, "valloc")        \
    X(AB_OP_PVALLOC, 10, "pvalloc")
enum ab_trace_op {
#define AB_OP_ENUM(e, v, name) e = v,
    AB_TRACE_OPS(AB_OP_ENUM)
#undef AB_OP_ENUM
    AB_NOPS
};

typedef struct ab_event {
    uint64_t t_ns;   /* since the recording started */
    uint64_t ptr;    /* the block returned (0: NULL), or the block freed */
    uint64_t old;    /* realloc: the block passed in; aligned calls: the alignment */
    uint64_t size;   /* bytes requested (calloc, reallocarray: the product) */
    uint32_t tid;    /* the calling thread (gettid) */
    uint8_t op;      /* enum ab_trace_op; 0 marks the end of an unfinished trace */
    uint8_t pad[3];
} ab_event;

_Static_assert(sizeof(ab_event) == 40, "the trace record is 40 bytes");

#endif
