/* A recorded trace (trace.h) made ready for replay before the window opens:
 * every pointer becomes a dense slot id (a freed slot is reused, so there are
 * as many slots as blocks live at once), all in mmapped memory, so the replay
 * loop itself does no bookkeeping malloc. */
#define _GNU_SOURCE
#include "replay.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void *map_zero(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* open addressing: pointer -> slot + 1 (0: empty); deletion by backward shift */
typedef struct pmap {
    uint64_t *key;
    uint32_t *val;
    uint64_t mask;
} pmap;

static uint64_t slot_of(const pmap *m, uint64_t k) { return (k >> 4) * 0x9E3779B97F4A7C15ull >> 20 & m->mask; }

static uint32_t *find(pmap *m, uint64_t k, int insert)
{
    uint64_t i = slot_of(m, k);
    while (m->key[i] && m->key[i] != k)
        i = (i + 1) & m->mask;
    if (!m->key[i]) {
        if (!insert)
            return NULL;
        m->key[i] = k;
        m->val[i] = 0;
    }
    return &m->val[i];
}

static void erase(pmap *m, uint64_t k)
{
    uint64_t i = slot_of(m, k);
    while (m->key[i] && m->key[i] != k)
        i = (i + 1) & m->mask;
    if (!m->key[i])
        return;
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & m->mask;
        if (!m->key[j])
            break;
        uint64_t h = slot_of(m, m->key[j]);
        if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
            m->key[i] = m->key[j], m->val[i] = m->val[j];
            i = j;
        }
    }
    m->key[i] = 0;
}

/* distinct tids, in an open-addressed set (tids are never 0) */
static uint32_t count_threads(const ab_event *ev, uint64_t n)
{
    uint64_t cap = 1024;
    uint32_t *set = map_zero(cap * 4), count = 0;
    if (!set)
        return 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t h = ev[i].tid * 0x9E3779B97F4A7C15ull >> 54;  /* 10 bits */
        while (set[h] && set[h] != ev[i].tid)
            h = (h + 1) & (cap - 1);
        if (!set[h] && count < cap / 2)
            set[h] = ev[i].tid, count++;
    }
    munmap(set, cap * 4);
    return count;
}

int ab_replay_load(const char *path, ab_replay *r, char *err, size_t cap)
{
    memset(r, 0, sizeof *r);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        snprintf(err, cap, "cannot open trace %s", path);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    if (len < AB_TRACE_HEADER || (len - AB_TRACE_HEADER) % sizeof(ab_event)) {
        close(fd);
        snprintf(err, cap, "%s: not a whole trace (%zu bytes: a 4096-byte header and 40-byte records)", path, len);
        return -1;
    }
    const char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED || memcmp(m, AB_TRACE_MAGIC, 8)) {
        snprintf(err, cap, "%s: not an allocbench trace (magic)", path);
        return -1;
    }
    uint64_t n = (len - AB_TRACE_HEADER) / sizeof(ab_event);
    const ab_event *ev = (const ab_event *)(m + AB_TRACE_HEADER);
    uint64_t count;
    memcpy(&count, m + 24, 8);
    if (count && count < n)
        n = count;
    for (uint64_t i = 0; i < n; i++)
        if (ev[i].op == 0 || ev[i].op >= AB_NOPS) {  /* an unfinished trace ends here */
            n = i;
            break;
        }
    uint64_t buckets = 1024;
    while (buckets < 2 * n + 2)
        buckets <<= 1;
    pmap pm = {map_zero(buckets * 8), map_zero(buckets * 4), buckets - 1};
    r->ev = map_zero(n * sizeof *r->ev), r->in = map_zero(n * 4), r->aux = map_zero(n * 8);
    uint32_t *free_slots = map_zero(n * 4 + 4), nfree = 0;
    uint64_t *slot_size = map_zero(n * 8 + 8);
    if (!pm.key || !pm.val || !r->ev || !r->in || !r->aux || !free_slots || !slot_size) {
        snprintf(err, cap, "out of memory preparing %llu events", (unsigned long long)n);
        return -1;
    }
    uint64_t live = 0;
    for (uint64_t i = 0; i < n; i++) {
        const ab_event *e = &ev[i];
        uint32_t in = AB_NO_SLOT, out = AB_NO_SLOT;
        uint64_t in_size = 0;
        int op = e->op;
        if (op == AB_OP_FREE || op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY) {
            uint64_t old = op == AB_OP_FREE ? e->ptr : e->old;
            uint32_t *v = old ? find(&pm, old, 0) : NULL;
            int failed = op != AB_OP_FREE && !e->ptr && e->size;  /* a failed realloc keeps the block */
            if (v && !failed) {
                in = *v - 1;
                erase(&pm, old);
                in_size = slot_size[in];
                live -= in_size;
                free_slots[nfree++] = in;
            }
            if (op == AB_OP_FREE && !v)
                op = 0;  /* free(NULL), or a block from before the recording: nothing to replay */
        }
        if (op != AB_OP_FREE && op && e->ptr) {
            out = nfree ? free_slots[--nfree] : r->nslots++;
            *find(&pm, e->ptr, 1) = out + 1;
            slot_size[out] = e->size;
            live += e->size;
            if (e->size >= AB_GLIBC_DEFAULT_BOUNDARY)
                r->big_allocs++, r->big_bytes += e->size;
            if (live > r->peak_live_bytes)
                r->peak_live_bytes = live;
        } else if (op != AB_OP_FREE && !(op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY)) {
            op = 0;  /* a failed allocation: nothing to replay */
        } else if (op != AB_OP_FREE && in == AB_NO_SLOT) {
            op = 0;  /* realloc of an unknown block, or a failed one */
        }
        ab_replay_event *x = &r->ev[i];
        x->op = (uint8_t)op;
        x->slot = op == AB_OP_FREE ? in : out;
        x->size = op == AB_OP_FREE ? in_size : e->size;
        r->frees += op == AB_OP_FREE;
        r->allocs += op && op != AB_OP_FREE && op != AB_OP_REALLOC && op != AB_OP_REALLOCARRAY;
        if (op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY)
            r->reallocs++, r->in[i] = in, r->aux[i] = in_size;
        else if (op >= AB_OP_MEMALIGN)
            r->aux[i] = e->old;  /* the recorded alignment */
    }
    r->n = n;
    r->live_at_end_bytes = live;
    r->threads = count_threads(ev, n);
    munmap((void *)m, len);
    munmap(pm.key, buckets * 8), munmap(pm.val, buckets * 4), munmap(free_slots, n * 4 + 4);
    munmap(slot_size, n * 8 + 8);
    return 0;
}
