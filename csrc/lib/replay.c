/* A recorded trace (trace.h) made ready for replay before the window opens:
 * every pointer becomes a dense slot id, all in mmapped memory, so the replay
 * loop itself does no bookkeeping malloc.
 *
 * One thread (AB_REPLAY_ONE): a freed slot is reused, so there are as many
 * slots as blocks live at once.
 *
 * Recorded threads (AB_REPLAY_RECORDED): each event belongs to the thread
 * that made it (thread 0 made the first allocation call, and got glibc's main
 * arena; created threads follow in creation order, from their THREAD_START
 * events; threads without one, a version 1 trace's, in the order they first
 * appear), and each thread gets the list of its events.  A
 * slot freed by a thread goes back to that thread's own pool, so only the
 * thread that freed a slot ever fills it again: the one order kept across
 * threads is that a free (or realloc) of another thread's block waits for
 * that allocation (wait_for: the allocating event, + 1), and the replay
 * compares a slot's generation, the event that last filled it, with it.
 * And a thread whose exit comes before another thread's first call has
 * exited by the time that call is made (the first thread to start after it
 * joins it; later ones wait for that): a thread's first call attaches it to
 * an arena, and glibc hands on the arenas of threads that have exited, so
 * threads that exit and are replaced reuse arenas as in the program. */
#define _GNU_SOURCE
#include "replay.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const ab_replay_mode_names[AB_NREPLAY_MODES] = {
#define AB_RM_NAME(e, name) [e] = name,
    AB_REPLAY_MODES(AB_RM_NAME)
#undef AB_RM_NAME
};

static void *map_zero(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* map_zero's undoing; NULL (a mapping that failed) is nothing to unmap */
static void unmap(void *p, size_t bytes)
{
    if (p)
        munmap(p, bytes ? bytes : 1);
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

/* tid -> current replay thread, open-addressed (tids are never 0); a tid a
 * later thread reuses is taken over at that thread's THREAD_START */
typedef struct tidmap {
    uint32_t key[4096], val[4096];
} tidmap;

static uint32_t *tid_slot(tidmap *m, uint32_t tid)
{
    uint32_t h = (uint32_t)(tid * 2654435761u) >> 20;  /* 12 bits */
    while (m->key[h] && m->key[h] != tid)
        h = (h + 1) & 4095;
    m->key[h] = tid;
    return &m->val[h];
}

/* Each event's replay thread (1 + index in val while building); returns the count. */
static int assign_threads(const ab_event *ev, uint64_t n, uint32_t *thread, char *err, size_t cap)
{
    tidmap *tm = map_zero(sizeof *tm);
    uint32_t *by_creation = map_zero((n + 2) * 4);  /* creation index -> replay thread + 1 */
    if (!tm || !by_creation) {
        unmap(tm, sizeof *tm), unmap(by_creation, (n + 2) * 4);
        snprintf(err, cap, "out of memory preparing the threads");
        return -1;
    }
    /* threads with a THREAD_START, in creation order, after thread 0 */
    uint32_t count = 1;
    uint64_t max_index = 0;
    for (uint64_t i = 0; i < n; i++)
        if (ev[i].op == AB_OP_THREAD_START && ev[i].size <= n && ev[i].size > max_index)
            max_index = ev[i].size;
    for (uint64_t i = 0; i < n; i++)
        if (ev[i].op == AB_OP_THREAD_START && ev[i].size >= 1 && ev[i].size <= n)
            by_creation[ev[i].size] = 1;
    for (uint64_t c = 1; c <= max_index; c++)
        if (by_creation[c])
            by_creation[c] = ++count;  /* replay thread + 1 */
    /* thread 0, the cell's own thread, replays the thread that made the first call: glibc gave
     * that one the main arena, whichever thread it was (ptmalloc_init) */
    uint64_t first = 0;
    while (first + 1 < n && ab_trace_op_kinds[ev[first].op] == AB_OPK_THREAD)
        first++;
    *tid_slot(tm, ev[first].tid) = 1;
    int rc = 0;
    for (uint64_t i = 0; i < n && rc == 0; i++) {
        uint32_t *t = tid_slot(tm, ev[i].tid);
        if (ev[i].op == AB_OP_THREAD_START && ev[i].size >= 1 && ev[i].size <= n)
            *t = by_creation[ev[i].size];
        else if (!*t)  /* a thread with no start event (unwrapped, or a version 1 trace) */
            *t = ++count;
        if (count > AB_MAX_REPLAY_THREADS) {
            snprintf(err, cap, "the trace has more than %d threads", AB_MAX_REPLAY_THREADS);
            rc = -1;
        }
        thread[i] = *t - 1;
    }
    unmap(tm, sizeof *tm), unmap(by_creation, (n + 2) * 4);
    return rc ? -1 : (int)count;
}

/* Each thread's first call and exit, and who joins it (replay.h).
 *
 * A thread's first call is its first replayed event: free(NULL) and the thread
 * events attach no arena.  Its exit is its THREAD_EXIT marker, unless it made
 * replayed calls after the marker (glibc's own thread teardown runs after the
 * recorder's key destructor: a TLS destructor's free): then the exit moves to
 * its last replayed call, the nearest order the replay can keep, and each such
 * call is counted in `reordered`.  Only no-ops (free(NULL), thread events) may
 * then follow a thread's exit, and a no-op never waits (workloads.c), so every
 * wait is for an earlier event in the global order and the replay cannot
 * deadlock: the thread holding the earliest pending event can always go on. */
static int plan_exits(const ab_event *ev, uint64_t n, const uint32_t *thread, ab_replay *r, char *err, size_t cap)
{
    uint32_t nt = r->nthreads;
    r->first_call = map_zero(nt * 8), r->exit_at = map_zero(nt * 8), r->joiner = map_zero(nt * 4);
    uint64_t *last_call = map_zero(nt * 8);
    if (!r->first_call || !r->exit_at || !r->joiner || !last_call) {
        unmap(last_call, nt * 8);
        snprintf(err, cap, "out of memory preparing the threads");
        return -1;
    }
    for (uint32_t t = 0; t < nt; t++)
        r->first_call[t] = r->exit_at[t] = last_call[t] = UINT64_MAX, r->joiner[t] = -1;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t t = thread[i];
        if (ev[i].op == AB_OP_THREAD_EXIT && t != 0) {
            r->exit_at[t] = i;
        } else if (r->ev[i].op) {
            if (r->first_call[t] == UINT64_MAX)
                r->first_call[t] = i;
            last_call[t] = i;
            if (r->exit_at[t] != UINT64_MAX)  /* a call after the thread's exit marker */
                r->reordered++;
        }
    }
    for (uint32_t t = 1; t < nt; t++)
        if (r->exit_at[t] != UINT64_MAX && last_call[t] != UINT64_MAX && last_call[t] > r->exit_at[t])
            r->exit_at[t] = last_call[t];
    unmap(last_call, nt * 8);
    for (uint32_t u = 1; u < nt; u++) {  /* u is joined by the thread that first calls after its exit */
        uint64_t best = UINT64_MAX;
        for (uint32_t t = 1; t < nt && r->exit_at[u] != UINT64_MAX; t++)
            if (t != u && r->first_call[t] > r->exit_at[u] && r->first_call[t] < best)
                best = r->first_call[t], r->joiner[u] = (int32_t)t;
    }
    return 0;
}

/* The trace file, mapped read-only and checked as traces.py checks it: its
 * events, and how many (an unfinished trace ends at its first empty record). */
typedef struct mapped_trace {
    const char *m;
    size_t len;
    const ab_event *ev;
    uint64_t n;
} mapped_trace;

static int map_trace(const char *path, mapped_trace *t, char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        if (fd >= 0)
            close(fd);
        snprintf(err, cap, "cannot open trace %s", path);
        return -1;
    }
    size_t len = (size_t)st.st_size;
    ab_trace_head h;
    const char *why = NULL;
    size_t at = 0;
    if (len < sizeof h || pread(fd, &h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h.magic, AB_TRACE_MAGIC, 8))
        why = "not an allocbench trace (magic)";
    else if (h.version < 1 || h.version > AB_TRACE_VERSION || h.record_bytes != sizeof(ab_event) ||
             h.header_bytes % AB_TRACE_HEADER || h.header_bytes < AB_TRACE_HEADER || h.header_bytes > AB_TRACE_HEADER_MAX)
        why = "version, header or record size not one this cell reads", at = 8;
    else if (len < h.header_bytes || (len - h.header_bytes) % sizeof(ab_event))
        why = "not a whole trace (a header and 40-byte records)",
        at = len < h.header_bytes ? len : len - (len - h.header_bytes) % sizeof(ab_event);
    if (why) {
        close(fd);
        if (at == 8)
            snprintf(err, cap, "%s: offset 8: version %u, header %u, record %u (this cell reads versions 1 to %d, a "
                     "header of a multiple of %d bytes, %zu-byte records)", path, h.version, h.header_bytes,
                     h.record_bytes, AB_TRACE_VERSION, AB_TRACE_HEADER, sizeof(ab_event));
        else
            snprintf(err, cap, "%s: offset %zu: %s", path, at, why);
        return -1;
    }
    const char *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        snprintf(err, cap, "%s: cannot map it", path);
        return -1;
    }
    *t = (mapped_trace){m, len, (const ab_event *)(m + h.header_bytes), (len - h.header_bytes) / sizeof(ab_event)};
    if (h.events > t->n) {
        snprintf(err, cap, "%s: offset %zu: the header counts %llu events, the file holds %llu", path, len,
                 (unsigned long long)h.events, (unsigned long long)t->n);
        munmap((void *)m, len);
        return -1;
    }
    if (h.events)
        t->n = h.events;
    for (uint64_t i = 0; i < t->n; i++)
        if (t->ev[i].op == 0 || t->ev[i].op >= AB_NOPS) {
            if (h.events || t->ev[i].op) {  /* inside the count, or past the last op: not a trace this cell reads */
                snprintf(err, cap, "%s: offset %llu: event %llu has unknown op %u", path,
                         (unsigned long long)(h.header_bytes + i * sizeof(ab_event)), (unsigned long long)i,
                         t->ev[i].op);
                munmap((void *)m, len);
                return -1;
            }
            t->n = i;  /* an unfinished trace ends at its first empty record */
            break;
        }
    if (t->n >= (1ull << 31)) {
        snprintf(err, cap, "%s: more than 2^31 events", path);
        munmap((void *)m, len);
        return -1;
    }
    return 0;
}

/* What turning pointers into slots needs while it runs, unmapped after. */
typedef struct slot_books {
    pmap pm;            /* live pointer -> slot + 1 */
    uint64_t buckets, n;
    uint32_t *pool_next;  /* a free slot's next in its pool */
    uint32_t *pool_head;  /* slot + 1 (0: empty), per thread */
    uint64_t *slot_size;
    uint32_t *slot_event, *slot_thread;  /* the event that filled a slot, and its thread */
    uint64_t live;        /* bytes live at the event being turned */
} slot_books;

static int books_map(slot_books *b, uint64_t n)
{
    memset(b, 0, sizeof *b);
    b->n = n, b->buckets = 1024;
    while (b->buckets < 2 * n + 2)
        b->buckets <<= 1;
    b->pm = (pmap){map_zero(b->buckets * 8), map_zero(b->buckets * 4), b->buckets - 1};
    b->pool_next = map_zero(n * 4 + 4), b->pool_head = map_zero((AB_MAX_REPLAY_THREADS + 1) * 4);
    b->slot_size = map_zero(n * 8 + 8), b->slot_event = map_zero(n * 4 + 4), b->slot_thread = map_zero(n * 4 + 4);
    return b->pm.key && b->pm.val && b->pool_next && b->pool_head && b->slot_size && b->slot_event &&
           b->slot_thread ? 0 : -1;
}

static void books_unmap(slot_books *b)
{
    uint64_t n = b->n;
    unmap(b->pm.key, b->buckets * 8), unmap(b->pm.val, b->buckets * 4);
    unmap(b->pool_next, n * 4 + 4), unmap(b->pool_head, (AB_MAX_REPLAY_THREADS + 1) * 4);
    unmap(b->slot_size, n * 8 + 8), unmap(b->slot_event, n * 4 + 4), unmap(b->slot_thread, n * 4 + 4);
}

/* Event i as the replay loop reads it: its slot (a freed slot goes back to the
 * pool of the thread that freed it), and, recorded, what it must wait for. */
static int make_slot(const char *path, const ab_event *ev, uint64_t i, const uint32_t *thread, int recorded,
                     slot_books *b, ab_replay *r, char *err, size_t cap)
{
    const ab_event *e = &ev[i];
    uint32_t in = AB_NO_SLOT, out = AB_NO_SLOT, pool = recorded ? thread[i] : 0;
    uint64_t in_size = 0;
    int op = ab_trace_op_kinds[e->op] == AB_OPK_THREAD ? 0 : e->op;  /* a thread's life: its list says it */
    if (op == AB_OP_FREE || op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY) {
        uint64_t old = op == AB_OP_FREE ? e->ptr : e->old;
        uint32_t *v = old ? find(&b->pm, old, 0) : NULL;
        int failed = op != AB_OP_FREE && !e->ptr && e->size;  /* a failed realloc keeps the block */
        if (old && !v && thread[i] != 0) {
            snprintf(err, cap, "%s: event %llu: thread %u %s block 0x%llx, which the trace never allocated",
                     path, (unsigned long long)i, thread[i], op == AB_OP_FREE ? "frees" : "reallocs",
                     (unsigned long long)old);
            return -1;
        }
        if (old && !v)
            r->unmatched++;  /* thread 0's block from before the recording (a forked child's) */
        if (v && !failed) {
            in = *v - 1;
            erase(&b->pm, old);
            in_size = b->slot_size[in];
            b->live -= in_size;
            if (b->slot_thread[in] != thread[i]) {
                r->cross_frees++;
                if (recorded) {  /* wait until the allocating thread has made this block */
                    r->wait_for[i] = b->slot_event[in] + 1;
                    r->ev[b->slot_event[in]].flags |= AB_REPLAY_PUBLISH;  /* and it says when it has */
                }
            }
            b->pool_next[in] = b->pool_head[pool];  /* back to the pool of the thread that freed it */
            b->pool_head[pool] = in + 1;
        }
        if (op == AB_OP_FREE && !v)
            op = 0;  /* free(NULL), or a block from before the recording: nothing to replay */
    }
    if (op != AB_OP_FREE && op && e->ptr) {
        if (b->pool_head[pool]) {
            out = b->pool_head[pool] - 1;
            b->pool_head[pool] = b->pool_next[out];
        } else {
            out = r->nslots++;
        }
        *find(&b->pm, e->ptr, 1) = out + 1;
        b->slot_size[out] = e->size;
        b->slot_event[out] = (uint32_t)i, b->slot_thread[out] = thread[i];
        b->live += e->size;
        if (e->size >= AB_GLIBC_DEFAULT_BOUNDARY)
            r->big_allocs++, r->big_bytes += e->size;
        if (b->live > r->peak_live_bytes)
            r->peak_live_bytes = b->live;
    } else if (op != AB_OP_FREE && !(op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY)) {
        op = 0;  /* a failed allocation: nothing to replay */
    } else if (op != AB_OP_FREE && in == AB_NO_SLOT) {
        op = 0;  /* realloc of an unknown block, or a failed one */
    }
    ab_replay_event *x = &r->ev[i];
    x->op = (uint8_t)op;
    x->flags = 0;
    x->slot = op == AB_OP_FREE ? in : out;
    x->size = op == AB_OP_FREE ? in_size : e->size;
    r->frees += op == AB_OP_FREE;
    r->allocs += op && op != AB_OP_FREE && op != AB_OP_REALLOC && op != AB_OP_REALLOCARRAY;
    if (op == AB_OP_REALLOC || op == AB_OP_REALLOCARRAY)
        r->reallocs++, r->in[i] = in, r->aux[i] = in_size;
    else if (op >= AB_OP_MEMALIGN)
        r->aux[i] = e->old;  /* the recorded alignment */
    return 0;
}

/* Each replay thread's events, in global order: a counting sort by thread. */
static int order_by_thread(ab_replay *r, const uint32_t *thread, int recorded, char *err, size_t cap)
{
    uint64_t n = r->n;
    r->thread_start = map_zero((r->nthreads + 1) * 8);
    r->order = map_zero(n * 8 + 8);
    uint64_t *fill = map_zero((r->nthreads + 1) * 8);
    if (!r->thread_start || !r->order || !fill) {
        unmap(fill, (r->nthreads + 1) * 8);
        snprintf(err, cap, "out of memory preparing %llu events", (unsigned long long)n);
        return -1;
    }
    for (uint64_t i = 0; i < n; i++)
        r->thread_start[(recorded ? thread[i] : 0) + 1]++;
    for (uint32_t t = 0; t < r->nthreads; t++)
        r->thread_start[t + 1] += r->thread_start[t];
    memcpy(fill, r->thread_start, (r->nthreads + 1) * 8);
    for (uint64_t i = 0; i < n; i++)
        r->order[fill[recorded ? thread[i] : 0]++] = i;
    unmap(fill, (r->nthreads + 1) * 8);
    return 0;
}

int ab_replay_load(const char *path, int mode, uint64_t window, ab_replay *r, char *err, size_t cap)
{
    memset(r, 0, sizeof *r);
    r->mode = mode, r->window = window;
    if (mode < 0 || mode >= AB_NREPLAY_MODES || window < 1) {
        snprintf(err, cap, "replay mode must be one or recorded, and the window at least 1 event");
        return -1;
    }
    mapped_trace t;
    if (map_trace(path, &t, err, cap))
        return -1;
    uint64_t n = t.n;
    int recorded = mode == AB_REPLAY_RECORDED, rc = 0;
    slot_books b;
    r->mapped_n = n;
    r->ev = map_zero(n * sizeof *r->ev), r->in = map_zero(n * 4), r->aux = map_zero(n * 8);
    r->wait_for = map_zero(n * 4 + 4);
    uint32_t *thread = map_zero(n * 4 + 4);
    if (books_map(&b, n) || !r->ev || !r->in || !r->aux || !r->wait_for || !thread) {
        snprintf(err, cap, "out of memory preparing %llu events", (unsigned long long)n);
        rc = -1;
    }
    int nthreads = rc ? 1 : n ? assign_threads(t.ev, n, thread, err, cap) : 1;
    if (nthreads < 0)
        rc = -1, nthreads = 1;
    r->threads = (uint32_t)nthreads;
    for (uint64_t i = 0; i < n && rc == 0; i++)
        rc = make_slot(path, t.ev, i, thread, recorded, &b, r, err, cap);
    r->n = n;
    r->live_at_end_bytes = b.live;
    r->nthreads = recorded ? r->threads : 1;
    if (rc == 0)
        rc = order_by_thread(r, thread, recorded, err, cap);
    if (rc == 0 && recorded)
        rc = plan_exits(t.ev, n, thread, r, err, cap);
    munmap((void *)t.m, t.len);
    books_unmap(&b), unmap(thread, n * 4 + 4);
    return rc;
}

void ab_replay_free(ab_replay *r)
{
    uint64_t n = r->mapped_n, nt = r->nthreads;
    void *maps[] = {r->ev, r->in, r->aux, r->wait_for, r->order, r->thread_start, r->first_call, r->exit_at,
                    r->joiner};
    size_t lens[] = {n * sizeof *r->ev, n * 4, n * 8, n * 4 + 4, n * 8 + 8, (nt + 1) * 8, nt * 8, nt * 8, nt * 4};
    for (size_t i = 0; i < sizeof maps / sizeof maps[0]; i++)
        unmap(maps[i], lens[i]);
    memset(r, 0, sizeof *r);
}
