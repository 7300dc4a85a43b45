/* librecord.so: records every allocation call of an unmodified program
 * (allocbench record -- CMD).  Format: trace.h.
 *
 * - Records go straight into a shared mapping of the trace file: a thread
 *   reserves its slot with one atomic add (that is the global order) and fills
 *   it in place.  There is no buffer to flush, so exit, _exit or a crash after
 *   a call lose nothing that call recorded.
 * - A free is recorded before the real free, an allocation after the real
 *   call, and a realloc's slot is reserved before it: a block's address is
 *   never seen reused before the event that released it.
 * - The wrappers, the real functions' lookup and its bootstrap arena are
 *   hooks.h's; no stdio and no malloc in a hook.
 * - fork, and exec of a program that inherits the environment: every process
 *   but the first records into a file of its own, TRACE.PID (the first
 *   writes its pid into ALLOCBENCH_TRACE_OWNER, in place where allocbench
 *   left room for it: setenv would malloc before the program's first call).
 * - Recording starts at the program's first allocation call, or at this
 *   library's constructor if that comes first: a fresh process's heap is
 *   built by the calls in the trace alone, as a replay's is.
 * - Threads: pthread_create is interposed, so a thread's creation, start and
 *   exit are events (trace.h, version 2): the start routine is wrapped, and a
 *   pthread key's destructor records the exit.
 * - ALLOCBENCH_TRACE_SYSCALLS=1 (for measuring a replay's fidelity): each
 *   thread reads its own perf counters (counters.c, not inherited) just before
 *   and just after every allocation call, so the header ends up holding
 *   exactly the memory syscalls malloc made ("at_exit": "malloc_syscalls"),
 *   apart from the program's own, its thread stacks and the loader's.  It
 *   costs two reads a call.  The header also gets the arena heaps mapped at
 *   exit (non-main arenas: read from /proc/self/maps).
 * - The program's own anonymous mappings: mmap, mmap64, munmap and mremap are
 *   interposed and, called outside an allocation call, tallied in the header
 *   ("own_anon_mmaps": calls, bytes mapped at the peak and at exit, and
 *   resident at exit, from mincore).  And the program's anonymous memory
 *   (smaps_rollup) and its file mappings' written pages (smaps) when
 *   recording starts and at exit: how much of its growth is malloc's.  They are
 *   not malloc's (pymalloc's arenas, GCC's GC pages, a JIT's code): a replay
 *   cannot have them, but the program's RSS does.  glibc maps its heaps and
 *   thread stacks with its internal __mmap, which no preload sees.
 * Environment: ALLOCBENCH_TRACE (the file; nothing is recorded without it),
 * ALLOCBENCH_TRACE_MAX_EVENTS (default 67108864: the file is sparse). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define AB_HOOKS_WRAP
#include "counters.h"
#include "hooks.h"
#include "trace.h"

static char path[4200];
static int fd = -1;
static char *map;
static size_t map_len;
static uint64_t cap;
static size_t header_bytes;            /* the records start here */
static _Atomic uint64_t next;
static _Atomic int64_t inflight;       /* slots handed out and not yet filled */
static _Atomic int overflow, finished;
#define CLOSED ((uint64_t)1 << 62)     /* `next` after finish(): every later slot is past the end */
static struct timespec start;
static __thread uint32_t my_tid;
static pthread_key_t exit_key;         /* its destructor records a thread's exit */
static _Atomic uint32_t created;       /* threads created so far: the next one's creation index */

/* ALLOCBENCH_TRACE_SYSCALLS: the syscalls made inside allocation calls */
static int count_syscalls;
static _Atomic int64_t malloc_syscalls[AB_NSYSCALLS];
static char syscalls_error[256];
static __thread ab_counter thread_counter;  /* this thread's own, opened at its first call */
static __thread int thread_counter_state;   /* 0 not tried, 1 open, -1 failed */
static __thread int64_t counts_before[AB_NSYSCALLS];

/* the program's own anonymous mappings: [addr, addr + len) each, under a spin lock */
#define OWN_MAPS 16384
static struct own_map { uintptr_t addr; size_t len; } own_maps[OWN_MAPS];
static int own_n, own_lock;
static int64_t own_bytes, own_peak;
static uint64_t own_calls, own_untracked;
static __thread int in_alloc_call;  /* a mapping made inside malloc is the allocator's */
static int64_t anon_at_start, file_anon_at_start;  /* before the first recorded call */

static ab_event *reserve(void);
static void fill(ab_event *e, int op, void *ptr, uint64_t old, uint64_t size);

static uint64_t since_start(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)((t.tv_sec - start.tv_sec) * 1000000000LL + (t.tv_nsec - start.tv_nsec));
}

/* Text built in mmapped memory (no malloc in the recorder): an append that
 * does not fit stops at the end and marks the text cut, never writes past it. */
typedef struct text {
    char *buf;
    size_t cap, len;
    int cut;
} text;

static void text_printf(text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->cap) {
        t->cut = 1;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= t->cap - t->len)
        t->len = t->cap - 1, t->cut = 1;
    else
        t->len += (size_t)n;
}

/* JSON-escape n bytes of src onto t; NULs become spaces (cmdline) */
static void text_escape(text *t, const char *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (t->len + 8 >= t->cap) {  /* room for the longest escape and the NUL */
            t->cut = 1;
            break;
        }
        unsigned char c = (unsigned char)src[i];
        if (c == 0)
            c = ' ';
        if (c == '"' || c == '\\')
            t->buf[t->len++] = '\\', t->buf[t->len++] = (char)c;
        else if (c < 0x20)
            t->len += (size_t)snprintf(t->buf + t->len, t->cap - t->len, "\\u%04x", c);
        else
            t->buf[t->len++] = (char)c;
    }
    t->buf[t->len] = 0;
}

/* ,"key":"escaped value" (without the comma first in an object) */
static void text_string(text *t, int first, const char *key, const char *src, size_t n)
{
    text_printf(t, "%s\"%s\":\"", first ? "" : ",", key);
    text_escape(t, src, n);
    text_printf(t, "\"");
}

/* A whole file read into mmapped memory that grows as needed (/proc's files
 * have no size); *len gets its length.  NULL when it cannot be read. */
static char *slurp(const char *file, size_t *len, size_t *mapped)
{
    int f = open(file, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return NULL;
    size_t cap_bytes = 1 << 16, n = 0;
    char *buf = mmap(NULL, cap_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    while (buf != MAP_FAILED) {
        ssize_t r = read(f, buf + n, cap_bytes - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap_bytes) {
            char *more = mremap(buf, cap_bytes, 2 * cap_bytes, MREMAP_MAYMOVE);
            if (more == MAP_FAILED)
                break;  /* what was read is kept */
            buf = more, cap_bytes *= 2;
        }
    }
    close(f);
    if (buf == MAP_FAILED)
        return NULL;
    *len = n, *mapped = cap_bytes;
    return buf;
}

#define AT_EXIT_ROOM 4096  /* the header keeps this much after its JSON for what is measured at exit */

static ab_trace_head *head(void) { return (ab_trace_head *)map; }

/* The header's JSON (what ran, where, how), sized to fit: the header grows in
 * whole AB_TRACE_HEADER units so that no command line is ever cut. */
static size_t header_json(text *t)
{
    char exe[4096] = "", cwd[4096] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    size_t m = 0, cmd_mapped = 0;
    char *cmd = slurp("/proc/self/cmdline", &m, &cmd_mapped);
    while (cmd && m && cmd[m - 1] == 0)
        m--;
    if (!getcwd(cwd, sizeof cwd))
        cwd[0] = 0;
    const char *pre = getenv("LD_PRELOAD"), *tun = getenv("GLIBC_TUNABLES");
    size_t pre_n = pre ? strlen(pre) : 0, tun_n = tun ? strlen(tun) : 0;
    /* the worst case: every byte escaped to six, plus the fixed text */
    t->cap = 6 * ((n > 0 ? (size_t)n : 0) + m + strlen(cwd) + pre_n + tun_n) + 8 * m + 4096;
    t->buf = mmap(NULL, t->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t->buf == MAP_FAILED) {
        t->buf = NULL;
        if (cmd)
            munmap(cmd, cmd_mapped);
        return 0;
    }
    t->len = 0, t->cut = 0;
    text_printf(t, "{\"recorder\":{\"max_events\":%llu,\"order\":\"global, one atomic add per call\","
                "\"fork\":\"the child records into TRACE.PID\",\"syscalls\":%s}",
                (unsigned long long)cap, count_syscalls ? "true" : "false");
    text_string(t, 0, "program", exe, n > 0 ? (size_t)n : 0);
    text_printf(t, ",\"argv\":[");
    for (size_t i = 0; cmd && i < m;) {  /* cmdline: NUL-separated arguments */
        size_t len = strnlen(cmd + i, m - i);
        text_printf(t, "%s\"", i ? "," : "");
        text_escape(t, cmd + i, len);
        text_printf(t, "\"");
        i += len + 1;
    }
    text_printf(t, "]");
    text_string(t, 0, "cwd", cwd, strlen(cwd));
    text_printf(t, ",\"pid\":%d,\"env\":{", getpid());
    text_string(t, 1, "LD_PRELOAD", pre ? pre : "", pre_n);
    text_string(t, 0, "GLIBC_TUNABLES", tun ? tun : "", tun_n);
    text_printf(t, "}}");
    if (cmd)
        munmap(cmd, cmd_mapped);
    return t->len;
}

static void open_trace(const char *file)
{
    text json = {0};
    size_t json_len = header_json(&json);
    if (!json.buf || json.cut) {  /* cannot happen short of memory: then record nothing rather than a cut header */
        if (json.buf)
            munmap(json.buf, json.cap);
        return;
    }
    size_t header = (sizeof(ab_trace_head) + json_len + 1 + AT_EXIT_ROOM + AB_TRACE_HEADER - 1) /
                    AB_TRACE_HEADER * AB_TRACE_HEADER;
    fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    map_len = header + cap * sizeof(ab_event);
    if (fd >= 0 && ftruncate(fd, (off_t)map_len) == 0)
        map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (fd < 0 || map == MAP_FAILED || !map) {
        if (fd >= 0)
            close(fd);
        fd = -1, map = NULL;
        munmap(json.buf, json.cap);
        return;
    }
    header_bytes = header;
    clock_gettime(CLOCK_MONOTONIC, &start);
    atomic_store(&next, 0);
    atomic_store(&inflight, 0);
    atomic_store(&finished, 0);
    ab_trace_head *h = head();
    memcpy(h->magic, AB_TRACE_MAGIC, 8);
    h->version = AB_TRACE_VERSION, h->header_bytes = (uint32_t)header, h->record_bytes = sizeof(ab_event);
    h->flags = 0, h->events = 0;
    h->start_ns = (uint64_t)start.tv_sec * 1000000000ULL + (uint64_t)start.tv_nsec;
    memcpy(map + sizeof *h, json.buf, json_len + 1);
    munmap(json.buf, json.cap);
}

static int64_t own_resident(void);

/* What the recorder measured, added to the header's JSON as "at_exit" (the
 * header kept AT_EXIT_ROOM bytes for it). */
static void header_at_exit(uint64_t unfinished)
{
    char *json = map + sizeof(ab_trace_head), *end = strrchr(json, '}');
    if (!end)
        return;
    char room[AT_EXIT_ROOM];
    text x = {room, sizeof room, 0, 0};
    text_printf(&x, ",\"at_exit\":{\"arena_heaps\":%d,\"threads_created\":%u,\"unfinished_calls\":%llu",
                ab_arena_heaps(), (unsigned)atomic_load(&created), (unsigned long long)unfinished);
    text_printf(&x, ",\"own_anon_mmaps\":{\"calls\":%llu,\"peak_bytes\":%lld,"
                "\"at_exit_bytes\":%lld,\"resident_at_exit_bytes\":%lld,\"untracked\":%llu},"
                "\"anon_bytes\":{\"at_start\":%lld,\"at_exit\":%lld},"
                "\"file_backed_anon_bytes\":{\"at_start\":%lld,\"at_exit\":%lld}",
                (unsigned long long)own_calls, (long long)own_peak, (long long)own_bytes,
                (long long)own_resident(), (unsigned long long)own_untracked, (long long)anon_at_start,
                (long long)ab_anon_bytes(), (long long)file_anon_at_start, (long long)ab_file_backed_anon_bytes());
    if (count_syscalls && !syscalls_error[0]) {
        text_printf(&x, ",\"malloc_syscalls\":{");
        for (int i = 0; i < AB_NSYSCALLS; i++)
            text_printf(&x, "%s\"%s\":%lld", i ? "," : "", ab_syscall_names[i],
                        (long long)atomic_load(&malloc_syscalls[i]));
        text_printf(&x, "}");
    } else if (count_syscalls) {
        text_printf(&x, ",\"malloc_syscalls\":null");
        text_string(&x, 0, "malloc_syscalls_error", syscalls_error, strlen(syscalls_error));
    }
    text_printf(&x, "}}");
    if (x.cut)  /* never a cut JSON: say so instead */
        snprintf(room, sizeof room, ",\"at_exit\":{\"error\":\"what the recorder measured at exit did not fit\"}}");
    if ((size_t)(end - map) + strlen(room) < header_bytes - 1)
        strcpy(end, room);
}

/* Slots handed out but not yet filled (a call in flight in another thread):
 * wait for them a little, then count only the records before the first
 * still empty one, so the count covers filled records alone. */
static uint64_t filled_records(uint64_t used)
{
    for (int i = 0; i < 1000 && atomic_load(&inflight) > 0; i++) {
        struct timespec tick = {0, 50000};  /* 50 ms in all */
        nanosleep(&tick, NULL);
    }
    if (atomic_load(&inflight) <= 0)
        return used;
    const ab_event *ev = (const ab_event *)(map + header_bytes);
    for (uint64_t i = 0; i < used; i++)
        if (!__atomic_load_n(&ev[i].op, __ATOMIC_ACQUIRE))
            return i;
    return used;
}

/* Write the count and give the file its length.  Other threads may still be
 * inside a call: from here on no slot is handed out (reserve), a slot already
 * handed out stays inside the file, and the file stays mapped until the
 * process is gone, so a late fill lands in the file, never past its end. */
static void finish(void)
{
    if (!map || atomic_exchange(&finished, 1))
        return;
    uint64_t used = atomic_exchange(&next, CLOSED);
    if (used > cap)
        used = cap;
    uint64_t filled = filled_records(used);
    header_at_exit(used - filled);
    ab_trace_head *h = head();
    h->flags = (atomic_load(&overflow) ? AB_TRACE_FLAG_OVERFLOW : 0) | (filled < used ? AB_TRACE_FLAG_CUT_AT_EXIT : 0);
    __atomic_store_n(&h->events, filled, __ATOMIC_RELEASE);
    if (ftruncate(fd, (off_t)(header_bytes + used * sizeof(ab_event)))) {
        /* the count in the header still says how many records are real */
    }
}

static int child_pending;  /* a forked child opens its own file at its first event */

static void after_fork_child(void)
{
    /* the child has only the forking thread: a lock another thread held at fork is held by no one */
    __atomic_store_n(&own_lock, 0, __ATOMIC_RELEASE);
    if (!map)
        return;
    munmap(map, map_len);  /* the parent's file stays the parent's */
    map = NULL;
    close(fd);
    child_pending = 1;  /* not now: a child that only execs leaves no file behind */
}

static void thread_exit(void *index)
{
    fill(reserve(), AB_OP_THREAD_EXIT, NULL, 0, (uint64_t)(uintptr_t)index);
}


__attribute__((constructor)) static void init(void)
{
    static int inited;
    if (inited++)
        return;
    if (!ab_real.malloc)
        ab_resolve();
    const char *sc = getenv("ALLOCBENCH_TRACE_SYSCALLS");
    count_syscalls = sc && *sc == '1';
    pthread_key_create(&exit_key, thread_exit);
    const char *file = getenv("ALLOCBENCH_TRACE");
    if (!file || !*file || strlen(file) >= sizeof path)
        return;
    snprintf(path, sizeof path, "%s", file);
    const char *max = getenv("ALLOCBENCH_TRACE_MAX_EVENTS");
    cap = max && *max ? strtoull(max, NULL, 10) : (uint64_t)1 << 26;
    char *owner = getenv("ALLOCBENCH_TRACE_OWNER");
    char me[32];
    snprintf(me, sizeof me, "%-*d", AB_TRACE_OWNER_WIDTH, getpid());
    if (owner && strlen(owner) == AB_TRACE_OWNER_WIDTH && strspn(owner, " ") == AB_TRACE_OWNER_WIDTH) {
        memcpy(owner, me, AB_TRACE_OWNER_WIDTH);  /* the first process: its children inherit the claim */
    } else if (owner && *owner && strcmp(owner, me)) {
        char mine[sizeof path + 16];
        snprintf(mine, sizeof mine, "%s.%d", path, getpid());
        snprintf(path, sizeof path, "%s", mine);
    } else if (!owner) {  /* preloaded by hand: setenv mallocs, before recording starts */
        setenv("ALLOCBENCH_TRACE_OWNER", me, 1);
    }
    anon_at_start = ab_anon_bytes(), file_anon_at_start = ab_file_backed_anon_bytes();
    open_trace(path);
    pthread_atfork(NULL, NULL, after_fork_child);
}

__attribute__((destructor)) static void fini(void) { finish(); }

static ab_event *reserve(void)
{
    if (child_pending) {
        child_pending = 0;
        char child[sizeof path];
        snprintf(child, sizeof child, "%.4080s.%d", path, getpid());
        snprintf(path, sizeof path, "%s", child);
        open_trace(path);
    }
    if (!map)
        return NULL;
    atomic_fetch_add_explicit(&inflight, 1, memory_order_relaxed);  /* before the slot: finish() waits for it */
    uint64_t i = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
    if (i >= cap) {
        atomic_fetch_sub_explicit(&inflight, 1, memory_order_relaxed);
        if (i < CLOSED)  /* not the end of the recording: out of room */
            atomic_store_explicit(&overflow, 1, memory_order_relaxed);
        return NULL;
    }
    return (ab_event *)(map + header_bytes) + i;
}

static void fill(ab_event *e, int op, void *ptr, uint64_t old, uint64_t size)
{
    if (!e)
        return;
    if (!my_tid)
        my_tid = (uint32_t)syscall(SYS_gettid);
    e->t_ns = since_start();
    e->ptr = (uint64_t)(uintptr_t)ptr;
    e->old = old;
    e->size = size;
    e->tid = my_tid;
    __atomic_store_n(&e->op, (uint8_t)op, __ATOMIC_RELEASE);  /* last: the record is whole */
    atomic_fetch_sub_explicit(&inflight, 1, memory_order_release);
}

/* ALLOCBENCH_TRACE_SYSCALLS: this thread's counters, read just around the real call */
static int read_thread_counts(int64_t out[AB_NSYSCALLS])
{
    if (thread_counter_state == 0) {
        thread_counter_state = -1;  /* first: opening can malloc (strerror), and that call must not open again */
        if (ab_counter_open_thread(&thread_counter) == 0) {
            thread_counter_state = 1;
        } else {
            thread_counter_state = -1;
            snprintf(syscalls_error, sizeof syscalls_error, "%s", thread_counter.error);
        }
    }
    return thread_counter_state == 1 ? ab_counter_read_totals(&thread_counter, out) : -1;
}

/* The order of record and call: see the top of this file. */
static void hook_enter(ab_call *c)
{
    if (!map && !child_pending && !ab_resolving)
        init();  /* a call before the constructor (another library's): the trace starts here */
    if (c->op == AB_OP_FREE)
        fill(reserve(), AB_OP_FREE, c->in, 0, 0);
    else if (c->op == AB_OP_REALLOC || c->op == AB_OP_REALLOCARRAY)
        c->slot = reserve();
    in_alloc_call = 1;
    if (count_syscalls && map)
        c->t0 = read_thread_counts(counts_before) == 0;  /* last thing before the call */
}

static void hook_exit(ab_call *c)
{
    if (c->t0) {  /* first thing after it */
        int64_t after[AB_NSYSCALLS];
        if (read_thread_counts(after) == 0)
            for (int i = 0; i < AB_NSYSCALLS; i++)
                atomic_fetch_add_explicit(&malloc_syscalls[i], after[i] - counts_before[i], memory_order_relaxed);
    }
    in_alloc_call = 0;
    switch (c->op) {
    case AB_OP_FREE:
        return;
    case AB_OP_REALLOC: case AB_OP_REALLOCARRAY:
        fill(c->slot, c->op, c->out, (uint64_t)(uintptr_t)c->in, c->size);
        return;
    default:  /* the aligned calls record their alignment in `old` */
        fill(reserve(), c->op, c->out, c->align, c->size);
    }
}

/* Threads: a new thread's start routine is wrapped so that its first event
 * says which thread it is, and a key destructor records its exit.  The
 * wrapper's arguments sit in a static pool, never on the heap: a free in the
 * new thread would make glibc give it its arena (and thread cache) before the
 * program's own first call does. */
struct thread_args {
    void *(*fn)(void *);
    void *arg;
    uint32_t index, creator;
    _Atomic int used;
};
static struct thread_args thread_pool[1024];

static struct thread_args *claim_args(void)
{
    for (size_t i = 0; i < sizeof thread_pool / sizeof thread_pool[0]; i++) {
        int no = 0;
        if (atomic_compare_exchange_strong(&thread_pool[i].used, &no, 1))
            return &thread_pool[i];
    }
    return NULL;  /* over a thousand threads starting at once: the rest run unwrapped */
}

static void *thread_start(void *p)
{
    struct thread_args *slot = p, a = {slot->fn, slot->arg, slot->index, slot->creator, 0};
    atomic_store(&slot->used, 0);
    fill(reserve(), AB_OP_THREAD_START, NULL, a.creator, a.index);
    pthread_setspecific(exit_key, (void *)(uintptr_t)a.index);
    return a.fn(a.arg);
}

AB_EXPORT int pthread_create(pthread_t *thread, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    static int (*real)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "pthread_create");
    struct thread_args *a = map ? claim_args() : NULL;
    if (!a)  /* not recording: the thread runs unwrapped */
        return real(thread, attr, fn, arg);
    if (!my_tid)
        my_tid = (uint32_t)syscall(SYS_gettid);
    uint32_t index = atomic_fetch_add(&created, 1) + 1;  /* read no field of `a` after the call: the thread frees it */
    a->fn = fn, a->arg = arg, a->index = index, a->creator = my_tid;
    ab_event *e = reserve();  /* before the call: the new thread's events follow its creation */
    int rc = real(thread, attr, thread_start, a);
    fill(e, AB_OP_THREAD_CREATE, rc ? NULL : (void *)1, 0, index);
    if (rc)
        atomic_store(&a->used, 0);
    return rc;
}

/* _exit skips destructors: finish the trace first. */
AB_EXPORT void _exit(int status)
{
    finish();
    syscall(SYS_exit_group, status);
    __builtin_unreachable();
}

AB_EXPORT void _Exit(int status) { _exit(status); }

/* The program's own anonymous mappings (see the top of this file). */
static void own_lock_take(void)
{
    while (__atomic_exchange_n(&own_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
}

static void own_lock_give(void) { __atomic_store_n(&own_lock, 0, __ATOMIC_RELEASE); }

static void own_add(uintptr_t addr, size_t len)  /* under the lock */
{
    if (own_n == OWN_MAPS) {
        own_untracked++;
        return;
    }
    own_maps[own_n++] = (struct own_map){addr, len};
    own_bytes += (int64_t)len;
    if (own_bytes > own_peak)
        own_peak = own_bytes;
}

static void own_remove(uintptr_t lo, size_t len)  /* under the lock: [lo, lo + len) is unmapped */
{
    uintptr_t hi = lo + len;
    for (int i = 0; i < own_n; i++) {
        struct own_map m = own_maps[i];
        uintptr_t a = m.addr, b = m.addr + m.len;
        if (b <= lo || a >= hi)
            continue;
        uintptr_t cut_lo = a > lo ? a : lo, cut_hi = b < hi ? b : hi;
        own_bytes -= (int64_t)(cut_hi - cut_lo);
        if (a < cut_lo && b > cut_hi) {  /* a hole in the middle: the tail becomes an entry of its own */
            own_maps[i].len = cut_lo - a;
            if (own_n < OWN_MAPS)
                own_maps[own_n++] = (struct own_map){cut_hi, b - cut_hi};
            else
                own_bytes -= (int64_t)(b - cut_hi), own_untracked++;
        } else if (a < cut_lo) {
            own_maps[i].len = cut_lo - a;
        } else if (b > cut_hi) {
            own_maps[i] = (struct own_map){cut_hi, b - cut_hi};
        } else {
            own_maps[i--] = own_maps[--own_n];
        }
    }
}

/* The resident bytes of the program's own mappings now (mincore, a page at a bit). */
static int64_t own_resident(void)
{
    static unsigned char vec[4096];
    long page = sysconf(_SC_PAGESIZE);
    int64_t resident = 0;
    own_lock_take();
    for (int i = 0; i < own_n; i++)
        for (size_t off = 0; off < own_maps[i].len; off += sizeof vec * (size_t)page) {
            size_t len = own_maps[i].len - off < sizeof vec * (size_t)page ? own_maps[i].len - off
                                                                             : sizeof vec * (size_t)page;
            if (mincore((void *)(own_maps[i].addr + off), len, vec))
                break;
            for (size_t k = 0; k < (len + (size_t)page - 1) / (size_t)page; k++)
                resident += (vec[k] & 1) * page;
        }
    own_lock_give();
    return resident;
}

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);

static int own_watched(int flags, int fd) { return map && !in_alloc_call && (flags & MAP_ANONYMOUS) && fd == -1; }

AB_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (!real_mmap)
        *(void **)&real_mmap = dlsym(RTLD_NEXT, "mmap");
    void *p = real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED && own_watched(flags, fd)) {
        own_lock_take();
        own_calls++;
        if (flags & MAP_FIXED)
            own_remove((uintptr_t)p, len);  /* it replaced what was there */
        own_add((uintptr_t)p, len);
        own_lock_give();
    }
    return p;
}

AB_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}

AB_EXPORT int munmap(void *addr, size_t len)
{
    if (!real_munmap)
        *(void **)&real_munmap = dlsym(RTLD_NEXT, "munmap");
    int rc = real_munmap(addr, len);
    if (rc == 0 && map && !in_alloc_call) {
        own_lock_take();
        own_remove((uintptr_t)addr, len);
        own_lock_give();
    }
    return rc;
}

AB_EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    if (!real_mremap)
        *(void **)&real_mremap = dlsym(RTLD_NEXT, "mremap");
    void *new_addr = NULL;
    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        new_addr = va_arg(ap, void *);
        va_end(ap);
    }
    void *p = real_mremap(old, old_len, new_len, flags, new_addr);
    if (p != MAP_FAILED && map && !in_alloc_call) {
        own_lock_take();
        int64_t before = own_bytes;
        own_remove((uintptr_t)old, old_len);
        if (own_bytes < before) {  /* one of ours moved or grew */
            own_calls++;
            own_add((uintptr_t)p, new_len);
        }
        own_lock_give();
    }
    return p;
}
