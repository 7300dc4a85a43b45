/* libtoyalloc.so: the toy replaces malloc for a whole program via LD_PRELOAD.
 * The functions glibc's manual lists for replacing malloc, plus the obsolete
 * ones (valloc, pvalloc) so nothing reaches glibc's allocator by a side door. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>

#include "toyalloc.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *malloc(size_t n) { return toy_malloc(n); }
EXPORT void free(void *p) { toy_free(p); }
EXPORT void *calloc(size_t n, size_t s) { return toy_calloc(n, s); }
EXPORT void *realloc(void *p, size_t n) { return toy_realloc(p, n); }
EXPORT void *memalign(size_t a, size_t n) { return toy_memalign(a, n); }
EXPORT void *aligned_alloc(size_t a, size_t n) { return toy_aligned_alloc(a, n); }
EXPORT int posix_memalign(void **out, size_t a, size_t n) { return toy_posix_memalign(out, a, n); }
EXPORT size_t malloc_usable_size(void *p) { return toy_usable_size(p); }
EXPORT void *valloc(size_t n) { return toy_valloc(n); }
EXPORT void *pvalloc(size_t n) { return toy_pvalloc(n); }

EXPORT void *reallocarray(void *p, size_t n, size_t s)
{
    size_t total;
    if (__builtin_mul_overflow(n, s, &total)) {
        errno = ENOMEM;
        return 0;
    }
    return toy_realloc(p, total);
}
