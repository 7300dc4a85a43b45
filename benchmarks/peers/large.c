/* large: up to 20 live blocks of 5 to 25 MiB, each zero-filled when taken, one replaced at a time.
 * The shape of mimalloc-bench's malloc-large: an allocator that returns each freed block to the kernel
 * maps and faults every page in again; one that keeps them reuses them. */
#include <string.h>
#include "peers.h"

int main(void)
{
    enum { LIVE = 20, ROUNDS = 240 };
    void *live[LIVE] = {0};
    uint64_t s = 42;
    for (int i = 0; i < ROUNDS; i++) {
        int k = (int)(rnd(&s) % LIVE);
        free(live[k]);
        size_t n = (5u << 20) + rnd(&s) % (20u << 20);
        live[k] = malloc(n);
        if (!live[k])
            return 1;
        memset(live[k], 0, n);
    }
    for (int k = 0; k < LIVE; k++)
        free(live[k]);
    return 0;
}
