/* Histograms and the clock of latency.h.  No malloc, no stdio (snprintf only). */
#define _GNU_SOURCE
#include "latency.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const char *const ab_latency_kind_names[AB_NLATENCY_KINDS] = {
#define AB_LK_NAME(e, name) [e] = name,
    AB_LATENCY_KINDS(AB_LK_NAME)
#undef AB_LK_NAME
};

void ab_hist_merge(ab_hist *into, const ab_hist *from)
{
    if (!from->count)
        return;
    for (unsigned i = 0; i < AB_HIST_BUCKETS; i++)
        into->b[i] += from->b[i];
    into->count += from->count;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t ab_hist_quantile(const ab_hist *h, double q)
{
    if (!h->count)
        return 0;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.999999), seen = 0;
    if (want < 1)
        want = 1;
    for (unsigned i = 0; i < AB_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t up = ab_hist_upper(i);
            return up < h->max ? up : h->max;
        }
    }
    return h->max;
}

/* Whether /proc/cpuinfo's flags promise a TSC that ticks at one rate and never stops. */
static int tsc_is_steady(void)
{
    char buf[8192];
    int f = open("/proc/cpuinfo", O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return 0;
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return strstr(buf, " constant_tsc") && strstr(buf, " nonstop_tsc");
}

void ab_clock_init(ab_clock *c)
{
    memset(c, 0, sizeof *c);
    c->tsc = tsc_is_steady();
    c->mono0_ns = ab_mono_ns();
    c->ticks0 = ab_ticks(c);
    /* one reading's cost: the median of back-to-back pairs (insertion into a small sorted array) */
    uint64_t d[63];
    for (int i = 0; i < 63; i++) {
        uint64_t a = ab_ticks(c), b = ab_ticks(c);
        uint64_t v = b - a;
        int j = i;
        for (; j > 0 && d[j - 1] > v; j--)
            d[j] = d[j - 1];
        d[j] = v;
    }
    c->overhead_ticks = (double)d[31];
}

double ab_clock_ns_per_tick(const ab_clock *c)
{
    if (!c->tsc)
        return 1.0;
    uint64_t ticks = __rdtsc() - c->ticks0, ns = ab_mono_ns() - c->mono0_ns;
    if (ns < 1000000) {  /* under a millisecond since the start: wait out a few for the ratio */
        uint64_t until = ab_mono_ns() + 5000000;
        while (ab_mono_ns() < until)
            ;
        ticks = __rdtsc() - c->ticks0, ns = ab_mono_ns() - c->mono0_ns;
    }
    return ticks ? (double)ns / (double)ticks : 1.0;
}

void ab_clock_describe(const ab_clock *c, char *out, size_t cap)
{
    if (c->tsc)
        snprintf(out, cap, "tsc (rdtsc; constant_tsc and nonstop_tsc), %.3f GHz against CLOCK_MONOTONIC over the run",
                 1.0 / ab_clock_ns_per_tick(c));
    else
        snprintf(out, cap, "clock_gettime(CLOCK_MONOTONIC) through the vDSO");
}
