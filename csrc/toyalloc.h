/* toyalloc: a small malloc built only on anonymous private mmap (no brk, no
 * libc malloc).  Size classes carved from mmapped spans below the threshold;
 * a direct mapping per block above it, recycled through a bounded cache. */
#ifndef TOYALLOC_H
#define TOYALLOC_H

#include <stddef.h>
#include <stdint.h>

enum toy_policy {
    TOY_KEEP = 0,      /* cached mappings stay resident: reuse costs nothing */
    TOY_DONTNEED = 1,  /* madvise(MADV_DONTNEED) on caching: RSS drops now, reuse faults */
    TOY_FREE = 2,      /* madvise(MADV_FREE): the kernel reclaims only under pressure */
    TOY_UNMAP = 3,     /* no cache: munmap at once, like glibc's mmapped chunks */
};

typedef struct toy_config {
    size_t threshold;     /* requests above this get their own mapping (default 128 KiB) */
    size_t cache_cap;     /* bytes of freed mappings kept for reuse (default 32 MiB) */
    int policy;           /* enum toy_policy (default TOY_KEEP) */
} toy_config;

typedef struct toy_stats {
    uint64_t mapped_bytes;   /* all mappings held now: spans, live large blocks, cache */
    uint64_t live_bytes;     /* bytes requested by live blocks */
    uint64_t cached_bytes;   /* freed large mappings kept for reuse */
    uint64_t mmap_calls, munmap_calls, mremap_calls, madvise_calls;
} toy_stats;

#define TOY_MAX_THRESHOLD ((size_t)1 << 20)
#define TOY_MAX_ALIGN ((size_t)1 << 26)

void *toy_malloc(size_t size);
void toy_free(void *p);
void *toy_calloc(size_t n, size_t size);
void *toy_realloc(void *p, size_t size);
void *toy_memalign(size_t align, size_t size);       /* align: a power of two */
int toy_posix_memalign(void **out, size_t align, size_t size);
void *toy_aligned_alloc(size_t align, size_t size);
size_t toy_usable_size(void *p);
int toy_is_direct(void *p);  /* 1 when p has a mapping of its own */

/* Returns 0, or -1 for a value out of range (threshold above 1 MiB, policy unknown). */
int toy_configure(const toy_config *c);
void toy_get_config(toy_config *c);
void toy_get_stats(toy_stats *s);

#endif
