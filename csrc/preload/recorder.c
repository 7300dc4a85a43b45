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
static _Atomic uint64_t next;
static _Atomic int overflow;
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

/* Read a small file into buf (no stdio): for the header's program and command line. */
static size_t slurp(const char *file, char *buf, size_t cap_bytes)
{
    int f = open(file, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return 0;
    ssize_t n = read(f, buf, cap_bytes - 1);
    close(f);
    return n > 0 ? (size_t)n : 0;
}

/* JSON-escape src into dst (at most cap bytes); NULs become spaces (cmdline). */
static size_t escape(char *dst, size_t cap_bytes, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 7 < cap_bytes; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c == 0)
            c = ' ';
        if (c == '"' || c == '\\')
            dst[o++] = '\\', dst[o++] = (char)c;
        else if (c < 0x20)
            o += (size_t)snprintf(dst + o, cap_bytes - o, "\\u%04x", c);
        else
            dst[o++] = (char)c;
    }
    dst[o] = 0;
    return o;
}

static void open_trace(const char *file)
{
    fd = open(file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    map_len = AB_TRACE_HEADER + cap * sizeof(ab_event);
    if (ftruncate(fd, (off_t)map_len) != 0) {
        close(fd), fd = -1;
        return;
    }
    map = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd), fd = -1, map = NULL;
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    atomic_store(&next, 0);
    memcpy(map, AB_TRACE_MAGIC, 8);
    uint32_t words[4] = {AB_TRACE_VERSION, AB_TRACE_HEADER, sizeof(ab_event), 0};
    memcpy(map + 8, words, sizeof words);
    uint64_t zero = 0, start_ns = (uint64_t)start.tv_sec * 1000000000ULL + (uint64_t)start.tv_nsec;
    memcpy(map + 24, &zero, 8);
    memcpy(map + 32, &start_ns, 8);
    char exe[1024] = "", cmd[2048] = "", exe_j[2100], cmd_j[4200];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    escape(exe_j, sizeof exe_j, exe, n > 0 ? (size_t)n : 0);
    size_t m = slurp("/proc/self/cmdline", cmd, sizeof cmd);
    while (m && cmd[m - 1] == 0)
        m--;
    escape(cmd_j, sizeof cmd_j, cmd, m);
    const char *pre = getenv("LD_PRELOAD"), *tun = getenv("GLIBC_TUNABLES");
    char pre_j[1100] = "", tun_j[600] = "";
    escape(pre_j, sizeof pre_j, pre ? pre : "", pre ? strlen(pre) : 0);
    escape(tun_j, sizeof tun_j, tun ? tun : "", tun ? strlen(tun) : 0);
    char argv_j[4400] = "[", cwd[1024] = "", cwd_j[2100];
    for (size_t i = 0, o = 1; i < m && o + 8 < sizeof argv_j;) {  /* cmdline: NUL-separated arguments */
        size_t len = strnlen(cmd + i, m - i);
        o += (size_t)snprintf(argv_j + o, sizeof argv_j - o, "%s\"", o > 1 ? "," : "");
        o += escape(argv_j + o, sizeof argv_j - o - 3, cmd + i, len);
        o += (size_t)snprintf(argv_j + o, sizeof argv_j - o, "\"");
        i += len + 1;
    }
    strncat(argv_j, "]", sizeof argv_j - strlen(argv_j) - 1);
    if (!getcwd(cwd, sizeof cwd))  /* before strlen(cwd): an argument list has no order of evaluation */
        cwd[0] = 0;
    escape(cwd_j, sizeof cwd_j, cwd, strlen(cwd));
    snprintf(map + 40, AB_TRACE_HEADER - 41,
             "{\"recorder\":{\"max_events\":%llu,\"order\":\"global, one atomic add per call\","
             "\"fork\":\"the child records into TRACE.PID\",\"syscalls\":%s},\"program\":\"%s\","
             "\"command\":\"%s\",\"argv\":%s,\"cwd\":\"%s\","
             "\"pid\":%d,\"env\":{\"LD_PRELOAD\":\"%s\",\"GLIBC_TUNABLES\":\"%s\"}}",
             (unsigned long long)cap, count_syscalls ? "true" : "false", exe_j, cmd_j, argv_j, cwd_j, getpid(),
             pre_j, tun_j);
}

static int64_t own_resident(void);

/* What the recorder measured, added to the header's JSON as "at_exit". */
static void header_at_exit(void)
{
    char *json = map + 40, *end = strrchr(json, '}');
    if (!end)
        return;
    char extra[900];
    int o = snprintf(extra, sizeof extra, ",\"at_exit\":{\"arena_heaps\":%d,\"threads_created\":%u", ab_arena_heaps(),
                     (unsigned)atomic_load(&created));
    o += snprintf(extra + o, sizeof extra - (size_t)o, ",\"own_anon_mmaps\":{\"calls\":%llu,\"peak_bytes\":%lld,"
                  "\"at_exit_bytes\":%lld,\"resident_at_exit_bytes\":%lld,\"untracked\":%llu},"
                  "\"anon_bytes\":{\"at_start\":%lld,\"at_exit\":%lld},"
                  "\"file_backed_anon_bytes\":{\"at_start\":%lld,\"at_exit\":%lld}",
                  (unsigned long long)own_calls, (long long)own_peak, (long long)own_bytes,
                  (long long)own_resident(), (unsigned long long)own_untracked, (long long)anon_at_start,
                  (long long)ab_anon_bytes(), (long long)file_anon_at_start, (long long)ab_file_backed_anon_bytes());
    if (count_syscalls && !syscalls_error[0]) {
        o += snprintf(extra + o, sizeof extra - (size_t)o, ",\"malloc_syscalls\":{");
        for (int i = 0; i < AB_NSYSCALLS; i++)
            o += snprintf(extra + o, sizeof extra - (size_t)o, "%s\"%s\":%lld", i ? "," : "", ab_syscall_names[i],
                          (long long)atomic_load(&malloc_syscalls[i]));
        o += snprintf(extra + o, sizeof extra - (size_t)o, "}");
    } else if (count_syscalls) {
        o += snprintf(extra + o, sizeof extra - (size_t)o, ",\"malloc_syscalls\":null,\"malloc_syscalls_error\":\"");
        o += (int)escape(extra + o, sizeof extra - (size_t)o - 4, syscalls_error, strlen(syscalls_error));
        o += snprintf(extra + o, sizeof extra - (size_t)o, "\"");
    }
    snprintf(extra + o, sizeof extra - (size_t)o, "}}");
    if ((size_t)(end - map) + strlen(extra) < AB_TRACE_HEADER - 1)
        strcpy(end, extra);
}

/* Write the count and give the file its real length. */
static void finish(void)
{
    if (!map)
        return;
    header_at_exit();
    uint64_t used = atomic_load(&next);
    if (used > cap)
        used = cap;
    memcpy(map + 24, &used, 8);
    uint32_t flags = atomic_load(&overflow) ? 1 : 0;
    memcpy(map + 20, &flags, 4);
    munmap(map, map_len);
    map = NULL;
    if (ftruncate(fd, (off_t)(AB_TRACE_HEADER + used * sizeof(ab_event)))) {
        /* the count in the header still says how many records are real */
    }
    close(fd);
}

static int child_pending;  /* a forked child opens its own file at its first event */

static void after_fork_child(void)
{
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

#define OWNER_WIDTH 20  /* allocbench sets ALLOCBENCH_TRACE_OWNER to this many spaces: room for a pid */

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
    snprintf(me, sizeof me, "%-*d", OWNER_WIDTH, getpid());
    if (owner && strlen(owner) == OWNER_WIDTH && strspn(owner, " ") == OWNER_WIDTH) {
        memcpy(owner, me, OWNER_WIDTH);  /* the first process: its children inherit the claim */
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
    uint64_t i = atomic_fetch_add_explicit(&next, 1, memory_order_relaxed);
    if (i >= cap) {
        atomic_store_explicit(&overflow, 1, memory_order_relaxed);
        return NULL;
    }
    return (ab_event *)(map + AB_TRACE_HEADER) + i;
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
