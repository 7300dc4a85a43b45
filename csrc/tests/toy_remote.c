/* Remote frees for the toy allocator: T threads share one table of blocks, so most frees and
 * reallocs are of another thread's block (the toy's remote lists), and threads exit while others
 * still free their blocks (a span given up with slots on its remote list); each thread ends by
 * emptying spans of its own before it exits.
 *   toy_remote [threads=8] [ops per thread=200000] [policy=keep|dontneed|free|unmap]
 * Two checks, each exact:
 *   - no overlap: every block handed out is entered, by address range, in a tree of the live
 *     blocks before it is written, and removed before it is freed; a block the toy hands out
 *     while another holding any of its bytes is live finds that one in the tree;
 *   - no lost write: each block is filled with its own 8-bit tag and checked before it is freed,
 *     moved or left, so a block written through a stale pointer is caught.
 * At the end every block is freed and the toy must count 0 live bytes.
 * Exit status 0 and "0 overlaps, 0 corruptions" when all is well. */
#define _GNU_SOURCE
#include <pthread.h>
#include <search.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tagged.h"
#include "toyalloc.h"

#define SHARED 4096

typedef struct shared_block { atomic_int busy; block b; } shared_block;
typedef struct range { uintptr_t lo, hi; } range;

static shared_block table[SHARED];
static atomic_long overlaps, corruptions;
static long ops_per_thread = 200000;
static void *live;  /* tsearch tree of ranges; ranges that overlap compare equal */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

static int by_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->hi <= y->lo ? -1 : y->hi <= x->lo ? 1 : 0;
}

/* Mostly small blocks (the remote lists' business), some around the threshold, a few large. */
static size_t pick_size(uint64_t *s)
{
    uint64_t r = rnd(s) % 1000;
    if (r < 950) return 1 + rnd(s) % 2048;
    if (r < 995) return 1 + rnd(s) % (256 << 10);
    return 1 + rnd(s) % (4 << 20);
}

/* The block's whole usable size is entered: the toy must not hand out any byte of it again. */
static void enter(unsigned char *p)
{
    range *r = malloc(sizeof *r);  /* glibc's malloc: this program calls the toy only by name */
    r->lo = (uintptr_t)p, r->hi = (uintptr_t)p + toy_usable_size(p);
    pthread_mutex_lock(&live_lock);
    range **found = tsearch(r, &live, by_range);
    int clash = found && *found != r;
    pthread_mutex_unlock(&live_lock);
    if (clash) {
        atomic_fetch_add(&overlaps, 1);
        free(r);
    }
}

static void leave(unsigned char *p)
{
    range key = {(uintptr_t)p, (uintptr_t)p + 1};
    pthread_mutex_lock(&live_lock);
    range **found = tfind(&key, &live, by_range);
    range *r = found ? *found : NULL;
    if (r)
        tdelete(&key, &live, by_range);
    pthread_mutex_unlock(&live_lock);
    free(r);
}

static void verify(const block *b, size_t upto)
{
    if (!tag_intact(b, upto)) atomic_fetch_add(&corruptions, 1);
}

static void give(block *b, unsigned char *p, size_t size, unsigned char *tag)
{
    b->p = p, b->size = size, b->tag = ++*tag ? *tag : ++*tag;
    enter(p);
    fill(b);
}

static void *worker(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
    unsigned char tag = (unsigned char)((uintptr_t)arg * 37);
    for (long i = 0; i < ops_per_thread; i++) {
        shared_block *e = &table[rnd(&seed) % SHARED];
        int idle = 0;
        if (!atomic_compare_exchange_strong_explicit(&e->busy, &idle, 1, memory_order_acquire,
                                                     memory_order_relaxed))
            continue;  /* another thread has it: pick again */
        block *b = &e->b;
        uint64_t op = rnd(&seed) % 10;
        if (b->p && op < 5) {                 /* free, most often another thread's block */
            verify(b, b->size);
            leave(b->p);
            toy_free(b->p);
            b->p = NULL;
        } else if (b->p && op < 7) {          /* realloc keeps the common prefix */
            size_t ns = pick_size(&seed);
            verify(b, b->size);
            leave(b->p);
            unsigned char *q = toy_realloc(b->p, ns);
            if (!q) {
                atomic_fetch_add(&corruptions, 1);
                enter(b->p);  /* realloc failed: the old block is still live */
            } else {
                block moved = {q, b->size, b->tag};
                verify(&moved, ns);
                give(b, q, ns, &tag);
            }
        } else if (!b->p) {                   /* malloc, calloc or aligned */
            size_t s = pick_size(&seed);
            unsigned char *p;
            if (op == 7) {
                p = toy_calloc(1, s);
                if (p && (p[0] || p[s - 1])) atomic_fetch_add(&corruptions, 1);
            } else if (op == 8) {
                size_t align = (size_t)16 << rnd(&seed) % 9;  /* 16 B .. 4 KiB */
                p = toy_memalign(align, s);
                if (p && ((uintptr_t)p & (align - 1))) atomic_fetch_add(&corruptions, 1);
            } else {
                p = toy_malloc(s);
            }
            if (!p)
                atomic_fetch_add(&corruptions, 1);
            else
                give(b, p, s, &tag);
        }
        atomic_store_explicit(&e->busy, 0, memory_order_release);
    }
    /* Then spans of few slots (20 KiB blocks: 8 to a span) carved by this thread, emptied and
     * released, their mappings taken again for new spans, and the thread exits: every span it
     * carved must be let go, released ones included. */
    for (int wave = 0; wave < 4; wave++) {
        void *many[64];
        for (int k = 0; k < 64; k++)
            if (!(many[k] = toy_malloc(20 << 10)))
                atomic_fetch_add(&corruptions, 1);
        for (int k = 0; k < 64; k++)
            toy_free(many[k]);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    if (argc > 2) ops_per_thread = atol(argv[2]);
    if (argc > 3) {
        toy_config c;
        toy_get_config(&c);
        c.policy = toy_policy_by_name(argv[3]);
        if (toy_configure(&c)) { fprintf(stderr, "toy_remote: unknown policy %s\n", argv[3]); return 2; }
    }
    if (threads < 1 || threads > 256 || ops_per_thread < 1) return 2;
    pthread_t t[256];
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    long left = 0;
    for (int i = 0; i < SHARED; i++)
        if (table[i].b.p) {
            verify(&table[i].b, table[i].b.size);
            leave(table[i].b.p);
            toy_free(table[i].b.p);
            left++;
        }
    toy_stats s;
    toy_get_stats(&s);
    printf("%d threads x %ld ops, %ld blocks left to main: %ld overlaps, %ld corruptions, live %llu bytes at the end\n",
           threads, ops_per_thread, left, (long)overlaps, (long)corruptions, (unsigned long long)s.live_bytes);
    return overlaps == 0 && corruptions == 0 && s.live_bytes == 0 ? 0 : 1;
}
