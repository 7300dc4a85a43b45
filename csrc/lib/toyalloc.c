/* toyalloc: see toyalloc.h.  The design, in one place:
 *
 * - Small blocks (size and alignment <= threshold): 60 size classes (16-byte
 *   steps to 128 B, then four per power of two up to 1 MiB).  A class carves
 *   slots from spans: granule-aligned ranges (64 KiB, or 8 slots for classes
 *   above 8 KiB) carved in order from 1 GiB reservations (span_memory), all
 *   slots; their books, a descriptor each and no byte per
 *   slot (see below), are packed apart (books_new).  A slot of size
 *   S = odd << k starts at base + i*S, so it is aligned to 2^k: an aligned
 *   request takes the smallest class whose size is a multiple of its
 *   alignment, never a mapping of its own.
 * - A granule map (address >> 16 -> span and its class) finds a pointer's
 *   span without touching the block; a pointer in no span must be a live
 *   large block.  free tries the map, then the large-block table (see
 *   free_large).
 * - Each thread keeps a cache of free slots per class (at most 64 slots or
 *   64 KiB), refilled and flushed in batches, and carves its refills from a
 *   span it owns: slots handed out before and freed first, from its span or
 *   one it owned last, fresh ones (pages never written) only when it has none
 *   (see refill).  A free slot, wherever it waits (a thread's cache, its
 *   span's list, a remote list), holds the link and its key, its address
 *   xored with a random odd secret (slot_key); malloc clears the key.  So
 *   free reads and writes only the block's own first line and its span's
 *   descriptor: a block that holds its key is a double free, caught under
 *   every policy and from any thread, and a slot at or above its span's bump
 *   was never handed out.  (A byte of state per slot in the books did the
 *   same at the cost of a second cache line on every malloc and free.)  What
 *   it gives up: a use after free that overwrote the key, then a double free,
 *   goes unseen, as in glibc's tcache.  A thread holding more than
 *   TOYALLOC_DEFER_BYTES of small blocks (the L2's size) reads the key one
 *   free later, when the line has come in (see toy_free): then a double free
 *   made from a second thread is missed if the first thread hands the block
 *   out before the second frees again.  The fast paths count nothing but
 *   the room left in the thread's cache: the bytes a thread has live are
 *   the slots it took from spans less those it gave back and those cached
 *   (heap_live), moved at refill and flush.
 * - No lock while a thread works on its own spans: only the owner touches an
 *   owned span's books.  Another thread's flush hands a slot to the owner by
 *   one compare-and-swap onto the span's remote list (mimalloc's idea of a
 *   thread-free list); the owner takes the whole list back with one exchange
 *   when the span runs out, and the head's count spares it a walk.  The
 *   global lock is left for spans nobody owns: adopting one (one the thread
 *   owned last if it is near the list's front, so two threads' blocks mix in
 *   fewer spans), giving up a full one, a thread's exit, the no-heap path.
 * - A span whose slots are all back (none in use, none cached by a thread) is
 *   released, except one spare per class: RSS after a phase change is live
 *   bytes plus one span per class plus the thread caches plus the cache below.
 * - Large blocks: one mapping each, the block a few cache lines into it (its
 *   colour, see colour_of), recorded in a table (base -> length, colour) kept
 *   out of band, in 16 stripes with a lock each.  Under keep a thread first
 *   keeps up to two freed mappings of its own (within the cap, and a page), counted
 *   in the cache's bytes, their entries kept and marked stashed: churn of
 *   large blocks then takes no shared lock and adds no entry.  A freed
 *   mapping, or a released span, is purged first by the
 *   policy (madvise), then published to a cache of at most 64 entries and
 *   cache_cap bytes (4 MiB by default; oldest evicted with munmap), or, with a
 *   decay (decay_ms, 1 s by default), up to what the program had live in large
 *   blocks at its peak and has not now (cache_room): a block freed is kept
 *   while the program may ask for it again, and what waits past the decay
 *   beyond the fixed cap goes back at the next large call or cached free;
 *   when the program has freed every large block, all but the last at once
 *   (a churn of one block asks for it again), and that one after the decay.
 *   So the fixed cap is a floor for spans and odd sizes, not what keeps
 *   large blocks: a 32 MiB cap held db_bench's peak RSS at 1.55x glibc's.
 *   Each entry remembers whether its pages
 *   are known to be zero, decided when it was cached.  Under keep, a released
 *   span is purged all the same (see retire_mapping).
 * - realloc of a large block is mremap: the kernel moves page tables, no copy.
 * - fork: the prepare handler takes stdio's list lock before the toy's lock,
 *   the order glibc's fork itself uses (list, then malloc), so a thread that
 *   holds a FILE lock while it mallocs cannot close a cycle.  In a
 *   single-threaded process it takes nothing, so fork from a signal handler
 *   that interrupted malloc cannot deadlock; the child re-initialises the lock.
 * - free never changes errno; a failed munmap or madvise keeps the mapping
 *   accounted for (a failed munmap is retried later).
 * - With one thread (__libc_single_threaded), as in glibc: no mutex and no
 *   locked instruction anywhere.
 */
#define _GNU_SOURCE
#include "toyalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#ifdef TOY_PRELOAD
#define TOY_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define TOY_TLS __thread
#endif
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/* malloc's and free's fast paths start on a cache line: where an edit elsewhere left them 48 bytes
 * into one, alloc-test took 1.016x the time [1.005, 1.028] with the same instructions, and 1.008x
 * [0.989, 1.018] aligned (12 pairs each against 3572293) */
#define FAST_PATH __attribute__((aligned(64)))

#define GRANULE_SHIFT 16
#define GRANULE ((size_t)1 << GRANULE_SHIFT)
#define LEAF_BITS 16
#define TOP_BITS (47 - GRANULE_SHIFT - LEAF_BITS)
#define NCLASSES 60
#define CACHE_SLOTS 64
#ifndef TCACHE_BYTES  /* a thread's cache of a class holds at most this many bytes and slots (-D to try others) */
#define TCACHE_BYTES ((size_t)64 << 10)
#endif
#ifndef TCACHE_MAX
#define TCACHE_MAX 64
#endif
#define LSTRIPE_BITS 4
#define STASH 2                  /* freed large mappings a thread keeps under keep */
#define BOOKS_CHUNK ((size_t)64 << 10)  /* span books are carved this many bytes at a time */

/* glibc's stdio list lock (exported since 2.2.5); weak so a libc without it still links. */
extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));

/* A span's books, kept apart from its slots: all of them packed in a few pages (see books_new). */
typedef struct span {
    /* Its first line holds what free's fast path reads, written only when the span is made and
     * while it is carved; the second what refills and flushes write.  One line for both made each
     * write of a span another thread frees into cost that thread a miss at its next free there
     * (split: rptest, xmalloc and alloc-test on two threads in 0.93x to 0.98x the time). */
    char *base;                /* its mapping, all slots */
    size_t len, slot;          /* mapping length, slot size */
    uint64_t inv;              /* slot number = rotate right ((p - base) * inv, shift): see slot_number */
    uint32_t cls, nslots, shift;
    /* slots below this index have been handed out at least once; written by the one thread that
     * carves from the span, read by any free (a slot at or above it was never returned) */
    _Atomic uint32_t bump;
    __attribute__((aligned(64))) uint32_t out;  /* slots in use or in a thread's cache */
    uint32_t listed;           /* which of its class's lists holds it: LISTED_FREED, LISTED_FRESH, or 0 */
    void *free;                /* slots returned to the span, linked through their first word */
    struct span *prev, *next;  /* the class's spans that have a slot to give */
    _Atomic(struct heap *) owner;  /* the thread that carves from it, or NULL (listed or full) */
    /* slots other threads freed while it is owned, linked through their first word, with
     * REMOTE_OWNED in the low bit while owned (see remote_push) */
    _Atomic uintptr_t remote;
    struct heap *last;         /* the thread that owned it last (see adopt), NULL before any */
} __attribute__((aligned(128))) span;  /* two lines of its own: no span's books share a line with another's */
_Static_assert(sizeof(span) == 128, "a span's books are two cache lines: what free reads, what refills write");

typedef struct size_class {
    size_t size, span_len, span_align;
    uint32_t shift, tcache_max, batch;
    uint64_t inv;    /* the inverse mod 2^64 of size >> shift (odd) */
    /* Unowned spans with a slot to give: those with slots handed out and returned (freed), and those
     * with none such, only fresh slots, never handed out (their pages never written).  A refill takes
     * freed slots, from any span, before fresh ones (see refill). */
    span *partial, *fresh;
    _Atomic int has_freed;          /* partial is not empty: a hint refill reads without the lock */
    _Atomic uint32_t freed_listed;  /* spans put on partial so far (wrapping): see own_freed_maybe */
    int nempty;      /* spans of this class with no slot out */
} size_class;
enum { LISTED_FREED = 1, LISTED_FRESH };

typedef struct large {
    uintptr_t base;  /* its mapping's start, the table's key; 0: empty */
    size_t len;
    uint32_t colour;   /* the block starts this many bytes into the mapping (see colour_of); 0 if stashed */
    uint8_t over_aligned;  /* base aligned beyond a page: realloc must not mremap it */
    uint8_t stashed;       /* freed, kept in its thread's stash: no live block */
} large;

typedef struct ltable {
    pthread_mutex_t lock;
    large *tab;
    size_t cap, n;
} ltable;

typedef struct retired {   /* a mapping whose munmap failed: kept, accounted, retried */
    struct retired *next;
    size_t len;
} retired;

typedef struct cached_map {
    char *base;
    size_t len;
    int zeroed;  /* every page known to read as zero (fresh, or dropped by MADV_DONTNEED) */
    uint64_t freed_ms;  /* when it was cached (CLOCK_MONOTONIC_COARSE): past the decay it goes back */
    int joined;  /* neighbours joined into one range: perhaps two mappings to the kernel, so no mremap */
} cached_map;

typedef struct stashed_map {  /* a thread's stash entry: no more than it needs (each store counts: toy-churn) */
    char *base;
    size_t len;
} stashed_map;

typedef struct cached_slot {  /* a free slot: in a thread's cache, its span's list or a remote list */
    struct cached_slot *next;
    uintptr_t key;  /* slot_key(slot) while free; malloc clears it */
} cached_slot;

typedef struct heap {      /* one per thread */
    cached_slot *head[NCLASSES];
    struct span *own[NCLASSES];  /* the span this thread carves from, per class */
    /* slots its cache of a class may still take: tcache_max less those it holds.  Its own thread's:
     * plain accesses, which the compiler folds into the thread pointer's addressing (as _Atomic, the
     * fast paths took four more instructions); the statistics read it as it is (heap_live) */
    uint16_t room[NCLASSES + 1];  /* room[NCLASSES]: always none, the class of idle (see pending) */
    /* per class, the class's freed_listed when this thread last looked through its partial list and
     * found no span it owned last: none of its own listed since (see own_freed_maybe) */
    uint32_t looked[NCLASSES];
    /* While the thread defers free's check (see toy_free): the block it freed last, neither checked
     * for a free slot's key nor cached yet, and its class; else idle, of class NCLASSES (NULL and 0
     * until the heap is ready). */
    cached_slot *pending;
    int pending_class;
    cached_slot idle;
    int defer;  /* whether its frees defer the check: decided at each slow free (small_free) */
    _Atomic int64_t live;  /* bytes of large blocks this thread mapped less those it freed */
    /* bytes of slots it took from spans (refill) less those it gave back (flush): the slots in its cache
     * and the blocks it handed out from them, so that malloc's and free's fast paths count nothing;
     * its small blocks live are held less its cache (heap_live) */
    _Atomic int64_t held;
    stashed_map stash[STASH];  /* freed large mappings, oldest first (policy keep only) */
    int nstash;
    int state;
    struct heap *prev, *next;
} heap;
enum { HEAP_NEW, HEAP_SETUP, HEAP_READY, HEAP_GONE };

static inline void pending_none(heap *h)
{
    h->pending = &h->idle, h->pending_class = NCLASSES;
}

/* A granule map entry: its span's address, with the span's class in the low bits a span's alignment
 * leaves clear (0: no span), so free knows the class from the map before the books come in. */
typedef _Atomic uintptr_t gentry;
#define ENTRY_CLASS ((uintptr_t)127)
_Static_assert(_Alignof(span) > ENTRY_CLASS && NCLASSES <= ENTRY_CLASS + 1, "a class fits under a span's address");

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* the class of a request of n <= CLASS_SMALL_MAX bytes at (n + 15) / 16 (see class_of); filled at init,
 * read-only after, on lines of its own */
#define CLASS_SMALL_MAX 1024
static uint8_t class_small[128] __attribute__((aligned(64)));
static int class_computed(size_t n);
static atomic_int initialised, atfork_registered;
static int fork_locked;
static size_t page;
static size_class classes[NCLASSES];
/* the granule map (see span_of): flat where the kernel grants its address, else two levels */
static _Atomic(gentry *) gflat;
static _Atomic(gentry *) gmap[(size_t)1 << TOP_BITS];
static ltable ltabs[1 << LSTRIPE_BITS];
/* each stripe's first table, static: a program's first large blocks map nothing for the toy's own
 * books, so a large block's mmap count is its own (which stripe a block lands in follows its address) */
#define LTAB_FIRST 64
static large ltab_first[1 << LSTRIPE_BITS][LTAB_FIRST];
static cached_map cache[CACHE_SLOTS];
static _Atomic int ncached;  /* written under the lock; read without it as a hint */
static retired *retired_list;
static heap *heaps;
static pthread_key_t heap_key;
static TOY_TLS heap th;
static _Atomic size_t cfg_threshold = 128 << 10, cfg_cache_cap = 4 << 20;
/* malloc's fast path finds a request below this in class_small: the threshold's rule in one compare
 * (see set_threshold); larger requests up to the threshold compute their class */
static _Atomic size_t fast_below = CLASS_SMALL_MAX + 1;
/* TOYALLOC_DEFER_BYTES: a thread holding more bytes of small blocks than this defers free's check (see
 * toy_free), 0 always.  By default the L2's size (2 MiB if sysconf does not know it), asked only once a
 * thread holds DEFER_ASK bytes (defer_bytes): sysconf's code and its jump table lie in pages of libc a
 * small program never touches otherwise, and the kernel maps their neighbours too (fault-around). */
#define DEFER_L2 SIZE_MAX                 /* the default, not asked yet */
#define DEFER_ASK ((size_t)256 << 10)      /* no L2 of a current x86 core is smaller */
static _Atomic size_t cfg_defer_bytes = DEFER_L2;
static _Atomic size_t cfg_decay_ms = 1000;  /* TOYALLOC_DECAY_MS: see cache_room (0: the fixed cap alone) */
/* bytes of live large blocks, and their peak since the program last had none (from the last block it
 * freed then): what the program has shown it asks for.  No clock is read here: a churn of one block
 * ends and starts a spell with none live at every call (README, make toy-churn) */
static _Atomic uint64_t large_live, large_peak;
static atomic_int cfg_policy = TOY_KEEP;
static _Atomic int64_t live_elsewhere;  /* exited threads, and calls made without a heap */
/* a free slot's second word is its address xored with this: see slot_key */
static uintptr_t key_secret;
static _Atomic uint64_t st_mapped, st_cached, st_mmap, st_munmap, st_mremap, st_madvise;

#define RELAXED memory_order_relaxed
/* With one thread, as glibc's SINGLE_THREAD_P: no lock, no locked instruction.
 * Only this thread can make the process multi-threaded, and never inside
 * the toy; each lock remembers whether it was taken, so a flag that turned
 * back to single-threaded meanwhile cannot leave a mutex held. */
#define ONE_THREAD() (__libc_single_threaded != 0)
#define ADD(v, n) (ONE_THREAD() ? atomic_store_explicit(&(v), atomic_load_explicit(&(v), RELAXED) + (n), RELAXED) \
                                : (void)atomic_fetch_add_explicit(&(v), (n), RELAXED))
#define SUB(v, n) ADD(v, -(n))

/* v += d, the new value, by ADD's rule: a locked add drains the store buffer first, so after a
 * program's writes to a large block (4 MiB churn, a store per page) it cost the toy's large calls 7%
 * of the op's time with one thread */
static uint64_t add_fetch(_Atomic uint64_t *v, uint64_t d)
{
    if (ONE_THREAD()) {
        uint64_t n = atomic_load_explicit(v, RELAXED) + d;
        atomic_store_explicit(v, n, RELAXED);
        return n;
    }
    return atomic_fetch_add_explicit(v, d, RELAXED) + d;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

static void say(const char *msg)  /* to stderr, allocating nothing */
{
    ssize_t r = write(2, msg, strlen(msg));
    (void)r;  /* nothing to do if stderr is gone */
}

static __attribute__((noreturn)) void die(const char *msg)
{
    say(msg);
    abort();
}

static TOY_TLS char g_held;  /* g_lock is never taken twice by one thread: one flag will do */
static void lock(void)
{
    g_held = !ONE_THREAD();
    if (g_held)
        pthread_mutex_lock(&g_lock);
}
static void unlock(void)
{
    if (g_held)
        pthread_mutex_unlock(&g_lock);
}
static int stripe_lock(pthread_mutex_t *m)
{
    int held = !ONE_THREAD();
    if (held)
        pthread_mutex_lock(m);
    return held;
}
static void stripe_unlock(pthread_mutex_t *m, int held)
{
    if (held)
        pthread_mutex_unlock(m);
}

/* ---- mappings (no lock needed: counters are atomic) ---- */

static char *map_aligned(size_t len, size_t align)
{
    size_t extra = align > page ? align - page : 0;
    char *m = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ADD(st_mmap, 1);
    if (m == MAP_FAILED)
        return NULL;
    if (extra) {
        char *a = (char *)round_up((uintptr_t)m, align);
        if (a > m)
            munmap(m, (size_t)(a - m)), ADD(st_munmap, 1);
        if (a + len < m + len + extra)
            munmap(a + len, (size_t)(m + len + extra - (a + len))), ADD(st_munmap, 1);
        m = a;
    }
    ADD(st_mapped, len);
    return m;
}

/* munmap, or keep the mapping accounted for on a retired list and try again later.  free never
 * changes errno, and every syscall it may make is here or in retire_mapping: a failed one puts the
 * program's errno back, so that free's usual path saves none (see free_large). */
static void unmap_mapping(char *base, size_t len)
{
    int saved = errno;  /* a syscall that succeeds leaves errno alone */
    ADD(st_munmap, 1);
    if (munmap(base, len) == 0) {
        SUB(st_mapped, len);
        return;
    }
    ADD(st_madvise, 1);
    madvise(base, len, MADV_DONTNEED);  /* at least give the pages back */
    retired *r = (retired *)base;
    r->len = len;
    lock();
    r->next = retired_list, retired_list = r;
    unlock();
    errno = saved;
}

static void retry_retired(void)
{
    if (!__atomic_load_n(&retired_list, __ATOMIC_RELAXED))
        return;
    lock();
    retired *r = retired_list;
    if (r)
        retired_list = r->next;
    unlock();
    if (r)
        unmap_mapping((char *)r, r->len);
}

/* ncached moved by d (lock held): a plain load and store, no locked instruction. */
static int ncached_add(int d)
{
    int n = atomic_load_explicit(&ncached, RELAXED) + d;
    atomic_store_explicit(&ncached, n, RELAXED);
    return n;
}

/* The first len bytes of cache entry i (lock held), or all of it when len is 0 or at least its length:
 * the tail stays cached, as it was (no syscall: a page range of a mapping is a mapping). */
static char *take_head(int i, size_t len, size_t *got, int *zeroed)
{
    char *b = cache[i].base;
    *zeroed = cache[i].zeroed;
    if (len && cache[i].len > len) {
        cache[i].base += len, cache[i].len -= len;
        SUB(st_cached, len);
        *got = len;
        return b;
    }
    *got = cache[i].len;
    SUB(st_cached, *got);
    memmove(cache + i, cache + i + 1, sizeof cache[0] * (size_t)(ncached_add(-1) - i));
    return b;
}

/* len bytes at an `align`ed address from the cache (lock held): the head of the smallest entry that
 * starts aligned and holds len.  A span's len is whole granules and its align at least one, so its
 * head covers whole granules and the tail starts on the next: no granule is shared. */
static char *cache_take(size_t len, size_t align, size_t *got, int *zeroed)
{
    int best = -1;
    for (int i = 0; i < ncached; i++)
        if (cache[i].len >= len && ((uintptr_t)cache[i].base & (align - 1)) == 0 &&
            (best < 0 || cache[i].len < cache[best].len))
            best = i;
    return best < 0 ? NULL : take_head(best, len, got, zeroed);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);  /* the vDSO, a few ns: a decay of a second needs no better */
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static inline __attribute__((always_inline)) void large_live_add(int64_t d)
{
    uint64_t now = add_fetch(&large_live, (uint64_t)d);
    if (now == 0)  /* every large block freed: of the demand, the last block's is kept (a churn asks for
                    * it again; beyond the fixed cap, for the decay, by its cache entry's time); the rest
                    * goes back at once */
        atomic_store_explicit(&large_peak, (uint64_t)-d, RELAXED);
    else if (now > atomic_load_explicit(&large_peak, RELAXED))
        atomic_store_explicit(&large_peak, now, RELAXED);  /* a race loses a peak to a near one: a heuristic */
}

/* The bytes of freed mappings the cache may hold now.  The fixed cap (TOYALLOC_CACHE_CAP), and with a
 * decay (TOYALLOC_DECAY_MS) as much again as the program had live in large blocks at its peak and has
 * not now: the blocks it freed and, by its own history, may ask for again (when it has freed them all,
 * the last one only, which beyond the fixed cap goes once its entry has waited the decay).  So the large
 * mappings, live and cached, never exceed that peak plus the cap, and what is not asked for again within
 * the decay goes back (over_room). */
static size_t cache_room(void)
{
    size_t cap = atomic_load_explicit(&cfg_cache_cap, RELAXED);
    uint64_t decay = atomic_load_explicit(&cfg_decay_ms, RELAXED);
    if (!decay)
        return cap;
    uint64_t peak = atomic_load_explicit(&large_peak, RELAXED), live = atomic_load_explicit(&large_live, RELAXED);
    return cap + (size_t)(peak > live ? peak - live : 0);
}

/* The oldest cached mapping, out of the cache (lock held, ncached > 0): the caller unmaps it. */
static cached_map evict_oldest(void)
{
    cached_map m = cache[0];
    SUB(st_cached, m.len);
    memmove(cache, cache + 1, sizeof cache[0] * (size_t)ncached_add(-1));
    return m;
}

/* Whether the cache must give up its oldest entry to take `len` more bytes (lock held): a new entry
 * and no slot, over the room, or, beyond the fixed cap, an entry that has waited past the decay. */
static int over_room(size_t len, size_t room, uint64_t now)
{
    uint64_t decay = atomic_load_explicit(&cfg_decay_ms, RELAXED);
    size_t fixed = atomic_load_explicit(&cfg_cache_cap, RELAXED);
    return ncached > 0 && ((len && ncached == CACHE_SLOTS) || st_cached + len > room ||
                           (decay && st_cached > fixed && cache[0].freed_ms + decay <= now));
}

/* The cache back within its room (after new memory was mapped for a large block, or on a large call
 * while it holds more than the fixed cap), so the large mappings, live and cached, stay within the
 * peak plus the cap and what waited past the decay goes back (oldest first). */
static void cache_trim(void)
{
    cached_map evicted[CACHE_SLOTS];
    int n = 0;
    size_t room = cache_room();
    uint64_t now = now_ms();
    lock();
    while (over_room(0, room, now))
        evicted[n++] = evict_oldest();
    unlock();
    for (int i = 0; i < n; i++)
        unmap_mapping(evicted[i].base, evicted[i].len);
}

/* On a large block's call: the cache trimmed if it may hold what waited past the decay (a hint read
 * without the lock: no lock on the usual call). */
static inline __attribute__((always_inline)) void cache_decay(void)
{
    if (atomic_load_explicit(&ncached, RELAXED) && atomic_load_explicit(&cfg_decay_ms, RELAXED) &&
        atomic_load_explicit(&st_cached, RELAXED) > atomic_load_explicit(&cfg_cache_cap, RELAXED))
        cache_trim();
}

/* A large block's mapping from the cache (lock held), as little new memory faulted in as can be: the
 * smallest cached mapping that holds len, split so that its tail stays cached (no syscall: a page
 * range of a mapping is a mapping); else the largest that holds at least half of len, whole, for
 * the caller to grow with mremap (its pages stay, only the new tail faults in).  *got < len says
 * it must be grown.  NULL: nothing cached is worth it. */
static char *cache_take_large(size_t len, size_t *got, int *zeroed)
{
    char *b = cache_take(len, page, got, zeroed);
    if (b)
        return b;
    int part = -1;  /* a joined range may be two mappings to the kernel, which mremap refuses */
    for (int i = 0; i < ncached; i++)
        if (cache[i].len >= len / 2 && !cache[i].joined && (part < 0 || cache[i].len > cache[part].len))
            part = i;
    return part < 0 ? NULL : take_head(part, 0, got, zeroed);
}

/* Publish a purged mapping, evicting the oldest to stay within the room (lock
 * held), and, beyond the fixed cap, what has waited past the decay; the
 * evicted, to be unmapped outside the lock, go to `evicted`, and so does this
 * one when the threads' stashes leave no room for it. */
static int cache_put(char *base, size_t len, int zeroed, size_t cap, cached_map *evicted)
{
    int nevicted = 0;
    uint64_t now = now_ms();
    while (over_room(len, cap, now))
        evicted[nevicted++] = evict_oldest();
    if (st_cached + len > cap) {
        evicted[nevicted++] = (cached_map){base, len, zeroed, 0, 0};
        return nevicted;
    }
    cached_map m = {base, len, zeroed, now, 0};
    for (int i = 0; i < ncached;) {  /* cached neighbours join it: a block split from them comes back whole */
        cached_map *c = &cache[i];
        if (c->base + c->len != m.base && m.base + m.len != c->base) {
            i++;
            continue;
        }
        m.base = c->base < m.base ? c->base : m.base;
        m.len += c->len, m.zeroed &= c->zeroed, m.joined = 1;
        SUB(st_cached, c->len);
        memmove(cache + i, cache + i + 1, sizeof cache[0] * (size_t)(ncached_add(-1) - i));
    }
    cache[ncached_add(1) - 1] = m;
    ADD(st_cached, m.len);
    return nevicted;
}

/* A mapping no block uses any more: purge it by the policy before any other
 * thread can take it, then publish it to the cache, or unmap it.  A released span (`span`) is
 * purged under keep too (MADV_DONTNEED): it is memory of a class the program no longer fills, where
 * a freed large block is likely asked for again at once (a churn).  Kept resident, released spans
 * waiting in the cache were 2.3 MiB of larson's 5.6 MiB RSS at a sample (toy_get_stats); purged, the
 * peer programs' peak RSS went from 0.92x (glibc-thread) to 0.99x (alloc-test x2) what it was, larson's
 * the same (its spans are taken back), for alloc-test on two threads 1.024x [1.007, 1.083] the time
 * and the others level (10 pairs; README). */
static void retire_mapping(char *base, size_t len, int span)
{
    int policy = atomic_load_explicit(&cfg_policy, RELAXED);
    if (span && policy == TOY_KEEP)
        policy = TOY_DONTNEED;
    size_t cap = cache_room();
    retry_retired();
    if (policy == TOY_UNMAP || len > cap) {
        unmap_mapping(base, len);
        if (ncached)
            cache_trim();  /* the room may have shrunk (no demand left past the decay): what is cached follows */
        return;
    }
    int zeroed = 0;
    if (policy == TOY_DONTNEED || policy == TOY_FREE) {
        int saved = errno;  /* see unmap_mapping */
        ADD(st_madvise, 1);
        if (policy == TOY_DONTNEED)
            zeroed = madvise(base, len, MADV_DONTNEED) == 0;
        else
            madvise(base, len, MADV_FREE);  /* pages may or may not read back as zero */
        errno = saved;
    }
    cached_map evicted[CACHE_SLOTS + 1];
    lock();
    int nevicted = cache_put(base, len, zeroed, cap, evicted);
    unlock();
    for (int i = 0; i < nevicted; i++)
        unmap_mapping(evicted[i].base, evicted[i].len);
}

/* ---- the granule map: address -> span and class, an entry for each 64 KiB of the 47-bit address space ----
 * Flat, one array of 2^31 entries, where the kernel grants its 16 GiB of address (MAP_NORESERVE:
 * only the pages written hold memory, a page of entries for each 32 MiB of address that has spans,
 * and a page read but never written maps the zero page).  free then finds a span in one load from
 * the pointer, where two levels take two in a row (against them, paired median time, 20 pairs in
 * turns: alloc-test 0.94x, glibc-thread 0.958x, the other peer programs level; geomean 0.963).
 * Where the kernel refuses (vm.overcommit_memory=2, or an address-space limit), two levels: a static
 * top of 2^15 leaves, each leaf 2^16 entries (512 KiB) mapped when a span first lands in its 4 GiB.
 * What the flat map costs: mlockall(MCL_CURRENT), where privileged, faults in all of it (README). */

static void gmap_init(void)  /* at init, before any span */
{
    size_t len = sizeof(gentry) << (TOP_BITS + LEAF_BITS);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ADD(st_mmap, 1);  /* address, not memory held: not in st_mapped */
    if (m == MAP_FAILED)
        return;
    madvise(m, len, MADV_DONTDUMP);  /* a core dump leaves it out: 16 GiB of the toy's own books */
    ADD(st_madvise, 1);
    atomic_store_explicit(&gflat, (gentry *)m, RELAXED);
}

/* p's entry in the granule map (0: in no span) */
static inline __attribute__((always_inline)) uintptr_t entry_of(const void *p)
{
    uintptr_t g = (uintptr_t)p >> GRANULE_SHIFT;
    if (UNLIKELY(g >> (TOP_BITS + LEAF_BITS)))
        return 0;
    gentry *flat = atomic_load_explicit(&gflat, RELAXED);
    if (LIKELY(flat != NULL))
        return atomic_load_explicit(&flat[g], memory_order_acquire);
    gentry *leaf = atomic_load_explicit(&gmap[g >> LEAF_BITS], memory_order_acquire);
    return leaf ? atomic_load_explicit(&leaf[g & ((1u << LEAF_BITS) - 1)], memory_order_acquire) : 0;
}

/* an entry's span (NULL: none) and class */
static inline span *entry_span(uintptr_t e) { return (span *)(e & ~ENTRY_CLASS); }
static inline int entry_class(uintptr_t e) { return (int)(e & ENTRY_CLASS); }

static inline __attribute__((always_inline)) span *span_of(const void *p)
{
    return entry_span(entry_of(p));
}

static int gmap_set(char *base, size_t len, span *sp)  /* lock held; sp's class set */
{
    uintptr_t s = sp ? (uintptr_t)sp | sp->cls : 0;
    gentry *flat = atomic_load_explicit(&gflat, RELAXED);
    for (uintptr_t g = (uintptr_t)base >> GRANULE_SHIFT; g < ((uintptr_t)base + len) >> GRANULE_SHIFT; g++) {
        if (flat) {
            atomic_store_explicit(&flat[g], s, memory_order_release);
            continue;
        }
        gentry *leaf = atomic_load_explicit(&gmap[g >> LEAF_BITS], RELAXED);
        if (!leaf) {
            if (!s)
                continue;
            leaf = (gentry *)map_aligned(sizeof(gentry) << LEAF_BITS, page);
            if (!leaf)
                return -1;
            atomic_store_explicit(&gmap[g >> LEAF_BITS], leaf, memory_order_release);
        }
        atomic_store_explicit(&leaf[g & ((1u << LEAF_BITS) - 1)], s, memory_order_release);
    }
    return 0;
}

/* ---- the large-block table: open addressing on the base address, in
 * stripes with a lock each, so threads freeing different blocks do not wait ---- */

/* A mapping's page number scrambled by Fibonacci hashing: its high bits pick the table's stripe, its
 * middle bits the slot, and the block's colour (colour_of) */
static uint64_t page_hash(uintptr_t p)
{
    return (p >> 12) * 0x9E3779B97F4A7C15ull;
}

/* The start of the mapping that would hold a large block at p: the page p is in (a colour is less
 * than a page).  The table's key and stripe. */
static uintptr_t mapping_of(uintptr_t p)
{
    return p & ~(uintptr_t)(page - 1);
}

/* the stripe of the mapping that holds (or would hold) a large block at p, or of a mapping's base */
static ltable *ltab_of(uintptr_t p)
{
    return &ltabs[page_hash(mapping_of(p)) >> (64 - LSTRIPE_BITS)];
}

static size_t ltab_slot(uintptr_t key, size_t cap)
{
    return (size_t)(page_hash(key) >> 20) & (cap - 1);
}

static int ltab_put(ltable *t, uintptr_t key, size_t len, size_t colour, int over_aligned)  /* t locked */
{
    large *first = ltab_first[t - ltabs];
    if (!t->cap)
        t->tab = first, t->cap = LTAB_FIRST;
    if ((t->n + 1) * 2 > t->cap) {
        size_t ncap = t->cap * 2;
        large *n = (large *)map_aligned(round_up(ncap * sizeof(large), page), page);
        if (!n)
            return -1;
        for (size_t i = 0; i < t->cap; i++)
            if (t->tab[i].base) {
                size_t j = ltab_slot(t->tab[i].base, ncap);
                while (n[j].base)
                    j = (j + 1) & (ncap - 1);
                n[j] = t->tab[i];
            }
        if (t->tab != first)
            unmap_mapping((char *)t->tab, round_up(t->cap * sizeof(large), page));
        t->tab = n, t->cap = ncap;
    }
    size_t j = ltab_slot(key, t->cap);
    while (t->tab[j].base)
        j = (j + 1) & (t->cap - 1);
    t->tab[j] = (large){key, len, (uint32_t)colour, (uint8_t)over_aligned, 0};
    t->n++;
    return 0;
}

/* p's entry: the entry of p's mapping, if the block starts at p (a stashed mapping's at its base) */
static inline __attribute__((always_inline)) large *ltab_find(ltable *t, uintptr_t p)  /* t locked */
{
    if (!t->cap)
        return NULL;
    uintptr_t key = mapping_of(p);
    for (size_t j = ltab_slot(key, t->cap); t->tab[j].base; j = (j + 1) & (t->cap - 1))
        if (t->tab[j].base == key)
            return key + t->tab[j].colour == p ? &t->tab[j] : NULL;
    return NULL;
}

static void ltab_remove(ltable *t, large *e)  /* t locked; backward-shift deletion keeps probes intact */
{
    size_t i = (size_t)(e - t->tab), j = i, mask = t->cap - 1;
    for (;;) {
        j = (j + 1) & mask;
        if (!t->tab[j].base)
            break;
        size_t k = ltab_slot(t->tab[j].base, t->cap);
        if ((j > i && (k <= i || k > j)) || (j < i && (k <= i && k > j))) {
            t->tab[i] = t->tab[j];
            i = j;
        }
    }
    t->tab[i].base = 0;
    t->n--;
}

/* Take p's entry out of the table when it is live (stashed = 0) or stashed
 * (1): its length, or 0 when p has no such entry. */
static size_t ltab_take(uintptr_t p, int stashed)
{
    ltable *t = ltab_of(p);
    int held = stripe_lock(&t->lock);
    large *e = ltab_find(t, p);
    size_t len = e && e->stashed == stashed ? e->len : 0;
    if (len)
        ltab_remove(t, e);
    stripe_unlock(&t->lock, held);
    return len;
}

static size_t stash_max(const heap *h);

/* free's look-up: the length of p's mapping, or 0 when p is no live large
 * block.  A block that fits h's stash keeps its entry, marked stashed
 * (*stashed = 1) and found at its mapping's base: its next malloc from the
 * stash revives it instead of adding it again.  The stash's room is asked only
 * of a block found. */
static size_t ltab_free(uintptr_t p, const heap *h, int *stashed)
{
    ltable *t = ltab_of(p);
    int held = stripe_lock(&t->lock);
    large *e = ltab_find(t, p);
    size_t len = e && !e->stashed ? e->len : 0;
    *stashed = len && len <= stash_max(h);
    if (*stashed)
        e->stashed = 1, e->colour = 0;
    else if (len)
        ltab_remove(t, e);
    stripe_unlock(&t->lock, held);
    return len;
}

static void ltab_revive(uintptr_t base, size_t colour)  /* a stashed mapping holds a live block again */
{
    ltable *t = ltab_of(base);
    int held = stripe_lock(&t->lock);
    large *e = ltab_find(t, base);
    if (!e || !e->stashed)
        die("toyalloc: a stashed mapping lost its entry\n");
    e->stashed = 0, e->over_aligned = 0, e->colour = (uint32_t)colour;
    stripe_unlock(&t->lock, held);
}

static int ltab_add(uintptr_t base, size_t len, size_t colour, int over_aligned)
{
    ltable *t = ltab_of(base);
    int held = stripe_lock(&t->lock);
    int r = ltab_put(t, base, len, colour, over_aligned);
    stripe_unlock(&t->lock, held);
    return r;
}

/* ---- set-up, threads, fork ---- */

static void flush(int c, heap *h, unsigned n);
static void settle(heap *h);
static int defers(const heap *h);
static int64_t heap_live(const heap *h);
static unsigned cached_slots(const heap *h, int c);
static struct span *disown(struct span *s);
static void release_spans(struct span **spans, unsigned n);
static void stash_drop(stashed_map m);

static void heap_exit(void *arg)
{
    heap *h = arg;
    span *released[NCLASSES];
    unsigned nreleased = 0;
    settle(h);
    for (int c = 0; c < NCLASSES; c++) {
        unsigned n = cached_slots(h, c);
        if (n)
            flush(c, h, n);
    }
    lock();
    for (int c = 0; c < NCLASSES; c++)
        if (h->own[c]) {
            span *r = disown(h->own[c]);
            if (r)
                released[nreleased++] = r;
            h->own[c] = NULL;
        }
    if (h->prev)
        h->prev->next = h->next;
    else
        heaps = h->next;
    if (h->next)
        h->next->prev = h->prev;
    ADD(live_elsewhere, heap_live(h));  /* its cache is empty: its live and held */
    atomic_store_explicit(&h->live, 0, RELAXED);
    atomic_store_explicit(&h->held, 0, RELAXED);
    memset(h->room, 0, sizeof h->room);  /* no room: free's fast path, which reads no state, stays off */
    unlock();
    release_spans(released, nreleased);
    while (h->nstash)
        stash_drop(h->stash[--h->nstash]);
    h->state = HEAP_GONE;  /* later calls on this thread go to the shared path */
}

static void before_fork(void)
{
    fork_locked = !__libc_single_threaded;
    if (!fork_locked)
        return;  /* glibc's fork takes no lock either: fork from a signal handler stays safe */
    if (_IO_list_lock)
        _IO_list_lock();
    for (int i = 0; i < 1 << LSTRIPE_BITS; i++)  /* stripes before g_lock: the order of a failed munmap */
        pthread_mutex_lock(&ltabs[i].lock);
    lock();
}

static void after_fork_parent(void)
{
    if (!fork_locked)
        return;
    unlock();
    for (int i = 0; i < 1 << LSTRIPE_BITS; i++)
        pthread_mutex_unlock(&ltabs[i].lock);
    if (_IO_list_unlock)
        _IO_list_unlock();
}

static void after_fork_child(void)
{
    /* The child's only thread is this one; glibc has already reset the list lock. */
    pthread_mutex_init(&g_lock, NULL);
    for (int i = 0; i < 1 << LSTRIPE_BITS; i++)
        pthread_mutex_init(&ltabs[i].lock, NULL);
}

/* alloc()'s rule is size and alignment (16) at most the threshold: below 16 nothing is small */
static void set_threshold(size_t t)
{
    cfg_threshold = t;
    fast_below = t < 16 ? 0 : (t < CLASS_SMALL_MAX ? t : CLASS_SMALL_MAX) + 1;
}

/* A TOYALLOC_* value the toy cannot take: one line on stderr and the default kept, as jemalloc does
 * for a bad MALLOC_CONF (an experiment run with a knob silently at its default measures the wrong
 * thing).  At init: say() only, nothing allocated. */
static void env_refused(const char *name, const char *value, const char *why, const char *more)
{
    const char *parts[] = {"toyalloc: ", name, "=", value, " ignored: ", why, more, "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++)
        say(parts[i]);
}

/* A number of bytes (or ms) from the environment, at most max; def if unset or refused */
static size_t env_size(const char *name, size_t def, size_t max)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end, digits[24], *d = digits + sizeof digits;
    int saved = errno;  /* a library call never sets errno to 0 (C11 7.5): the program's comes back */
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    int overflow = errno;
    errno = saved;
    if (*end || *s < '0' || *s > '9' || overflow) {  /* digits only: strtoull would take " -5" */
        env_refused(name, s, "not a whole number", "");
        return def;
    }
    if (v > max) {
        *--d = 0;
        do
            *--d = (char)('0' + max % 10);
        while (max /= 10);
        env_refused(name, s, "above the largest, ", d);
        return def;
    }
    return (size_t)v;
}

const char *const toy_policy_names[TOY_NPOLICIES] = {
#define TOY_NAME(e, v, name, doc) name,
    TOY_POLICY_LIST(TOY_NAME)
#undef TOY_NAME
};

#define TOY_NAME_TEXT(e, v, name, doc) " " name
static const char toy_policy_text[] = TOY_POLICY_LIST(TOY_NAME_TEXT);  /* " keep dontneed ...", for a refusal */
#undef TOY_NAME_TEXT

int toy_policy_by_name(const char *name)
{
    for (int i = 0; name && i < TOY_NPOLICIES; i++)
        if (!strcmp(name, toy_policy_names[i]))
            return i;
    return -1;
}

static void init_classes(void)
{
    for (size_t i = 0; i <= CLASS_SMALL_MAX / 16; i++)
        class_small[i] = (uint8_t)class_computed(i << 4);  /* class boundaries up to 1 KiB are multiples of 16 */
    for (int c = 0; c < NCLASSES; c++) {
        size_class *k = &classes[c];
        if (c < 8) {
            k->size = (size_t)16 * (size_t)(c + 1);
        } else {
            size_t p = (size_t)128 << ((c - 8) / 4);
            k->size = p * (size_t)(5 + (c - 8) % 4) / 4;
        }
        k->shift = (uint32_t)__builtin_ctzll(k->size);
        uint64_t odd = k->size >> k->shift, inv = odd;  /* odd * odd = 1 mod 8: 3 bits right */
        for (int bits = 3; bits < 64; bits *= 2)
            inv *= 2 - odd * inv;  /* Newton's step doubles the bits of odd's inverse mod 2^64 */
        k->inv = inv;
        k->span_len = k->size <= 8192 ? GRANULE : round_up(8 * k->size + k->size / 64, GRANULE);
        size_t low = k->size & -k->size;
        k->span_align = low < GRANULE ? GRANULE : low > TOY_MAX_THRESHOLD ? TOY_MAX_THRESHOLD : low;
        size_t tc = TCACHE_BYTES / k->size;
        k->tcache_max = tc < 1 ? 1 : tc > TCACHE_MAX ? TCACHE_MAX : (uint32_t)tc;
        k->batch = k->tcache_max / 2 ? k->tcache_max / 2 : 1;
    }
}

static void init_slow(void)
{
    lock();
    if (!initialised) {
        page = (size_t)getpagesize();  /* not sysconf: see cfg_defer_bytes */
        gmap_init();
        init_classes();
        /* Odd, so a key is never an aligned pointer; random, so a program cannot write one by chance.
         * Without entropy yet (GRND_NONBLOCK), an address and the clock will do. */
        if (getrandom(&key_secret, sizeof key_secret, GRND_NONBLOCK) != (ssize_t)sizeof key_secret)
            key_secret = (uintptr_t)&key_secret * 0x9E3779B97F4A7C15u ^ now_ms();
        key_secret |= 1;
        /* Environment overrides; a value out of range is refused (env_refused) */
        set_threshold(env_size("TOYALLOC_THRESHOLD", cfg_threshold, TOY_MAX_THRESHOLD));
        cfg_cache_cap = env_size("TOYALLOC_CACHE_CAP", cfg_cache_cap, SIZE_MAX);
        cfg_decay_ms = env_size("TOYALLOC_DECAY_MS", cfg_decay_ms, SIZE_MAX);
        cfg_defer_bytes = env_size("TOYALLOC_DEFER_BYTES", cfg_defer_bytes, DEFER_L2 - 1);
        const char *policy = getenv("TOYALLOC_POLICY");
        int pol = toy_policy_by_name(policy);
        if (pol >= 0)
            cfg_policy = pol;
        else if (policy && *policy)
            env_refused("TOYALLOC_POLICY", policy, "not a policy; one of", toy_policy_text);
        for (int i = 0; i < 1 << LSTRIPE_BITS; i++)
            pthread_mutex_init(&ltabs[i].lock, NULL);
        pthread_key_create(&heap_key, heap_exit);
        atomic_store_explicit(&initialised, 1, memory_order_release);
    }
    unlock();
    /* Outside the lock: pthread_atfork may itself allocate. */
    if (!atomic_exchange(&atfork_registered, 1))
        pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

static inline void ensure_init(void)
{
    if (UNLIKELY(!atomic_load_explicit(&initialised, memory_order_acquire)))
        init_slow();
}

/* This thread's heap, or NULL while it is being set up or after the thread's exit. */
static inline heap *my_heap(void)
{
    heap *h = &th;
    if (LIKELY(h->state == HEAP_READY))
        return h;
    if (h->state != HEAP_NEW)
        return NULL;
    h->state = HEAP_SETUP;  /* pthread_setspecific may allocate: those calls skip the cache */
    int saved = errno;  /* a free may get here: free never changes errno */
    int failed = pthread_setspecific(heap_key, h) != 0;
    errno = saved;
    if (failed) {
        h->state = HEAP_GONE;
        return NULL;
    }
    for (int c = 0; c < NCLASSES; c++)
        h->room[c] = (uint16_t)classes[c].tcache_max;
    pending_none(h);
    h->defer = defers(h);  /* TOYALLOC_DEFER_BYTES=0: from the first free */
    lock();
    h->prev = NULL, h->next = heaps;
    if (heaps)
        heaps->prev = h;
    heaps = h;
    unlock();
    h->state = HEAP_READY;
    return h;
}

static inline void live_add(heap *h, int64_t n)
{
    if (LIKELY(h != NULL))
        atomic_store_explicit(&h->live, atomic_load_explicit(&h->live, RELAXED) + n, RELAXED);
    else
        ADD(live_elsewhere, n);
}

static inline void held_add(heap *h, int64_t n)  /* h's own thread only: a plain add, read by others */
{
    atomic_store_explicit(&h->held, atomic_load_explicit(&h->held, RELAXED) + n, RELAXED);
}

/* The slots h's cache of class c holds (its room read as it is, from any thread: see heap.room). */
static unsigned cached_slots(const heap *h, int c)
{
    return classes[c].tcache_max - __atomic_load_n(&h->room[c], __ATOMIC_RELAXED);
}

/* What h's thread adds to the bytes of blocks live: its large blocks, and the slots it holds less
 * those in its cache.  A block one thread handed out and another freed counts in the first's held and
 * against the second (its cache, or its held once flushed), so the sum over the heaps is exact while
 * no thread is in a call; read during calls, it is a moment's view. */
static int64_t heap_live(const heap *h)
{
    int64_t n = atomic_load_explicit(&h->live, RELAXED) + atomic_load_explicit(&h->held, RELAXED);
    for (int c = 0; c < NCLASSES; c++)
        n -= (int64_t)cached_slots(h, c) * (int64_t)classes[c].size;
    int pc = h->pending_class;
    if (pc < NCLASSES)
        n -= (int64_t)classes[pc].size;
    return n;
}

/* ---- small blocks ---- */

static int class_computed(size_t n)
{
    if (n <= 128)
        return n ? (int)((n + 15) >> 4) - 1 : 0;
    int lg = 63 - __builtin_clzll(n - 1);  /* 2^lg < n <= 2^(lg+1) */
    return 8 + 4 * (lg - 7) + (int)(((n - 1) >> (lg - 2)) & 3);
}

/* Up to 1 KiB, most requests, the class comes from class_small: computed, the branch at 128 bytes
 * goes both ways in a mix of sizes, and its mispredictions cost malloc more than the table's load
 * (paired median time, 24 pairs in turns: glibc-thread 0.92x, larson 0.89x, alloc-test x2 0.94x). */
static inline int class_of(size_t n)
{
    return n <= CLASS_SMALL_MAX ? class_small[(n + 15) >> 4] : class_computed(n);
}

/* p's slot number in s if p starts a slot of s, else a number above any slot's: one multiply and a
 * rotate.  A slot size is odd * 2^shift, and inv is odd's inverse mod 2^64.  An offset that is
 * i slots multiplies to i * 2^shift and rotates to i.  One with a low bit below 2^shift keeps it (an
 * odd factor keeps trailing zeros), rotated into the top bits; one that 2^shift divides but odd does
 * not gives at least 2^(64 - shift) / odd, the divisibility test by a modular inverse.  An offset
 * below base wraps, and fails the same way. */
static inline uint64_t slot_number(const span *s, const void *p)
{
    uint64_t x = ((uintptr_t)p - (uintptr_t)s->base) * s->inv;
    return x >> s->shift | x << (-s->shift & 63);  /* a rotate (the compiler's ror) */
}

/* What a free slot holds in its second word, and a block handed out never does: malloc clears
 * it, and a program cannot know it without reading freed memory.  Not the address itself (a
 * list head that points to itself holds that), and not shared between slots: a copy of one
 * slot's key, left behind in a mapping reused for other blocks, is nobody else's key. */
static inline uintptr_t slot_key(const void *p) { return (uintptr_t)p ^ key_secret; }

/* Whether p starts a slot of s that has been handed out once at least (below the bump; read relaxed,
 * and the block reached this thread after it was handed out): a slot at or above it never was. */
static inline int handed_out(const span *s, const void *p)
{
    return slot_number(s, p) < atomic_load_explicit(&s->bump, RELAXED);
}

/* Whether p holds a free slot's key (key: slot_key(p), which the caller may have at hand). */
static inline int holds_key(const void *p, uintptr_t key) { return ((const cached_slot *)p)->key == key; }

/* Whether p is a block of s in use now: handed out, and without a free slot's key (key: slot_key(p)).
 * So a free of a block already free, wherever it waits (a thread's cache, its span, a remote list),
 * or of a pointer the toy never returned, is caught. */
static inline int slot_in_use(const span *s, const void *p, uintptr_t key)
{
    return handed_out(s, p) && !holds_key(p, key);
}

/* p must be a block of s handed out, and not the one this thread left pending (see toy_free); aborts
 * with the reason otherwise.  Its key is not read. */
static void check_handed_out(const span *s, const void *p)
{
    if (UNLIKELY(p == th.pending))
        die("toyalloc: double free or use after free\n");
    if (UNLIKELY(!handed_out(s, p)))
        die("toyalloc: free/realloc of a pointer it never returned\n");
}

/* p must be a block of s in use; aborts with the reason otherwise. */
static void check_in_use(const span *s, const void *p)
{
    check_handed_out(s, p);
    if (UNLIKELY(holds_key(p, slot_key(p))))
        die("toyalloc: double free or use after free\n");
}

static span **list_of(size_class *k, uint32_t listed) { return listed == LISTED_FREED ? &k->partial : &k->fresh; }

static void list_remove(size_class *k, span *s)  /* lock held */
{
    span **head = list_of(k, s->listed);
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->listed = 0;
    atomic_store_explicit(&k->has_freed, k->partial != NULL, RELAXED);
}

/* An unowned span onto the list its slots call for, to the front, or off the lists when it has none
 * to give (lock held). */
static void list_update(size_class *k, span *s)
{
    uint32_t want = s->free ? LISTED_FREED : atomic_load_explicit(&s->bump, RELAXED) < s->nslots ? LISTED_FRESH : 0;
    if (s->listed == want)
        return;
    if (s->listed)
        list_remove(k, s);
    if (!want)
        return;
    span **head = list_of(k, want);
    s->prev = NULL, s->next = *head, s->listed = want;
    if (*head)
        (*head)->prev = s;
    *head = s;
    atomic_store_explicit(&k->has_freed, k->partial != NULL, RELAXED);
    if (want == LISTED_FREED)
        atomic_store_explicit(&k->freed_listed, atomic_load_explicit(&k->freed_listed, RELAXED) + 1, RELAXED);
}

/* ---- span books: packed together, apart from the slots (as mimalloc keeps its pages'
 * descriptors at its segment's start).  A free at random over many spans reads its span's books:
 * packed, they stay in the cache and a few TLB entries, where books at each span's end cost a
 * page of their own each (alloc-test: 0.91x the CPU).  The first chunk is static, so a program
 * with few spans maps nothing more; released books are reused, never unmapped. ---- */

static span books_first[BOOKS_CHUNK / sizeof(span)];
static span *books_next = books_first, *books_end = books_first + BOOKS_CHUNK / sizeof(span);
static span *books_free;  /* released books, linked through next */

static span *books_new(void)  /* lock held */
{
    span *b = books_free;
    if (b) {
        books_free = b->next;
        return b;
    }
    if (books_next == books_end) {
        span *m = (span *)map_aligned(BOOKS_CHUNK, page);
        if (!m)
            return NULL;
        books_next = m, books_end = m + BOOKS_CHUNK / sizeof(span);
    }
    return books_next++;
}

static void books_release(span *s)  /* lock held */
{
    s->next = books_free;
    books_free = s;
}

/* ---- span memory: carved in order from reservations of SPAN_ARENA bytes (MAP_NORESERVE: only the
 * pages written hold memory), where each span had a mapping of its own.  One mmap for thousands of
 * spans, in place of an mmap and one or two munmaps (the alignment's trim) for each, every one of
 * them a change to the process's mappings while its other threads run (alloc-test on two threads:
 * 17 mmap and 37 munmap calls a run, not 167 and 200; against a mapping each, 16 pairs in turns,
 * its time 0.950x, rptest 0.87x, glibc-thread 0.962x, the rest level, the same peak RSS).  A
 * released span's mapping is purged, cached or unmapped as before; its addresses are not carved
 * again.  A reservation used up, the next.  One the kernel refuses (an address-space limit, `ulimit
 * -v`, or strict overcommit) halves the size asked for from then on, down to SPAN_ARENA_MIN, below
 * which each span gets a mapping of its own: at most 10 refused calls in a process, where asking for
 * 1 GiB again at every span made each one two syscalls. ---- */
#define SPAN_ARENA ((size_t)1 << 30)
#define SPAN_ARENA_MIN ((size_t)2 << 20)
static char *arena_next, *arena_end;
static size_t arena_len = SPAN_ARENA;  /* the next reservation's size */

static char *span_memory(size_t len, size_t align)  /* lock held */
{
    char *p = (char *)round_up((uintptr_t)arena_next, align);
    if (!arena_next || p + len > arena_end) {
        char *m = MAP_FAILED;
        while (m == MAP_FAILED && arena_len >= SPAN_ARENA_MIN && arena_len >= len + align) {
            m = mmap(NULL, arena_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            ADD(st_mmap, 1);
            if (m == MAP_FAILED)
                arena_len /= 2;
        }
        if (m == MAP_FAILED)
            return map_aligned(len, align);  /* no reservation that holds it: a mapping of its own */
        arena_next = m, arena_end = m + arena_len;
        p = (char *)round_up((uintptr_t)arena_next, align);
    }
    arena_next = p + len;
    ADD(st_mapped, len);
    return p;
}

static span *span_new(int c)  /* lock held */
{
    size_class *k = &classes[c];
    size_t got = k->span_len;
    int zeroed;
    span *s = books_new();
    if (!s)
        return NULL;
    char *m = cache_take(k->span_len, k->span_align, &got, &zeroed);
    if (!m && !(m = span_memory(k->span_len, k->span_align))) {
        books_release(s);
        return NULL;
    }
    memset(s, 0, sizeof *s);
    s->base = m, s->len = got, s->slot = k->size, s->cls = (uint32_t)c, s->nslots = (uint32_t)(got / k->size);
    s->shift = k->shift, s->inv = k->inv;
    if (gmap_set(m, got, s) != 0) {
        gmap_set(m, got, NULL);
        unmap_mapping(m, got);
        books_release(s);
        return NULL;
    }
    list_update(k, s);
    k->nempty++;
    return s;
}

static int has_slot(const span *s) { return s->free || atomic_load_explicit(&s->bump, RELAXED) < s->nslots; }

/* One slot of s (its owner, or under the lock); s has one to give. */
static void *span_take(span *s)
{
    size_class *k = &classes[s->cls];
    void *p;
    if (s->free) {
        p = s->free;
        s->free = *(void **)p;
    } else {
        uint32_t b = atomic_load_explicit(&s->bump, RELAXED);
        atomic_store_explicit(&s->bump, b + 1, RELAXED);  /* one writer: a plain store, no locked add */
        p = s->base + (size_t)b * s->slot;
    }
    if (s->out++ == 0 && s->listed)
        k->nempty--;  /* the spare is in use again (owned spans are not counted) */
    if (s->listed)
        list_update(k, s);
    return p;
}

static inline heap *owner_of(span *s) { return atomic_load_explicit(&s->owner, RELAXED); }

/* The low bit of a span's remote list: set while the span is owned.  It is set and cleared
 * only under the lock, and taken with the list in one atomic step, so a push can never land on
 * a span that has no owner left to collect it. */
#define REMOTE_OWNED ((uintptr_t)1)
/* Above a user address's 47 bits the remote list's head also counts its slots (a span holds at most
 * 8,192: 16 B slots over a cached mapping of up to twice its 64 KiB, see cache_take), so the owner
 * takes the whole list without walking it: each slot's line, written by another core, is then read
 * once (when handed out), not twice. */
#define REMOTE_COUNT_SHIFT 48
#define REMOTE_PTR(v) ((v) & ((((uintptr_t)1 << REMOTE_COUNT_SHIFT) - 1) & ~REMOTE_OWNED))
#define REMOTE_COUNT(v) ((uint32_t)((v) >> REMOTE_COUNT_SHIFT))

/* A slot of s, freed by a thread that does not own s, onto s's remote list; 0 when s is not
 * owned (the caller gives it back under the lock).  After the push the slot is the owner's:
 * s is not touched again, for its owner may already have taken the slot. */
static int remote_push(span *s, void *p)
{
    uintptr_t old = atomic_load_explicit(&s->remote, RELAXED);
    do {
        if (!(old & REMOTE_OWNED))
            return 0;
        *(uintptr_t *)p = REMOTE_PTR(old);
    } while (!atomic_compare_exchange_weak_explicit(
        &s->remote, &old, (uintptr_t)p | REMOTE_OWNED | ((uintptr_t)(REMOTE_COUNT(old) + 1) << REMOTE_COUNT_SHIFT),
        memory_order_release, RELAXED));
    return 1;
}

/* The slots on s's remote list back on its own list (its owner, or under the lock), leaving
 * `flag` as the remote list's new head: REMOTE_OWNED to stay the owner, 0 to give s up. */
static void remote_collect(span *s, uintptr_t flag)
{
    uintptr_t head;
    if (ONE_THREAD()) {  /* no other thread to push: a plain load and store, no locked instruction */
        head = atomic_load_explicit(&s->remote, RELAXED);
        atomic_store_explicit(&s->remote, flag, RELAXED);
    } else {
        head = atomic_exchange_explicit(&s->remote, flag, memory_order_acquire);
    }
    void *list = (void *)REMOTE_PTR(head);
    if (!list)
        return;
    s->out -= REMOTE_COUNT(head);
    if (s->free) {  /* slots of its own too (rare: an owner collects when it has none): the list's tail to them */
        void *tail = list;
        while (*(void **)tail)
            tail = *(void **)tail;
        *(void **)tail = s->free;
    }
    s->free = list;
}

/* The owner's last word on its span when it has no freed slot left (lock held): give it up, unless
 * another thread's slots arrived meanwhile; then they are collected and it stays owned.  Given up
 * with fresh slots left, it is listed for them. */
static int give_up(span *s)
{
    uintptr_t owned = REMOTE_OWNED;
    if (ONE_THREAD() ? atomic_load_explicit(&s->remote, RELAXED) != REMOTE_OWNED
                     : !atomic_compare_exchange_strong_explicit(&s->remote, &owned, 0, memory_order_acquire,
                                                                RELAXED)) {
        remote_collect(s, REMOTE_OWNED);
        return 0;
    }
    atomic_store_explicit(&s->remote, 0, RELAXED);  /* (the compare-and-swap has already cleared it) */
    atomic_store_explicit(&s->owner, NULL, RELAXED);
    list_update(&classes[s->cls], s);  /* full: on no list until a slot comes back; else for its fresh slots */
    return 1;
}

/* Listed spans adopt looks through for one its thread owned last (-D to try others): 8 took
 * alloc-test on two threads to 0.92x its time, no program slower; 64 to 0.90x, with rptest 1.035x
 * and larson 1.05x (not clear of the noise, 20 pairs).  Since alloc-test's memset is a call, 32
 * against 8: alloc-test on two threads 0.979x [0.968, 0.987] (faster in 11 of 12) and 0.982x [0.961,
 * 0.999] (14 of 16), every other peer program level, the same peak RSS (128: 0.982x). */
#ifndef ADOPT_LOOK
#define ADOPT_LOOK 32
#endif

/* Of the first ADOPT_LOOK spans listed from s on, one h's thread owned last, or NULL (lock held). */
static span *own_listed(span *s, const heap *h)
{
    int looked = 0;
    for (span *t = s; t && looked < ADOPT_LOOK; t = t->next, looked++)
        if (t->last == h)
            return t;
    return NULL;
}

/* Listed span s, or a new one if s is NULL, owned by h's thread from now on (lock held). */
static span *own_span(int c, heap *h, span *s)
{
    size_class *k = &classes[c];
    if (!s && !(s = span_new(c)))
        return NULL;
    s->last = h;
    list_remove(k, s);
    if (s->out == 0)
        k->nempty--;
    atomic_store_explicit(&s->owner, h, RELAXED);
    atomic_store_explicit(&s->remote, REMOTE_OWNED, RELAXED);  /* published by the lock's release */
    return s;
}

/* A listed span, or a new one, for a thread to own and carve from (lock held).  First one this thread
 * owned last (of the first ADOPT_LOOK on each list), with freed slots, else with fresh ones: the slots
 * free there are its own blocks' neighbours, so it does not carve among another thread's live blocks,
 * whose lines and books that thread writes too (taking another's freed slots before its own fresh ones
 * made alloc-test on two threads 1.032x [1.023, 1.052] the time before this change, this order 1.003x,
 * 16 pairs); then any, with freed slots before fresh ones. */
static span *adopt(int c, heap *h)
{
    size_class *k = &classes[c];
    span *s = own_listed(k->partial, h);
    if (!s)
        s = own_listed(k->fresh, h);
    if (!s)
        s = k->partial ? k->partial : k->fresh;
    return own_span(c, h, s);
}

/* An unowned span with no slot out: kept as the class's one spare, or
 * returned for release (lock held). */
static span *settle_empty(span *s)
{
    size_class *k = &classes[s->cls];
    if (k->nempty == 0) {
        k->nempty = 1;
        return NULL;
    }
    list_remove(k, s);
    gmap_set(s->base, s->len, NULL);  /* no pointer resolves to it any more */
    return s;
}

/* Give up ownership (thread exit, lock held): collect what other threads freed into it, list it
 * if it has slots; maybe release it. */
static span *disown(span *s)
{
    remote_collect(s, 0);
    atomic_store_explicit(&s->owner, NULL, RELAXED);
    list_update(&classes[s->cls], s);
    return s->out == 0 ? settle_empty(s) : NULL;
}

/* A slot back to its span (lock held).  Returns the span when it must be
 * released: empty, and not the class's one spare. */
static span *span_give(span *s, void *p)
{
    *(void **)p = s->free;
    s->free = p;
    s->out--;
    if (owner_of(s))
        return NULL;  /* its owner carves from it again */
    list_update(&classes[s->cls], s);
    return s->out ? NULL : settle_empty(s);
}

/* A slot of s back from a thread that does not own s (lock held): onto s's remote list if s has
 * been adopted meanwhile, else to s itself.  Returns the span when it must be released. */
static span *span_return(span *s, void *p)
{
    return remote_push(s, p) ? NULL : span_give(s, p);
}

static void release_spans(span **spans, unsigned n)  /* no lock */
{
    if (!n)
        return;
    for (unsigned i = 0; i < n; i++)
        retire_mapping(spans[i]->base, spans[i]->len, 1);
    lock();
    for (unsigned i = 0; i < n; i++)
        books_release(spans[i]);
    unlock();
}

/* A free slot onto the front of this thread's cache of class c. */
static inline void cache_push(heap *h, int c, void *p, uintptr_t key)  /* key: slot_key(p) */
{
    cached_slot *slot = p;
    slot->next = h->head[c], slot->key = key;
    h->head[c] = slot;
    h->room[c]--;
}

/* The same, off the fast path: half of a full cache flushed first. */
static void cache_push_flushing(heap *h, int c, void *p)
{
    if (UNLIKELY(h->room[c] == 0))
        flush(c, h, (classes[c].tcache_max + 1) / 2);  /* may release a span: errno kept by retire_mapping */
    cache_push(h, c, p, slot_key(p));
}

/* Whether a span h's thread owned last may be listed with freed slots in class c: some span is, and
 * spans have been put there since the thread last looked and found none of its own (a hint read
 * without the lock). */
static inline int own_freed_maybe(const size_class *k, const heap *h, int c)
{
    return atomic_load_explicit(&k->has_freed, RELAXED) &&
           h->looked[c] != atomic_load_explicit(&k->freed_listed, RELAXED);
}

/* Slots for an empty thread cache: from the span this thread owns, without a lock; the lock only to
 * change spans.  Slots handed out before and freed come before fresh ones (never handed out, their
 * pages never written): the span's own freed slots, then those of a listed span the thread owned
 * last, whose neighbours are its own blocks; a fresh one only when no such span has any.  So a thread
 * writes little more of its spans than it had out at its peak (carving its own span's fresh slots
 * while its other spans held freed ones left alloc-test 0.3 MiB more written, 7%).  Another thread's
 * freed slots wait until the span runs out (adopt): taking them at once, among the other thread's
 * live blocks, cost alloc-test on two threads 1.05x its time (20 pairs).  Without a heap: one slot
 * from any listed span. */
static void *refill(int c, heap *h)
{
    size_class *k = &classes[c];
    void *first = NULL;
    if (!h) {
        lock();
        span *s = k->partial ? k->partial : k->fresh;
        if (s || (s = span_new(c)))
            first = span_take(s);
        unlock();
        return first;
    }
    span *s = h->own[c];
    if (s && !s->free && atomic_load_explicit(&s->remote, RELAXED) != REMOTE_OWNED)
        remote_collect(s, REMOTE_OWNED);
    int fresh = 1;  /* fresh slots may follow the freed ones */
    if (!s || !has_slot(s)) {
        lock();
        if (!s || give_up(s))
            s = h->own[c] = adopt(c, h);
        unlock();
    } else if (!s->free && own_freed_maybe(k, h, c)) {
        lock();
        span *t = own_listed(k->partial, h);  /* adopt's first choice */
        if (!t)
            h->looked[c] = atomic_load_explicit(&k->freed_listed, RELAXED);
        else if (give_up(s))  /* s, with no freed slot, goes on no list or the fresh one: t stays first */
            s = h->own[c] = own_span(c, h, t), fresh = 0;
        unlock();
    }
    if (s) {
        first = span_take(s);
        unsigned i = 1;
        for (; i < k->batch && (s->free || (fresh && has_slot(s) && !own_freed_maybe(k, h, c))); i++) {
            void *q = span_take(s);
            cache_push(h, c, q, slot_key(q));
        }
        held_add(h, (int64_t)(i * k->size));
    }
    return first;
}

/* n slots of this thread's cache of class c back: to its own spans directly, to spans other
 * threads own by their remote lists, and only the rest (spans nobody owns) under the lock. */
static void flush(int c, heap *h, unsigned n)
{
    void *rest[TCACHE_MAX];
    span *rest_span[TCACHE_MAX], *released[TCACHE_MAX];
    unsigned nrest = 0, nreleased = 0, i;
    for (i = 0; i < n && h->head[c]; i++) {
        cached_slot *p = h->head[c];
        h->head[c] = p->next;
        h->room[c]++;
        span *s = span_of(p);
        if (owner_of(s) == h)
            span_give(s, p);
        else if (!remote_push(s, p))
            rest[nrest] = p, rest_span[nrest++] = s;
    }
    held_add(h, -(int64_t)(i * classes[c].size));
    if (!nrest)
        return;
    lock();
    for (i = 0; i < nrest; i++) {
        span *r = span_return(rest_span[i], rest[i]);
        if (r)
            released[nreleased++] = r;
    }
    unlock();
    release_spans(released, nreleased);
}

/* malloc found the pending block in a list: it was free already when freed.  Called last (a tail call,
 * kept from the compiler's knowledge that it never returns): malloc's fast path saves nothing for it. */
static __attribute__((noipa, cold)) void *pending_handed_out(void)
{
    die("toyalloc: double free or use after free\n");
}

static inline void *small_alloc(int c)
{
    heap *h = my_heap();
    cached_slot *p;
    if (LIKELY(h && (p = h->head[c]) != NULL)) {
        h->head[c] = p->next;
        h->room[c]++;
    } else if ((p = refill(c, h)) == NULL) {
        return NULL;
    }
    if (UNLIKELY(h && p == h->pending))
        return pending_handed_out();
    p->key = 0;  /* in use: no free slot's key (see slot_key) */
    if (!h)
        ADD(live_elsewhere, (int64_t)classes[c].size);  /* with a heap, its held counts it */
    return p;
}

/* TOYALLOC_DEFER_BYTES, the L2's size asked of sysconf the first time (threads that race store the same). */
static size_t defer_bytes(void)
{
    size_t bound = atomic_load_explicit(&cfg_defer_bytes, RELAXED);
    if (bound == DEFER_L2) {
        long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        bound = l2 > 0 ? (size_t)l2 : (size_t)2 << 20;
        atomic_store_explicit(&cfg_defer_bytes, bound, RELAXED);
    }
    return bound;
}

/* Whether h's thread defers free's check: it holds more bytes of small blocks than TOYALLOC_DEFER_BYTES
 * (held: those it took from spans less those it gave back), so a block it frees at random is likely out
 * of the L2 (see toy_free). */
static int defers(const heap *h)
{
    int64_t held = atomic_load_explicit(&h->held, RELAXED);
    size_t bound = atomic_load_explicit(&cfg_defer_bytes, RELAXED);
    if (bound == 0)
        return 1;
    if (held <= 0 || (bound == DEFER_L2 && (size_t)held <= DEFER_ASK))
        return 0;
    return (size_t)held > defer_bytes();
}

/* The block h's thread freed last, if any: checked for a free slot's key (a double free), then into
 * its cache. */
static void settle(heap *h)
{
    cached_slot *q = h->pending;
    int c = h->pending_class;
    if (c == NCLASSES)
        return;
    pending_none(h);
    if (UNLIKELY(holds_key(q, slot_key(q))))
        die("toyalloc: double free or use after free\n");
    cache_push_flushing(h, c, q);
}

/* free of a slot of s without the fast path's assumptions: no heap, a full
 * cache, or a bad pointer to diagnose (out of line: toy_free's fast path
 * saves no registers for it). */
static __attribute__((noinline)) void small_free(void *p, span *s)  /* p first: where toy_free has it */
{
    heap *h = my_heap();
    if (LIKELY(h != NULL)) {
        int c = (int)s->cls;
        h->defer = defers(h);
        if (h->defer) {
            check_handed_out(s, p);  /* its key is read at the thread's next free */
            settle(h);
            h->pending = p, h->pending_class = c;
            return;
        }
        check_in_use(s, p);
        settle(h);
        cache_push_flushing(h, c, p);
        return;
    }
    check_in_use(s, p);
    ADD(live_elsewhere, -(int64_t)s->slot);
    ((cached_slot *)p)->key = slot_key(p);  /* free from here on, wherever it goes */
    if (remote_push(s, p))
        return;
    lock();
    span *r = span_return(s, p);
    unlock();
    if (r)
        release_spans(&r, 1);
}

/* ---- large blocks ---- */

/* A stashed mapping leaves the stash for the policy's purge and the cache. */
static void stash_drop(stashed_map m)
{
    if (!ltab_take((uintptr_t)m.base, 1))
        die("toyalloc: a stashed mapping lost its entry\n");
    SUB(st_cached, m.len);
    retire_mapping(m.base, m.len, 0);
}

/* A stashed mapping that fits (same rule as the cache), live again, or NULL.
 * A stash outlives no change of policy: under another policy it is retired. */
static char *stash_take(heap *h, size_t len, size_t *got)
{
    int keep = atomic_load_explicit(&cfg_policy, RELAXED) == TOY_KEEP;
    for (int i = h->nstash - 1; i >= 0; i--) {
        stashed_map m = h->stash[i];
        if (keep && !(m.len >= len && m.len - len <= m.len / 2))
            continue;
        if (--h->nstash > i)  /* the newest, the usual one, leaves no gap */
            memmove(h->stash + i, h->stash + i + 1, sizeof m * (size_t)(h->nstash - i));
        if (!keep) {
            stash_drop(m);
            continue;
        }
        SUB(st_cached, m.len);
        *got = m.len;
        return m.base;  /* its entry revived by the caller, with the block's colour */
    }
    return NULL;
}

/* The largest mapping free may keep in this thread's stash: under keep, what
 * the cache's cap leaves room for, and the page a block's colour may add (so
 * a block of the cap is kept). */
static size_t stash_max(const heap *h)
{
    size_t cap = atomic_load_explicit(&cfg_cache_cap, RELAXED), cached = st_cached;
    if (!h || atomic_load_explicit(&cfg_policy, RELAXED) != TOY_KEEP || cached >= cap)
        return 0;
    return cap - cached + page;
}

/* Keep a freed mapping (its entry already marked stashed); the oldest
 * entry of a full stash goes to the shared cache. */
static void stash_put(heap *h, char *base, size_t len)
{
    if (h->nstash == STASH) {
        stashed_map old = h->stash[0];
        memmove(h->stash, h->stash + 1, sizeof old * (STASH - 1));
        h->nstash--;
        stash_drop(old);
    }
    h->stash[h->nstash++] = (stashed_map){base, len};
    ADD(st_cached, len);
}

/* A large block with no alignment beyond a cache line starts a few lines into
 * its first page, not at it: its colour, a line from COLOUR_FIRST to
 * COLOUR_LAST chosen by the mapping's address, so blocks in different
 * mappings start in different cache sets (jemalloc's "cache-oblivious" large
 * blocks do the same, at a random line).  Why: a page-aligned block puts a
 * byte touched per page in the first line of every page, and on the Intel
 * Xeon VM such a touch past the L2 is slow: 4 MiB churn, one store per page,
 * ran 8.1 us an op when the stores hit a page's lines 0, 1, 62 or 63, and
 * 5.5-5.8 us at any line between (glibc's heap chunks start mid-page: the
 * page-aligned blocks took 1.46x its time).  The cost: a page more only when
 * the size leaves less than COLOUR_FIRST lines free in its last page (placed
 * before whole huge pages: map_large), and huge pages split where a program
 * advises a block (README). */
#define COLOUR_LINE 64
#define COLOUR_FIRST 2
#define COLOUR_LAST 61

/* The mapping's length for a large block of size with the given alignment */
static size_t large_len(size_t size, size_t align)
{
    size_t len = round_up(size ? size : 1, page);
    if (align <= COLOUR_LINE && len - size < COLOUR_FIRST * COLOUR_LINE)
        len += page;
    return len;
}

/* Where in a mapping of got bytes at b a block of size starts (see above) */
static size_t colour_of(const char *b, size_t got, size_t size, size_t align)
{
    size_t room = (got - size) / COLOUR_LINE;  /* whole lines free past the block in the last page */
    if (align > COLOUR_LINE || room < COLOUR_FIRST)
        return 0;
    if (room > COLOUR_LAST)
        room = COLOUR_LAST;
    uint64_t h = page_hash((uintptr_t)b) >> 32;
    return COLOUR_LINE * (COLOUR_FIRST + h % (room - COLOUR_FIRST + 1));
}

/* A new mapping of len bytes for a large block.  Linux (6.7 on) places an anonymous mapping whose length
 * is a whole number of huge pages (2 MiB) on a huge page's boundary; a page longer, as a colour makes
 * such a block's mapping, and it lands anywhere.  So where len is whole huge pages and a page, those are
 * mapped first and the page before them after, which the kernel merges into one mapping: the block starts
 * in that page, and from its first whole page on every 2 MiB is a huge page's, where a program advises
 * MADV_HUGEPAGE from there (numpy does on its arrays: README).  Where the page before is taken, or the
 * kernel placed them anywhere, the mapping grows a page at its end instead (or moves). */
#define HUGE_PAGE ((size_t)2 << 20)
static char *map_large(size_t len, size_t map_align)
{
    size_t whole = len - page;
    if (map_align != page || whole < HUGE_PAGE || whole % HUGE_PAGE)
        return map_aligned(len, map_align);
    char *a = map_aligned(whole, page);
    if (!a)
        return NULL;
    if ((uintptr_t)a % HUGE_PAGE == 0) {
        char *m = mmap(a - page, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ADD(st_mmap, 1);
        if (m == a - page) {
            ADD(st_mapped, page);
            return m;
        }
        if (m != MAP_FAILED)  /* a kernel before 4.17 took the address as a hint */
            munmap(m, page), ADD(st_munmap, 1);
    }
    char *m = mremap(a, whole, len, MREMAP_MAYMOVE);
    ADD(st_mremap, 1);
    if (m == MAP_FAILED) {
        unmap_mapping(a, whole);
        return NULL;
    }
    ADD(st_mapped, page);
    return m;
}

static void *large_alloc(size_t size, size_t align, int *zeroed)
{
    size_t len = large_len(size, align), got = len;
    size_t map_align = align < page ? page : align;  /* the mapping's; align stays the block's */
    heap *h = my_heap();
    char *b = h && map_align == page && h->nstash ? stash_take(h, len, &got) : NULL;
    int from_stash = b != NULL;
    *zeroed = 0;
    if (!b) {
        lock();
        b = map_align == page ? cache_take_large(len, &got, zeroed) : cache_take(len, map_align, &got, zeroed);
        unlock();
    }
    int grew = 0;
    if (b && got < len) {  /* a cached mapping short of len: grown in place or moved, its pages kept */
        char *nb = mremap(b, got, len, MREMAP_MAYMOVE);
        ADD(st_mremap, 1);
        if (nb == MAP_FAILED && errno == EFAULT && got > page) {
            /* two mappings to the kernel, most often split after the first page (a program's advice
             * from the block's first whole page on, as numpy's): the rest grown alone, that page let go */
            nb = mremap(b + page, got - page, len, MREMAP_MAYMOVE);
            ADD(st_mremap, 1);
            if (nb != MAP_FAILED) {
                unmap_mapping(b, page);
                got -= page;
            }
        }
        if (nb == MAP_FAILED) {
            retire_mapping(b, got, 0);
            b = NULL;
        } else {
            ADD(st_mapped, len - got);
            b = nb, got = len, grew = 1;  /* the new tail reads as zero; the rest as it was cached */
        }
    }
    if (!b) {
        if (!(b = map_large(len, map_align)))
            return NULL;
        got = len, *zeroed = 1, grew = 1;
    }
    size_t colour = colour_of(b, got, size, align);
    if (from_stash)
        ltab_revive((uintptr_t)b, colour);
    else if (ltab_add((uintptr_t)b, got, colour, map_align > page)) {
        unmap_mapping(b, got);
        return NULL;
    }
    live_add(h, (int64_t)got);
    large_live_add((int64_t)got);
    if (grew && ncached)
        cache_trim();
    else
        cache_decay();
    return b + colour;
}

/* free of a pointer the granule map does not know: NULL, a large block, or a
 * bad pointer to diagnose.  The granule map first, for every pointer: a small
 * slot can look like a large block's start, and the large table would cost it
 * a stripe's mutex (glibc-thread's mix: 5% of its time), where the map costs a
 * large block a few loads.  Apart from small_free, calling nothing on its usual
 * path, and with no errno to save (see unmap_mapping), a large free makes 15
 * stores where it made 23: after a program's writes to the block each waits its
 * turn in a full store buffer (4 MiB churn's malloc and free, the cycle loop in
 * the README, 30 runs in turns: 250 cycles against 340 before, glibc 236). */
static __attribute__((noinline)) void free_large(void *p)
{
    if (!p)
        return;
    heap *h = my_heap();
    int stashed;
    size_t len = ltab_free((uintptr_t)p, h, &stashed);
    if (!len)
        die("toyalloc: free/realloc of a pointer it never returned, or a double free\n");
    char *base = (char *)mapping_of((uintptr_t)p);
    live_add(h, -(int64_t)len);
    large_live_add(-(int64_t)len);
    if (stashed) {
        stash_put(h, base, len);
        cache_decay();
    } else {
        retire_mapping(base, len, 0);
    }
}

/* ---- the malloc API ---- */

static int too_big(size_t size, size_t align)
{
    return align > (size_t)PTRDIFF_MAX / 2 || size > (size_t)PTRDIFF_MAX - align - 2 * page;
}

static void *alloc(size_t size, size_t align, int *zeroed)
{
    ensure_init();
    if (UNLIKELY(too_big(size, align))) {
        errno = ENOMEM;
        return NULL;
    }
    size_t threshold = atomic_load_explicit(&cfg_threshold, RELAXED);
    void *p;
    if (LIKELY(size <= threshold && align <= threshold)) {
        int c = class_of(size > align ? size : align);
        while (classes[c].size & (align - 1))
            c++;  /* a power-of-two class always follows within four */
        *zeroed = 0;
        p = small_alloc(c);
    } else {
        p = large_alloc(size, align, zeroed);
    }
    if (UNLIKELY(!p))
        errno = ENOMEM;
    return p;
}

/* malloc's fast path: a small size with a slot in this thread's cache.
 * Everything else (first call, no heap, empty cache, large) takes alloc(). */
FAST_PATH void *toy_malloc(size_t size)
{
    heap *h = &th;
    int c = -1;
    if (LIKELY(size < atomic_load_explicit(&fast_below, RELAXED)))
        c = class_small[(size + 15) >> 4];
    else if (size > CLASS_SMALL_MAX && size <= atomic_load_explicit(&cfg_threshold, RELAXED))
        c = class_computed(size);
    if (LIKELY(c >= 0)) {
        cached_slot *p = h->head[c];  /* none unless the heap is ready (heap_exit empties them) */
        if (LIKELY(p != NULL)) {
            if (UNLIKELY(p == h->pending))
                return pending_handed_out();
            h->head[c] = p->next;
            __builtin_prefetch(p->next, 1);  /* the next malloc of this class reads its link: start the miss now */
            h->room[c]++;
            p->key = 0;
            return p;
        }
    }
    int zeroed;
    return alloc(size, 16, &zeroed);
}

/* TOY_NO_FREE_CHECK: a build for measurement only (make toy-speed's toy-nocheck), never installed: the
 * fast paths skip the key, so a double free there goes unseen.  What catching it costs, measured. */
#ifdef TOY_NO_FREE_CHECK
#define FAST_FREE_OK(s, p, key) handed_out(s, p)
#define PENDING_OK(q, key) 1
#else
#define FAST_FREE_OK(s, p, key) slot_in_use(s, p, key)
#define PENDING_OK(q, key) (!holds_key(q, key))
#endif

/* free's fast path: a valid, used slot, found in the granule map (inline: a
 * free at random over many spans, as in alloc-test, would otherwise pay a
 * call), with room in the thread's cache.  No per-thread memo of the last
 * spans in front of the map: with the books packed, its checks and updates
 * cost more than the map's two loads they spared (glibc-thread 0.91x the
 * time without it, alloc-test 0.95x, none slower).  Any other slot, including
 * every misuse to diagnose, goes to small_free, which makes the
 * same checks; a pointer in no span goes to free_large.  The class comes with
 * the span from the map: the thread cache's loads need not wait for the
 * books' line (paired median time against the class read from the books, 20
 * pairs in turns: alloc-test 0.963x, faster in 20 of 20, alloc-test x2 0.947x,
 * 19 of 20; the rest level, glibc-thread 1.012x for the mask's instruction).
 *
 * The check reads the block's key, a load that holds the core up when the
 * line is not in (over 50,000 blocks of alloc-test, 17 MB live: the check was
 * 0.27 of the toy's time).  So a thread holding more than TOYALLOC_DEFER_BYTES
 * of small blocks defers it: free only prefetches its block and leaves it
 * pending, and checks and caches the block it freed before, whose line has
 * come in since.  The block then reaches the cache a free late; malloc dies
 * if it pops the pending block (a double free put it in a list too); one
 * freed again at once is the pending block.  Deferring for every thread cost
 * larson, whose blocks are in the caches, 1.12x its time (7% more
 * instructions; README).  A double free by a deferring thread is caught at its
 * next free, at malloc, at its exit or at the program's; one made by a second
 * thread is missed if the first hands the block out before that. */
FAST_PATH void toy_free(void *p)
{
    heap *h = &th;
    uintptr_t e = entry_of(p);
    span *s = entry_span(e);
    if (LIKELY(s != NULL)) {
        if (LIKELY(!h->defer)) {  /* and so nothing pending; no room unless the heap is ready */
            int c = entry_class(e);
            uintptr_t key = slot_key(p);  /* once: the stores below may alias key_secret for the compiler */
            if (LIKELY(FAST_FREE_OK(s, p, key) && h->room[c] != 0)) {
                cache_push(h, c, p, key);
                return;
            }
        } else {
            cached_slot *q = h->pending;
            int qc = h->pending_class;  /* no room for idle's */
            if (LIKELY(handed_out(s, p) && (void *)q != p && h->room[qc] != 0)) {
                uintptr_t qkey = slot_key(q);
                if (LIKELY(PENDING_OK(q, qkey))) {
                    __builtin_prefetch(p, 1);
                    cache_push(h, qc, q, qkey);
                    h->pending = p, h->pending_class = entry_class(e);
                    return;
                }
            }
        }
        small_free(p, s);
        return;
    }
    free_large(p);
}

/* A program's exit checks the block the exiting thread left pending for a free slot's key: a double free
 * as its last free is caught too.  Only a look: nothing is cached, no lock taken. */
__attribute__((destructor)) static void check_pending_at_exit(void)
{
    heap *h = &th;
    if (h->state == HEAP_READY && h->pending_class != NCLASSES && holds_key(h->pending, slot_key(h->pending)))
        die("toyalloc: double free or use after free\n");
}

void *toy_calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    int zeroed;
    void *p = alloc(total, 16, &zeroed);
    if (p && !zeroed)
        memset(p, 0, total);
    return p;
}

/* Usable bytes of a live block; aborts on a pointer the toy does not hold. */
static size_t usable(void *p, int *over_aligned)
{
    span *s = span_of(p);
    *over_aligned = 0;
    if (s) {
        check_in_use(s, p);
        return s->slot;
    }
    ltable *t = ltab_of((uintptr_t)p);
    int held = stripe_lock(&t->lock);
    large *e = ltab_find(t, (uintptr_t)p);
    int live = e && !e->stashed;
    size_t len = live ? e->len - e->colour : 0;
    *over_aligned = live ? e->over_aligned : 0;
    stripe_unlock(&t->lock, held);
    if (!live)
        die("toyalloc: a pointer it never returned, or a freed one\n");
    return len;
}

size_t toy_usable_size(void *p)
{
    int over;
    return p ? usable(p, &over) : 0;
}

int toy_is_direct(void *p)
{
    if (!p || span_of(p))
        return 0;
    toy_usable_size(p);  /* aborts unless p is a live large block */
    return 1;
}

/* Grow or shrink a large block's mapping in place or by moving page tables, its colour kept; NULL if
 * mremap refused (the block as it was).  have: its usable bytes. */
static void *large_resize(void *p, size_t have, size_t size)
{
    char *base = (char *)mapping_of((uintptr_t)p);
    size_t colour = (size_t)((char *)p - base), old = have + colour, len = round_up(size + colour, page);
    if (len == old)
        return p;
    if (ltab_take((uintptr_t)p, 0) != old)
        die("toyalloc: realloc of a block another thread freed\n");
    char *nb = mremap(base, old, len, MREMAP_MAYMOVE);
    ADD(st_mremap, 1);
    int failed = nb == MAP_FAILED;
    if (ltab_add((uintptr_t)(failed ? base : nb), failed ? old : len, colour, 0))
        die("toyalloc: out of memory for its own books during realloc\n");
    if (failed) {
        errno = ENOMEM;
        return NULL;
    }
    ADD(st_mapped, len - old);
    live_add(my_heap(), (int64_t)len - (int64_t)old);
    large_live_add((int64_t)len - (int64_t)old);
    return nb + colour;
}

void *toy_realloc(void *p, size_t size)
{
    if (!p)
        return toy_malloc(size);
    if (size == 0) {  /* glibc (REALLOC_ZERO_BYTES_FREES): free, return NULL */
        toy_free(p);
        return NULL;
    }
    ensure_init();
    int over;
    size_t have = usable(p, &over);
    if (too_big(size, 16)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t threshold = atomic_load_explicit(&cfg_threshold, RELAXED);
    int small = span_of(p) != NULL;
    if (small && size <= have && (size > have / 2 || have <= 128))
        return p;  /* the class still fits without wasting half of it */
    if (!small && !over && size > threshold) {
        int saved = errno;
        void *q = large_resize(p, have, size);
        if (q)
            return q;
        /* mremap refused: the program's advice or protection on part of the block made it two
         * mappings (numpy advises MADV_HUGEPAGE on its arrays), which mremap cannot take as one; or no
         * room.  A copy, as glibc makes then. */
        errno = saved;
    }
    void *q = toy_malloc(size);
    if (!q)
        return NULL;  /* the old block is untouched */
    memcpy(q, p, have < size ? have : size);
    toy_free(p);
    return q;
}

/* glibc 2.36's memalign rules: <= 16 is malloc; below 32 becomes 32; above
 * SIZE_MAX/2 + 1 is EINVAL; otherwise rounded up to a power of two. */
void *toy_memalign(size_t align, size_t size)
{
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align < 32)
        align = align <= 16 ? 16 : 32;
    else if (align & (align - 1))
        align = (size_t)1 << (64 - __builtin_clzll(align));
    int zeroed;
    return alloc(size, align, &zeroed);
}

int toy_posix_memalign(void **out, size_t align, size_t size)
{
    if (align == 0 || align % sizeof(void *) || ((align / sizeof(void *)) & (align / sizeof(void *) - 1)))
        return EINVAL;
    void *p = toy_memalign(align, size);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *toy_aligned_alloc(size_t align, size_t size)
{
    return toy_memalign(align, size);  /* glibc 2.36: the same function */
}

void *toy_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;  /* as glibc: the block stays */
        return NULL;
    }
    return toy_realloc(p, total);
}

void *toy_valloc(size_t size)
{
    ensure_init();
    return toy_memalign(page, size);
}

void *toy_pvalloc(size_t size)
{
    ensure_init();
    size_t rounded;
    if (__builtin_add_overflow(size, page - 1, &rounded)) {
        errno = ENOMEM;
        return NULL;
    }
    return toy_memalign(page, rounded & ~(page - 1));
}

int toy_configure(const toy_config *c)
{
    if (c->threshold > TOY_MAX_THRESHOLD || c->policy < 0 || c->policy >= TOY_NPOLICIES)
        return -1;
    ensure_init();
    set_threshold(c->threshold);
    cfg_cache_cap = c->cache_cap;
    cfg_policy = c->policy;
    heap *h = my_heap();  /* this thread's stash follows the new policy now, others' at their next call */
    if (h && c->policy != TOY_KEEP)
        while (h->nstash)
            stash_drop(h->stash[--h->nstash]);
    return 0;
}

void toy_get_config(toy_config *c)
{
    ensure_init();
    *c = (toy_config){cfg_threshold, cfg_cache_cap, cfg_policy};
}

void toy_get_stats(toy_stats *s)
{
    ensure_init();
    lock();
    int64_t live = atomic_load_explicit(&live_elsewhere, RELAXED);
    for (heap *h = heaps; h; h = h->next)
        live += heap_live(h);
    unlock();
    *s = (toy_stats){st_mapped, (uint64_t)live, st_cached, st_mmap, st_munmap, st_mremap, st_madvise};
}

#ifdef TOY_PRELOAD
/* ---- libtoyalloc.so: this file built with TOY_PRELOAD, preloaded into a whole program ---- */

/* Every function of hooks.h's list (the ones glibc's manual lists for replacing malloc, plus the
 * obsolete valloc and pvalloc, so nothing reaches glibc's allocator by a side door) and
 * malloc_usable_size under its standard name: an alias of its toy_ twin, the same code at the same
 * address.  Forwarders in a file of their own cost each call two jumps, the second through the PLT
 * (linking with -Bsymbolic-functions made that one direct, and alloc-test no faster: 1.01x, 20 pairs).
 * Against the forwarders, 16 pairs in turns: malloc and free alone as aliases, alloc-test 0.987x
 * [0.982, 0.995] and on two threads 0.983x [0.974, 0.996]; then every name, over the 9 peer programs,
 * geomean 0.988 and 0.990 in two sets (the second: scripts/toy-ab 3643d55 HEAD --pairs 16), no
 * program slower, larson 0.956x [0.935, 0.978] and glibc-thread 0.980x [0.964, 0.997] in the first,
 * every program level in the second. */
#include "hooks.h"
#define TOY_EXPORT(op, returns, ret, name, params, args) \
    AB_EXPORT ret name params __attribute__((alias("toy_" #name)));
AB_HOOKED_FUNCTIONS(TOY_EXPORT)
#undef TOY_EXPORT
AB_EXPORT size_t malloc_usable_size(void *p) __attribute__((alias("toy_usable_size")));
#endif
