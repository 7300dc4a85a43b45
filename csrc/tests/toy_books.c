/* The toy's own arithmetic and books, checked against their definitions from inside (the source is
 * included, so its static functions are in reach):
 *   - slot_number, for every size class: an offset d from a span's base is a slot's start exactly
 *     when the slot size divides it, and then its number is d / size; every other offset, and any
 *     below the base, gives a number no span's bump reaches (above UINT32_MAX);
 *   - live bytes while threads hold blocks of each other's: one thread takes blocks, another frees
 *     half of them while both are alive, and toy_get_stats counts exactly the usable bytes still out;
 *   - the granule map, flat or in two levels (under an address-space limit below its 16 GiB): each
 *     block of every class resolves to the span that holds it and its class, and a large block, a stack address
 *     and an address past 47 bits to none.  It prints which map it checked;
 *   - free's deferred check: a thread holding more small blocks than TOYALLOC_DEFER_BYTES defers
 *     from its next slow free, with the block pending counted as freed, and stops once it holds less;
 *     its default, the L2's size, is not asked of sysconf before a thread holds DEFER_ASK bytes, and
 *     then is sysconf's answer (2 MiB if it has none);
 *   - fresh slots only when no span has a freed one: after a churn of random sizes on one thread,
 *     each class has carved (its spans' bumps) no more slots than it had out at once at its peak;
 *   - adopt, on spans listed in front of a class's lists, for heaps of its own (no thread runs them):
 *     of the first ADOPT_LOOK listed, one the adopting thread owned last, with freed slots, else with
 *     fresh slots only (before another thread's freed ones), else the first with freed slots, else the
 *     first with fresh ones; one further back is not looked for.  Last, as it leaves those spans
 *     owned by heaps nobody runs.
 *   toy_books     prints each failure, then "N checks, F failed"; exits 1 if any failed. */
#include "toyalloc.c"

#include <stdio.h>

static int failures, checks;
#define CHECK(cond, ...) do { checks++; if (!(cond)) { failures++; \
    printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } } while (0)

static void slot_numbers(void)
{
    ensure_init();
    for (int c = 0; c < NCLASSES; c++) {
        const size_class *k = &classes[c];
        span s = {.base = (char *)((uintptr_t)1 << 40), .shift = k->shift, .inv = k->inv};
        size_t size = k->size, bad = 0;
        for (size_t d = 0; d <= 3 * size; d++) {  /* every byte of the first slots and the next start */
            uint64_t q = slot_number(&s, s.base + d);
            if (d % size == 0 ? q != d / size : q <= UINT32_MAX)
                bad++;
        }
        for (size_t i = 0; i * size < TOY_MAX_THRESHOLD * 8; i += 1 + i / 7)  /* starts far into a span */
            if (slot_number(&s, s.base + i * size) != i)
                bad++;
        for (size_t d = 1; d <= 2 * size; d++)  /* below the base */
            if (slot_number(&s, s.base - d) <= UINT32_MAX)
                bad++;
        CHECK(bad == 0, "class %d (%zu bytes): %zu offsets numbered wrongly", c, size, bad);
    }
}

enum { BLOCKS = 2000 };
static void *blocks[BLOCKS];
static pthread_barrier_t step;

static uint64_t live_now(void)
{
    toy_stats st;
    toy_get_stats(&st);
    return st.live_bytes;
}

static void *taker(void *arg)
{
    (void)arg;
    for (int i = 0; i < BLOCKS; i++)
        blocks[i] = toy_malloc(16 + (size_t)(i * 37) % 2000);  /* classes below and above 1 KiB */
    pthread_barrier_wait(&step);  /* the main thread frees half of them */
    pthread_barrier_wait(&step);  /* and counts: this thread stays alive, its cache holding slots, till then */
    for (int i = 1; i < BLOCKS; i += 2)
        toy_free(blocks[i]);
    return NULL;
}

static void live_across_threads(void)
{
    uint64_t before = live_now();
    pthread_t t;
    pthread_barrier_init(&step, NULL, 2);
    pthread_create(&t, NULL, taker, NULL);
    pthread_barrier_wait(&step);
    uint64_t out = 0, freed = 0;
    for (int i = 0; i < BLOCKS; i++)
        out += toy_usable_size(blocks[i]);
    CHECK(live_now() == before + out, "live %llu with %d blocks out, want %llu", (unsigned long long)live_now(),
          BLOCKS, (unsigned long long)(before + out));
    for (int i = 0; i < BLOCKS; i += 2) {
        freed += toy_usable_size(blocks[i]);
        toy_free(blocks[i]);
    }
    CHECK(live_now() == before + out - freed, "live %llu after this thread freed half of another's blocks, "
          "want %llu", (unsigned long long)live_now(), (unsigned long long)(before + out - freed));
    pthread_barrier_wait(&step);
    pthread_join(t, NULL);
    CHECK(live_now() == before, "live %llu once all are freed and the taker has exited, want %llu",
          (unsigned long long)live_now(), (unsigned long long)before);
}

/* free's deferred check, on a thread of its own (a heap that starts empty): holding more than
 * defer_bytes() of small blocks, the thread defers from its next slow free (a full cache) and leaves
 * that block pending, counted as freed; the next free caches it and leaves its own block pending; once
 * the thread holds less, its next slow free checks directly again and caches the pending block. */
static void *deferring(void *arg)
{
    (void)arg;
    heap *h = &th;
    int c = class_of(1000), c2 = class_of(100);
    size_t size = classes[c].size, max = classes[c].tcache_max;
    size_t n = defer_bytes() / size + max + 3;  /* their bytes pass the bound, and the frees below fit */
    void **b = malloc(n * sizeof *b);  /* glibc's: this program calls the toy by name */
    uint64_t before = live_now();
    for (size_t i = 0; i < n; i++)
        b[i] = toy_malloc(1000);
    CHECK(!h->defer && atomic_load(&h->held) > (int64_t)defer_bytes(), "a thread deferring before a slow free");
    size_t k = max - cached_slots(h, c);  /* the last refill's rest is cached: this free finds it full */
    for (size_t i = 0; i <= k; i++)
        toy_free(b[i]);
    CHECK(h->defer && h->pending == b[k] && h->pending_class == c && cached_slots(h, c) == max,
          "defer %d, pending %p (want %p), %u cached (want %zu) after a slow free holding %zu bytes", h->defer,
          (void *)h->pending, b[k], cached_slots(h, c), max, n * size);
    CHECK(live_now() == before + (n - k - 1) * size, "live %llu with a block pending, want %llu",
          (unsigned long long)live_now(), (unsigned long long)(before + (n - k - 1) * size));
    toy_free(b[k + 1]);  /* the cache full: half of it flushed, then the pending block cached */
    CHECK(h->pending == b[k + 1] && h->head[c] == b[k] && cached_slots(h, c) == max - (max + 1) / 2 + 1,
          "the next free caches the pending block: pending %p (want %p), %u cached", (void *)h->pending, b[k + 1],
          cached_slots(h, c));
    for (size_t i = k + 2; i < n; i++)
        toy_free(b[i]);
    void *more[TCACHE_MAX + 1];
    for (size_t i = 0; i <= classes[c2].tcache_max; i++)
        more[i] = toy_malloc(100);
    for (size_t i = 0; i <= classes[c2].tcache_max; i++)
        toy_free(more[i]);  /* the last one's slow free finds the thread holding little */
    CHECK(!h->defer && h->pending_class == NCLASSES && h->head[c2] == more[classes[c2].tcache_max],
          "defer %d, pending class %d after a slow free holding %lld bytes", h->defer, h->pending_class,
          (long long)atomic_load(&h->held));
    CHECK(live_now() == before, "live %llu once all are freed, want %llu", (unsigned long long)live_now(),
          (unsigned long long)before);
    free(b);
    return NULL;
}

/* The default bound, before any thread held DEFER_ASK bytes (asked: 0) or after. */
static void defer_bound(int asked)
{
    if (getenv("TOYALLOC_DEFER_BYTES"))
        return;
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    size_t want = !asked ? DEFER_L2 : l2 > 0 ? (size_t)l2 : (size_t)2 << 20;
    CHECK(atomic_load(&cfg_defer_bytes) == want, "the deferred check's bound %zu, want %zu (%s)",
          atomic_load(&cfg_defer_bytes), want, asked ? "asked" : "not asked yet");
}

static void deferred_check(void)
{
    if (cfg_defer_bytes == 0) {  /* TOYALLOC_DEFER_BYTES=0: every thread defers from its start */
        printf("deferred check: not checked under TOYALLOC_DEFER_BYTES=0\n");
        return;
    }
    pthread_t t;
    pthread_create(&t, NULL, deferring, NULL);
    pthread_join(t, NULL);
}

static void granule_map(void)
{
    printf("granule map: %s\n", atomic_load(&gflat) ? "flat" : "two levels");
    void *p[NCLASSES];
    int small = 0;  /* the classes below the threshold: the larger are large blocks */
    while (small < NCLASSES && classes[small].size <= atomic_load(&cfg_threshold))
        small++;
    CHECK(small >= 40, "only %d classes below the threshold", small);
    for (int c = 0; c < small; c++)
        p[c] = toy_malloc(classes[c].size);
    for (int c = 0; c < small; c++) {
        span *s = span_of(p[c]);
        CHECK(s && s->base <= (char *)p[c] && (char *)p[c] + classes[c].size <= s->base + s->len
              && s->cls == (uint32_t)c, "class %d: block %p not found in its span", c, p[c]);
        int in_map = entry_class(entry_of(p[c]));
        CHECK(in_map == c, "class %d: the map's entry gives class %d", c, in_map);
        CHECK(!s || span_of(s->base + s->len - 1) == s, "class %d: the span's last byte not mapped to it", c);
    }
    void *big = toy_malloc(TOY_MAX_THRESHOLD * 2);
    int here;
    CHECK(span_of(big) == NULL, "a large block resolves to a span");
    CHECK(span_of(&here) == NULL, "a stack address resolves to a span");
    CHECK(span_of((void *)((uintptr_t)1 << 47)) == NULL, "an address past 47 bits resolves to a span");
    toy_free(big);
    for (int c = 0; c < small; c++)
        toy_free(p[c]);
}

/* The spans of class c in use (their books not released): their slots out (in use or in a thread's
 * cache), or carved (handed out at least once: below the bump).  The books are in the first chunk. */
static uint64_t class_slots(int c, int carved)
{
    uint64_t n = 0;
    for (span *s = books_first; s < books_next && s < books_end; s++)
        if (s->base && s->cls == (uint32_t)c && span_of(s->base) == s)
            n += carved ? atomic_load(&s->bump) : s->out;
    return n;
}

/* A thread's churn over random sizes: freed slots are handed out again before any fresh one is carved
 * (see refill), so no class carves more slots than it had out at once.  Run first, on spans of its own. */
static void *churn_carving(void *arg)
{
    (void)arg;
    enum { SLOTS = 3000, REPLACE = 200000 };
    static void *slot[SLOTS];
    static uint64_t peak[NCLASSES];
    uint64_t r = 88172645463325252u;
    for (int i = 0; i < REPLACE; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        int k = (int)(r % SLOTS);
        size_t a = (r >> 20) % 1009, b = (r >> 40) % 1009;
        toy_free(slot[k]);
        slot[k] = toy_malloc(16 + (a < b ? a : b));  /* 16 to 1,024 bytes, mostly small: alloc-test's */
        int c = class_of(16 + (a < b ? a : b));
        uint64_t out = class_slots(c, 0);
        if (out > peak[c])
            peak[c] = out;
    }
    CHECK(books_next <= books_end && books_next >= books_first, "the spans' books outgrew the first chunk");
    for (int c = 0; c < NCLASSES; c++) {
        uint64_t carved = class_slots(c, 1);
        CHECK(carved <= peak[c], "class %zu: %llu slots carved, but at most %llu out at once", classes[c].size,
              (unsigned long long)carved, (unsigned long long)peak[c]);
    }
    for (int k = 0; k < SLOTS; k++)
        toy_free(slot[k]);
    return NULL;
}

static void fresh_only_when_none_freed(void)
{
    pthread_t t;
    pthread_create(&t, NULL, churn_carving, NULL);
    pthread_join(t, NULL);
}

static heap mine, theirs, nobodys;  /* heaps no thread runs: adopt only compares their addresses */

/* n new spans of class c in front of its list (the last made first), each owned last by `last`: with a
 * freed slot (two handed out, one back), so on the list of those with freed slots; with fresh slots only
 * if `fresh`. */
static span *listed_front(int c, int n, heap *last, int fresh)
{
    span *s = NULL;
    for (int i = 0; i < n; i++) {
        s = span_new(c);
        CHECK(s != NULL, "no span for class %d", c);
        if (!s)
            return NULL;
        s->last = last;
        if (!fresh) {
            void *p = span_take(s);
            span_take(s);
            CHECK(span_give(s, p) == NULL && s->listed == LISTED_FREED && classes[c].partial == s,
                  "a span with a freed slot not in front of those with freed slots");
        }
    }
    CHECK(!s || s->listed == (fresh ? LISTED_FRESH : LISTED_FREED), "a span on list %u", s ? s->listed : 0);
    return s;
}

static void adopt_prefers_own_spans(void)
{
    int c = class_of(200);
    lock();
    span *fresh = listed_front(c, 1, &mine, 1), *freed = listed_front(c, 1, &mine, 0);
    span *theirs_freed = listed_front(c, 1, &theirs, 0);
    CHECK(freed && adopt(c, &mine) == freed, "adopt took a span with fresh slots only over its own with freed slots");
    CHECK(fresh && adopt(c, &mine) == fresh, "adopt took another thread's freed slots over its own fresh ones");
    CHECK(theirs_freed && adopt(c, &nobodys) == theirs_freed, "a thread that owned none listed did not take the "
          "first with freed slots");
    while (classes[c].partial)
        adopt(c, &nobodys);  /* the class's other spans with freed slots, if any */
    fresh = listed_front(c, 1, &theirs, 1);
    CHECK(fresh && adopt(c, &nobodys) == fresh, "adopt did not take a span with fresh slots once none had freed ones");
    span *own = listed_front(c, 1, &mine, 0);
    span *head = listed_front(c, ADOPT_LOOK - 1, &theirs, 0);  /* own is the list's last looked at */
    CHECK(own && adopt(c, &mine) == own, "adopt passed over the thread's own span, %d deep", ADOPT_LOOK);
    CHECK(own && owner_of(own) == &mine, "the adopted span not owned by the thread");
    CHECK(head && adopt(c, &nobodys) == head, "a thread that owned none listed did not take the first");
    CHECK(head && head->last == &nobodys, "adopt did not mark the span as owned last by its new owner");
    own = listed_front(c, 1, &mine, 0);
    head = listed_front(c, ADOPT_LOOK, &theirs, 0);  /* own one further back */
    CHECK(own && adopt(c, &mine) == head, "adopt looked past its first %d listed spans", ADOPT_LOOK);
    unlock();
}

int main(void)
{
    slot_numbers();
    defer_bound(0);
    fresh_only_when_none_freed();
    live_across_threads();
    deferred_check();
    defer_bound(1);
    granule_map();
    adopt_prefers_own_spans();
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
