/* The toy allocator's contract, point by point, under one return policy.
 *   toy_contract [keep|dontneed|free|unmap]      every check; prints each failure
 *   toy_contract POLICY double-free small|large  frees a block twice: must abort
 *   toy_contract POLICY bad-free                 frees a pointer into a block: must abort
 *   toy_contract POLICY double-free-remote|double-free-span|realloc-freed|unused-slot
 *                                                see misuse(): must abort
 *   toy_contract POLICY double-free-next|double-free-malloc|double-free-exit
 *                                                a double free between other frees: must abort, at
 *                                                once, or under TOYALLOC_DEFER_BYTES=0 at the next
 *                                                free, at malloc or at exit (see misuse())
 * Exits 1 if any check failed. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "toyalloc.h"

#define DECAY_MS 100  /* TOYALLOC_DECAY_MS for this test: short, so the test can wait it out */
#define DECAY_STR "100"

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
    printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

static int policy_of(const char *name)
{
    int p = toy_policy_by_name(name);
    if (p < 0) { fprintf(stderr, "toy_contract: unknown policy %s\n", name); exit(2); }
    return p;
}

static void *free_it(void *p)
{
    toy_free(p);
    return NULL;
}

/* Misuse that must abort with a message, whatever the policy.  A freed small block is caught
 * wherever it waits: this thread's cache (double-free small), another thread's (double-free
 * remote: this thread frees it again), its span's list (double-free span: 200 frees of its class
 * flush the cache first), and a realloc of it; so is a slot never handed out (unused-slot). */
static int misuse(const char *what, const char *size)
{
    size_t n = size && !strcmp(size, "large") ? (1 << 20) : 100;
    char *p = toy_malloc(n);
    toy_free(toy_malloc(n));  /* let the cache and thread cache hold something */
    if (!strcmp(what, "double-free")) {
        toy_free(p);
        toy_free(p);
    } else if (!strcmp(what, "double-free-remote")) {
        pthread_t t;
        pthread_create(&t, NULL, free_it, p);
        pthread_join(t, NULL);
        toy_free(p);
    } else if (!strcmp(what, "double-free-span")) {
        void *more[200];
        for (int i = 0; i < 200; i++)
            more[i] = toy_malloc(n);
        toy_free(p);
        for (int i = 0; i < 200; i++)
            toy_free(more[i]);
        toy_free(p);
    } else if (!strcmp(what, "realloc-freed")) {
        toy_free(p);
        p = toy_realloc(p, 2 * n);
    } else if (!strcmp(what, "unused-slot")) {
        /* 40 slots on: past the 32 the span's first refill handed out, within its 585 (65536 / 112) */
        toy_free(p + 40 * toy_usable_size(p));
    } else if (!strcmp(what, "bad-free")) {
        toy_free(p + 16);
    } else if (!strncmp(what, "double-free-", 12)) {
        /* p freed again while in this thread's cache, one free behind: a thread that defers the check
         * returns from that free (said on stdout, unbuffered) and is caught by what follows */
        char *x = toy_malloc(n);
        toy_free(p);
        toy_free(x);
        toy_free(p);
        printf("the second free of p returned\n");
        fflush(stdout);
        if (!strcmp(what + 12, "next")) {
            toy_free(toy_malloc(2 * n));  /* a block of another class: its free checks p */
        } else if (!strcmp(what + 12, "malloc")) {
            toy_malloc(n);  /* x */
            toy_malloc(n);  /* p, still pending */
        } else if (!strcmp(what + 12, "exit")) {
            return 0;
        }
    }
    printf("misuse %s was not caught\n", what);
    return 1;
}

int main(int argc, char **argv)
{
    setenv("TOYALLOC_DECAY_MS", DECAY_STR, 1);  /* read at the toy's first call, just below */
    toy_config c0;
    toy_get_config(&c0);
    if (argc > 1) {
        c0.policy = policy_of(argv[1]);
        toy_configure(&c0);
    }
    if (argc > 2)
        return misuse(argv[2], argc > 3 ? argv[3] : NULL);
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
        toy_free(toy_malloc(1));  /* a thread that defers free's check caches p at its next free */
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
    CHECK(toy_realloc(r, 0) == NULL, "realloc(p, 0) frees p and returns NULL, as glibc's does");

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
    void *m48 = toy_memalign(48, 10);
    CHECK(m48 && ((uintptr_t)m48 & 63) == 0, "memalign(48) rounds up to 64, as glibc's does");
    toy_free(m48);

    /* a small aligned request is carved from a class: no mapping of its own */
    toy_stats before_aligned, after_aligned;
    void *warm = toy_memalign(64, 64);
    toy_get_stats(&before_aligned);
    void *al[1000];
    for (int i = 0; i < 1000; i++)
        al[i] = toy_memalign(64, 64);
    toy_get_stats(&after_aligned);
    /* 1000 slots of 64 B fill at most two 64 KiB spans: at most 2 new mappings */
    CHECK(after_aligned.mmap_calls - before_aligned.mmap_calls <= 2 * 3,
          "1000 memalign(64, 64) made %llu mmap calls",
          (unsigned long long)(after_aligned.mmap_calls - before_aligned.mmap_calls));
    for (int i = 0; i < 1000; i++) {
        CHECK(!toy_is_direct(al[i]) && ((uintptr_t)al[i] & 63) == 0, "memalign(64, 64) #%d", i);
        toy_free(al[i]);
    }
    toy_free(warm);

    /* whether cached pages are zero is decided when they are cached, not by the
     * policy in force when they are reused */
    toy_config keep = c0, dontneed = c0;
    keep.policy = TOY_KEEP, dontneed.policy = TOY_DONTNEED;
    toy_configure(&keep);
    size_t odd_len = (1 << 20) + 3 * 4096 + 100;  /* a length no other cached mapping has */
    unsigned char *dirty = toy_malloc(odd_len);
    memset(dirty, 0xFF, odd_len);
    toy_free(dirty);
    toy_configure(&dontneed);
    unsigned char *z = toy_calloc(1, odd_len);
    CHECK(z == dirty, "expected the cached mapping back (the check needs reuse)");
    CHECK(z && all_bytes(z, odd_len, 0), "calloc after keep -> dontneed returned dirty memory");
    toy_free(z);
    toy_configure(&c0);

    /* a released span's range, reused for a large block, frees as a large
     * block and its bytes leave the live count (nothing free consults may
     * still claim it for the span: its granules left the map at release) */
    toy_config low = c0;
    low.threshold = 32 << 10, low.policy = TOY_KEEP;
    toy_configure(&low);
    enum { NSMALL = 4 * 63 };  /* four 64 KiB spans of 1 KiB slots */
    static char *smalls[NSMALL];
    for (int i = 0; i < NSMALL; i++)
        smalls[i] = toy_malloc(1000);
    for (int i = 0; i < NSMALL; i++)  /* empties spans: all but one spare are released to the cache */
        toy_free(smalls[i]);
    toy_stats s0, s1;
    toy_get_stats(&s0);
    char *reuse = toy_malloc(60 << 10);  /* above the threshold: a cached 64 KiB mapping fits it */
    int in_old_span = 0;
    for (int i = 0; i < NSMALL; i++)
        in_old_span |= ((uintptr_t)reuse & ~(uintptr_t)0xFFFF) == ((uintptr_t)smalls[i] & ~(uintptr_t)0xFFFF);
    CHECK(in_old_span && toy_is_direct(reuse), "expected a released span's mapping back (the check needs reuse)");
    toy_free(reuse);
    toy_get_stats(&s1);
    CHECK(s1.live_bytes == s0.live_bytes, "free of a large block in a released span's range: live %llu, was %llu",
          (unsigned long long)s1.live_bytes, (unsigned long long)s0.live_bytes);
    toy_configure(&c0);

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

    /* after a batch is freed the cache holds at most its cap and the last block (kept for the decay, as
     * a churn asks for it again), and once the decay has passed, the next large call leaves the cap */
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
    size_t most = c.cache_cap + ((size_t)1 << 20);
    CHECK(st.cached_bytes <= most, "cache holds %llu > %zu", (unsigned long long)st.cached_bytes, most);
    CHECK(st.live_bytes == 0, "live bytes %llu after freeing everything", (unsigned long long)st.live_bytes);
    usleep((DECAY_MS + 50) * 1000);  /* the coarse clock lags by a tick at most (4 ms at HZ=250) */
    void *again = toy_malloc(1 << 20);
    toy_get_stats(&st);
    CHECK(st.cached_bytes <= c.cache_cap, "past the decay the cache holds %llu > cap %zu",
          (unsigned long long)st.cached_bytes, c.cache_cap);
    toy_free(again);

    /* every live byte is accounted for, and every policy keeps the cache under its cap */
    toy_config unmap = c;
    unmap.policy = TOY_UNMAP;
    unmap.cache_cap = (size_t)1 << 30;  /* nothing cached is over the cap: no eviction, however long this takes */
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
