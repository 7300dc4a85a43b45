/* alloc-test: small-block churn with a working set.  Each of T threads keeps N slots (10,000 unless
 * argv[2] says) and replaces a random one 3,000,000 times with a block of 16 to 1,024 bytes (mostly
 * small), writing its first bytes.  The shape of mimalloc-bench's alloc-test (from the OLTP-style
 * allocation test of Lever): the allocator's fast paths, size classes and locality, one thread or
 * several.  A block averages 352 bytes (16 + 1,008/3), so 50,000 slots hold about 17 MB live, 8 times
 * this machine's L2 (2 MiB a core, /sys/devices/system/cpu/cpu0/cache/index2/size) where 10,000 hold
 * 3.5 MB, under twice it: a free then finds its block's line far away, which is what an allocator's
 * free pays when it reads the block.
 * The first bytes are written by libc's memset, called as the public program calls it (its memset is
 * of the whole block): GCC inlines a memset it knows to be at most 64 bytes as `rep stosb`, whose
 * start-up cost was half of this program's time under every allocator (paired medians of 10, 10,000
 * slots: mimalloc 74.8 ms inlined, 38.9 called; the toy 83.1 and 37.4), and more with some
 * allocators' blocks than others' (over 50,000 slots, about 55 ms more under mimalloc, 73 more under
 * the toy without its check): a cost of the instruction, not of the allocator. */
#include <string.h>
#include "peers.h"

enum { REPLACE = 3000000 };
static int nslots = 10000;
static void *(*volatile write_bytes)(void *, int, size_t) = memset;  /* a call: GCC cannot inline it */

static void *churn(void *arg)
{
    uint64_t s = 5 + (uint64_t)(uintptr_t)arg;
    void **slot = calloc((size_t)nslots, sizeof *slot);
    for (int i = 0; i < REPLACE; i++) {
        int k = (int)(rnd(&s) % (uint64_t)nslots);
        free(slot[k]);
        size_t n = rnd_size(&s, 16, 1024);
        slot[k] = malloc(n);
        write_bytes(slot[k], 1, n < 64 ? n : 64);
    }
    for (int k = 0; k < nslots; k++)
        free(slot[k]);
    free(slot);
    return NULL;
}

int main(int argc, char **argv)
{
    int asked = argc > 2 ? atoi(argv[2]) : 0;
    if (asked > 0)
        nslots = asked;
    run_threads(threads_arg(argc, argv, 1), churn);
    return 0;
}
