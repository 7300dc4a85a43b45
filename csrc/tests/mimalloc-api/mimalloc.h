/* mimalloc's API as its test/test-api.c calls it, on the plain malloc API (scripts/mimalloc-stress
 * builds the test with this directory first on its include path).  Each mi_* call the C library
 * covers is the call it stands for, so the test exercises whatever malloc the process has: glibc's,
 * or a preloaded allocator's.  The rest (mimalloc's heaps, mi_realpath, mi_malloc_aligned_at) has no
 * plain equivalent: testhelper.h skips their tests, and these abort if one is ever reached. */
#ifndef MIMALLOC_PLAIN_H
#define MIMALLOC_PLAIN_H

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define mi_malloc malloc  /* names, not calls: the test takes &mi_calloc for a number */
#define mi_calloc calloc
#define mi_free free
#define mi_realloc realloc
#define mi_reallocarray reallocarray
#define mi_usable_size malloc_usable_size
#define mi_memalign memalign
#define mi_posix_memalign posix_memalign
#define mi_malloc_aligned(n, align) memalign(align, n)

static inline void *mi_zalloc_aligned(size_t n, size_t align)
{
    void *p = memalign(align, n);
    if (p)
        memset(p, 0, n);
    return p;
}

#define mi_option_verbose 0
#define mi_option_disable(option) ((void)(option))

/* mimalloc's own API: never called, as testhelper.h skips the tests that use it */
typedef struct mi_heap_s mi_heap_t;
static inline void *mi_not_plain(void)
{
    fputs("mimalloc's own API reached: its test should have been skipped\n", stderr);
    abort();
}
#define mi_heap_new() ((mi_heap_t *)mi_not_plain())
#define mi_heap_destroy(heap) ((void)(heap), mi_not_plain())
#define mi_heap_delete(heap) ((void)(heap), mi_not_plain())
#define mi_heap_malloc_tp(heap, type) ((void)(heap), (type *)mi_not_plain())
#define mi_heap_malloc_aligned(heap, n, align) ((void)(heap), (void)(n), (void)(align), mi_not_plain())
#define mi_heap_contains_block(heap, p) ((void)(heap), (void)(p), mi_not_plain() != NULL)
#define mi_malloc_aligned_at(n, align, offset) ((void)(n), (void)(align), (void)(offset), mi_not_plain())
#define mi_realpath(path, resolved) ((void)(path), (void)(resolved), (char *)mi_not_plain())

#endif
