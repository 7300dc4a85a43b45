/* allocbench-cell: one measured cell in a fresh process whose heap holds
 * nothing but the workload's blocks (a Python child's heap would already hold
 * free chunks and a large top chunk, which serve requests above the mmap
 * threshold without any mmap and hide the path being measured).
 *
 *   allocbench-cell key=value ...
 *     allocator=glibc|libc|toy  (libc: whatever LD_PRELOAD put behind malloc)
 *     toy_threshold=N toy_cache_cap=N toy_policy=NAME (allocator=toy only; allocbench passes the
 *                   toy's knobs by their TOYALLOC_* variables instead, which cover every one)
 *     pattern=NAME size_lo=N size_hi=N ops=N threads=N live=N touch=0|1|2 seed=N
 *     trace=FILE (pattern=trace: ops become the trace's events; touch=2 is each block's first page)
 *     replay_threads=one|recorded replay_window=N (pattern=trace: on one thread, or on the recorded
 *                   threads, none more than N events ahead of the slowest; replay.h)
 *     repeats=N warmup=N method=auto|perf|strace|none spawn=0|1 (workers on new threads)
 *     timeline=0|1 (default 1: the first warm-up repeat records the memory timeline;
 *                   with warmup=0, one more untimed repeat after the timed ones)
 *     mallopt=PARAM:VALUE (repeatable; PARAM is the M_* number)
 *
 * Prints one JSON object on stdout; exit status 2 on bad arguments. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "calltime.h"
#include "counters.h"
#include "json.h"
#include "opts.h"
#include "toyalloc.h"
#include "workloads.h"

static unsigned long long opt_num(int argc, char **argv, const char *key, unsigned long long def)
{
    const char *s = ab_opt_str(argc, argv, key, NULL);
    if (!s)
        return def;
    char *end;
    unsigned long long v = strtoull(s, &end, 0);
    if (*s == '\0' || *end != '\0' || *s == '-') {
        fprintf(stderr, "allocbench-cell: %s=%s is not a non-negative integer\n", key, s);
        exit(2);
    }
    return v;
}

static void json_footprint(ab_json *j, const char *key, const ab_footprint *f)
{
    ab_json_object(j, key);
    ab_json_count(j, "rss_bytes", f->rss_bytes);
    ab_json_count(j, "anon_bytes", f->anon_bytes);
    ab_json_count(j, "peak_rss_bytes", f->peak_rss_bytes);
    ab_json_uint(j, "heap_top", f->heap_top);
    ab_json_object(j, "mallinfo2");
    for (int i = 0; i < AB_NMALLINFO2; i++)
        ab_json_uint(j, ab_mallinfo2_names[i], f->mallinfo2[i]);
    ab_json_end_object(j);
    ab_json_end_object(j);
}

static void json_repeat(ab_json *j, const ab_run_stats *s, const ab_footprint *after, int trace, int glibc)
{
    ab_json_object(j, NULL);
    ab_json_object(j, "counts");
    ab_json_object(j, "syscalls");
    for (int i = 0; i < AB_NSYSCALLS; i++)
        ab_json_count(j, ab_syscall_names[i], s->counts.syscalls[i]);
    ab_json_end_object(j);
    ab_json_int(j, "minor_faults", s->counts.minor_faults);
    ab_json_int(j, "major_faults", s->counts.major_faults);
    ab_json_int(j, "wall_ns", s->counts.wall_ns);
    ab_json_int(j, "cpu_ns", s->counts.cpu_ns);
    ab_json_end_object(j);
    ab_json_object(j, "calls");
    ab_json_uint(j, "allocs", s->allocs);
    ab_json_uint(j, "frees", s->frees);
    ab_json_uint(j, "reallocs", s->reallocs);
    ab_json_uint(j, "failed", s->failed);
    ab_json_end_object(j);
    ab_json_uint(j, "live_bytes_peak", s->live_bytes_peak);
    if (glibc) {  /* only glibc's blocks carry the chunk header whose IS_MMAPPED bit was read */
        ab_json_uint(j, "mmapped_blocks", s->mmapped_blocks);
        ab_json_uint(j, "checked_blocks", s->checked_blocks);
    }
    if (trace) {  /* after the trace's last event, before its leftovers were freed */
        ab_json_object(j, "at_end");
        ab_json_uint(j, "live_bytes", s->live_at_end_bytes);
        ab_json_count(j, "anon_bytes", s->at_end.anon_bytes);
        ab_json_end_object(j);
    }
    json_footprint(j, "after", after);
    ab_json_end_object(j);
}

static void json_hist(ab_json *j, const char *key, const ab_hist *h, double ns_per_tick)
{
    static const struct { const char *key; double q; } quantiles[] = {
        {"p50_ns", 0.5}, {"p90_ns", 0.9}, {"p99_ns", 0.99}, {"p999_ns", 0.999}};
    ab_json_object(j, key);
    ab_json_uint(j, "count", h->count);
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0]; i++)
        ab_json_double(j, quantiles[i].key, (double)ab_hist_quantile(h, quantiles[i].q) * ns_per_tick);
    ab_json_double(j, "max_ns", (double)h->max * ns_per_tick);
    ab_json_array(j, "histogram");  /* [highest ns of the bucket, calls], the buckets that have any */
    for (unsigned b = 0; b < AB_HIST_BUCKETS; b++)
        if (h->b[b]) {
            ab_json_array(j, NULL);
            ab_json_double(j, NULL, (double)ab_hist_upper(b) * ns_per_tick);
            ab_json_uint(j, NULL, h->b[b]);
            ab_json_end_array(j);
        }
    ab_json_end_array(j);
    ab_json_end_object(j);
}

static int slower_first(const void *a, const void *b)
{
    const ab_slow_call *x = a, *y = b;
    return (x->ticks < y->ticks) - (x->ticks > y->ticks);
}

/* latency=1: pass 1 times every call, pass 2 names the slowest (calltime.h); the "latency" object. */
static void latency_passes(ab_json *j, const ab_allocator *a, const ab_workload *w, ab_counter *c,
                           const char *method, const ab_replay *replay)
{
    uint64_t cap = replay ? replay->n + 1 : w->ops * 2 + 16;
    if (w->pattern == AB_REALLOC_GROW && w->size_lo)
        cap = w->ops * (w->size_hi / w->size_lo + 2) + 16;
    if (cap > ((uint64_t)1 << 26))
        cap = (uint64_t)1 << 26;  /* calls beyond it are timed but cannot be named */
    ab_calltime *ct = ab_calltime_new(w->threads, cap);
    ab_json_object(j, "latency");
    if (!ct) {
        ab_json_str(j, "error", "out of memory for the latency passes");
        ab_json_end_object(j);
        return;
    }
    ab_workload wl = *w;
    wl.calltime = ct;
    ab_run_stats st;
    ab_footprint f[2];
    ct->pass = 1;
    if (ab_run(a, &wl, c, &st, &f[0], &f[1])) {
        ab_json_str(j, "error", st.error);
        ab_json_end_object(j);
        return;
    }
    ab_calltime_choose(ct);
    if (strcmp(method, "perf"))  /* pass 2 reads this thread's perf counters around each call */
        snprintf(ct->why, sizeof ct->why, "the counter method is %s: naming a call's syscalls reads perf counters "
                 "around it (%s)", method, !strcmp(method, "none") ? "perf and strace are unavailable"
                 : "strace counts a whole window, not a call");
    else if (ab_run(a, &wl, c, &st, &f[0], &f[1]))
        snprintf(ct->why, sizeof ct->why, "the naming pass failed: %s", st.error);
    for (int t = 0; !ct->why[0] && t < ct->nthreads; t++)
        if (ct->threads[t].counter_state == -1)
            snprintf(ct->why, sizeof ct->why, "per-thread perf counters: %s", ct->threads[t].counter.error);
    double npt = ab_clock_ns_per_tick(&ct->clock);
    char clock[200];
    ab_clock_describe(&ct->clock, clock, sizeof clock);
    ab_json_str(j, "clock", clock);
    ab_json_double(j, "clock_overhead_ns", ct->clock.overhead_ticks * npt);
    ab_json_object(j, "kinds");
    for (int k = 0; k < AB_NLATENCY_KINDS; k++) {
        static ab_hist h;  /* 35 KB: not on the stack */
        ab_calltime_merged(ct, k, &h);
        if (h.count)
            json_hist(j, ab_latency_kind_names[k], &h, npt);
    }
    ab_json_end_object(j);
    ab_json_double(j, "threshold_ns", (double)ct->threshold_ticks * npt);
    ab_json_object(j, "attribution");
    ab_json_bool(j, "available", !ct->why[0]);
    ab_json_str(j, "why", ct->why[0] ? ct->why : NULL);
    ab_json_bool(j, "all_calls", ct->attribute_all);
    uint64_t lost = 0, switches = 0, preemptions = 0;
    for (int t = 0; t < ct->nthreads; t++) {
        lost += ct->threads[t].lost, switches += ct->threads[t].nspans;
        for (uint32_t i = 0; i < ct->threads[t].nspans; i++)
            preemptions += ct->threads[t].spans[i].preempted;
    }
    ab_json_object(j, "off_cpu");  /* the timed pass's context switches (offcpu.h) */
    ab_json_uint(j, "switches", switches);
    ab_json_uint(j, "preemptions", preemptions);
    ab_json_bool(j, "available", !ct->off_why[0] && !lost);
    ab_json_str(j, "why", ct->off_why[0] ? ct->off_why : lost ? "the kernel's switch records overflowed their ring"
                                                                : NULL);
    ab_json_end_object(j);
    ab_json_object(j, "totals");  /* by kind: calls counted around, and those with each syscall */
    for (int k = 0; !ct->why[0] && k < AB_NLATENCY_KINDS; k++) {
        uint64_t looked = 0, with[AB_NSYSCALLS] = {0}, made[AB_NSYSCALLS] = {0};
        for (int t = 0; t < ct->nthreads; t++) {
            looked += ct->threads[t].looked[k];
            for (int s = 0; s < AB_NSYSCALLS; s++)
                with[s] += ct->threads[t].with[k][s], made[s] += ct->threads[t].made[k][s];
        }
        if (!looked)
            continue;
        ab_json_object(j, ab_latency_kind_names[k]);
        ab_json_uint(j, "calls", looked);
        ab_json_object(j, "calls_with");
        for (int s = 0; s < AB_NSYSCALLS; s++)
            ab_json_uint(j, ab_syscall_names[s], with[s]);
        ab_json_end_object(j);
        ab_json_object(j, "syscalls");
        for (int s = 0; s < AB_NSYSCALLS; s++)
            ab_json_uint(j, ab_syscall_names[s], made[s]);
        ab_json_end_object(j);
        ab_json_end_object(j);
    }
    ab_json_end_object(j);
    ab_json_end_object(j);
    qsort(ct->slow, ct->nslow, sizeof *ct->slow, slower_first);
    ab_json_array(j, "slow_calls");
    for (uint32_t i = 0; i < ct->nslow; i++) {
        const ab_slow_call *s = &ct->slow[i];
        int named = s->attributed && !ct->why[0];
        ab_json_object(j, NULL);
        ab_json_uint(j, "thread", s->thread);
        ab_json_uint(j, "index", s->index);
        ab_json_str(j, "op", ab_latency_kind_names[s->kind]);
        if (named)
            ab_json_uint(j, "size", s->size);
        else
            ab_json_null(j, "size");  /* read in the naming pass */
        ab_json_double(j, "ns", (double)s->ticks * npt);
        if (s->off_cpu_ns >= 0) {
            ab_json_int(j, "off_cpu_ns", s->off_cpu_ns);
            ab_json_bool(j, "preempted", s->preempted);
        } else {
            ab_json_null(j, "off_cpu_ns");
            ab_json_null(j, "preempted");
        }
        if (named)
            ab_json_double(j, "again_ns", (double)s->again_ticks * npt);
        else
            ab_json_null(j, "again_ns");
        if (named) {
            ab_json_object(j, "syscalls");
            for (int k = 0; k < AB_NSYSCALLS; k++)
                ab_json_int(j, ab_syscall_names[k], s->syscalls[k]);
            ab_json_end_object(j);
            ab_json_int(j, "faults", s->faults);
            ab_json_bool(j, "trimmed", s->trimmed);
        } else {
            ab_json_null(j, "syscalls");
            ab_json_null(j, "faults");
            ab_json_null(j, "trimmed");
        }
        ab_json_end_object(j);
    }
    ab_json_end_array(j);
    ab_json_end_object(j);
    ab_calltime_free(ct);
}

/* The workload from the command line, and a trace made ready before any
 * window (the replay loop does no bookkeeping malloc); 0, or 2 with the reason
 * on stderr. */
static int read_workload(int argc, char **argv, ab_cell_spec *spec, ab_replay *replay, const char **trace)
{
    ab_workload w = spec->w;
    w.pattern = ab_pattern_of(ab_opt_str(argc, argv, "pattern", ab_pattern_names[w.pattern]));
    w.size_lo = opt_num(argc, argv, "size_lo", w.size_lo);
    w.size_hi = opt_num(argc, argv, "size_hi", w.size_lo);
    w.ops = opt_num(argc, argv, "ops", w.ops);
    w.threads = (int)opt_num(argc, argv, "threads", (unsigned long long)w.threads);
    w.live = (uint32_t)opt_num(argc, argv, "live", w.live);
    w.touch = (int)opt_num(argc, argv, "touch", (unsigned long long)w.touch);
    w.seed = opt_num(argc, argv, "seed", w.seed);
    w.spawn = (int)opt_num(argc, argv, "spawn", 0);
    *trace = ab_opt_str(argc, argv, "trace", NULL);
    if (*trace) {
        char err[512];
        const char *mode_name = ab_opt_str(argc, argv, "replay_threads", ab_replay_mode_names[AB_REPLAY_ONE]);
        int mode = -1;
        for (int i = 0; i < AB_NREPLAY_MODES; i++)
            if (!strcmp(mode_name, ab_replay_mode_names[i]))
                mode = i;
        unsigned long long window = opt_num(argc, argv, "replay_window", AB_REPLAY_WINDOW_DEFAULT);
        if (mode < 0 || window < 1) {
            fprintf(stderr, "allocbench-cell: replay_threads must be one or recorded, replay_window at least 1\n");
            return 2;
        }
        if (ab_replay_load(*trace, mode, window, replay, err, sizeof err)) {
            fprintf(stderr, "allocbench-cell: %s\n", err);
            return 2;
        }
        if (!replay->n) {
            fprintf(stderr, "allocbench-cell: %s: an empty trace\n", *trace);
            return 2;
        }
        w.replay = replay;
        w.ops = replay->n;
        w.threads = (int)replay->nthreads;
    }
    spec->w = w;
    spec->repeats = opt_num(argc, argv, "repeats", spec->repeats);
    spec->warmup = opt_num(argc, argv, "warmup", spec->warmup);
    const char *bad = ab_cell_check(spec);
    if (bad) {
        fprintf(stderr, "allocbench-cell: %s\n", bad);
        return 2;
    }
    return 0;
}

/* The allocator under test (glibc, libc for a preloaded one, or the toy with
 * its settings) and glibc's mallopt settings; 0, or 2 with the reason. */
static int choose_allocator(int argc, char **argv, ab_allocator *a, int *toy)
{
    *a = ab_libc_allocator;
    const char *allocator = ab_opt_str(argc, argv, "allocator", "glibc");
    *toy = !strcmp(allocator, "toy");
    if (!strcmp(allocator, "libc"))
        a->glibc_chunks = 0;
    else if (*toy) {
        *a = ab_toy_allocator;
        toy_config tc;
        toy_get_config(&tc);
        tc.threshold = opt_num(argc, argv, "toy_threshold", tc.threshold);
        tc.cache_cap = opt_num(argc, argv, "toy_cache_cap", tc.cache_cap);
        const char *policy = ab_opt_str(argc, argv, "toy_policy", toy_policy_names[tc.policy]);
        tc.policy = -1;
        for (int i = 0; i < TOY_NPOLICIES; i++)
            if (!strcmp(policy, toy_policy_names[i]))
                tc.policy = i;
        if (toy_configure(&tc)) {
            fprintf(stderr, "allocbench-cell: toy threshold must be <= %zu and policy one of",
                    (size_t)TOY_MAX_THRESHOLD);
            for (int i = 0; i < TOY_NPOLICIES; i++)
                fprintf(stderr, "%s %s", i ? "," : "", toy_policy_names[i]);
            fputc('\n', stderr);
            return 2;
        }
    } else if (strcmp(allocator, "glibc")) {
        fprintf(stderr, "allocbench-cell: unknown allocator %s\n", allocator);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        int param, value;
        if (strncmp(argv[i], "mallopt=", 8))
            continue;
        if (sscanf(argv[i] + 8, "%d:%d", &param, &value) != 2) {
            fprintf(stderr, "allocbench-cell: bad %s (want mallopt=PARAM:VALUE)\n", argv[i]);
            return 2;
        }
        if (mallopt(param, value) != 1) {
            fprintf(stderr, "allocbench-cell: glibc refused mallopt(%d, %d)\n", param, value);
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    ab_cell_spec spec = ab_cell_defaults;
    static ab_replay replay;
    const char *trace;
    int bad = read_workload(argc, argv, &spec, &replay, &trace);
    if (bad)
        return bad;
    ab_workload w = spec.w;
    unsigned long long repeats = spec.repeats, warmup = spec.warmup;
    ab_allocator a;
    int toy;
    if ((bad = choose_allocator(argc, argv, &a, &toy)))
        return bad;

    ab_counter c;
    char note[2048];
    const char *method = ab_counter_open_named(&c, ab_opt_str(argc, argv, "method", "auto"), note, sizeof note);
    if (!method) {
        fprintf(stderr, "allocbench-cell: counter method unavailable: %s\n", note);
        return 3;
    }

    /* Every repeat's results are kept in memory mapped before the first one: not the allocator's,
     * so a replay's first call finds the heap as fresh as the program's first call did */
    size_t nrep = (size_t)(warmup + repeats);
    ab_run_stats *st = mmap(NULL, nrep * sizeof *st, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ab_footprint *fp = mmap(NULL, (2 * nrep + 1) * sizeof *fp, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (st == MAP_FAILED || fp == MAP_FAILED) {
        fprintf(stderr, "allocbench-cell: out of memory\n");
        return 1;
    }
    if (!trace)  /* the other patterns start with the arena set up, its first growth outside the window */
        a.free(a.malloc(1));
    /* the timeline's books are mapped, and its baseline taken, before the warm-up */
    ab_timeline *tl = NULL;
    if (opt_num(argc, argv, "timeline", 1)) {
        tl = mmap(NULL, sizeof *tl, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (tl == MAP_FAILED || ab_timeline_init(tl, a.glibc_chunks)) {
            fprintf(stderr, "allocbench-cell: cannot set up the timeline (/proc/self/statm)\n");
            return 1;
        }
    }
    ab_footprint_read(&fp[2 * nrep]);  /* baseline, before the warm-up */
    /* The timeline is taken in the first warm-up repeat: memory over the
     * workload's life from the process's start, as the literature plots it.
     * Sampling allocates nothing, so the allocator's state after it is that of
     * a plain warm-up and the timed repeats run exactly as they would without
     * it.  With no warm-up it is one more repeat after the timed ones, so the
     * first timed repeat is still the process's first. */
    uint64_t replay_peak = 0;  /* a trace on its recorded threads: the replay's own peak, in the timeline repeat */
    size_t timeline_at = warmup > 0 ? 0 : nrep;
    for (size_t r = 0; r < nrep + (tl && warmup == 0); r++) {
        ab_workload wr = w;
        wr.timeline = tl && r == timeline_at ? tl : NULL;
        ab_run_stats scratch_st;
        ab_footprint scratch[2];
        int timed = r < nrep;
        ab_run_stats *s = timed ? &st[r] : &scratch_st;
        if (ab_run(&a, &wr, &c, s, timed ? &fp[2 * r] : &scratch[0], timed ? &fp[2 * r + 1] : &scratch[1])) {
            ab_json j;
            ab_json_init(&j, stdout);
            ab_json_object(&j, NULL);
            ab_json_str(&j, "error", s->error);
            ab_json_end_object(&j);
            putchar('\n');
            return 0;
        }
        if (wr.timeline)
            replay_peak = s->replay_peak_live_bytes;
    }

    ab_json j;
    ab_json_init(&j, stdout);
    ab_json_object(&j, NULL);
    ab_json_str(&j, "counter_method", method);
    ab_json_str(&j, "counter_note", note[0] ? note : NULL);
    if (trace) {  /* what the trace holds, from the preparation: the report needs no trace file */
        ab_json_object(&j, "trace");
        ab_json_uint(&j, "events", replay.n);
        ab_json_uint(&j, "allocations", replay.allocs + replay.reallocs);
        ab_json_uint(&j, "threads", replay.threads);
        ab_json_uint(&j, "slots", replay.nslots);
        ab_json_uint(&j, "peak_live_bytes", replay.peak_live_bytes);
        ab_json_uint(&j, "live_at_end_bytes", replay.live_at_end_bytes);
        ab_json_uint(&j, "allocations_at_or_above_boundary", replay.big_allocs);
        ab_json_uint(&j, "bytes_at_or_above_boundary", replay.big_bytes);
        ab_json_uint(&j, "cross_thread_frees", replay.cross_frees);
        ab_json_uint(&j, "unmatched_frees", replay.unmatched);
        ab_json_end_object(&j);
        ab_json_object(&j, "replay");
        ab_json_str(&j, "threads", ab_replay_mode_names[replay.mode]);
        ab_json_uint(&j, "window", replay.window);
        ab_json_uint(&j, "thread_count", replay.nthreads);
        ab_json_uint(&j, "reordered", replay.reordered);
        if (tl && replay.mode == AB_REPLAY_RECORDED)
            ab_json_uint(&j, "peak_live_bytes", replay_peak);
        else
            ab_json_null(&j, "peak_live_bytes");
        ab_json_end_object(&j);
    }
    if (toy) {
        toy_stats ts;
        toy_get_stats(&ts);
        ab_json_object(&j, "toy_stats_after");
        const uint64_t *values = (const uint64_t *)&ts;  /* toyalloc.h: uint64_t fields, in the list's order */
        for (int i = 0; i < TOY_NSTATS; i++)
            ab_json_uint(&j, toy_stats_names[i], values[i]);
        ab_json_end_object(&j);
    }
    int64_t heap_bytes;
    ab_json_count(&j, "arena_heaps", ab_arena_heaps_sized(&heap_bytes));  /* after the last repeat: what they kept */
    ab_json_count(&j, "arena_heap_bytes", heap_bytes);
    const ab_footprint *base = &fp[2 * nrep];
    ab_json_object(&j, "baseline");
    ab_json_count(&j, "rss_bytes", base->rss_bytes);
    ab_json_count(&j, "anon_bytes", base->anon_bytes);
    ab_json_uint(&j, "heap_top", base->heap_top);
    ab_json_end_object(&j);
    ab_json_array(&j, "repeats");
    for (size_t r = warmup; r < nrep; r++)
        json_repeat(&j, &st[r], &fp[2 * r + 1], trace != NULL, a.glibc_chunks);
    ab_json_end_array(&j);
    if (tl) {  /* the memory timeline of its untimed repeat, column-wise */
        ab_json_object(&j, "timeline");
        ab_json_array(&j, "kind");
        for (uint32_t i = 0; i < tl->n; i++)
            ab_json_str(&j, NULL, ab_timeline_kinds[tl->kind[i]]);
        ab_json_end_array(&j);
        for (int k = 0; k < AB_NTLCOLUMNS; k++) {
            ab_json_array(&j, ab_timeline_columns[k]);
            for (uint32_t i = 0; i < tl->n; i++) {
                if (tl->col[k][i] < 0 && k >= AB_TL_arena)
                    ab_json_null(&j, NULL);  /* glibc's columns for another allocator */
                else
                    ab_json_int(&j, NULL, tl->col[k][i]);
            }
            ab_json_end_array(&j);
        }
        ab_json_end_object(&j);
    }
    if (opt_num(argc, argv, "latency", 0))  /* after everything above was read: two more repeats */
        latency_passes(&j, &a, &w, &c, method, trace ? &replay : NULL);
    ab_json_end_object(&j);
    putchar('\n');
    return 0;
}
