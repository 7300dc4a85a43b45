/* Workload loops; see workloads.h.  Everything the loops need besides the
 * blocks under test (slot arrays, thread contexts) is mmapped before the
 * window opens, so the allocator under test is the only one at work inside. */
#define _GNU_SOURCE
#include "workloads.h"
#include "toyalloc.h"

#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

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
    malloc, free, realloc, calloc, malloc_usable_size, 1,
};

const ab_allocator ab_toy_allocator = {
    toy_malloc, toy_free, toy_realloc, toy_calloc, toy_usable_size, 0,
};

/* Every block passes through here so the compiler cannot drop a malloc/free pair. */
void *volatile ab_sink;

typedef struct thread_ctx {
    const ab_allocator *a;
    const ab_workload *w;
    int tid;
    uint64_t rng;
    void **slots;        /* `live` entries */
    size_t *sizes;
    void **pinned;       /* fragment's long-lived blocks */
    uint64_t npinned, pinned_cap;
    uint64_t live_bytes;
    ab_run_stats st;     /* this thread's share */
    pthread_t thread;
} thread_ctx;

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

static void touch(void *p, size_t from, size_t to)
{
    volatile char *c = p;
    for (size_t off = from; off < to; off += 4096)
        c[off] = 1;
    if (to > from)
        c[to - 1] = 1;
}

static void note_peak(thread_ctx *t)
{
    if (t->tid == 0 && !t->st.peak_mallinfo_taken) {
        struct mallinfo2 mi = mallinfo2();
        t->st.peak_arena_bytes = mi.arena;
        t->st.peak_hblkhd_bytes = mi.hblkhd;
        t->st.peak_mallinfo_taken = 1;
    }
}

static void *get(thread_ctx *t, size_t size)
{
    void *p = t->a->malloc(size);
    ab_sink = p;
    if (!p) {
        t->st.failed++;
        return NULL;
    }
    t->st.allocs++;
    if (t->w->touch) {
        touch(p, 0, size);
        if (t->a->glibc_chunks) {
            /* glibc-internal: bit 1 of the chunk's size word is IS_MMAPPED */
            t->st.mmapped_blocks += (((size_t *)p)[-1] & 2) != 0;
            t->st.checked_blocks++;
        }
    }
    t->live_bytes += size;
    if (t->live_bytes > t->st.live_bytes_peak)
        t->st.live_bytes_peak = t->live_bytes;
    return p;
}

static void put(thread_ctx *t, void *p, size_t size)
{
    if (!p)
        return;
    t->a->free(p);
    t->st.frees++;
    t->live_bytes -= size;
}

static void run_churn(thread_ctx *t)
{
    for (uint64_t i = 0; i < t->w->ops; i++) {
        size_t s = draw_size(t);
        void *p = get(t, s);
        if (i == 0)
            note_peak(t);
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
        note_peak(t);
        for (uint64_t j = 0; j < n; j++)
            put(t, t->slots[j], t->sizes[j]);
        done += n;
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
            note_peak(t);
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
        void *q = t->a->realloc(p, next);
        ab_sink = q;
        if (!q) {
            t->st.failed++;
            continue;
        }
        t->st.reallocs++;
        if (!p)
            t->st.allocs++;
        if (t->w->touch)
            touch(q, cur, next);
        p = q;
        t->live_bytes += next - cur;
        cur = next;
        if (t->live_bytes > t->st.live_bytes_peak)
            t->st.live_bytes_peak = t->live_bytes;
        if (cur + step > target)
            note_peak(t);
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
            note_peak(t);
        for (uint64_t j = 0; j < n; j++)
            put(t, t->slots[j], t->sizes[j]);
    }
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
};
_Static_assert(sizeof pattern_loops / sizeof pattern_loops[0] == AB_NPATTERNS,
               "every pattern in AB_PATTERN_LIST needs its loop here");

static void *run_thread(void *arg)
{
    thread_ctx *t = arg;
    pattern_loops[t->w->pattern](t);  /* the pattern was checked by ab_workload_check */
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

static void *map_zeroed(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
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
    int n = w->threads;
    size_t ctx_bytes = sizeof(thread_ctx) * (size_t)n;
    thread_ctx *ts = map_zeroed(ctx_bytes);
    if (!ts) {
        snprintf(stats->error, sizeof stats->error, "mmap of thread contexts failed");
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        thread_ctx *t = &ts[i];
        t->a = a, t->w = w, t->tid = i;
        t->rng = w->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)i + 1;
        t->slots = map_zeroed(sizeof(void *) * w->live);
        t->sizes = map_zeroed(sizeof(size_t) * w->live);
        t->pinned_cap = w->pattern == AB_FRAGMENT ? w->ops : 0;
        t->pinned = t->pinned_cap ? map_zeroed(sizeof(void *) * t->pinned_cap) : NULL;
        if (!t->slots || !t->sizes || (t->pinned_cap && !t->pinned))
            rc = -1;
    }
    if (rc) {
        snprintf(stats->error, sizeof stats->error, "mmap of workload slots failed");
        goto out;
    }

    ab_reset_peak_rss();
    ab_footprint_read(before);
    ab_window win;
    if (ab_window_begin(c, &win)) {
        snprintf(stats->error, sizeof stats->error, "counter window: %s", c->error);
        rc = -1;
        goto out;
    }
    if (n == 1 && !w->spawn) {
        run_thread(&ts[0]);
    } else {
        int started = 0;
        for (; started < n; started++)
            if (pthread_create(&ts[started].thread, NULL, run_thread, &ts[started]))
                break;
        for (int i = 0; i < started; i++)
            pthread_join(ts[i].thread, NULL);
        if (started < n) {
            snprintf(stats->error, sizeof stats->error, "could start only %d of %d threads", started, n);
            rc = -1;
        }
    }
    if (ab_window_end(c, &win, &stats->counts)) {
        snprintf(stats->error, sizeof stats->error, "counter window: %s", c->error);
        rc = -1;
    }
    ab_footprint_read(after);

    for (int i = 0; i < n; i++) {
        ab_run_stats *s = &ts[i].st;
        stats->allocs += s->allocs, stats->frees += s->frees;
        stats->reallocs += s->reallocs, stats->failed += s->failed;
        /* per-thread peaks summed: an upper bound when threads peak apart */
        stats->live_bytes_peak += s->live_bytes_peak;
        stats->mmapped_blocks += s->mmapped_blocks, stats->checked_blocks += s->checked_blocks;
    }
    stats->peak_mallinfo_taken = ts[0].st.peak_mallinfo_taken;
    stats->peak_arena_bytes = ts[0].st.peak_arena_bytes;
    stats->peak_hblkhd_bytes = ts[0].st.peak_hblkhd_bytes;
out:
    for (int i = 0; i < n; i++) {
        thread_ctx *t = &ts[i];
        for (uint64_t j = 0; j < t->npinned; j++)
            a->free(t->pinned[j]);
        if (t->slots) munmap(t->slots, sizeof(void *) * w->live);
        if (t->sizes) munmap(t->sizes, sizeof(size_t) * w->live);
        if (t->pinned) munmap(t->pinned, sizeof(void *) * t->pinned_cap);
    }
    munmap(ts, ctx_bytes);
    return rc;
}
