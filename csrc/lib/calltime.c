/* The cell's latency passes: see calltime.h. */
#define _GNU_SOURCE
#include "calltime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "workloads.h"

static ab_calltime *run;                  /* the calltime of this process's passes */
static const ab_allocator *inner;         /* the allocator measured */
static __thread ab_call_thread *me;       /* this thread's books, inside run_thread only */
static __thread uint32_t my_index;

static void *map_bytes(size_t bytes, int noreserve)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0), -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

ab_calltime *ab_calltime_new(int nthreads, uint64_t cap)
{
    ab_calltime *c = map_bytes(sizeof *c, 0);
    if (!c)
        return NULL;
    c->nthreads = nthreads;
    c->threads = map_bytes(sizeof(ab_call_thread) * (size_t)nthreads, 0);
    for (int i = 0; c->threads && i < nthreads; i++) {
        ab_call_thread *t = &c->threads[i];
        t->cap = cap;  /* the ticks and the chosen bits are touched only as far as calls go */
        t->ticks = map_bytes(cap * 4, 1), t->kinds = map_bytes(cap, 1), t->chosen = map_bytes(cap / 8 + 1, 1);
        t->marks_cap = AB_MARKS_MAX, t->marks = map_bytes(AB_MARKS_MAX * sizeof *t->marks, 1);
        if (!t->ticks || !t->kinds || !t->chosen || !t->marks) {
            ab_calltime_free(c);
            return NULL;
        }
    }
    if (!c->threads) {
        ab_calltime_free(c);
        return NULL;
    }
    ab_clock_init(&c->clock);
    c->mark_ticks = (uint64_t)(AB_MARK_MIN_NS / ab_clock_ns_per_tick(&c->clock));
    return c;
}

void ab_calltime_free(ab_calltime *c)
{
    for (int i = 0; c->threads && i < c->nthreads; i++) {
        ab_call_thread *t = &c->threads[i];
        if (t->ticks)
            munmap(t->ticks, t->cap * 4);
        if (t->chosen)
            munmap(t->chosen, t->cap / 8 + 1);
        if (t->kinds)
            munmap(t->kinds, t->cap);
        if (t->marks)
            munmap(t->marks, AB_MARKS_MAX * sizeof *t->marks);
        if (t->off_state == 1) {  /* a pass that ended early: stop recording */
            ab_offcpu_close(&t->off, &t->spans, &t->nspans, &t->spans_mapped, &t->lost);
        }
        if (t->spans)
            munmap(t->spans, t->spans_mapped);
        if (t->counter_state == 1)
            ab_counter_close(&t->counter);
    }
    if (c->threads)
        munmap(c->threads, sizeof(ab_call_thread) * (size_t)c->nthreads);
    munmap(c, sizeof *c);
}

void ab_calltime_thread_begin(ab_calltime *c, int tid)
{
    me = &c->threads[tid];
    my_index = (uint32_t)tid;
    me->calls = 0;
    if (c->pass == 1 && me->off_state == 0) {  /* the kernel records this thread's switches from here */
        me->off_state = ab_offcpu_open(&me->off) == 0 ? 1 : -1;
        if (me->off_state == -1 && !c->off_why[0])
            snprintf(c->off_why, sizeof c->off_why, "%s", me->off.error);
    }
}

void ab_calltime_thread_end(void)
{
    if (me && run->pass == 1 && me->off_state == 1) {
        me->off_state = ab_offcpu_close(&me->off, &me->spans, &me->nspans, &me->spans_mapped, &me->lost) == 0 ? 2
                                                                                                                : -1;
        if (me->off_state == -1 && !run->off_why[0])
            snprintf(run->off_why, sizeof run->off_why, "%s", me->off.error);
    }
    me = NULL;
}

/* ---- pass 1: time ---- */

static inline void timed(int kind, uint64_t t0, uint64_t t1)
{
    ab_call_thread *m = me;
    uint64_t d = t1 - t0;
    ab_hist_add(&m->h[kind], d);
    if (d >= run->mark_ticks && m->nmarks < m->marks_cap)
        m->marks[m->nmarks++] = (ab_call_mark){m->calls, t0};
    if (m->calls < m->cap)
        m->ticks[m->calls] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d, m->kinds[m->calls] = (uint8_t)kind;
    m->calls++;
}

/* ---- pass 2: count ---- */

typedef struct mark {
    int64_t syscalls[AB_NSYSCALLS];
    int64_t faults;
    uintptr_t top;
    int counted;
} mark;

static int64_t thread_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

static int chosen(const ab_call_thread *m, uint64_t i)
{
    return i < m->cap && (m->chosen[i / 8] >> (i % 8) & 1);
}

/* The counters just before the call; a chosen call's faults and program break before them. */
static void before(ab_call_thread *m, mark *b, int pick)
{
    if (m->counter_state == 0)
        m->counter_state = ab_counter_open_thread(&m->counter) == 0 ? 1 : -1;
    if (pick) {
        b->top = ab_heap_top();
        b->faults = thread_faults();
    }
    b->counted = m->counter_state == 1 && ab_counter_read_totals(&m->counter, b->syscalls) == 0;
}

static ab_slow_call *find_slow(uint32_t thread, uint64_t index)
{
    uint32_t lo = 0, hi = run->nslow;  /* sorted by (thread, index) */
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        ab_slow_call *s = &run->slow[mid];
        if (s->thread < thread || (s->thread == thread && s->index < index))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < run->nslow && run->slow[lo].thread == thread && run->slow[lo].index == index ? &run->slow[lo] : NULL;
}

static void after(ab_call_thread *m, mark *b, int pick, int kind, uint64_t i, uint64_t size, uint64_t ticks)
{
    int64_t now[AB_NSYSCALLS];
    int counted = b->counted && ab_counter_read_totals(&m->counter, now) == 0;
    int64_t faults = pick ? thread_faults() : 0;
    uintptr_t top = pick ? ab_heap_top() : 0;
    if (counted) {
        m->looked[kind]++;
        for (int s = 0; s < AB_NSYSCALLS; s++)
            if (now[s] > b->syscalls[s])
                m->with[kind][s]++, m->made[kind][s] += (uint64_t)(now[s] - b->syscalls[s]);
    }
    ab_slow_call *slow = pick ? find_slow(my_index, i) : NULL;
    if (!slow)
        return;
    slow->size = size;  /* its kind and ticks are pass 1's */
    slow->again_ticks = ticks;
    slow->attributed = counted;
    for (int s = 0; s < AB_NSYSCALLS; s++)
        slow->syscalls[s] = counted ? now[s] - b->syscalls[s] : -1;
    slow->faults = faults - b->faults;
    slow->trimmed = top < b->top;
}

/* One wrapped call: time it (pass 1) or count around it (pass 2). */
#define CALL(kind, size, call)                                                                     \
    do {                                                                                           \
        ab_call_thread *m = me;                                                                    \
        if (!m) {                                                                                  \
            call;                                                                                  \
        } else if (run->pass == 1) {                                                               \
            uint64_t t0 = ab_ticks(&run->clock);                                                   \
            call;                                                                                  \
            timed(kind, t0, ab_ticks(&run->clock));                                                \
        } else {                                                                                   \
            uint64_t i = m->calls++;                                                               \
            int pick = chosen(m, i), look = pick || run->attribute_all;                            \
            mark b;                                                                                \
            if (look)                                                                              \
                before(m, &b, pick);                                                               \
            uint64_t t0 = pick ? ab_ticks(&run->clock) : 0; /* after the counters' reads */          \
            call;                                                                                  \
            uint64_t t1 = pick ? ab_ticks(&run->clock) : 0;                                        \
            if (look)                                                                              \
                after(m, &b, pick, kind, i, size, t1 - t0);                                        \
        }                                                                                          \
    } while (0)

static void *ct_malloc(size_t n)
{
    void *p;
    CALL(AB_LK_MALLOC, n, p = inner->malloc(n));
    return p;
}

static void *ct_calloc(size_t k, size_t n)
{
    void *p;
    CALL(AB_LK_CALLOC, k * n, p = inner->calloc(k, n));
    return p;
}

static void *ct_realloc(void *q, size_t n)
{
    void *p;
    CALL(AB_LK_REALLOC, n, p = inner->realloc(q, n));
    return p;
}

static void *ct_memalign(size_t align, size_t n)
{
    void *p;
    CALL(AB_LK_ALIGNED, n, p = inner->memalign(align, n));
    return p;
}

static void ct_free(void *p)
{
    /* a chosen free's size is its block's usable size, read before the call (pass 2 only) */
    size_t size = me && run->pass == 2 && p && chosen(me, me->calls) ? inner->usable_size(p) : 0;
    CALL(AB_LK_FREE, size, inner->free(p));
}

void ab_calltime_allocator(ab_calltime *c, const ab_allocator *measured, ab_allocator *out)
{
    run = c, inner = measured;
    *out = *measured;
    out->malloc = ct_malloc, out->calloc = ct_calloc, out->realloc = ct_realloc;
    out->memalign = ct_memalign, out->free = ct_free;
}

void ab_calltime_merged(const ab_calltime *c, int kind, ab_hist *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < c->nthreads; i++)
        ab_hist_merge(out, &c->threads[i].h[kind]);
}

/* slow[0..n) as a min-heap on ticks: the root is the least of the slowest kept */
static void sift_down(ab_slow_call *h, uint32_t n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, least = i;
        if (l < n && h[l].ticks < h[least].ticks)
            least = l;
        if (r < n && h[r].ticks < h[least].ticks)
            least = r;
        if (least == i)
            return;
        ab_slow_call t = h[i];
        h[i] = h[least], h[least] = t;
        i = least;
    }
}

static int by_place(const void *a, const void *b)
{
    const ab_slow_call *x = a, *y = b;
    if (x->thread != y->thread)
        return x->thread < y->thread ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}

/* Each chosen call's time off its CPU: its span in pass 1 (where it began, from its mark, and its
 * ticks) against its thread's switch spans, both on CLOCK_MONOTONIC.  Unknown (-1) where the call
 * has no mark or its thread's switches were not all recorded. */
static void off_cpu(ab_calltime *c)
{
    double npt = ab_clock_ns_per_tick(&c->clock);
    for (uint32_t k = 0; k < c->nslow; k++) {
        ab_slow_call *s = &c->slow[k];
        const ab_call_thread *m = &c->threads[s->thread];
        s->off_cpu_ns = -1, s->preempted = 0;
        if (m->off_state != 2 || m->lost)
            continue;
        uint64_t lo = 0, hi = m->nmarks;  /* marks are in call order */
        while (lo < hi) {
            uint64_t mid = (lo + hi) / 2;
            if (m->marks[mid].index < s->index)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == m->nmarks || m->marks[lo].index != s->index)
            continue;
        double from = (double)c->clock.mono0_ns + (double)(m->marks[lo].t0 - c->clock.ticks0) * npt;
        double to = from + (double)s->ticks * npt;
        double off = 0;
        uint32_t first = 0, last = m->nspans;  /* spans are in time order: the first that ends after `from` */
        while (first < last) {
            uint32_t mid = (first + last) / 2;
            if ((double)m->spans[mid].in_ns <= from)
                first = mid + 1;
            else
                last = mid;
        }
        for (uint32_t i = first; i < m->nspans && (double)m->spans[i].out_ns < to; i++) {
            double a = (double)m->spans[i].out_ns > from ? (double)m->spans[i].out_ns : from;
            double b = (double)m->spans[i].in_ns < to ? (double)m->spans[i].in_ns : to;
            if (b > a) {
                off += b - a;
                s->preempted |= m->spans[i].preempted;
            }
        }
        s->off_cpu_ns = (int64_t)off;
    }
}

void ab_calltime_choose(ab_calltime *c)
{
    ab_hist all;
    memset(&all, 0, sizeof all);
    for (int k = 0; k < AB_NLATENCY_KINDS; k++) {
        ab_hist h;
        ab_calltime_merged(c, k, &h);
        ab_hist_merge(&all, &h);
    }
    c->threshold_ticks = ab_hist_quantile(&all, 0.999);
    /* the least tick count a call needs: its bucket's lower edge, so ties with p99.9 are in */
    unsigned bi = ab_hist_index(c->threshold_ticks);
    uint64_t floor_ticks = bi ? ab_hist_upper(bi - 1) + 1 : 0;
    uint64_t above = 0;
    for (int t = 0; t < c->nthreads; t++) {
        ab_call_thread *m = &c->threads[t];
        uint64_t n = m->calls < m->cap ? m->calls : m->cap;
        for (uint64_t i = 0; i < n; i++)
            above += m->ticks[i] >= floor_ticks;
    }
    uint64_t want = above > AB_SLOW_TOP ? above : AB_SLOW_TOP;
    if (want > AB_SLOW_MAX)
        want = AB_SLOW_MAX;
    uint32_t n = 0;
    for (int t = 0; t < c->nthreads; t++) {
        ab_call_thread *m = &c->threads[t];
        uint64_t calls = m->calls < m->cap ? m->calls : m->cap;
        for (uint64_t i = 0; i < calls; i++) {
            ab_slow_call s = {.thread = (uint32_t)t, .index = i, .ticks = m->ticks[i], .kind = m->kinds[i]};
            if (n < want) {
                c->slow[n++] = s;
                if (n == want)
                    for (uint32_t k = n / 2; k-- > 0;)
                        sift_down(c->slow, n, k);
            } else if (s.ticks > c->slow[0].ticks) {
                c->slow[0] = s;
                sift_down(c->slow, n, 0);
            }
        }
    }
    c->nslow = n;
    qsort(c->slow, n, sizeof *c->slow, by_place);
    for (uint32_t k = 0; k < n; k++) {
        ab_call_thread *m = &c->threads[c->slow[k].thread];
        m->chosen[c->slow[k].index / 8] |= (uint8_t)(1u << (c->slow[k].index % 8));
    }
    off_cpu(c);
    uint64_t total = 0;
    for (int t = 0; t < c->nthreads; t++)
        total += c->threads[t].calls;
    c->attribute_all = total <= AB_ATTRIBUTE_ALL_MAX;
    c->pass = 2;
}
