/* libexplain.so: who moved glibc's mmap threshold.  Preloaded into an
 * unmodified program (allocbench exec --explain-threshold), it models glibc
 * 2.36's dynamic rule (malloc.c, __libc_free): freeing an mmapped chunk whose
 * size is above the current threshold and at most DEFAULT_MMAP_THRESHOLD_MAX
 * (32 MiB on 64-bit) raises the threshold to that size and the trim threshold
 * to twice it, unless a threshold was fixed (mallopt of M_MMAP_THRESHOLD,
 * M_TRIM_THRESHOLD, M_TOP_PAD or M_MMAP_MAX, or the same tunables).
 *
 * Each rise is written, as one line, with its time, the old and new
 * thresholds and the backtrace of the free (one line a frame: object file and
 * offset, and the function where the object has symbols; allocbench adds file
 * and line after the run); at exit it writes how many later allocations fell
 * between the original boundary and the raised threshold (blocks the rise
 * moved onto the heap), and their bytes.  Output goes to the file named by
 * ALLOCBENCH_EXPLAIN_LOG (else stderr), in shimlog.h's formats: a rise and
 * its backtrace are one write, so threads' records never interleave. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define AB_HOOKS_WRAP
#include "hooks.h"
#include "shimlog.h"

#define DEFAULT_THRESHOLD ((size_t)128 * 1024)
#define THRESHOLD_MAX ((size_t)32 * 1024 * 1024)
#define SIZE_BITS 7   /* PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA */
#define IS_MMAPPED 2

static int (*real_mallopt)(int, int);
static int log_fd = 2, fixed;
/* shared by every thread: atomics (a rise is one compare-and-swap, so two
 * threads freeing big chunks at once log each rise once) */
static size_t threshold = DEFAULT_THRESHOLD;
static unsigned long long moved_blocks, moved_bytes, rises;
static struct timespec start;

/* glibc's request2size on 64-bit, and the smallest request it mmaps at a threshold */
static size_t chunk_of(size_t n) { return n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15; }

__attribute__((constructor)) static void init(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    ab_resolve();
    real_mallopt = dlsym(RTLD_NEXT, "mallopt");
    const char *path = getenv("ALLOCBENCH_EXPLAIN_LOG");
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            log_fd = fd;
    }
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && (strstr(t, "mmap_threshold") || strstr(t, "trim_threshold") || strstr(t, "top_pad") ||
              strstr(t, "mmap_max")))
        fixed = 1;
    void *warm[2];
    backtrace(warm, 2);  /* the unwinder loads (and mallocs) now, not inside free */
    ab_out o = {.fd = log_fd};
    ab_line(&o, AB_EXPLAIN_PREFIX, ab_shimlog_formats[AB_SLF_explain_start], (unsigned long long)threshold,
            fixed ? "fixed" : "dynamic");
    ab_flush(&o);
}

__attribute__((destructor)) static void fini(void)
{
    ab_out o = {.fd = log_fd};
    ab_line(&o, AB_EXPLAIN_PREFIX, ab_shimlog_formats[AB_SLF_explain_summary],
            __atomic_load_n(&rises, __ATOMIC_RELAXED), (unsigned long long)__atomic_load_n(&threshold, __ATOMIC_RELAXED),
            __atomic_load_n(&moved_blocks, __ATOMIC_RELAXED), __atomic_load_n(&moved_bytes, __ATOMIC_RELAXED));
    ab_flush(&o);
}

/* a request that the original threshold would have mmapped, but the raised one keeps on the heap */
static void note_request(uint64_t n)
{
    size_t now = __atomic_load_n(&threshold, __ATOMIC_RELAXED);
    if (n >= AB_GLIBC_DEFAULT_BOUNDARY && n != UINT64_MAX && chunk_of(n) < now && now > DEFAULT_THRESHOLD) {
        __atomic_fetch_add(&moved_blocks, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&moved_bytes, n, __ATOMIC_RELAXED);
    }
}

/* glibc's rule, applied to a chunk about to be freed */
static void note_free(void *p)
{
    if (!p || __atomic_load_n(&fixed, __ATOMIC_RELAXED))
        return;
    size_t word = ((size_t *)p)[-1];  /* the chunk's size word, read before the real free */
    size_t size = word & ~(size_t)SIZE_BITS;
    size_t old = __atomic_load_n(&threshold, __ATOMIC_RELAXED);
    do {
        if (!(word & IS_MMAPPED) || size <= old || size > THRESHOLD_MAX)
            return;
    } while (!__atomic_compare_exchange_n(&threshold, &old, size, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    __atomic_fetch_add(&rises, 1, __ATOMIC_RELAXED);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    ab_out o = {.fd = log_fd};  /* the rise and its backtrace: one record, one write */
    ab_line(&o, AB_EXPLAIN_PREFIX, ab_shimlog_formats[AB_SLF_explain_rise],
            (unsigned long long)((now.tv_sec - start.tv_sec) * 1000000000LL + now.tv_nsec - start.tv_nsec),
            (unsigned long long)old, (unsigned long long)size, (unsigned long long)(2 * size));
    void *frames[40];
    int n = backtrace(frames, 40), i = 0;
    Dl_info self, f;
    dladdr((void *)note_free, &self);
    while (i < n && dladdr(frames[i], &f) && f.dli_fbase == self.dli_fbase)
        i++;  /* this shim's own frames (free's wrapper and the hooks): free's caller comes first */
    for (; i < n; i++)
        ab_frame(&o, AB_EXPLAIN_PREFIX, frames[i]);
    ab_line(&o, AB_EXPLAIN_PREFIX, "%s", ab_shimlog_formats[AB_SLF_explain_end_of_backtrace]);
    ab_flush(&o);
}

static void hook_enter(ab_call *c)
{
    if (c->op == AB_OP_FREE)
        note_free(c->in);
    else
        note_request(c->size);
}

static void hook_exit(ab_call *c) { (void)c; }

AB_EXPORT int mallopt(int param, int value)
{
    if (!real_mallopt)
        real_mallopt = dlsym(RTLD_NEXT, "mallopt");
    if (param == M_MMAP_THRESHOLD || param == M_TRIM_THRESHOLD || param == M_TOP_PAD || param == M_MMAP_MAX)
        __atomic_store_n(&fixed, 1, __ATOMIC_RELAXED);
    return real_mallopt(param, value);
}
