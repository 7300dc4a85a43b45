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
 * ALLOCBENCH_EXPLAIN_LOG (else stderr), with write(2) only: no stdio and no
 * malloc inside a hook (hooks.h). */
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
static size_t threshold = DEFAULT_THRESHOLD;
static unsigned long long moved_blocks, moved_bytes, rises;
static struct timespec start;

/* glibc's request2size on 64-bit, and the smallest request it mmaps at a threshold */
static size_t chunk_of(size_t n) { return n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15; }

static void put(const char *s) { ab_put(log_fd, s); }
static void put_num(unsigned long long v, int base) { ab_put_num(log_fd, v, base); }

__attribute__((constructor)) static void init(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    ab_resolve();
    real_mallopt = dlsym(RTLD_NEXT, "mallopt");
    const char *path = getenv("ALLOCBENCH_EXPLAIN_LOG");
    if (path && *path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0)
            log_fd = fd;
    }
    const char *t = getenv("GLIBC_TUNABLES");
    if (t && (strstr(t, "mmap_threshold") || strstr(t, "trim_threshold") || strstr(t, "top_pad") ||
              strstr(t, "mmap_max")))
        fixed = 1;
    void *warm[2];
    backtrace(warm, 2);  /* the unwinder loads (and mallocs) now, not inside free */
    put("explain: start threshold ");
    put_num(threshold, 10);
    put(fixed ? " (fixed by GLIBC_TUNABLES: no rise)\n" : " (dynamic)\n");
}

__attribute__((destructor)) static void fini(void)
{
    put("explain: summary rises ");
    put_num(rises, 10);
    put(" final_threshold ");
    put_num(threshold, 10);
    put(" moved_blocks ");
    put_num(moved_blocks, 10);
    put(" moved_bytes ");
    put_num(moved_bytes, 10);
    put("\n");
}

/* a request that the original threshold would have mmapped, but the raised one keeps on the heap */
static void note_request(uint64_t n)
{
    if (n >= AB_GLIBC_DEFAULT_BOUNDARY && n != UINT64_MAX && chunk_of(n) < threshold && threshold > DEFAULT_THRESHOLD) {
        __atomic_fetch_add(&moved_blocks, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&moved_bytes, n, __ATOMIC_RELAXED);
    }
}

/* glibc's rule, applied to a chunk about to be freed */
static void note_free(void *p)
{
    if (!p || fixed)
        return;
    size_t word = ((size_t *)p)[-1];  /* the chunk's size word, read before the real free */
    size_t size = word & ~(size_t)SIZE_BITS;
    if (!(word & IS_MMAPPED) || size <= threshold || size > THRESHOLD_MAX)
        return;
    size_t old = threshold;
    threshold = size;
    rises++;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    put("explain: rise t_ns ");
    put_num((unsigned long long)((now.tv_sec - start.tv_sec) * 1000000000LL + now.tv_nsec - start.tv_nsec), 10);
    put(" old ");
    put_num(old, 10);
    put(" new ");
    put_num(size, 10);
    put(" trim ");
    put_num(2 * size, 10);
    put("\n");
    void *frames[40];
    int n = backtrace(frames, 40), i = 0;
    Dl_info self, f;
    dladdr((void *)note_free, &self);
    while (i < n && dladdr(frames[i], &f) && f.dli_fbase == self.dli_fbase)
        i++;  /* this shim's own frames (free's wrapper and the hooks): free's caller comes first */
    for (; i < n; i++)
        ab_put_frame(log_fd, "explain: ", frames[i]);
    put("explain: end of backtrace\n");
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
        fixed = 1;
    return real_mallopt(param, value);
}
