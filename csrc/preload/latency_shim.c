/* liblatency.so: the latency of every allocation call of an unmodified
 * program (allocbench exec --latency), and malloc_trim's.
 *
 * - Each call is timed with latency.h's clock (the TSC where it is steady:
 *   no syscall) into the calling thread's histograms, one per call kind, in
 *   static memory: a thread takes a slot at its first call; threads past the
 *   last slot share it, with atomic adds.
 * - The SLOW slowest calls are kept with their backtraces (taken after the
 *   call, so the call's own time is not the backtrace's), behind a spin lock
 *   that only a call slower than the slowest kept takes.
 * - At exit (a destructor, and _exit, which skips destructors) each process
 *   writes, with write(2) only, to ALLOCBENCH_LATENCY_LOG (appending: a
 *   forked child writes its own lines, each line says its pid): the clock,
 *   each kind's percentiles and histogram, and the slow calls with their
 *   frames (shimlog.h); allocbench turns ticks into nanoseconds and the frames
 *   into files and lines.
 * - No malloc and no stdio inside a hook (hooks.h).  A call made from inside
 *   a hook (the unwinder's) goes straight through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AB_HOOKS_WRAP
#include "hooks.h"
#include "latency.h"
#include "shimlog.h"

#define SLOTS 64
#define SLOW 32
#define FRAMES 24

static ab_clock clk;
static int log_fd = -1;
static ab_hist hists[SLOTS][AB_NLATENCY_KINDS];  /* per thread slot; untouched pages cost nothing */
static int slots_used;
static __thread int my_slot = -1, in_hook;

typedef struct slow_call {
    uint64_t ticks, size;
    int kind, tid, nframes;
    void *frames[FRAMES];
} slow_call;
static slow_call slow[SLOW];
static int nslow, slow_lock;
static uint64_t slow_floor;  /* the least ticks kept once the list is full: a faster call is not a candidate */

static const int kind_of_op[] = {
    [AB_OP_MALLOC] = AB_LK_MALLOC, [AB_OP_FREE] = AB_LK_FREE, [AB_OP_CALLOC] = AB_LK_CALLOC,
    [AB_OP_REALLOC] = AB_LK_REALLOC, [AB_OP_REALLOCARRAY] = AB_LK_REALLOC, [AB_OP_MEMALIGN] = AB_LK_ALIGNED,
    [AB_OP_POSIX_MEMALIGN] = AB_LK_ALIGNED, [AB_OP_ALIGNED_ALLOC] = AB_LK_ALIGNED, [AB_OP_VALLOC] = AB_LK_ALIGNED,
    [AB_OP_PVALLOC] = AB_LK_ALIGNED,
};

static void note_slow(int kind, uint64_t ticks, uint64_t size)
{
    slow_call s = {.ticks = ticks, .size = size, .kind = kind, .tid = (int)syscall(SYS_gettid)};
    in_hook = 1;  /* the unwinder may allocate: those calls go straight through */
    s.nframes = backtrace(s.frames, FRAMES);
    in_hook = 0;
    while (__atomic_exchange_n(&slow_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
    int at = nslow < SLOW ? nslow++ : -1;
    if (at < 0) {  /* full: replace the fastest kept, if this one is slower */
        at = 0;
        for (int i = 1; i < SLOW; i++)
            if (slow[i].ticks < slow[at].ticks)
                at = i;
        if (slow[at].ticks >= ticks)
            at = -1;
    }
    if (at >= 0)
        slow[at] = s;
    if (nslow == SLOW) {
        uint64_t least = slow[0].ticks;
        for (int i = 1; i < SLOW; i++)
            least = slow[i].ticks < least ? slow[i].ticks : least;
        __atomic_store_n(&slow_floor, least, __ATOMIC_RELAXED);
    }
    __atomic_store_n(&slow_lock, 0, __ATOMIC_RELEASE);
}

static void timed(int kind, uint64_t ticks, uint64_t size)
{
    if (my_slot < 0)
        my_slot = __atomic_fetch_add(&slots_used, 1, __ATOMIC_RELAXED);
    if (my_slot < SLOTS - 1) {
        ab_hist_add(&hists[my_slot][kind], ticks);
    } else {  /* the shared last slot */
        ab_hist *h = &hists[SLOTS - 1][kind];
        __atomic_fetch_add(&h->b[ab_hist_index(ticks)], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&h->count, 1, __ATOMIC_RELAXED);
        uint64_t m = __atomic_load_n(&h->max, __ATOMIC_RELAXED);
        while (ticks > m && !__atomic_compare_exchange_n(&h->max, &m, ticks, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
    }
    if (ticks > __atomic_load_n(&slow_floor, __ATOMIC_RELAXED))
        note_slow(kind, ticks, size);
}

static void hook_enter(ab_call *c)
{
    if (in_hook) {
        c->t0 = 0;
        return;
    }
    c->t0 = ab_ticks(&clk);  /* last thing before the call */
}

static void hook_exit(ab_call *c)
{
    if (!c->t0)
        return;
    uint64_t t1 = ab_ticks(&clk);  /* first thing after it */
    timed(kind_of_op[c->op], t1 - c->t0, c->size);
}

AB_EXPORT int malloc_trim(size_t pad)
{
    static int (*real)(size_t);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "malloc_trim");
    uint64_t t0 = ab_ticks(&clk);
    int r = real(pad);
    timed(AB_LK_TRIM, ab_ticks(&clk) - t0, pad);
    return r;
}

static void finish(void)
{
    static int done;
    static ab_out o;  /* 8 KB: not on the stack */
    if (log_fd < 0 || done++)
        return;
    char pid[32];  /* every line's prefix: the process's lines apart from a child's in the same log */
    snprintf(pid, sizeof pid, AB_LATENCY_PREFIX, getpid());
    o.fd = log_fd, o.len = 0;
    /* the ratio to nanoseconds, as 1e12 x ns per tick (no floating-point printing here) */
    ab_line(&o, pid, ab_shimlog_formats[AB_SLF_latency_clock], clk.tsc ? "tsc" : "monotonic",
            (unsigned long long)(ab_clock_ns_per_tick(&clk) * 1000.0 + 0.5), (unsigned long long)clk.overhead_ticks);
    char exe[1024];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    ab_line(&o, pid, ab_shimlog_formats[AB_SLF_latency_program], exe);
    static ab_hist merged;  /* 35 KB: not on the stack */
    int used = slots_used < SLOTS ? slots_used : SLOTS;
    for (int k = 0; k < AB_NLATENCY_KINDS; k++) {
        memset(&merged, 0, sizeof merged);
        for (int s = 0; s < used; s++)
            ab_hist_merge(&merged, &hists[s][k]);
        if (!merged.count)
            continue;
        ab_line(&o, pid, ab_shimlog_formats[AB_SLF_latency_kind], ab_latency_kind_names[k],
                (unsigned long long)merged.count, (unsigned long long)ab_hist_quantile(&merged, 0.5),
                (unsigned long long)ab_hist_quantile(&merged, 0.9), (unsigned long long)ab_hist_quantile(&merged, 0.99),
                (unsigned long long)ab_hist_quantile(&merged, 0.999), (unsigned long long)merged.max);
        for (unsigned b = 0; b < AB_HIST_BUCKETS; b++)
            if (merged.b[b])  /* the bucket's highest tick count, and its calls */
                ab_line(&o, pid, ab_shimlog_formats[AB_SLF_latency_bucket], ab_latency_kind_names[k],
                        (unsigned long long)ab_hist_upper(b), (unsigned long long)merged.b[b]);
    }
    Dl_info self, f;
    dladdr((void *)note_slow, &self);
    for (int i = 0; i < nslow; i++) {
        ab_line(&o, pid, ab_shimlog_formats[AB_SLF_latency_slow], ab_latency_kind_names[slow[i].kind],
                (unsigned long long)slow[i].ticks, (unsigned long long)slow[i].size, (unsigned long long)slow[i].tid);
        int k = 0;
        while (k < slow[i].nframes && dladdr(slow[i].frames[k], &f) && f.dli_fbase == self.dli_fbase)
            k++;  /* this shim's own frames: the caller of the timed call comes first */
        for (; k < slow[i].nframes; k++)
            ab_frame(&o, pid, slow[i].frames[k]);
    }
    ab_line(&o, pid, "%s", ab_shimlog_formats[AB_SLF_latency_end]);
    ab_flush(&o);
}

static void after_fork_child(void)
{
    /* the child has only the forking thread: a lock another thread held at fork is held by no one */
    __atomic_store_n(&slow_lock, 0, __ATOMIC_RELEASE);
    memset(hists, 0, sizeof(ab_hist) * AB_NLATENCY_KINDS * (size_t)(slots_used < SLOTS ? slots_used : SLOTS));
    slots_used = 0, my_slot = -1, nslow = 0, slow_floor = 0;  /* the child's calls are its own */
}

__attribute__((constructor)) static void init(void)
{
    if (!ab_real.malloc)
        ab_resolve();
    ab_clock_init(&clk);
    const char *path = getenv("ALLOCBENCH_LATENCY_LOG");
    if (path && *path)
        log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    void *warm[2];
    in_hook = 1;
    backtrace(warm, 2);  /* the unwinder loads (and mallocs) now, not inside a slow call */
    in_hook = 0;
    pthread_atfork(NULL, NULL, after_fork_child);
}

__attribute__((destructor)) static void fini(void) { finish(); }

AB_EXPORT void _exit(int status)
{
    finish();
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

AB_EXPORT void _Exit(int status) { _exit(status); }
