/* toyalloc: a small malloc built only on anonymous private mmap (no brk, no
 * libc malloc).  Size classes carved from mmapped spans below the threshold,
 * with a per-thread cache in front; a direct mapping per block above it,
 * recycled through a bounded cache shared with empty spans. */
#ifndef TOYALLOC_H
#define TOYALLOC_H

#include <stddef.h>
#include <stdint.h>

/* The return policies, once: X(enum name, value, name in TOYALLOC_POLICY and
 * in Python, what it does with a freed mapping before it is cached). */
#define TOY_POLICY_LIST(X)                                                                   \
    X(TOY_KEEP, 0, "keep", "nothing (an empty span's dropped): pages stay, reuse costs no syscall") \
    X(TOY_DONTNEED, 1, "dontneed", "madvise(MADV_DONTNEED): RSS drops now, reuse faults")   \
    X(TOY_FREE, 2, "free", "madvise(MADV_FREE): the kernel reclaims only under pressure")   \
    X(TOY_UNMAP, 3, "unmap", "no cache: munmap at once, like glibc's mmapped chunks")

enum toy_policy {
#define TOY_ENUM(e, v, name, doc) e = v,
    TOY_POLICY_LIST(TOY_ENUM)
#undef TOY_ENUM
    TOY_NPOLICIES
};

extern const char *const toy_policy_names[TOY_NPOLICIES];  /* indexed by enum toy_policy */
int toy_policy_by_name(const char *name);  /* enum toy_policy, or -1 for no such name (or NULL) */

typedef struct toy_config {
    size_t threshold;     /* requests above this get their own mapping (default 128 KiB) */
    size_t cache_cap;     /* bytes of freed mappings kept for reuse (default 4 MiB; see cache_room) */
    int policy;           /* enum toy_policy (default TOY_KEEP) */
} toy_config;

/* The toy's counters, once: X(name); the cell prints them, Python reads them by name. */
#define TOY_STATS_FIELDS(X)                                                                       \
    X(mapped_bytes)  /* all mappings held now: spans, live large blocks, cache */                 \
    X(live_bytes)    /* usable bytes of live blocks (what the toy handed out) */                  \
    X(cached_bytes)  /* freed mappings (large blocks and empty spans) kept for reuse */           \
    X(mmap_calls) X(munmap_calls) X(mremap_calls) X(madvise_calls)
typedef struct toy_stats {
#define TOY_STAT_MEMBER(name) uint64_t name;
    TOY_STATS_FIELDS(TOY_STAT_MEMBER)
#undef TOY_STAT_MEMBER
} toy_stats;
enum {
#define TOY_STAT_ENUM(name) TOY_STAT_##name,
    TOY_STATS_FIELDS(TOY_STAT_ENUM)
#undef TOY_STAT_ENUM
    TOY_NSTATS
};
static const char *const toy_stats_names[TOY_NSTATS] = {
#define TOY_STAT_NAME(name) #name,
    TOY_STATS_FIELDS(TOY_STAT_NAME)
#undef TOY_STAT_NAME
};
_Static_assert(sizeof(toy_stats) == TOY_NSTATS * sizeof(uint64_t), "toy_stats: uint64_t fields only, read by index");

#define TOY_MAX_THRESHOLD ((size_t)1 << 20)
/* The largest alignment the Python handle accepts; C callers may ask for any power of two. */
#define TOY_MAX_ALIGN ((size_t)1 << 30)

/* The entry points behave as glibc 2.36's do (errno, return codes, realloc(p, 0)
 * frees and returns NULL, memalign rounds a non-power-of-two alignment up).
 * An invalid or double free aborts with a message on stderr, under every policy. */
void *toy_malloc(size_t size);
void toy_free(void *p);
void *toy_calloc(size_t n, size_t size);
void *toy_realloc(void *p, size_t size);
void *toy_reallocarray(void *p, size_t n, size_t size);
void *toy_memalign(size_t align, size_t size);
int toy_posix_memalign(void **out, size_t align, size_t size);
void *toy_aligned_alloc(size_t align, size_t size);
void *toy_valloc(size_t size);
void *toy_pvalloc(size_t size);
size_t toy_usable_size(void *p);
int toy_is_direct(void *p);  /* 1 when p has a mapping of its own */

/* Returns 0, or -1 for a value out of range (threshold above 1 MiB, policy unknown). */
int toy_configure(const toy_config *c);
void toy_get_config(toy_config *c);
void toy_get_stats(toy_stats *s);

#endif
