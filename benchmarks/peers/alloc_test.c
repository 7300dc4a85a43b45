/* alloc-test: small-block churn with a working set.  Each of T threads keeps 10,000 slots and replaces
 * a random one 3,000,000 times with a block of 16 to 1,024 bytes (mostly small), writing its first
 * bytes.  The shape of mimalloc-bench's alloc-test (from the OLTP-style allocation test of Lever):
 * the allocator's fast paths, size classes and locality, one thread or several. */
#include <string.h>
#include "peers.h"

enum { SLOTS = 10000, REPLACE = 3000000 };

static void *churn(void *arg)
{
    uint64_t s = 5 + (uint64_t)(uintptr_t)arg;
    void **slot = calloc(SLOTS, sizeof *slot);
    for (int i = 0; i < REPLACE; i++) {
        int k = (int)(rnd(&s) % SLOTS);
        free(slot[k]);
        size_t n = rnd_size(&s, 16, 1024);
        slot[k] = malloc(n);
        memset(slot[k], 1, n < 64 ? n : 64);
    }
    for (int k = 0; k < SLOTS; k++)
        free(slot[k]);
    free(slot);
    return NULL;
}

int main(int argc, char **argv)
{
    run_threads(threads_arg(argc, argv, 1), churn);
    return 0;
}
