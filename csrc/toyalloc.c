/* toyalloc: see toyalloc.h.  Policies, in one place:
 *
 * - Small blocks (<= threshold): 60 size classes (16-byte steps to 128 B, then
 *   four per power of two up to 1 MiB).  Each class bump-allocates slots from
 *   mmapped spans and recycles them through a LIFO free list.  Spans are never
 *   returned: the same trade-off as glibc's bins, bounded by the peak.
 * - Large blocks (> threshold): one mapping each.  A freed mapping goes to a
 *   cache of at most 64 entries and cache_cap bytes (oldest evicted with
 *   munmap); the policy decides whether cached pages stay resident (keep),
 *   are dropped now (dontneed) or lazily (free).  A request reuses the smallest
 *   cached mapping that fits without wasting more than half of it.  This is
 *   what buys brk-like reuse (no syscall, no fault) with mmap-like return.
 * - realloc of a large block is mremap: the kernel moves page tables, no copy.
 * - One mutex guards everything; syscalls for new large mappings and for
 *   munmap run outside it.  pthread_atfork keeps it consistent across fork.
 * - Every block has a 16-byte header (magic, class, requested size); a large
 *   one has 16 more bytes before that (offset from the mapping's base, length).
 */
#define _GNU_SOURCE
#include "toyalloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HDR 16
#define LHDR 32                   /* large: lhdr + hdr */
#define MAGIC_SMALL 0x5EA11u
#define MAGIC_LARGE 0x1A26Eu
#define MAGIC_FREE 0xF4EEu
#define NCLASSES 60
#define CACHE_SLOTS 64
#define MIN_SPAN ((size_t)64 << 10)

typedef struct hdr {
    uint32_t magic;
    uint32_t cls;
    size_t size;
} hdr;

typedef struct lhdr {
    size_t offset;  /* user pointer - mapping base */
    size_t len;     /* mapping length */
} lhdr;

typedef struct free_slot {
    struct free_slot *next;
} free_slot;

typedef struct size_class {
    size_t size;       /* usable bytes */
    free_slot *free;   /* recycled slots, linked through their user bytes */
    char *bump, *end;  /* the current span's unused tail */
} size_class;

typedef struct cached_map {
    char *base;
    size_t len;
} cached_map;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static atomic_int atfork_registered;
static size_t page;
static size_class classes[NCLASSES];
static cached_map cache[CACHE_SLOTS];
static int ncached;
static toy_config cfg = {128 << 10, 32 << 20, TOY_KEEP};
static toy_stats stats;

static size_t round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

static void die(const char *msg)
{
    ssize_t r = write(2, msg, strlen(msg));
    (void)r;
    abort();
}

static void *map(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static size_t env_size(const char *name, size_t def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    return *end ? def : (size_t)v;
}

static void init_locked(void)
{
    if (initialised)
        return;
    page = (size_t)sysconf(_SC_PAGESIZE);
    int c = 0;
    for (size_t s = 16; s <= 128; s += 16)
        classes[c++].size = s;
    for (size_t p = 128; p < TOY_MAX_THRESHOLD; p *= 2)
        for (int q = 5; q <= 8; q++)
            classes[c++].size = p * q / 4;
    /* Environment overrides, ignored when out of range. */
    size_t t = env_size("TOYALLOC_THRESHOLD", cfg.threshold);
    if (t <= TOY_MAX_THRESHOLD)
        cfg.threshold = t;
    cfg.cache_cap = env_size("TOYALLOC_CACHE_CAP", cfg.cache_cap);
    const char *pol = getenv("TOYALLOC_POLICY");
    if (pol) {
        static const char *const names[] = {"keep", "dontneed", "free", "unmap"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(pol, names[i]))
                cfg.policy = i;
    }
    initialised = 1;
}

static void before_fork(void) { pthread_mutex_lock(&lock); }
static void after_fork(void) { pthread_mutex_unlock(&lock); }

static void enter(void)
{
    /* Registered outside the lock: pthread_atfork may itself allocate. */
    if (!atomic_exchange(&atfork_registered, 1))
        pthread_atfork(before_fork, after_fork, after_fork);
    pthread_mutex_lock(&lock);
    init_locked();
}

static int class_of(size_t size)
{
    int lo = 0, hi = NCLASSES - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (classes[mid].size >= size)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

static hdr *header(void *p) { return (hdr *)((char *)p - HDR); }
static lhdr *large_header(void *p) { return (lhdr *)((char *)p - LHDR); }

static hdr *checked_header(void *p)
{
    if (((uintptr_t)p & 15) != 0)
        die("toyalloc: free/realloc of a pointer it never returned\n");
    hdr *h = header(p);
    if (h->magic == MAGIC_FREE)
        die("toyalloc: double free or use after free\n");
    if (h->magic != MAGIC_SMALL && h->magic != MAGIC_LARGE)
        die("toyalloc: free/realloc of a pointer it never returned (bad header)\n");
    return h;
}

/* ---- small blocks (lock held) ---- */

static void *small_alloc(size_t size, int *fresh)
{
    int c = class_of(size);
    size_class *k = &classes[c];
    size_t slot = HDR + k->size;
    char *s;
    if (k->free) {
        s = (char *)k->free - HDR;  /* the link lives in the slot's user bytes */
        k->free = k->free->next;
        *fresh = 0;
    } else {
        if (k->bump == NULL || (size_t)(k->end - k->bump) < slot) {
            size_t span = round_up(slot * 4 > MIN_SPAN ? slot * 4 : MIN_SPAN, page);
            char *m = map(span);
            if (!m)
                return NULL;
            stats.mmap_calls++;
            stats.mapped_bytes += span;
            k->bump = m, k->end = m + span;
        }
        s = k->bump;
        k->bump += slot;
        *fresh = 1;
    }
    hdr *h = (hdr *)s;
    h->magic = MAGIC_SMALL, h->cls = (uint32_t)c, h->size = size;
    stats.live_bytes += size;
    return s + HDR;
}

static void small_free(hdr *h)
{
    stats.live_bytes -= h->size;
    h->magic = MAGIC_FREE;  /* kept while free: a second free is caught */
    free_slot *f = (free_slot *)(h + 1);
    f->next = classes[h->cls].free;
    classes[h->cls].free = f;
}

/* ---- large blocks ---- */

static void *place_large(char *base, size_t len, size_t align, size_t size)
{
    uintptr_t user = round_up((uintptr_t)base + LHDR, align > HDR ? align : HDR);
    lhdr *l = large_header((void *)user);
    l->offset = user - (uintptr_t)base, l->len = len;
    hdr *h = header((void *)user);
    h->magic = MAGIC_LARGE, h->cls = 0, h->size = size;
    return (void *)user;
}

static void *large_alloc(size_t size, size_t align, int *fresh)
{
    size_t extra = align > HDR ? align : 0;
    size_t len = round_up(size + LHDR + extra, page);
    char *base = NULL;
    size_t got = 0;
    pthread_mutex_lock(&lock);
    int best = -1;
    for (int i = 0; i < ncached; i++)
        if (cache[i].len >= len && cache[i].len - len <= cache[i].len / 2 &&
            (best < 0 || cache[i].len < cache[best].len))
            best = i;
    if (best >= 0) {
        base = cache[best].base, got = cache[best].len;
        stats.cached_bytes -= got;
        cache[best] = cache[--ncached];
        *fresh = cfg.policy == TOY_DONTNEED;  /* dropped pages read back as zeros */
    }
    pthread_mutex_unlock(&lock);
    if (!base) {
        base = map(len);
        if (!base)
            return NULL;
        got = len;
        *fresh = 1;
        pthread_mutex_lock(&lock);
        stats.mmap_calls++;
        stats.mapped_bytes += len;
        pthread_mutex_unlock(&lock);
    }
    void *p = place_large(base, got, align, size);
    pthread_mutex_lock(&lock);
    stats.live_bytes += size;
    pthread_mutex_unlock(&lock);
    return p;
}

static void unmap_counted(char *base, size_t len)
{
    munmap(base, len);
    pthread_mutex_lock(&lock);
    stats.munmap_calls++;
    stats.mapped_bytes -= len;
    pthread_mutex_unlock(&lock);
}

static void large_free(void *p, hdr *h)
{
    lhdr *l = large_header(p);
    char *base = (char *)p - l->offset;
    size_t len = l->len;
    cached_map evicted[CACHE_SLOTS];
    int nevicted = 0, cached = 0;
    pthread_mutex_lock(&lock);
    stats.live_bytes -= h->size;
    h->magic = MAGIC_FREE;
    if (cfg.policy != TOY_UNMAP && len <= cfg.cache_cap) {
        /* make room: the oldest entries (front) go first */
        while (ncached > 0 && (ncached == CACHE_SLOTS || stats.cached_bytes + len > cfg.cache_cap)) {
            evicted[nevicted++] = cache[0];
            stats.cached_bytes -= cache[0].len;
            memmove(cache, cache + 1, sizeof cache[0] * (size_t)--ncached);
        }
        cache[ncached++] = (cached_map){base, len};
        stats.cached_bytes += len;
        cached = 1;
        if (cfg.policy != TOY_KEEP)
            stats.madvise_calls++;
    }
    int policy = cfg.policy;
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < nevicted; i++)
        unmap_counted(evicted[i].base, evicted[i].len);
    if (!cached)
        unmap_counted(base, len);
    else if (policy == TOY_DONTNEED)
        madvise(base, len, MADV_DONTNEED);
    else if (policy == TOY_FREE)
        madvise(base, len, MADV_FREE);
}

/* ---- the malloc API ---- */

static int too_big(size_t size, size_t align)
{
    return size > (size_t)PTRDIFF_MAX - align - LHDR - page;
}

static void *alloc(size_t size, size_t align, int *fresh)
{
    enter();
    if (too_big(size, align)) {
        pthread_mutex_unlock(&lock);
        errno = ENOMEM;
        return NULL;
    }
    if (size <= cfg.threshold && align <= HDR) {
        void *p = small_alloc(size, fresh);
        pthread_mutex_unlock(&lock);
        if (!p)
            errno = ENOMEM;
        return p;
    }
    pthread_mutex_unlock(&lock);
    void *p = large_alloc(size, align, fresh);
    if (!p)
        errno = ENOMEM;
    return p;
}

void *toy_malloc(size_t size)
{
    int fresh;
    return alloc(size, HDR, &fresh);
}

void toy_free(void *p)
{
    if (!p)
        return;
    hdr *h = checked_header(p);
    if (h->magic == MAGIC_LARGE) {
        large_free(p, h);
        return;
    }
    pthread_mutex_lock(&lock);
    small_free(h);
    pthread_mutex_unlock(&lock);
}

void *toy_calloc(size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    int fresh;
    void *p = alloc(total, HDR, &fresh);
    if (p && !fresh)
        memset(p, 0, total);
    return p;
}

size_t toy_usable_size(void *p)
{
    if (!p)
        return 0;
    hdr *h = checked_header(p);
    if (h->magic == MAGIC_LARGE) {
        lhdr *l = large_header(p);
        return l->len - l->offset;
    }
    return classes[h->cls].size;
}

int toy_is_direct(void *p)
{
    return p && checked_header(p)->magic == MAGIC_LARGE;
}

void *toy_realloc(void *p, size_t size)
{
    if (!p)
        return toy_malloc(size);
    hdr *h = checked_header(p);
    size_t old = h->size, usable = toy_usable_size(p);
    if (size == 0) {
        /* a fresh minimal block, like malloc(0); p is freed */
        void *q = toy_malloc(0);
        if (q)
            toy_free(p);
        return q;
    }
    enter();
    size_t threshold = cfg.threshold;
    if (too_big(size, HDR)) {
        pthread_mutex_unlock(&lock);
        errno = ENOMEM;
        return NULL;
    }
    if (h->magic == MAGIC_SMALL && size <= usable && size <= threshold) {
        stats.live_bytes += size - old;  /* in place: the class still fits */
        h->size = size;
        pthread_mutex_unlock(&lock);
        return p;
    }
    pthread_mutex_unlock(&lock);
    lhdr *l = large_header(p);
    if (h->magic == MAGIC_LARGE && l->offset == LHDR && size > threshold) {
        size_t len = round_up(size + LHDR, page), oldlen = l->len;
        char *base = (char *)p - LHDR;
        if (len != oldlen) {
            /* grow or shrink the mapping itself: page tables move, bytes do not */
            char *nb = mremap(base, oldlen, len, MREMAP_MAYMOVE);
            if (nb == MAP_FAILED) {
                errno = ENOMEM;
                return NULL;
            }
            pthread_mutex_lock(&lock);
            stats.mremap_calls++;
            stats.mapped_bytes += len - oldlen;
            pthread_mutex_unlock(&lock);
            base = nb;
            ((lhdr *)base)->len = len;
        }
        hdr *nh = (hdr *)(base + LHDR - HDR);
        pthread_mutex_lock(&lock);
        stats.live_bytes += size - old;
        pthread_mutex_unlock(&lock);
        nh->size = size;
        return base + LHDR;
    }
    void *q = toy_malloc(size);
    if (!q)
        return NULL;  /* the old block is untouched */
    memcpy(q, p, old < size ? old : size);
    toy_free(p);
    return q;
}

void *toy_memalign(size_t align, size_t size)
{
    if (align == 0 || (align & (align - 1)) || align > TOY_MAX_ALIGN) {
        errno = EINVAL;
        return NULL;
    }
    int fresh;
    return alloc(size, align, &fresh);
}

int toy_posix_memalign(void **out, size_t align, size_t size)
{
    if (align < sizeof(void *) || (align & (align - 1)) || align > TOY_MAX_ALIGN)
        return EINVAL;
    int fresh;
    void *p = alloc(size, align, &fresh);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

void *toy_aligned_alloc(size_t align, size_t size)
{
    return toy_memalign(align, size);
}

int toy_configure(const toy_config *c)
{
    if (c->threshold > TOY_MAX_THRESHOLD || c->policy < TOY_KEEP || c->policy > TOY_UNMAP)
        return -1;
    enter();
    cfg = *c;
    pthread_mutex_unlock(&lock);
    return 0;
}

void toy_get_config(toy_config *c)
{
    enter();
    *c = cfg;
    pthread_mutex_unlock(&lock);
}

void toy_get_stats(toy_stats *s)
{
    enter();
    *s = stats;
    pthread_mutex_unlock(&lock);
}
