/* What the counters cost: a malloc/free loop with and without a perf window
 * around it (ratio of medians), and one window open + close per method.
 *   counter_overhead   -> one JSON line (ns) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

#include "counters.h"
#include "timing.h"

#define RUNS 9
#define LOOP 1000000
#define WINDOWS 10000

static void *volatile sink;

static double median(double *v) { return median_of(v, RUNS); }

static void loop(void)
{
    for (int i = 0; i < LOOP; i++) {
        void *p = malloc(64);
        sink = p;
        free(p);
    }
}

int main(void)
{
    ab_counter perf, none;
    if (ab_counter_open(&perf, AB_METHOD_PERF, getenv("ALLOCBENCH_TRACEFS"), NULL)) {
        fprintf(stderr, "perf counters unavailable: %s\n", perf.error);
        return 1;
    }
    ab_counter_open(&none, AB_METHOD_NONE, NULL, NULL);
    double bare[RUNS], windowed[RUNS], win_perf[RUNS], win_none[RUNS];
    ab_window w;
    ab_counts out;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now_ns();
        loop();
        bare[r] = (now_ns() - t0) / LOOP;
        t0 = now_ns();
        ab_window_begin(&perf, &w);
        loop();
        ab_window_end(&perf, &w, &out);
        windowed[r] = (now_ns() - t0) / LOOP;
        t0 = now_ns();
        for (int i = 0; i < WINDOWS; i++) {
            ab_window_begin(&perf, &w);
            ab_window_end(&perf, &w, &out);
        }
        win_perf[r] = (now_ns() - t0) / WINDOWS;
        t0 = now_ns();
        for (int i = 0; i < WINDOWS; i++) {
            ab_window_begin(&none, &w);
            ab_window_end(&none, &w, &out);
        }
        win_none[r] = (now_ns() - t0) / WINDOWS;
    }
    double b = median(bare), wd = median(windowed);
    printf("{\"malloc_free_ns\":%.2f,\"malloc_free_in_window_ns\":%.2f,\"ratio\":%.4f,"
           "\"window_open_close_perf_ns\":%.0f,\"window_open_close_none_ns\":%.0f}\n",
           b, wd, wd / b, median(win_perf), median(win_none));
    return 0;
}
