/* N malloc(64) + free pairs through the plain malloc API; prints ns per pair.
 * The recorder's overhead is this loop with librecord.so preloaded, less it
 * plain (scripts/trace-overhead).   malloc_loop [pairs=1000000] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *volatile sink;

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct timespec a, b;
    for (long i = 0; i < n / 10; i++)  /* warm */
        free((void *)(sink = malloc(64)));
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)
        free((void *)(sink = malloc(64)));
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.2f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
    return 0;
}
