/* libexplain.so: who moved glibc's mmap threshold.  Preloaded into an
 * unmodified program (allocbench exec --explain-threshold), it models glibc
 * 2.36's dynamic rule (malloc.c, __libc_free): freeing an mmapped chunk whose
 * size is above the current threshold and at most DEFAULT_MMAP_THRESHOLD_MAX
 * (32 MiB on 64-bit) raises the threshold to that size and the trim threshold
 * to twice it, unless a threshold was fixed (mallopt of M_MMAP_THRESHOLD,
 * M_TRIM_THRESHOLD, M_TOP_PAD or M_MMAP_MAX, or the same tunables).
 *
 * Each rise is written, as one line, with its time, the old and new
 * thresholds and the symbolised backtrace of the free; at exit it writes how
 * many later allocations fell between the original boundary and the raised
 * threshold (blocks the rise moved onto the heap), and their bytes.
 * Output goes to the file named by ALLOCBENCH_EXPLAIN_LOG (else stderr), with
 * write(2) only: no stdio and no malloc inside a hook. */
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

#define DEFAULT_THRESHOLD ((size_t)128 * 1024)
#define THRESHOLD_MAX ((size_t)32 * 1024 * 1024)
#define SIZE_BITS 7   /* PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA */
#define IS_MMAPPED 2

static void *(*real_malloc)(size_t);
static void (*real_free)(void *);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static int (*real_mallopt)(int, int);
static int log_fd = 2, fixed, resolving;
static size_t threshold = DEFAULT_THRESHOLD;
static unsigned long long moved_blocks, moved_bytes, rises;
static struct timespec start;

/* glibc's request2size on 64-bit, and the smallest request it mmaps at a threshold */
static size_t chunk_of(size_t n) { return n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15; }
static const size_t original_boundary = DEFAULT_THRESHOLD - 23;  /* 131049, as probe boundary finds */

static void put(const char *s) { ssize_t r = write(log_fd, s, strlen(s)); (void)r; }

static void put_num(unsigned long long v)
{
    char buf[24];
    int i = sizeof buf;
    buf[--i] = 0;
    do buf[--i] = (char)('0' + v % 10); while ((v /= 10) && i > 0);
    put(buf + i);
}

static void resolve(void)
{
    resolving = 1;
    real_malloc = dlsym(RTLD_NEXT, "malloc");
    real_free = dlsym(RTLD_NEXT, "free");
    real_calloc = dlsym(RTLD_NEXT, "calloc");
    real_realloc = dlsym(RTLD_NEXT, "realloc");
    real_mallopt = dlsym(RTLD_NEXT, "mallopt");
    resolving = 0;
}

__attribute__((constructor)) static void init(void)
{
    clock_gettime(CLOCK_MONOTONIC, &start);
    resolve();
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
    put_num(threshold);
    put(fixed ? " (fixed by GLIBC_TUNABLES: no rise)\n" : " (dynamic)\n");
}

__attribute__((destructor)) static void fini(void)
{
    put("explain: summary rises ");
    put_num(rises);
    put(" final_threshold ");
    put_num(threshold);
    put(" moved_blocks ");
    put_num(moved_blocks);
    put(" moved_bytes ");
    put_num(moved_bytes);
    put("\n");
}

/* a request that the original threshold would have mmapped, but the raised one keeps on the heap */
static void note_request(size_t n)
{
    if (n >= original_boundary && chunk_of(n) < threshold && threshold > DEFAULT_THRESHOLD) {
        __atomic_fetch_add(&moved_blocks, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&moved_bytes, n, __ATOMIC_RELAXED);
    }
}

void *malloc(size_t n)
{
    if (!real_malloc) {
        if (resolving)
            return NULL;  /* dlsym's own bootstrap: it copes with NULL */
        resolve();
    }
    note_request(n);
    return real_malloc(n);
}

void *calloc(size_t a, size_t b)
{
    if (!real_calloc) {
        if (resolving)
            return NULL;
        resolve();
    }
    size_t n;
    if (!__builtin_mul_overflow(a, b, &n))
        note_request(n);
    return real_calloc(a, b);
}

void *realloc(void *p, size_t n)
{
    if (!real_realloc)
        resolve();
    note_request(n);
    return real_realloc(p, n);
}

int mallopt(int param, int value)
{
    if (!real_mallopt)
        resolve();
    if (param == M_MMAP_THRESHOLD || param == M_TRIM_THRESHOLD || param == M_TOP_PAD || param == M_MMAP_MAX)
        fixed = 1;
    return real_mallopt(param, value);
}

void free(void *p)
{
    if (!real_free)
        resolve();
    if (p && !fixed) {
        size_t word = ((size_t *)p)[-1];  /* the chunk's size word, read before the real free */
        size_t size = word & ~(size_t)SIZE_BITS;
        if ((word & IS_MMAPPED) && size > threshold && size <= THRESHOLD_MAX) {
            size_t old = threshold;
            threshold = size;
            rises++;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            put("explain: rise t_ns ");
            put_num((unsigned long long)((now.tv_sec - start.tv_sec) * 1000000000LL + now.tv_nsec - start.tv_nsec));
            put(" old ");
            put_num(old);
            put(" new ");
            put_num(size);
            put(" trim ");
            put_num(2 * size);
            put("\n");
            void *frames[32];
            int n = backtrace(frames, 32);
            backtrace_symbols_fd(frames + 1, n - 1, log_fd);  /* writes, no malloc */
            put("explain: end of backtrace\n");
        }
    }
    real_free(p);
}
