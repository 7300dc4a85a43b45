/* Stress test for the toy allocator: T threads x N mixed operations (malloc,
 * calloc, realloc, aligned allocs, frees; sizes 1 B to 8 MiB), every live block
 * filled with a pattern unique to it and verified before it is freed or moved.
 * A fork in the middle checks that the child can allocate.
 *   toy_stress [threads=4] [ops per thread=2000000] [policy=keep|dontneed|free|unmap]
 * Exit status 0 and "0 corruptions" when all is well. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tagged.h"
#include "toyalloc.h"

#define SLOTS 512

static atomic_long corruptions;
static long ops_per_thread = 2000000;

static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 1000;
    if (r < 900) return 1 + rnd(s) % 1024;              /* small */
    if (r < 990) return 1 + rnd(s) % (256 << 10);       /* around the threshold */
    return 1 + rnd(s) % (8 << 20);                      /* large, up to 8 MiB */
}

static void verify(const block *b, size_t upto)
{
    if (!tag_intact(b, upto)) atomic_fetch_add(&corruptions, 1);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    block slots[SLOTS] = {{0}};
    unsigned char tag = (unsigned char)((uintptr_t)arg * 37);
    for (long i = 0; i < ops_per_thread; i++) {
        block *b = &slots[rnd(&seed) % SLOTS];
        uint64_t op = rnd(&seed) % 10;
        if (b->p && op < 4) {                 /* free */
            verify(b, b->size);
            toy_free(b->p);
            b->p = NULL;
        } else if (b->p && op < 6) {          /* realloc keeps the common prefix */
            size_t ns = pick_size(&seed);
            verify(b, b->size);
            unsigned char *q = toy_realloc(b->p, ns);
            if (!q) { atomic_fetch_add(&corruptions, 1); continue; }
            block moved = {q, b->size, b->tag};  /* the old layout, at the new address */
            verify(&moved, ns);
            b->p = q, b->size = ns;
            fill(b);
        } else if (!b->p) {                   /* malloc, calloc or aligned */
            size_t s = pick_size(&seed);
            if (op == 6) {
                b->p = toy_calloc(1, s);
                if (b->p && (b->p[0] != 0 || b->p[s - 1] != 0)) atomic_fetch_add(&corruptions, 1);
            } else if (op == 7) {
                size_t align = (size_t)1 << (4 + rnd(&seed) % 13);   /* 16 B .. 64 KiB */
                b->p = toy_memalign(align, s);
                if (b->p && ((uintptr_t)b->p & (align - 1))) atomic_fetch_add(&corruptions, 1);
            } else {
                b->p = toy_malloc(s);
            }
            if (!b->p) { atomic_fetch_add(&corruptions, 1); continue; }
            if (((uintptr_t)b->p & 15) || toy_usable_size(b->p) < s) atomic_fetch_add(&corruptions, 1);
            b->size = s, b->tag = ++tag ? tag : ++tag;
            fill(b);
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) { verify(&slots[i], slots[i].size); toy_free(slots[i].p); }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    if (argc > 2) ops_per_thread = atol(argv[2]);
    if (argc > 3) {
        toy_config c;
        toy_get_config(&c);
        c.policy = toy_policy_by_name(argv[3]);
        if (toy_configure(&c)) { fprintf(stderr, "toy_stress: unknown policy %s\n", argv[3]); return 2; }
    }
    pthread_t t[64];
    if (threads < 1 || threads > 64) return 2;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    /* fork while the workers allocate: the child must be able to allocate */
    usleep(20000);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 1000; i++) {
            void *p = toy_malloc((size_t)(i * 977) % (300 << 10));
            if (!p) _exit(3);
            memset(p, 1, (size_t)(i * 977) % (300 << 10));
            toy_free(p);
        }
        _exit(0);
    }
    int status = -1;
    waitpid(pid, &status, 0);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    int fork_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    toy_stats s;
    toy_get_stats(&s);
    printf("%d threads x %ld ops: %ld corruptions, fork child %s, live %llu bytes at the end\n",
           threads, ops_per_thread, (long)corruptions, fork_ok ? "ok" : "FAILED",
           (unsigned long long)s.live_bytes);
    return corruptions == 0 && fork_ok && s.live_bytes == 0 ? 0 : 1;
}
