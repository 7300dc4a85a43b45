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
 *   - adopt, on spans listed in front of a class's list, for heaps of its own (no thread runs them):
 *     of the first ADOPT_LOOK listed, it takes one the adopting thread owned last, else the first;
 *     one further back is not looked for.  Last, as it leaves those spans owned by heaps nobody runs.
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

static heap mine, theirs, nobodys;  /* heaps no thread runs: adopt only compares their addresses */

/* n new spans of class c in front of its list (the last made first), each owned last by `last`. */
static span *listed_front(int c, int n, heap *last)
{
    span *s = NULL;
    for (int i = 0; i < n; i++) {
        s = span_new(c);
        CHECK(s != NULL, "no span for class %d", c);
        if (!s)
            return NULL;
        s->last = last;
    }
    return s;
}

static void adopt_prefers_own_spans(void)
{
    int c = class_of(200);
    lock();
    span *own = listed_front(c, 1, &mine);
    span *head = listed_front(c, ADOPT_LOOK - 1, &theirs);  /* own is the list's last looked at */
    CHECK(own && adopt(c, &mine) == own, "adopt passed over the thread's own span, %d deep", ADOPT_LOOK);
    CHECK(own && owner_of(own) == &mine, "the adopted span not owned by the thread");
    CHECK(head && adopt(c, &nobodys) == head, "a thread that owned none listed did not take the first");
    CHECK(head && head->last == &nobodys, "adopt did not mark the span as owned last by its new owner");
    own = listed_front(c, 1, &mine);
    head = listed_front(c, ADOPT_LOOK, &theirs);  /* own one further back */
    CHECK(own && adopt(c, &mine) == head, "adopt looked past its first %d listed spans", ADOPT_LOOK);
    unlock();
}

int main(void)
{
    slot_numbers();
    live_across_threads();
    granule_map();
    adopt_prefers_own_spans();
    printf("%d checks, %d failed\n", checks, failures);
    return failures != 0;
}
