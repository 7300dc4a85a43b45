/* The allocation trace format, once: written by the recorder (recorder.c),
 * read by the cell's replay (replay.c) and by Python (allocbench/traces.py,
 * whose numpy dtype mirrors ab_event; the ops reach it through _native).
 *
 *   header: ab_trace_head (magic "ABTRACE1", u32 version, u32 header size,
 *           u32 record size, u32 flags, u64 events, u64 start_ns), then
 *           NUL-terminated JSON (recorder settings, program, argv, cwd, pid,
 *           environment, and what the recorder measured at exit) up to the
 *           header size: a multiple of AB_TRACE_HEADER, as large as the JSON
 *           needs (any command line fits, none is cut).  events is 0 when the
 *           program ended without running destructors: readers then stop at
 *           the first record whose op is 0.
 *   records: little-endian ab_event, in the global order of the calls.
 *
 * Version 2 adds the thread events, each from the thread it names:
 *   THREAD_CREATE  by the creating thread, its slot reserved before
 *                  pthread_create and filled after (so it precedes the new
 *                  thread's events): size = the new thread's creation index
 *                  (1, 2, ... in creation order), ptr = 0 if creation failed
 *                  (else 1);
 *   THREAD_START   the new thread's first event: size = its creation index,
 *                  old = the creating thread's tid;
 *   THREAD_EXIT    the thread's last event, from a pthread key destructor
 *                  (a return from its start routine or pthread_exit): size =
 *                  its creation index.
 * The initial thread has index 0 and no thread events.  Version 1 traces
 * (no thread events) are read as before. */
#ifndef ALLOCBENCH_TRACE_H
#define ALLOCBENCH_TRACE_H

#include <stdint.h>

#define AB_TRACE_MAGIC "ABTRACE1"
#define AB_TRACE_VERSION 2
#define AB_TRACE_HEADER 4096       /* the header's size is a multiple of this (4096 in traces before 2026-12) */
#define AB_TRACE_HEADER_MAX (64u << 20)  /* readers refuse a header larger than this */
/* allocbench sets ALLOCBENCH_TRACE_OWNER to this many spaces: room for the first process's pid */
#define AB_TRACE_OWNER_WIDTH 20

/* The header's fixed fields, once: X(name, type); the JSON follows them.
 * Python reads their offsets and sizes from ab_trace_head_fields (_native). */
#define AB_TRACE_HEAD_FIELDS(X) \
    X(version, uint32_t)        \
    X(header_bytes, uint32_t)   \
    X(record_bytes, uint32_t)   \
    X(flags, uint32_t)          \
    X(events, uint64_t)         \
    X(start_ns, uint64_t)
typedef struct ab_trace_head {
    char magic[8];
#define AB_THF_MEMBER(name, type) type name;
    AB_TRACE_HEAD_FIELDS(AB_THF_MEMBER)
#undef AB_THF_MEMBER
} ab_trace_head;
_Static_assert(sizeof(ab_trace_head) == 40, "the header's fixed fields are 40 bytes, the JSON starts after them");
enum { AB_TRACE_FLAG_OVERFLOW = 1,  /* the recorder ran out of room: raise ALLOCBENCH_TRACE_MAX_EVENTS */
       AB_TRACE_FLAG_CUT_AT_EXIT = 2 /* calls still unfinished at exit were left out (the count stops before them) */ };
#define AB_TRACE_HEAD_NFIELDS 6
static const struct ab_trace_head_field { const char *name; unsigned offset, size; } ab_trace_head_fields[] = {
#define AB_THF_ROW(name, type) {#name, (unsigned)__builtin_offsetof(ab_trace_head, name), (unsigned)sizeof(type)},
    AB_TRACE_HEAD_FIELDS(AB_THF_ROW)
#undef AB_THF_ROW
};
_Static_assert(sizeof ab_trace_head_fields / sizeof ab_trace_head_fields[0] == AB_TRACE_HEAD_NFIELDS,
               "AB_TRACE_HEAD_NFIELDS counts the header's fields");

/* The operations, once: X(enum, value, name, kind); kind says what the call
 * does to the program's blocks (makes one, frees one, resizes one), or that it
 * is a thread's life. */
enum ab_op_kind { AB_OPK_ALLOC = 1, AB_OPK_FREE = 2, AB_OPK_RESIZE = 3, AB_OPK_THREAD = 4 };
#define AB_TRACE_OPS(X)                                         \
    X(AB_OP_MALLOC, 1, "malloc", AB_OPK_ALLOC)                  \
    X(AB_OP_FREE, 2, "free", AB_OPK_FREE)                       \
    X(AB_OP_CALLOC, 3, "calloc", AB_OPK_ALLOC)                  \
    X(AB_OP_REALLOC, 4, "realloc", AB_OPK_RESIZE)               \
    X(AB_OP_REALLOCARRAY, 5, "reallocarray", AB_OPK_RESIZE)     \
    X(AB_OP_MEMALIGN, 6, "memalign", AB_OPK_ALLOC)              \
    X(AB_OP_POSIX_MEMALIGN, 7, "posix_memalign", AB_OPK_ALLOC)  \
    X(AB_OP_ALIGNED_ALLOC, 8, "aligned_alloc", AB_OPK_ALLOC)    \
    X(AB_OP_VALLOC, 9, "valloc", AB_OPK_ALLOC)                  \
    X(AB_OP_PVALLOC, 10, "pvalloc", AB_OPK_ALLOC)              \
    X(AB_OP_THREAD_CREATE, 11, "thread_create", AB_OPK_THREAD) \
    X(AB_OP_THREAD_START, 12, "thread_start", AB_OPK_THREAD)   \
    X(AB_OP_THREAD_EXIT, 13, "thread_exit", AB_OPK_THREAD)
enum ab_trace_op {
#define AB_OP_ENUM(e, v, name, kind) e = v,
    AB_TRACE_OPS(AB_OP_ENUM)
#undef AB_OP_ENUM
    AB_NOPS
};
/* indexed by op value; 0 is no op */
static const char *const ab_trace_op_names[AB_NOPS] = {
#define AB_OP_NAME(e, v, name, kind) [v] = name,
    AB_TRACE_OPS(AB_OP_NAME)
#undef AB_OP_NAME
};
static const int ab_trace_op_kinds[AB_NOPS] = {
#define AB_OP_KIND(e, v, name, kind) [v] = kind,
    AB_TRACE_OPS(AB_OP_KIND)
#undef AB_OP_KIND
};

/* glibc 2.36's smallest mmapped request at its default 128 KiB threshold
 * (request2size reaches 128 KiB; `allocbench probe boundary` finds it): trace
 * summaries count the allocations at or above it, the explainer those a rise moved. */
#define AB_GLIBC_DEFAULT_BOUNDARY 131049

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
