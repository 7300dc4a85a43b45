/* larson: a server whose blocks outlive the thread that made them.  Each of T threads holds 1,000
 * blocks of 16 to 512 bytes and replaces a random one 1,000,000 times; then a new thread takes its blocks
 * over and goes on, so most frees are of blocks another (now gone) thread allocated.  The shape of
 * mimalloc-bench's larson (Larson and Krishnan's server benchmark): remote frees and thread churn. */
#include <pthread.h>
#include "peers.h"

enum { SLOTS = 1000, REPLACE = 1000000, GENERATIONS = 6 };
typedef struct work { void **slots; uint64_t seed; int left; } work;

static void *serve(void *arg)
{
    work *w = arg;
    void **slots = w->slots;
    /* the random state in a local, handed on in w: the threads' work records share a cache line, and
     * a write to it at every call made the program's own false sharing most of its time (the CPU
     * time of two threads 7 times one thread's, under any allocator) */
    uint64_t seed = w->seed;
    for (int i = 0; i < REPLACE; i++) {
        int k = (int)(rnd(&seed) % SLOTS);
        free(slots[k]);
        slots[k] = malloc(rnd_size(&seed, 16, 512));
        *(char *)slots[k] = (char)i;
    }
    w->seed = seed;
    if (--w->left > 0) {  /* hand the blocks to a successor and end */
        pthread_t next;
        pthread_create(&next, NULL, serve, w);
        pthread_join(next, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int t = threads_arg(argc, argv, 2);
    pthread_t *th = malloc(sizeof *th * (size_t)t);
    work *w = malloc(sizeof *w * (size_t)t);
    for (int i = 0; i < t; i++) {
        w[i] = (work){calloc(SLOTS, sizeof(void *)), 7 + (uint64_t)i, GENERATIONS};
        for (int k = 0; k < SLOTS; k++)
            w[i].slots[k] = malloc(rnd_size(&w[i].seed, 16, 512));
        pthread_create(&th[i], NULL, serve, &w[i]);
    }
    for (int i = 0; i < t; i++) {
        pthread_join(th[i], NULL);
        for (int k = 0; k < SLOTS; k++)
            free(w[i].slots[k]);
        free(w[i].slots);
    }
    free(w), free(th);
    return 0;
}
