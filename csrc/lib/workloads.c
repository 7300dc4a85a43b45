/* Workload loops; see workloads.h.  Everything the loops need besides the
 * blocks under test (slot arrays, thread contexts) is mmapped before the
 * window opens, so the allocator under test is the only one at work inside. */
#define _GNU_SOURCE
#include "workloads.h"
#include "calltime.h"
#include "toyalloc.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

const char *const ab_pattern_names[AB_NPATTERNS] = {
#define AB_PATTERN_NAME(e, name, band, doc) [e] = name,
    AB_PATTERN_LIST(AB_PATTERN_NAME)
#undef AB_PATTERN_NAME
};
const char *const ab_pattern_docs[AB_NPATTERNS] = {
#define AB_PATTERN_DOC(e, name, band, doc) [e] = doc,
    AB_PATTERN_LIST(AB_PATTERN_DOC)
#undef AB_PATTERN_DOC
};
const int ab_pattern_band[AB_NPATTERNS] = {
#define AB_PATTERN_BAND(e, name, band, doc) [e] = band,
    AB_PATTERN_LIST(AB_PATTERN_BAND)
#undef AB_PATTERN_BAND
};

const char *const ab_timeline_columns[AB_NTLCOLUMNS] = {
#define AB_TL_NAME(name) #name,
    AB_TIMELINE_COLUMNS(AB_TL_NAME)
#undef AB_TL_NAME
};
const char *const ab_timeline_kinds[AB_NTLKINDS] = {
#define AB_TK_NAME(name) #name,
    AB_TIMELINE_KINDS(AB_TK_NAME)
#undef AB_TK_NAME
};

const ab_cell_spec ab_cell_defaults = {
    .w = {.pattern = AB_CHURN, .ops = 10000, .seed = 1, .touch = 1, .live = 64, .threads = 1},
    .repeats = 5,
    .warmup = 1,
};

int ab_pattern_of(const char *name)
{
    for (int i = 0; i < AB_NPATTERNS; i++)
        if (!strcmp(name, ab_pattern_names[i]))
            return i;
    return -1;
}

const ab_allocator ab_libc_allocator = {
    malloc, free, realloc, calloc, malloc_usable_size, memalign, 1,
};

const ab_allocator ab_toy_allocator = {
    toy_malloc, toy_free, toy_realloc, toy_calloc, toy_usable_size, toy_memalign, 0,
};


typedef struct thread_ctx {
    const ab_allocator *a;
    const ab_workload *w;
    ab_timeline *tl;     /* the timeline repeat only */
    struct thread_ctx *all;  /* every worker's context (timeline sums, handoff partners) */
    int nthreads;
    int tid;
    uint64_t rng;
    void **slots;        /* `live` entries (trace: one per replay slot) */
    size_t nslot;
    size_t *sizes;
    void **pinned;       /* fragment's long-lived blocks */
    uint64_t npinned, pinned_cap;
    uint64_t live_bytes;     /* written by this thread only, read by the sampler (relaxed) */
    struct thread_ctx *live_owner;  /* handoff's freeing thread: the producer, whose count its frees lower */
    struct replay_run *rr;   /* a trace on its recorded threads: what they share */
    uint64_t failed_allocs;  /* a trace: allocations that failed (the plain loop counts no others) */
    uint64_t usable_bytes, live_mmapped_bytes;  /* timeline repeat only */
    volatile uint64_t ring_head, ring_tail;     /* handoff: producer's ring of `live` slots */
    /* Every block passes through here so the compiler cannot drop a malloc/free
     * pair; one per thread, so threads do not bounce a shared cache line. */
    void *volatile sink;
    ab_run_stats st;     /* this thread's share */
    pthread_t thread;
} __attribute__((aligned(64))) thread_ctx;  /* no two workers share a cache line */

static uint64_t next_rand(thread_ctx *t)
{
    /* xorshift64*: cheap and reproducible from the seed */
    t->rng ^= t->rng >> 12;
    t->rng ^= t->rng << 25;
    t->rng ^= t->rng >> 27;
    return t->rng * 2685821657736338717ULL;
}

static size_t draw_size(thread_ctx *t)
{
    const ab_workload *w = t->w;
    if (w->size_lo == w->size_hi)
        return w->size_lo;
    return w->size_lo + next_rand(t) % (w->size_hi - w->size_lo + 1);
}

static void touch_mode(void *p, size_t from, size_t to, int mode)
{
    volatile char *c = p;
    if (mode == 2) {  /* the first page only */
        if (to > from)
            c[from] = 1;
        return;
    }
    for (size_t off = from; off < to; off += 4096)
        c[off] = 1;
    if (to > from)
        c[to - 1] = 1;
}

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

int ab_timeline_init(ab_timeline *tl, int glibc)
{
    memset(tl, 0, sizeof *tl);
    tl->glibc = glibc;
    tl->page = sysconf(_SC_PAGESIZE);
    tl->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (tl->statm_fd < 0)
        return -1;
    char buf[128];
    ssize_t n = pread(tl->statm_fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    long long f[7] = {0};
    sscanf(buf, "%lld %lld %lld %lld %lld %lld %lld", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]);
    tl->base_rss_pages = f[1], tl->base_data_pages = f[5], tl->base_anon_pages = f[1] - f[2];
    tl->base_heap = ab_heap_top();
    return 0;
}

/* One sample (thread 0, or the caller after the workers joined).  No malloc:
 * statm is read with one pread into the stack. */
static void sample(ab_timeline *tl, thread_ctx *all, int n, uint64_t op, int kind)
{
    if (tl->n >= AB_TIMELINE_MAX - 1 && kind != AB_TK_end)
        return;  /* the last slot is kept for the end */
    uint32_t i = tl->n < AB_TIMELINE_MAX ? tl->n++ : AB_TIMELINE_MAX - 1;
    int64_t live = 0, usable = 0, mm = 0;
    for (int k = 0; k < n; k++) {
        live += (int64_t)LOAD(all[k].live_bytes);
        usable += (int64_t)LOAD(all[k].usable_bytes);
        mm += (int64_t)LOAD(all[k].live_mmapped_bytes);
    }
    char buf[128];
    long long f[7] = {0};
    ssize_t got = pread(tl->statm_fd, buf, sizeof buf - 1, 0);
    if (got > 0) {
        buf[got] = 0;
        sscanf(buf, "%lld %lld %lld %lld %lld %lld %lld", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]);
    }
    int64_t heap = (int64_t)(ab_heap_top() - tl->base_heap);
    int64_t (*c)[AB_TIMELINE_MAX] = tl->col;
    c[AB_TL_op][i] = (int64_t)op;
    c[AB_TL_live_bytes][i] = live;
    c[AB_TL_usable_bytes][i] = usable;
    c[AB_TL_rss_bytes][i] = (f[1] - tl->base_rss_pages) * tl->page - tl->harness_bytes;
    c[AB_TL_anon_bytes][i] = (f[1] - f[2] - tl->base_anon_pages) * tl->page - tl->harness_bytes;
    c[AB_TL_heap_bytes][i] = heap;
    c[AB_TL_mapped_bytes][i] = (f[5] - tl->base_data_pages) * tl->page - heap;
    if (tl->glibc) {
        struct mallinfo2 mi = mallinfo2();
        c[AB_TL_arena][i] = (int64_t)mi.arena, c[AB_TL_hblkhd][i] = (int64_t)mi.hblkhd;
        c[AB_TL_uordblks][i] = (int64_t)mi.uordblks, c[AB_TL_fordblks][i] = (int64_t)mi.fordblks;
        c[AB_TL_keepcost][i] = (int64_t)mi.keepcost;
    } else {
        for (int k = AB_TL_arena; k <= AB_TL_keepcost; k++)
            c[k][i] = -1;
    }
    c[AB_TL_live_mmapped_bytes][i] = tl->glibc ? mm : -1;
    tl->kind[i] = (uint8_t)kind;
}

/* A phase boundary (the peak, half freed, all freed): a sample in the timeline repeat. */
static void phase(thread_ctx *t, int kind)
{
    if (t->tl && t->tid == 0)
        sample(t->tl, t->all, t->nthreads, t->st.allocs, kind);
}

static int glibc_mmapped(const thread_ctx *t, void *p)
{
    /* glibc-internal: bit 1 of the chunk's size word is IS_MMAPPED */
    return t->a->glibc_chunks && (((size_t *)p)[-1] & 2) != 0;
}

/* The timeline's books for a block coming (sign 1) or going (sign -1). */
static void account(thread_ctx *t, void *p, size_t size, int sign)
{
    STORE(t->usable_bytes, t->usable_bytes + (uint64_t)sign * t->a->usable_size(p));
    if (glibc_mmapped(t, p))
        STORE(t->live_mmapped_bytes, t->live_mmapped_bytes + (uint64_t)sign * size);
}

/* The workload's live bytes after adding `delta` (wrapping: negative works).
 * Each thread keeps its own count; handoff's pair shares the producer's, with
 * atomic adds, so its peak is the bytes in flight between the two. */
static inline uint64_t add_live(thread_ctx *t, uint64_t delta)
{
    if (__builtin_expect(t->live_owner != NULL, 0))
        return __atomic_add_fetch(&t->live_owner->live_bytes, delta, __ATOMIC_RELAXED);
    STORE(t->live_bytes, t->live_bytes + delta);
    return t->live_bytes;
}

/* The books of a block just made (by malloc, calloc, memalign). */
static void *got(thread_ctx *t, void *p, size_t size)
{
    t->sink = p;
    if (!p) {
        t->st.failed++;
        return NULL;
    }
    t->st.allocs++;
    if (t->w->touch) {
        touch_mode(p, 0, size, t->w->touch);
        if (t->a->glibc_chunks) {
            t->st.mmapped_blocks += glibc_mmapped(t, p);
            t->st.checked_blocks++;
        }
    }
    uint64_t live = add_live(t, size);
    if (live > t->st.live_bytes_peak)
        t->st.live_bytes_peak = live;
    if (t->tl) {
        account(t, p, size, 1);
        if (t->tid == 0 && t->st.allocs % t->tl->every == 0)
            sample(t->tl, t->all, t->nthreads, t->st.allocs, AB_TK_periodic);
    }
    return p;
}

static void *get(thread_ctx *t, size_t size) { return got(t, t->a->malloc(size), size); }

static void put(thread_ctx *t, void *p, size_t size)
{
    if (!p)
        return;
    if (t->tl)
        account(t, p, size, -1);
    t->a->free(p);
    t->st.frees++;
    add_live(t, -size);
}

static void run_churn(thread_ctx *t)
{
    for (uint64_t i = 0; i < t->w->ops; i++) {
        size_t s = draw_size(t);
        void *p = get(t, s);
        if (i == 0)
            phase(t, AB_TK_peak);
        put(t, p, s);
    }
}

static void run_batch(thread_ctx *t)
{
    uint64_t done = 0;
    while (done < t->w->ops) {
        uint64_t n = t->w->ops - done < t->w->live ? t->w->ops - done : t->w->live;
        for (uint64_t j = 0; j < n; j++) {
            t->sizes[j] = draw_size(t);
            t->slots[j] = get(t, t->sizes[j]);
        }
        phase(t, AB_TK_peak);
        for (uint64_t j = 0; j < n; j++)
            put(t, t->slots[j], t->sizes[j]);
        done += n;
        phase(t, AB_TK_freed);
    }
}

/* lifo, fifo, random-free and band: a window of `live` blocks; once full,
 * every new block first frees one chosen by the order. */
static void run_window(thread_ctx *t)
{
    uint32_t k = t->w->live, count = 0, head = 0;  /* fifo: ring starting at head */
    int order = t->w->pattern;
    for (uint64_t i = 0; i < t->w->ops; i++) {
        if (count == k) {
            uint32_t victim;
            if (order == AB_LIFO)
                victim = count - 1;
            else if (order == AB_FIFO)
                victim = head, head = (head + 1) % k;
            else
                victim = (uint32_t)(next_rand(t) % count);
            put(t, t->slots[victim], t->sizes[victim]);
            if (order == AB_FIFO) {
                /* the freed slot becomes the ring's tail */
                t->sizes[victim] = draw_size(t);
                t->slots[victim] = get(t, t->sizes[victim]);
                continue;
            }
            t->slots[victim] = t->slots[count - 1];
            t->sizes[victim] = t->sizes[count - 1];
            count--;
        }
        t->sizes[count] = draw_size(t);
        t->slots[count] = get(t, t->sizes[count]);
        if (++count == k)
            phase(t, AB_TK_peak);
    }
    for (uint32_t j = 0; j < count; j++)
        put(t, t->slots[j], t->sizes[j]);
}

static void run_realloc_grow(thread_ctx *t)
{
    size_t step = t->w->size_lo, target = t->w->size_hi, cur = 0;
    void *p = NULL;
    for (uint64_t i = 0; i < t->w->ops; i++) {
        size_t next = cur + step;
        if (next > target) {
            put(t, p, cur);
            p = NULL, cur = 0, next = step;
        }
        if (t->tl && p)
            account(t, p, cur, -1);
        void *q = t->a->realloc(p, next);
        t->sink = q;
        if (!q) {
            t->st.failed++;
            if (t->tl && p)
                account(t, p, cur, 1);  /* the old block is still there */
            continue;
        }
        t->st.reallocs++;
        if (!p)
            t->st.allocs++;
        if (t->w->touch)
            touch_mode(q, cur, next, t->w->touch);
        p = q;
        STORE(t->live_bytes, t->live_bytes + (next - cur));
        cur = next;
        if (t->tl) {
            account(t, q, cur, 1);
            if (t->tid == 0 && t->st.reallocs % t->tl->every == 0)
                sample(t->tl, t->all, t->nthreads, t->st.reallocs, AB_TK_periodic);
        }
        if (t->live_bytes > t->st.live_bytes_peak)
            t->st.live_bytes_peak = t->live_bytes;
        if (cur + step > target)
            phase(t, AB_TK_peak);
    }
    put(t, p, cur);
}

static void run_fragment(thread_ctx *t)
{
    uint64_t done = 0;
    while (done < t->w->ops) {
        uint64_t n = t->w->ops - done < t->w->live ? t->w->ops - done : t->w->live;
        for (uint64_t j = 0; j < n; j++) {
            void *small = get(t, AB_FRAGMENT_SMALL);
            if (small && t->npinned < t->pinned_cap)
                t->pinned[t->npinned++] = small;
            t->sizes[j] = draw_size(t);
            t->slots[j] = get(t, t->sizes[j]);
        }
        done += n;
        if (done == t->w->ops)
            phase(t, AB_TK_peak);
        for (uint64_t j = 0; j < n; j++)
            put(t, t->slots[j], t->sizes[j]);
    }
}


/* trace: one recorded call, replayed.  `plain` (no timeline, no touching) is
 * the timed case: it reads only the 16-byte event (and, for the rare realloc
 * and aligned calls, their side arrays) and counts only failures; everything
 * else it reports comes from the preparation (replay.h), so what the loop
 * adds to the allocator's own calls stays small (make trace-overhead).  One
 * consequence: its live_bytes_peak is the trace's own, even when a call failed. */
static inline __attribute__((always_inline)) void replay_event(thread_ctx *t, const ab_replay *r, uint64_t i,
                                                                const int plain, uint64_t *failed_allocs,
                                                                uint64_t *failed_reallocs)
{
    const ab_allocator *a = t->a;
    void **slots = t->slots;
    ab_replay_event e = r->ev[i];
    void *p;
    /* free and malloc first, as plain branches: dispatching them through
     * the switch's jump table cost about 2 ns more per event (make trace-overhead) */
    if (e.op == AB_OP_FREE) {
        if (plain)
            a->free(slots[e.slot]);
        else
            put(t, slots[e.slot], e.size);
        slots[e.slot] = NULL;
        return;
    }
    if (e.op == AB_OP_MALLOC) {
        p = a->malloc(e.size);
    } else switch (e.op) {
    case AB_OP_CALLOC:
        p = a->calloc(1, e.size);
        break;
    case AB_OP_MEMALIGN: case AB_OP_POSIX_MEMALIGN: case AB_OP_ALIGNED_ALLOC:
    case AB_OP_VALLOC: case AB_OP_PVALLOC:
        p = a->memalign(r->aux[i], e.size);
        break;
    case AB_OP_REALLOC: case AB_OP_REALLOCARRAY: {
        uint32_t in = r->in[i];
        size_t old = in == AB_NO_SLOT ? 0 : r->aux[i];
        void *q = in == AB_NO_SLOT ? NULL : slots[in];
        if (!plain && t->tl && q)
            account(t, q, old, -1);
        p = a->realloc(q, e.size);
        if (in != AB_NO_SLOT)
            slots[in] = NULL;
        if (e.slot == AB_NO_SLOT && p) {
            /* realloc(q, 0) freed q under glibc; an allocator that returns
             * a block instead gets it back at once, or the replay leaks it */
            a->free(p);
            p = NULL;
        } else if (e.slot != AB_NO_SLOT && !p) {
            (*failed_reallocs)++;  /* q is still the program's, in the slot the trace gave the result */
            p = q, e.size = old;
        }
        if (!plain) {
            t->st.reallocs++;
            add_live(t, (uint64_t)(p ? e.size : 0) - old);
            if (t->live_bytes > t->st.live_bytes_peak)
                t->st.live_bytes_peak = t->live_bytes;
            if (p && t->w->touch && e.size > old)
                touch_mode(p, old, e.size, t->w->touch);
            if (p && t->tl)
                account(t, p, e.size, 1);
            if (p)  /* only this loop frees leftovers by size */
                t->sizes[e.slot] = e.size;
        }
        if (p)
            slots[e.slot] = p;
        return;
    }
    default:
        return;  /* free(NULL), a failed call, a thread's life: nothing to replay */
    }
    /* an allocation: malloc, calloc or an aligned one */
    if (plain) {
        slots[e.slot] = p;
        if (__builtin_expect(!p, 0))
            (*failed_allocs)++;
    } else {
        slots[e.slot] = got(t, p, e.size);
        t->sizes[e.slot] = e.size;
    }
}

/* The counts a replay thread reports: the plain loop takes them from the
 * preparation (thread `share`: all of them for one thread), the other loop
 * counted as it went, in got() and put(). */
static void replay_counts(thread_ctx *t, const int plain, uint64_t failed_allocs, uint64_t failed_reallocs)
{
    const ab_replay *r = t->w->replay;
    t->st.failed += failed_allocs + failed_reallocs;
    t->failed_allocs = failed_allocs;
    if (plain && t->tid == 0) {  /* the totals, less every thread's failures (ab_run subtracts the others') */
        t->st.allocs += r->allocs - failed_allocs, t->st.reallocs += r->reallocs;
        t->st.frees += r->frees;
        if (r->peak_live_bytes > t->st.live_bytes_peak)
            t->st.live_bytes_peak = r->peak_live_bytes;
    }
}

/* trace on one thread: every call in its recorded global order. */
static inline __attribute__((always_inline)) void replay(thread_ctx *t, const int plain)
{
    const ab_replay *r = t->w->replay;
    uint64_t failed_allocs = 0, failed_reallocs = 0;  /* got() counts the other loop's failed allocations */
    for (uint64_t i = 0; i < r->n; i++) {
        if (!plain && t->tl && i % t->tl->every == 0)  /* a trace samples by event: frees count too */
            sample(t->tl, t->all, 1, i, AB_TK_periodic);
        replay_event(t, r, i, plain, &failed_allocs, &failed_reallocs);
    }
    replay_counts(t, plain, failed_allocs, failed_reallocs);
}

/* ---- trace on the recorded threads (replay.h AB_REPLAY_RECORDED) ---- */

#define GEN_WAITER 0x80000000u
#define DONE UINT64_MAX

/* What the replay threads share, in mmapped memory: each thread's next event
 * (its position in the global order; each on a cache line of its own), each
 * slot's generation (1 + the event that last filled it, for the slots another
 * thread waits on), the start signal, and, in the timeline repeat only, the
 * live bytes of all threads and their peak. */
typedef struct replay_run {
    struct { _Atomic uint64_t v; char pad[56]; } next[AB_MAX_REPLAY_THREADS];
    _Atomic uint32_t go;
    int abandon;  /* set before go: the window never opened, return at once */
    _Atomic uint32_t exited[AB_MAX_REPLAY_THREADS];  /* 1: joined (replay.h joiner) */
    _Atomic uint32_t attached[AB_MAX_REPLAY_THREADS];  /* 1: made its first call (has its arena) */
    _Atomic int sample_lock;
    _Atomic uint64_t live, peak;
    _Atomic uint32_t gen[];
} replay_run;

static long futex(_Atomic uint32_t *word, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)word, op, val, NULL, NULL, 0);
}

/* Block until the word equals want: spin briefly, then sleep on the futex,
 * having set the waiter bit so that the writer knows to wake it. */
static void wait_for_value(_Atomic uint32_t *word, uint32_t want)
{
    for (int spin = 0; spin < 4096; spin++) {
        if ((__atomic_load_n((uint32_t *)word, __ATOMIC_ACQUIRE) & ~GEN_WAITER) == want)
            return;
        __builtin_ia32_pause();
    }
    for (;;) {
        uint32_t v = __atomic_load_n((uint32_t *)word, __ATOMIC_ACQUIRE);
        if ((v & ~GEN_WAITER) == want)
            return;
        if (!(v & GEN_WAITER) && !__atomic_compare_exchange_n((uint32_t *)word, &v, v | GEN_WAITER, 0,
                                                               __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            continue;
        futex(word, FUTEX_WAIT_PRIVATE, v | GEN_WAITER);
    }
}

static void set_value(_Atomic uint32_t *word, uint32_t value)
{
    uint32_t old = __atomic_exchange_n((uint32_t *)word, value, __ATOMIC_ACQ_REL);
    if (old & GEN_WAITER)
        futex(word, FUTEX_WAKE_PRIVATE, INT32_MAX);
}

/* The slowest thread's next event: no thread runs `window` events past it. */
static uint64_t slowest(replay_run *rr, uint32_t n)
{
    uint64_t low = DONE;
    for (uint32_t t = 0; t < n; t++) {
        uint64_t v = __atomic_load_n((uint64_t *)&rr->next[t].v, __ATOMIC_ACQUIRE);
        if (v < low)
            low = v;
    }
    return low;
}

static inline __attribute__((always_inline)) void replay_threads(thread_ctx *t, const int plain)
{
    const ab_replay *r = t->w->replay;
    replay_run *rr = t->rr;
    uint32_t me = (uint32_t)t->tid;
    uint64_t k = r->thread_start[me], hi = r->thread_start[me + 1], bound = 0;
    uint64_t failed_allocs = 0, failed_reallocs = 0;
    /* the no-ops before my first call (my start, free(NULL)) wait for nothing: past them first, so that
     * while I wait for the threads that exited before my first call, my position is that call */
    while (k < hi && !r->ev[r->order[k]].op)
        k++;
    __atomic_store_n((uint64_t *)&rr->next[me].v, k < hi ? r->order[k] : DONE, __ATOMIC_RELEASE);
    /* the threads that exited before my first call (a thread that makes no call needs no arena) */
    for (uint32_t u = 1; me && r->first_call[me] != UINT64_MAX && u < r->nthreads; u++)
        if (u != me && r->exit_at[u] < r->first_call[me]) {
            if (r->joiner[u] == (int32_t)me) {
                pthread_join(t->all[u].thread, NULL);
                set_value(&rr->exited[u], 1);
            } else {
                wait_for_value(&rr->exited[u], 1);
            }
        }
    for (; k < hi; k++) {
        uint64_t g = r->order[k];
        /* pace: within the window of the slowest thread (cached: it only moves up); a no-op (free(NULL),
         * a failed call, a thread event) keeps no order and never waits (replay.c plan_exits) */
        while (r->ev[g].op && g >= bound) {
            uint64_t low = slowest(rr, r->nthreads);
            bound = low == DONE ? DONE : low + r->window;
            if (g >= bound)
                sched_yield();
        }
        uint32_t wait = r->wait_for[g];
        if (wait) {  /* another thread's block: its allocation first */
            uint32_t slot = r->ev[g].op == AB_OP_FREE ? r->ev[g].slot : r->in[g];
            wait_for_value(&rr->gen[slot], wait);
        }
        uint64_t before = t->live_bytes;
        replay_event(t, r, g, plain, &failed_allocs, &failed_reallocs);
        if (r->ev[g].flags & AB_REPLAY_PUBLISH)
            set_value(&rr->gen[r->ev[g].slot], (uint32_t)g + 1);
        if (g == r->first_call[me])
            set_value(&rr->attached[me], 1);
        if (!plain && t->tl) {  /* the timeline repeat: all threads' live bytes, and their peak */
            uint64_t live = __atomic_add_fetch((uint64_t *)&rr->live, t->live_bytes - before, __ATOMIC_RELAXED);
            uint64_t peak = __atomic_load_n((uint64_t *)&rr->peak, __ATOMIC_RELAXED);
            while ((int64_t)live > (int64_t)peak &&
                   !__atomic_compare_exchange_n((uint64_t *)&rr->peak, &peak, live, 0, __ATOMIC_RELAXED,
                                                __ATOMIC_RELAXED))
                ;
            if (g % t->tl->every == 0) {  /* the thread that replays event g samples it */
                while (__atomic_exchange_n((int *)&rr->sample_lock, 1, __ATOMIC_ACQUIRE))
                    __builtin_ia32_pause();
                sample(t->tl, t->all, t->nthreads, g, AB_TK_periodic);
                __atomic_store_n((int *)&rr->sample_lock, 0, __ATOMIC_RELEASE);
            }
        }
        __atomic_store_n((uint64_t *)&rr->next[me].v, k + 1 < hi ? r->order[k + 1] : DONE, __ATOMIC_RELEASE);
    }
    __atomic_store_n((uint64_t *)&rr->next[me].v, DONE, __ATOMIC_RELEASE);
    /* exit no sooner than in the program: after the first calls that came before my exit, so
     * those threads found my arena taken, as they did */
    for (uint32_t u = 0; r->exit_at[me] != UINT64_MAX && u < r->nthreads; u++)
        if (u != me && r->first_call[u] < r->exit_at[me])
            wait_for_value(&rr->attached[u], 1);
    replay_counts(t, plain, failed_allocs, failed_reallocs);
}

/* The blocks the program never freed, freed after the window (ab_run): not
 * calls the program made, so not counted as frees. */
static void free_leftovers(thread_ctx *t)
{
    for (uint32_t j = 0; j < t->w->replay->nslots; j++)
        if (t->slots[j]) {
            if (t->tl) {
                account(t, t->slots[j], t->sizes[j], -1);
                add_live(t, -t->sizes[j]);
            }
            t->a->free(t->slots[j]);
            t->slots[j] = NULL;
        }
}

static void run_trace(thread_ctx *t)
{
    int plain = !t->tl && !t->w->touch;
    if (t->rr) {
        if (t->tid) {  /* created before the window: wait for it to open */
            wait_for_value(&t->rr->go, 1);
            if (t->rr->abandon)
                return;
        }
        if (plain)
            replay_threads(t, 1);
        else
            replay_threads(t, 0);
    } else if (plain) {
        replay(t, 1);
    } else {
        replay(t, 0);
    }
    t->st.live_at_end_bytes = plain ? t->w->replay->live_at_end_bytes : t->live_bytes;
}

/* Keep p for the rest of the run (freed after the window closes), or free it
 * when the pin list is full. */
static void pin(thread_ctx *t, void *p, size_t size)
{
    if (p && t->npinned < t->pinned_cap)
        t->pinned[t->npinned++] = p;
    else
        put(t, p, size);
}

/* Free every slot of a round but 1 in 16, which survive into the next rounds. */
static void free_all_but_survivors(thread_ctx *t, uint64_t n)
{
    for (uint64_t j = 0; j < n; j++) {
        if (j % 16 == 0)
            pin(t, t->slots[j], t->sizes[j]);
        else
            put(t, t->slots[j], t->sizes[j]);
        t->slots[j] = NULL;
    }
    phase(t, AB_TK_freed);
}

/* grow, after the Redis fragmentation test Mesh used (PLDI 2019). */
static void run_grow(thread_ctx *t)
{
    const ab_workload *w = t->w;
    uint64_t done = 0;
    while (done < w->ops) {
        uint64_t n = 0;
        for (; n < w->live && done < w->ops; n++, done++) {
            t->sizes[n] = w->size_lo;
            t->slots[n] = get(t, w->size_lo);
        }
        for (uint64_t j = 0; j < n; j++)  /* a random half goes */
            if (next_rand(t) & 1) {
                put(t, t->slots[j], t->sizes[j]);
                t->slots[j] = NULL;
            }
        phase(t, AB_TK_half);
        for (uint64_t j = 0; j < n && done < w->ops; j++)
            if (!t->slots[j]) {
                t->sizes[j] = w->size_hi;
                t->slots[j] = get(t, w->size_hi);
                done++;
            }
        phase(t, AB_TK_peak);
        free_all_but_survivors(t, n);
    }
}

/* Up to `live` blocks drawn from the band, counted in *done; returns how many. */
static uint64_t build_up(thread_ctx *t, uint64_t *done)
{
    uint64_t n = 0;
    for (; n < t->w->live && *done < t->w->ops; n++, (*done)++) {
        t->sizes[n] = draw_size(t);
        t->slots[n] = get(t, t->sizes[n]);
    }
    phase(t, AB_TK_peak);
    return n;
}

/* sawtooth: server-like phases, each building up `live` blocks. */
static void run_sawtooth(thread_ctx *t)
{
    uint64_t done = 0;
    while (done < t->w->ops)
        free_all_but_survivors(t, build_up(t, &done));
}

/* checkerboard: Mesh's adversarial case for allocators that cannot move blocks. */
static void run_checkerboard(thread_ctx *t)
{
    uint64_t done = 0;
    while (done < t->w->ops) {
        uint64_t n = build_up(t, &done);
        for (uint64_t j = 0; j < n; j += 2)
            put(t, t->slots[j], t->sizes[j]);
        phase(t, AB_TK_half);
        for (uint64_t j = 1; j < n; j += 2)
            put(t, t->slots[j], t->sizes[j]);
        phase(t, AB_TK_freed);
    }
}

/* handoff: even workers allocate into a ring of `live` slots, the next odd
 * worker frees from it (a single-producer, single-consumer ring).  The freer
 * waits for the ring to fill (or the producer to finish), so `live` blocks are
 * in flight whatever the scheduling: the pair's live bytes peak at exactly the
 * ring's, and every free crosses threads. */
static void run_handoff(thread_ctx *t)
{
    thread_ctx *prod = t->tid % 2 ? &t->all[t->tid - 1] : t;
    uint64_t k = t->w->live, ops = t->w->ops;
#define HEAD __atomic_load_n(&prod->ring_head, __ATOMIC_ACQUIRE)
#define TAIL __atomic_load_n(&prod->ring_tail, __ATOMIC_ACQUIRE)
    for (uint64_t i = 0; i < ops; i++) {
        if (t == prod) {
            while (HEAD - TAIL == k)
                sched_yield();
            uint64_t h = prod->ring_head % k;
            prod->sizes[h] = draw_size(t);
            prod->slots[h] = get(t, prod->sizes[h]);
            __atomic_store_n(&prod->ring_head, prod->ring_head + 1, __ATOMIC_RELEASE);
            if (i + 1 == (k < ops ? k : ops))
                phase(t, AB_TK_peak);  /* the ring is full */
        } else {
            uint64_t head;
            while ((head = HEAD) == TAIL || (head - TAIL < k && head < ops))
                sched_yield();
            uint64_t tail = prod->ring_tail % k;
            put(t, prod->slots[tail], prod->sizes[tail]);
            __atomic_store_n(&prod->ring_tail, prod->ring_tail + 1, __ATOMIC_RELEASE);
        }
    }
#undef HEAD
#undef TAIL
}

/* The loop of each pattern, indexed by enum ab_pattern: an unknown pattern has none. */
static void (*const pattern_loops[])(thread_ctx *) = {
    [AB_CHURN] = run_churn,
    [AB_BATCH] = run_batch,
    [AB_LIFO] = run_window,
    [AB_FIFO] = run_window,
    [AB_RANDOM_FREE] = run_window,
    [AB_BAND] = run_window,
    [AB_REALLOC_GROW] = run_realloc_grow,
    [AB_FRAGMENT] = run_fragment,
    [AB_GROW] = run_grow,
    [AB_SAWTOOTH] = run_sawtooth,
    [AB_CHECKERBOARD] = run_checkerboard,
    [AB_HANDOFF] = run_handoff,
    [AB_TRACE] = run_trace,
};
_Static_assert(sizeof pattern_loops / sizeof pattern_loops[0] == AB_NPATTERNS,
               "every pattern in AB_PATTERN_LIST needs its loop here");

static void *run_thread(void *arg)
{
    thread_ctx *t = arg;
    if (t->w->calltime)
        ab_calltime_thread_begin(t->w->calltime, t->tid);
    pattern_loops[t->w->pattern](t);  /* the pattern was checked by ab_workload_check */
    if (t->w->calltime)
        ab_calltime_thread_end();  /* what follows (leftovers freed) is not the workload's */
    return NULL;
}

const char *ab_workload_check(const ab_workload *w)
{
    if (w->pattern < 0 || w->pattern >= AB_NPATTERNS || !pattern_loops[w->pattern])
        return "unknown pattern";
    if (w->size_lo > w->size_hi)
        return "size_lo must not exceed size_hi";
    if (w->size_hi > ((size_t)1 << 40))
        return "sizes above 1 TiB are not a workload";
    if (w->pattern == AB_REALLOC_GROW && w->size_lo == 0)
        return "realloc-grow needs a step (size_lo) of at least 1 byte";
    if (ab_pattern_band[w->pattern] && w->size_lo == w->size_hi)
        return w->pattern == AB_BAND ? "pattern band needs size_lo < size_hi"
                                     : "pattern realloc-grow needs size_lo (the step) < size_hi (the target)";
    if (w->ops == 0 || w->ops > 1000000000)
        return "ops must be between 1 and 1000000000";
    if (w->live == 0 || w->live > AB_MAX_LIVE)
        return "live must be between 1 and 1048576";
    if (w->threads < 1 || w->threads > AB_MAX_THREADS)
        return "threads must be between 1 and 256";
    if (w->pattern == AB_TRACE && !w->replay)
        return "pattern trace needs trace=FILE";
    if (w->pattern == AB_TRACE && (uint32_t)w->threads != w->replay->nthreads)
        return "pattern trace runs on one thread, or on its recorded threads (replay_threads=recorded)";
    if (w->pattern == AB_HANDOFF && w->threads % 2)
        return "handoff needs an even number of threads (allocating, freeing pairs)";
    return NULL;
}

const char *ab_cell_check(const ab_cell_spec *s)
{
    const char *bad = ab_workload_check(&s->w);
    if (bad)
        return bad;
    if (s->repeats < 1 || s->repeats > 1000)
        return "repeats must be between 1 and 1000";
    if (s->warmup > 100)
        return "warmup must be between 0 and 100";
    if (s->w.seed > ((uint64_t)1 << 63))
        return "seed must be at most 2^63";
    return NULL;
}

/* The loop's own arrays start mid-page (HARNESS_COLOUR bytes in): blocks
 * start at or near a page's start under most allocators and the workload
 * touches those bytes, so page-aligned arrays would share their L1 set and be
 * evicted by the touching, charging the allocator for the harness's misses
 * (churn of 64 KiB page-aligned blocks ran 25% slower). */
#define HARNESS_COLOUR 1984
/* a replay thread's stack: replay_threads runs no recursion and keeps its state in thread_ctx */
#define REPLAY_STACK ((size_t)256 << 10)

static void *map_zeroed(size_t bytes)
{
    char *p = mmap(NULL, bytes + HARNESS_COLOUR, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p + HARNESS_COLOUR;
}

/* the bytes of whole pages an array of `bytes` occupies once touched */
static size_t harness_pages(size_t bytes, size_t pg)
{
    return (bytes + HARNESS_COLOUR + pg - 1) / pg * pg;
}

static void unmap_zeroed(void *p, size_t bytes)
{
    if (p)
        munmap((char *)p - HARNESS_COLOUR, bytes + HARNESS_COLOUR);
}

/* Each thread's context: its slots (the recorded threads share thread 0's:
 * each slot has one owner at a time), pins, and where a replay thread starts. */
static int make_contexts(const ab_allocator *a, const ab_workload *w, thread_ctx *ts, int n, replay_run *rr)
{
    const ab_replay *r = w->pattern == AB_TRACE ? w->replay : NULL;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        thread_ctx *t = &ts[i];
        t->a = a, t->w = w, t->tid = i;
        t->tl = w->timeline, t->all = ts, t->nthreads = n;
        t->rng = w->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i + 1;
        size_t nslot = r ? r->nslots + 1 : w->live;
        t->nslot = nslot;
        t->rr = rr;
        if (rr)
            rr->next[i].v = r->thread_start[i] < r->thread_start[i + 1] ? r->order[r->thread_start[i]] : DONE;
        if (rr && i) {
            t->slots = ts[0].slots, t->sizes = ts[0].sizes, t->nslot = 0;
            continue;
        }
        t->slots = map_zeroed(sizeof(void *) * nslot);
        t->sizes = map_zeroed(sizeof(size_t) * nslot);
        if (w->pattern == AB_HANDOFF)  /* the pair shares the producer's live count */
            t->live_owner = &ts[i - i % 2];
        int pins = w->pattern == AB_FRAGMENT || w->pattern == AB_GROW || w->pattern == AB_SAWTOOTH;
        t->pinned_cap = pins ? w->ops : 0;
        t->pinned = t->pinned_cap ? map_zeroed(sizeof(void *) * t->pinned_cap) : NULL;
        if (!t->slots || !t->sizes || (t->pinned_cap && !t->pinned))
            rc = -1;
    }
    return rc;
}

/* The timeline's start: the loop's own arrays faulted in now, so RSS growth is
 * the allocator's, and a first sample at live 0 (the baseline's own growth:
 * the measure's noise). */
static void start_timeline(const ab_workload *w, thread_ctx *ts, int n, size_t ctx_bytes)
{
    ab_timeline *tl = w->timeline;
    uint64_t every = w->ops / AB_TIMELINE_PERIODIC;
    tl->every = every ? every : 1;
    tl->n = 0;
    size_t pg = (size_t)tl->page, own = harness_pages(ctx_bytes, pg);
    for (int i = 0; i < n; i++) {
        size_t sz[3] = {sizeof(void *) * ts[i].nslot, sizeof(size_t) * ts[i].nslot,
                        sizeof(void *) * ts[i].pinned_cap};
        void *m[3] = {ts[i].slots, ts[i].sizes, ts[i].pinned};
        for (int k = 0; k < 3; k++)
            if (m[k] && sz[k]) {
                memset(m[k], 0, sz[k]);
                own += harness_pages(sz[k], pg);
            }
    }
    tl->harness_bytes = (int64_t)own;
    sample(tl, ts, n, 0, AB_TK_start);
}

/* Recorded threads start before the window (their stacks are not the
 * allocator's doing) and wait for it to open; each gets its arena at its first
 * call, inside it, as in the program.  Their stacks are ours: a thread glibc
 * gave a stack madvises it away when it exits and glibc unmaps stacks beyond
 * its cache, syscalls inside the window that are not the allocator's.
 * Returns 0, or -1 with the started ones told to return and joined. */
static int prestart(thread_ctx *ts, int n, replay_run *rr, char *stacks, char *error, size_t cap)
{
    int started = 0;
    for (int i = 1; i < n && stacks != MAP_FAILED; i++, started++) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstack(&attr, stacks + (size_t)(i - 1) * REPLAY_STACK, REPLAY_STACK);
        int e = pthread_create(&ts[i].thread, &attr, run_thread, &ts[i]);
        pthread_attr_destroy(&attr);
        if (e)
            break;
    }
    if (started == n - 1)
        return 0;
    rr->abandon = 1;  /* the started ones return without replaying */
    set_value(&rr->go, 1);
    for (int i = 1; i <= started; i++)
        pthread_join(ts[i].thread, NULL);
    snprintf(error, cap, "could start only %d of %d replay threads", started + 1, n);
    return -1;
}

/* Inside the window: the recorded threads let go (thread 0 replays on this
 * thread), or the workload's threads started and joined. */
static int run_in_window(const ab_workload *w, thread_ctx *ts, int n, replay_run *rr, char *error, size_t cap)
{
    if (rr) {
        set_value(&rr->go, 1);
        run_thread(&ts[0]);
        for (int i = 1; i < n; i++)
            if (w->replay->joiner[i] < 0)  /* the others were joined by the thread that started after them */
                pthread_join(ts[i].thread, NULL);
        return 0;
    }
    if (n == 1 && !w->spawn) {
        run_thread(&ts[0]);
        return 0;
    }
    int started = 0;
    for (; started < n; started++)
        if (pthread_create(&ts[started].thread, NULL, run_thread, &ts[started]))
            break;
    for (int i = 0; i < started; i++)
        pthread_join(ts[i].thread, NULL);
    if (started < n) {
        snprintf(error, cap, "could start only %d of %d threads", started, n);
        return -1;
    }
    return 0;
}

/* A replay ends as a cell ends: what the program still held, then everything
 * freed, after the window. */
static void end_replay(const ab_workload *w, thread_ctx *ts, int n, replay_run *rr, uint64_t last_op,
                       ab_run_stats *stats)
{
    uint64_t live = 0;
    for (int i = 0; i < n; i++)
        live += ts[i].st.live_at_end_bytes;
    stats->live_at_end_bytes = !w->timeline && !w->touch ? w->replay->live_at_end_bytes : live;
    if (rr && w->timeline)
        stats->replay_peak_live_bytes = rr->peak;
    ab_footprint_read(&stats->at_end);
    free_leftovers(&ts[0]);
    if (w->timeline)
        sample(w->timeline, ts, n, last_op, AB_TK_freed);
}

/* The threads' calls, added up. */
static void total_stats(const ab_workload *w, thread_ctx *ts, int n, int recorded, ab_run_stats *stats)
{
    for (int i = 0; i < n; i++) {
        ab_run_stats *s = &ts[i].st;
        stats->allocs += s->allocs, stats->frees += s->frees;
        stats->reallocs += s->reallocs, stats->failed += s->failed;
        /* per-thread peaks summed: an upper bound when threads peak apart */
        stats->live_bytes_peak += s->live_bytes_peak;
        stats->mmapped_blocks += s->mmapped_blocks, stats->checked_blocks += s->checked_blocks;
        if (recorded && i && !w->timeline && !w->touch)  /* thread 0 counted the trace's allocations */
            stats->allocs -= ts[i].failed_allocs;
    }
    if (recorded)  /* a replay's peak is the trace's own (its replay_peak_live_bytes, the replay's) */
        stats->live_bytes_peak = w->replay->peak_live_bytes;
}

/* The pins freed and the contexts' memory unmapped (the recorded threads' slots are thread 0's). */
static void release_contexts(const ab_allocator *a, thread_ctx *ts, int n, int shared_slots)
{
    for (int i = 0; i < n; i++) {
        thread_ctx *t = &ts[i];
        for (uint64_t j = 0; j < t->npinned; j++)
            a->free(t->pinned[j]);
        if (shared_slots && i)
            continue;
        unmap_zeroed(t->slots, sizeof(void *) * t->nslot);
        unmap_zeroed(t->sizes, sizeof(size_t) * t->nslot);
        unmap_zeroed(t->pinned, sizeof(void *) * t->pinned_cap);
    }
}

int ab_run(const ab_allocator *a, const ab_workload *w, ab_counter *c,
           ab_run_stats *stats, ab_footprint *before, ab_footprint *after)
{
    memset(stats, 0, sizeof *stats);
    const char *bad = ab_workload_check(w);
    if (bad) {
        snprintf(stats->error, sizeof stats->error, "%s", bad);
        return -1;
    }
    ab_allocator timed;  /* the latency passes: every call through calltime's allocator */
    if (w->calltime) {
        ab_calltime_allocator(w->calltime, a, &timed);
        a = &timed;
    }
    int n = w->threads;
    size_t ctx_bytes = sizeof(thread_ctx) * (size_t)n;
    thread_ctx *ts = map_zeroed(ctx_bytes);
    if (!ts) {
        snprintf(stats->error, sizeof stats->error, "mmap of thread contexts failed");
        return -1;
    }
    /* a trace on its recorded threads: one slot array for all, and what they share */
    const ab_replay *r = w->pattern == AB_TRACE ? w->replay : NULL;
    int recorded = r && r->mode == AB_REPLAY_RECORDED;
    size_t rr_bytes = recorded ? sizeof(replay_run) + sizeof(uint32_t) * (r->nslots + 1) : 0;
    replay_run *rr = recorded ? map_zeroed(rr_bytes) : NULL;
    size_t stacks_bytes = recorded ? (size_t)(n - 1) * REPLAY_STACK : 0;
    char *stacks = MAP_FAILED;
    int rc = (recorded && !rr) || make_contexts(a, w, ts, n, rr) ? -1 : 0;
    if (rc) {
        snprintf(stats->error, sizeof stats->error, "mmap of workload slots failed");
        goto out;
    }
    if (w->timeline)
        start_timeline(w, ts, n, ctx_bytes);
    if (recorded) {
        stacks = stacks_bytes ? mmap(NULL, stacks_bytes, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0) : NULL;
        if ((rc = prestart(ts, n, rr, stacks, stats->error, sizeof stats->error)))
            goto out;
    }
    ab_reset_peak_rss();
    ab_footprint_read(before);
    ab_window win;
    if (ab_window_begin(c, &win)) {
        snprintf(stats->error, sizeof stats->error, "counter window: %s", c->error);
        if (recorded) {  /* they return without replaying, and are joined */
            rr->abandon = 1;
            set_value(&rr->go, 1);
            for (int i = 1; i < n; i++)
                pthread_join(ts[i].thread, NULL);
        }
        rc = -1;
        goto out;
    }
    rc = run_in_window(w, ts, n, rr, stats->error, sizeof stats->error);
    /* the last samples' op: a trace counts events (frees too), the other patterns thread 0's allocations */
    uint64_t last_op = w->pattern == AB_TRACE ? w->replay->n : ts[0].st.allocs + ts[0].st.reallocs;
    if (w->timeline)  /* after the last free (survivors and fragment's pins still live) */
        sample(w->timeline, ts, n, last_op, AB_TK_end);
    if (ab_window_end(c, &win, &stats->counts)) {
        snprintf(stats->error, sizeof stats->error, "counter window: %s", c->error);
        rc = -1;
    }
    if (r)
        end_replay(w, ts, n, rr, last_op, stats);
    ab_footprint_read(after);
    total_stats(w, ts, n, recorded, stats);
out:
    release_contexts(a, ts, n, rr != NULL);
    if (rr)
        unmap_zeroed(rr, rr_bytes);
    if (stacks_bytes && stacks != MAP_FAILED && stacks)
        munmap(stacks, stacks_bytes);
    unmap_zeroed(ts, ctx_bytes);
    return rc;
}
