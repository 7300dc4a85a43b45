/* allocbench-calibrate: this host's unit costs, for the report's cost model.
 * Prints one JSON object (nanoseconds, each the median of RUNS loops):
 *   map_cycle          {pages: ns} for mmap of N pages + touching every page +
 *                      munmap; the cost model takes the slope between the two
 *                      measured sizes around a cell's page count (piecewise, no
 *                      fitted line) for a page's life, and the 1-page cycle less
 *                      that slope for the mmap + munmap pair
 *   brk_call           one brk call (sbrk +4 KiB and back, per call)
 *   madvise_call       madvise(MADV_DONTNEED) of one untouched page
 *   mprotect_call      mprotect of one page
 *   touch_page         {working set bytes: ns} writing one byte to a resident
 *                      page, the way the workloads touch their blocks
 *   malloc_free        {size: ns} glibc malloc + free, untouched (the bookkeeping floor)
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "timing.h"

#define RUNS 5
#define PAGES 8192  /* 32 MiB */

static void *volatile sink;

static double median(double *v) { return median_of(v, RUNS); }

static const int cycle_pages[] = {1, 4, 16, 64, 256, 1024};
#define NCYCLE 6

static double map_cycle(int pages)
{
    size_t len = (size_t)pages * 4096;
    int reps = pages >= 256 ? 40 : 4000 / pages;
    double t0 = now_ns();
    for (int i = 0; i < reps; i++) {
        volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        for (size_t off = 0; off < len; off += 4096)
            p[off] = 1;
        munmap((void *)p, len);
    }
    return (now_ns() - t0) / reps;
}

static double brk_call(void)
{
    double t0 = now_ns();
    for (int i = 0; i < 20000; i++) {
        sink = sbrk(4096);
        sbrk(-4096);
    }
    return (now_ns() - t0) / 40000;
}

static double madvise_call(void)
{
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t0 = now_ns();
    for (int i = 0; i < 20000; i++)
        madvise(p, 4096, MADV_DONTNEED);
    double t = (now_ns() - t0) / 20000;
    munmap(p, 4096);
    return t;
}

static double mprotect_call(void)
{
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    double t0 = now_ns();
    for (int i = 0; i < 20000; i++)
        mprotect(p, 4096, (i & 1) ? PROT_READ | PROT_WRITE : PROT_READ);
    double t = (now_ns() - t0) / 20000;
    munmap(p, 4096);
    return t;
}

static const size_t touch_sets[] = {64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20};
#define NTOUCH 6

static double touch_page(size_t len)
{
    volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t off = 0; off < len; off += 4096)
        p[off] = 1;
    int reps = (int)((256 << 20) / len);
    double t0 = now_ns();
    for (int r = 0; r < reps; r++)
        for (size_t off = 0; off < len; off += 4096)
            p[off] = (char)r;
    double t = (now_ns() - t0) / ((double)reps * (len / 4096));
    munmap((void *)p, len);
    return t;
}

static const size_t floor_sizes[] = {64, 4096, 65536};
#define NFLOOR 3

static double malloc_free(size_t size)
{
    double t0 = now_ns();
    for (int i = 0; i < 1000000; i++) {
        void *p = malloc(size);
        sink = p;
        free(p);
    }
    return (now_ns() - t0) / 1e6;
}

int main(void)
{
    double cyc[NCYCLE][RUNS], tch[NTOUCH][RUNS], flo[NFLOOR][RUNS], v[3][RUNS];
    for (int r = 0; r < RUNS; r++) {
        for (int i = 0; i < NCYCLE; i++)
            cyc[i][r] = map_cycle(cycle_pages[i]);
        for (int i = 0; i < NTOUCH; i++)
            tch[i][r] = touch_page(touch_sets[i]);
        v[0][r] = brk_call();
        v[1][r] = madvise_call();
        v[2][r] = mprotect_call();
        for (int i = 0; i < NFLOOR; i++)
            flo[i][r] = malloc_free(floor_sizes[i]);
    }
    printf("{\"map_cycle\":{");
    for (int i = 0; i < NCYCLE; i++)
        printf("%s\"%d\":%.2f", i ? "," : "", cycle_pages[i], median(cyc[i]));
    printf("},\"touch_page\":{");
    for (int i = 0; i < NTOUCH; i++)
        printf("%s\"%zu\":%.3f", i ? "," : "", touch_sets[i], median(tch[i]));
    printf("},\"malloc_free\":{");
    for (int i = 0; i < NFLOOR; i++)
        printf("%s\"%zu\":%.2f", i ? "," : "", floor_sizes[i], median(flo[i]));
    printf("},\"brk_call\":%.2f,\"madvise_call\":%.2f,\"mprotect_call\":%.2f}\n",
           median(v[0]), median(v[1]), median(v[2]));
    return 0;
}
