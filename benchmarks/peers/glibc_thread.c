/* glibc-thread: per-thread churn with glibc's own benchmark's size mix.  Each of T threads keeps 1,024
 * slots and replaces a random one 4,000,000 times with a block from a size mix like the one glibc's
 * benchtests/bench-malloc-thread draws (most under 1 KiB, a tail up to 32 KiB).  The shape of
 * mimalloc-bench's glibc-thread: no sharing between threads, so each allocator's per-thread fast path. */
#include "peers.h"

enum { SLOTS = 1024, REPLACE = 4000000 };

static size_t mix(uint64_t *s)
{
    uint64_t r = rnd(s) % 100;
    return r < 80 ? rnd_size(s, 8, 256) : r < 95 ? rnd_size(s, 257, 4096) : rnd_size(s, 4097, 32768);
}

static void *churn(void *arg)
{
    uint64_t s = 9 + (uint64_t)(uintptr_t)arg;
    void *slot[SLOTS] = {0};
    for (int i = 0; i < REPLACE; i++) {
        int k = (int)(rnd(&s) % SLOTS);
        free(slot[k]);
        slot[k] = malloc(mix(&s));
        *(char *)slot[k] = 1;
    }
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    run_threads(threads_arg(argc, argv, 2), churn);
    return 0;
}
