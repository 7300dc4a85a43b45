/* The toy allocator's contract, point by point.  Prints each failed check and
 * exits 1 if any failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "toyalloc.h"

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
    printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

int main(void)
{
    /* alignment and usable size over sizes on both sides of the threshold */
    for (size_t s = 0; s < (600 << 10); s = s * 3 / 2 + 1) {
        unsigned char *p = toy_malloc(s);
        CHECK(p && ((uintptr_t)p & 15) == 0, "malloc(%zu) not 16-byte aligned", s);
        CHECK(toy_usable_size(p) >= s, "usable_size(%zu) too small", s);
        memset(p, 0xAB, s);
        toy_free(p);
    }

    /* malloc(0): unique and freeable; free(NULL) is a no-op */
    void *z1 = toy_malloc(0), *z2 = toy_malloc(0);
    CHECK(z1 && z2 && z1 != z2, "malloc(0) must return unique pointers");
    toy_free(z1), toy_free(z2), toy_free(NULL);

    /* calloc: overflow, and zeroing of recycled memory (small and large) */
    errno = 0;
    CHECK(toy_calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "calloc overflow must be NULL/ENOMEM");
    size_t sizes[] = {100, 4000, 100 << 10, 1 << 20, 3 << 20};
    for (int i = 0; i < 5; i++) {
        unsigned char *p = toy_malloc(sizes[i]);
        memset(p, 0xFF, sizes[i]);
        toy_free(p);
        unsigned char *q = toy_calloc(1, sizes[i]);
        CHECK(q == p, "expected the recycled block for %zu (the test needs reuse)", sizes[i]);
        CHECK(q && all_bytes(q, sizes[i], 0), "calloc(%zu) of recycled memory not zeroed", sizes[i]);
        toy_free(q);
    }

    /* realloc: NULL, grow and shrink across the threshold, keeping contents */
    unsigned char *r = toy_realloc(NULL, 50);
    CHECK(r != NULL, "realloc(NULL, 50)");
    memset(r, 7, 50);
    size_t steps[] = {40, 5000, 200 << 10, 2 << 20, 9 << 20, 1 << 20, 64 << 10, 10};
    size_t have = 40;
    for (int i = 0; i < 8; i++) {
        r = toy_realloc(r, steps[i]);
        size_t keep = have < steps[i] ? have : steps[i];
        CHECK(r && all_bytes(r, keep, 7), "realloc to %zu lost contents", steps[i]);
        memset(r, 7, steps[i]);
        have = steps[i];
    }
    /* realloc failure leaves the block intact */
    errno = 0;
    CHECK(toy_realloc(r, SIZE_MAX - 100) == NULL && errno == ENOMEM, "huge realloc must fail with ENOMEM");
    CHECK(all_bytes(r, have, 7), "failed realloc damaged the block");
    unsigned char *big = toy_malloc(1 << 20);
    memset(big, 9, 1 << 20);
    CHECK(toy_realloc(big, (size_t)PTRDIFF_MAX) == NULL, "PTRDIFF_MAX realloc must fail");
    CHECK(all_bytes(big, 1 << 20, 9), "failed realloc of a large block damaged it");
    toy_free(big);
    void *gone = toy_realloc(r, 0);
    CHECK(gone != NULL, "realloc(p, 0) returns a minimal block");
    toy_free(gone);

    /* aligned allocation: every power of two from 16 B to 1 MiB */
    for (size_t a = 16; a <= (1 << 20); a *= 2) {
        size_t s = a * 3 + 5;
        void *p = toy_memalign(a, s), *q = toy_aligned_alloc(a, 100), *o = NULL;
        int rc = toy_posix_memalign(&o, a, 1000);
        CHECK(p && ((uintptr_t)p & (a - 1)) == 0, "memalign(%zu)", a);
        CHECK(q && ((uintptr_t)q & (a - 1)) == 0, "aligned_alloc(%zu)", a);
        CHECK(rc == 0 && ((uintptr_t)o & (a - 1)) == 0, "posix_memalign(%zu)", a);
        CHECK(toy_usable_size(p) >= s, "usable size of memalign(%zu)", a);
        memset(p, 1, s);
        toy_free(p), toy_free(q), toy_free(o);
    }
    void *o = NULL;
    CHECK(toy_posix_memalign(&o, 24, 10) == EINVAL && o == NULL, "posix_memalign(24) must be EINVAL");
    errno = 0;
    CHECK(toy_memalign(48, 10) == NULL && errno == EINVAL, "memalign(48) must be EINVAL");

    /* huge requests right after a small alloc/free never return the old block */
    void *small = toy_malloc(32);
    toy_free(small);
    size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX, (size_t)PTRDIFF_MAX + 1,
                     (size_t)PTRDIFF_MAX - 16};
    for (int i = 0; i < 5; i++) {
        errno = 0;
        void *p = toy_malloc(huge[i]);
        CHECK(p == NULL && errno == ENOMEM, "malloc(%zu) must be NULL/ENOMEM, got %p", huge[i], p);
    }

    /* after a batch is freed the cache holds at most its cap */
    toy_config c;
    toy_get_config(&c);
    void *batch[256];
    for (int i = 0; i < 256; i++) {
        batch[i] = toy_malloc(1 << 20);
        memset(batch[i], 1, 1 << 20);
    }
    for (int i = 0; i < 256; i++)
        toy_free(batch[i]);
    toy_stats st;
    toy_get_stats(&st);
    CHECK(st.cached_bytes <= c.cache_cap, "cache holds %llu > cap %zu",
          (unsigned long long)st.cached_bytes, c.cache_cap);
    CHECK(st.live_bytes == 0, "live bytes %llu after freeing everything", (unsigned long long)st.live_bytes);

    /* policy unmap: every large free is a munmap */
    toy_config unmap = c;
    unmap.policy = TOY_UNMAP;
    CHECK(toy_configure(&unmap) == 0, "configure unmap");
    toy_get_stats(&st);
    unsigned long long before = st.munmap_calls;
    for (int i = 0; i < 10; i++)
        toy_free(toy_malloc(200 << 10));
    toy_get_stats(&st);
    CHECK(st.munmap_calls - before == 10, "unmap policy: %llu munmaps for 10 frees", st.munmap_calls - before);
    toy_config bad = c;
    bad.threshold = TOY_MAX_THRESHOLD + 1;
    CHECK(toy_configure(&bad) == -1, "threshold above the maximum must be refused");

    printf("%d checks, %d failed\n", checks, failures);
    return failures ? 1 : 0;
}
