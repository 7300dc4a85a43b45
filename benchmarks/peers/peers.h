/* What the peer programs share: a seeded generator (xorshift64*, the same stream on every run, so every
 * allocator is given the same calls), the thread count from argv[1], and threads started and joined. */
#ifndef PEERS_H
#define PEERS_H
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

static inline uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12, *s ^= *s << 25, *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

/* a size in [lo, hi], biased to the small end (as real programs' sizes are): the least of two draws */
static inline size_t rnd_size(uint64_t *s, size_t lo, size_t hi)
{
    uint64_t a = rnd(s) % (hi - lo + 1), b = rnd(s) % (hi - lo + 1);
    return lo + (a < b ? a : b);
}

static inline int threads_arg(int argc, char **argv, int dflt)
{
    int t = argc > 1 ? atoi(argv[1]) : dflt;
    return t > 0 && t <= 256 ? t : dflt;
}
/* t threads (at most 256) each running fn with its index, all joined */
static inline void run_threads(int t, void *(*fn)(void *))
{
    pthread_t th[256];
    for (int i = 0; i < t; i++)
        pthread_create(&th[i], NULL, fn, (void *)(uintptr_t)i);
    for (int i = 0; i < t; i++)
        pthread_join(th[i], NULL);
}
#endif
