/* Peak resident memory of two workloads, through the public malloc API, so the
 * same binary measures glibc (plain) and any preloaded allocator:
 *   memalign64   100,000 blocks from posix_memalign(64, 64), touched
 *   phases       three phases, each freed before the next: 32 MiB of 64-byte
 *                blocks, then 32 MiB of 1-4 KiB blocks, then 32 MiB of
 *                100-900 KiB blocks
 *   malloc_footprint memalign64|phases
 * Prints "peak_rss_growth_bytes=N live_peak_bytes=M": VmHWM's growth over the
 * baseline taken before the workload, and the bytes the workload held at most. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n + 1);
    if (f) fclose(f);
    return v;
}

static void *blocks[1 << 20];

/* Allocate blocks of sizes in [lo, hi] until `total` bytes, touch them, free all. */
static size_t phase(size_t total, size_t lo, size_t hi, unsigned *seed)
{
    size_t held = 0, n = 0;
    while (held < total) {
        size_t s = lo + (hi > lo ? rand_r(seed) % (hi - lo + 1) : 0);
        char *p = malloc(s);
        if (!p) { perror("malloc"); exit(1); }
        memset(p, 1, s);
        blocks[n++] = p, held += s;
    }
    for (size_t i = 0; i < n; i++) free(blocks[i]);
    return held;
}

int main(int argc, char **argv)
{
    if (argc != 2) { fprintf(stderr, "usage: malloc_footprint memalign64|phases\n"); return 2; }
    long base = status_kib("VmRSS:");
    size_t live_peak = 0;
    if (!strcmp(argv[1], "memalign64")) {
        for (int i = 0; i < 100000; i++) {
            if (posix_memalign(&blocks[i], 64, 64)) { perror("posix_memalign"); return 1; }
            memset(blocks[i], 1, 64);
        }
        live_peak = 100000 * 64;
        for (int i = 0; i < 100000; i++) free(blocks[i]);
    } else if (!strcmp(argv[1], "phases")) {
        unsigned seed = 1;
        size_t a = phase(32 << 20, 64, 64, &seed);
        size_t b = phase(32 << 20, 1024, 4096, &seed);
        size_t c = phase(32 << 20, 100 << 10, 900 << 10, &seed);
        live_peak = a > b ? (a > c ? a : c) : (b > c ? b : c);
    } else {
        fprintf(stderr, "malloc_footprint: unknown workload %s\n", argv[1]);
        return 2;
    }
    printf("peak_rss_growth_bytes=%ld live_peak_bytes=%zu\n", (status_kib("VmHWM:") - base) * 1024, live_peak);
    return 0;
}
