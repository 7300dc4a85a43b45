/* What glibc's malloc promises its users, checked through the public API only.
 * Run it plain (glibc must pass: that keeps the checks honest) and with
 * LD_PRELOAD=libtoyalloc.so under each TOYALLOC_POLICY.  Each section runs in
 * a child process with a watchdog, so a hang or an abort is reported, not
 * waited on.  The subjects are those of glibc's malloc test suite that apply
 * to a replacement malloc; the checks are written here from glibc's manual
 * and malloc.c's documented behaviour.
 *   malloc_promises [section ...]      (no argument: every section)
 * Prints "ok NAME" or "FAIL NAME: ..." per section, then a summary line. */
#define _GNU_SOURCE
/* The misuse below is deliberate. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#pragma GCC diagnostic ignored "-Wuse-after-free"
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("  check failed (line %d): ", __LINE__); \
    printf(__VA_ARGS__); printf("\n"); fflush(stdout); } } while (0)

static int all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v) return 0;
    return 1;
}

static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4096, (size_t)PTRDIFF_MAX + 1, (size_t)PTRDIFF_MAX};
#define NHUGE (sizeof huge / sizeof huge[0])

static void free_keeps_errno(void)
{
    size_t sizes[] = {16, 1000, 100 << 10, 200 << 10, 4 << 20, 64 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void *p = malloc(sizes[i]);
        memset(p, 1, sizes[i]);
        errno = EXDEV;
        free(p);
        CHECK(errno == EXDEV, "free(%zu bytes) changed errno to %d", sizes[i], errno);
    }
    /* many frees at once: empties spans and caches, evicts */
    static void *many[4096];
    for (int i = 0; i < 4096; i++) many[i] = malloc((size_t)(i % 64 + 1) * 1024);
    for (int i = 0; i < 4096; i++) {
        errno = EXDEV;
        free(many[i]);
        if (errno != EXDEV) { CHECK(0, "free #%d changed errno to %d", i, errno); break; }
    }
    errno = EXDEV;
    free(NULL);
    CHECK(errno == EXDEV, "free(NULL) changed errno");
}

static void realloc_rules(void)
{
    unsigned char *p = realloc(NULL, 100);
    CHECK(p != NULL && malloc_usable_size(p) >= 100, "realloc(NULL, 100) is malloc(100)");
    memset(p, 7, 100);
    size_t steps[] = {40, 5000, 200 << 10, 2 << 20, 9 << 20, 1 << 20, 64 << 10, 10, 300};
    size_t have = 40;
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        p = realloc(p, steps[i]);
        size_t keep = have < steps[i] ? have : steps[i];
        CHECK(p && all_bytes(p, keep, 7), "realloc to %zu lost contents", steps[i]);
        memset(p, 7, steps[i]);
        have = steps[i];
    }
    for (size_t i = 0; i < NHUGE; i++) {
        errno = 0;
        CHECK(realloc(p, huge[i]) == NULL && errno == ENOMEM, "realloc(p, %zu) must fail with ENOMEM", huge[i]);
        CHECK(all_bytes(p, have, 7), "a failed realloc damaged the block");
    }
    errno = 0;
    CHECK(realloc(p, 0) == NULL, "realloc(p, 0) frees p and returns NULL (REALLOC_ZERO_BYTES_FREES)");
    unsigned char *big = malloc(1 << 20);
    memset(big, 9, 1 << 20);
    CHECK(realloc(big, 0) == NULL, "realloc(large, 0) returns NULL");
    errno = 0;
    CHECK(reallocarray(NULL, SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "reallocarray overflow is ENOMEM");
}

/* A large block whose mapping the program split: advice on part of it (numpy's MADV_HUGEPAGE on an
 * array of 4 MiB or more, a guard page's mprotect) makes it two mappings to the kernel, which mremap
 * cannot take as one; realloc must still grow and shrink it, its bytes kept (glibc copies then). */
static void realloc_split_mapping(void)
{
    long pg = sysconf(_SC_PAGESIZE);
    size_t n = 8 << 20, sizes[] = {16 << 20, 3 << 20, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *p = malloc(n);
        memset(p, 3, n);
        /* MADV_DONTFORK: a flag of the mapping on every kernel (nothing forks in this section) */
        unsigned char *cut = (unsigned char *)(((uintptr_t)p + (n / 2)) & ~(uintptr_t)(pg - 1));
        CHECK(madvise(cut, (size_t)pg, MADV_DONTFORK) == 0, "madvise of a page inside an 8 MiB block: %s",
              strerror(errno));
        unsigned char *q = realloc(p, sizes[i]);
        size_t keep = sizes[i] < n ? sizes[i] : n;
        CHECK(q && all_bytes(q, keep, 3), "realloc of an 8 MiB block split by madvise to %zu: %s",
              sizes[i], q ? "lost contents" : strerror(errno));
        free(q ? q : p);
    }
}

static void calloc_zeroes(void)
{
    errno = 0;
    CHECK(calloc(SIZE_MAX / 2, 3) == NULL && errno == ENOMEM, "calloc overflow must be NULL/ENOMEM");
    errno = 0;
    CHECK(calloc((size_t)1 << 32, (size_t)1 << 32) == NULL && errno == ENOMEM, "calloc 2^64 overflow");
    for (int round = 0; round < 3; round++)
        for (size_t s = 64; s <= (3 << 20); s = s * 2 + (s & 1 ? 0 : 24)) {
            unsigned char *p = malloc(s);
            memset(p, 0xFF, s);
            free(p);
            unsigned char *q = calloc(1, s);
            CHECK(q && all_bytes(q, s, 0), "calloc(%zu) after a dirty free is not zeroed", s);
            memset(q, 0xFF, s);  /* dirty for the next round */
            free(q);
        }
}

static void huge_is_enomem(void)
{
    void *small = malloc(32);
    free(small);  /* a recycled slot must not be handed out for a huge request */
    for (size_t i = 0; i < NHUGE; i++) {
        size_t n = huge[i];
        void *q = (void *)1;
        errno = 0; CHECK(malloc(n) == NULL && errno == ENOMEM, "malloc(%zu)", n);
        errno = 0; CHECK(calloc(1, n) == NULL && errno == ENOMEM, "calloc(1, %zu)", n);
        errno = 0; CHECK(memalign(64, n) == NULL && errno == ENOMEM, "memalign(64, %zu)", n);
        errno = 0; CHECK(aligned_alloc(4096, n) == NULL && errno == ENOMEM, "aligned_alloc(4096, %zu)", n);
        errno = 0; CHECK(valloc(n) == NULL && errno == ENOMEM, "valloc(%zu)", n);
        errno = 0; CHECK(pvalloc(n) == NULL && errno == ENOMEM, "pvalloc(%zu)", n);
        CHECK(posix_memalign(&q, 64, n) == ENOMEM && q == (void *)1, "posix_memalign(64, %zu)", n);
        CHECK(posix_memalign(&q, (size_t)1 << 20, n) == ENOMEM, "posix_memalign(1 MiB, %zu)", n);
    }
}

static void alignments(void)
{
    /* posix_memalign: a power-of-two multiple of sizeof(void *), else EINVAL */
    struct { size_t align; int rc; } pm[] = {
        {0, EINVAL}, {1, EINVAL}, {4, EINVAL}, {24, EINVAL}, {48, EINVAL}, {100, EINVAL},
        {SIZE_MAX / 2 + 2, EINVAL}, {SIZE_MAX / 2 + 1, ENOMEM}, {8, 0}};
    for (size_t i = 0; i < sizeof pm / sizeof pm[0]; i++) {
        void *q = (void *)1;
        int rc = posix_memalign(&q, pm[i].align, 64);
        CHECK(rc == pm[i].rc, "posix_memalign(%zu) returned %d, glibc returns %d", pm[i].align, rc, pm[i].rc);
        if (rc) CHECK(q == (void *)1, "a failed posix_memalign wrote *memptr");
        else free(q);
    }
    /* every power of two up to 128 MiB, small and large sizes, all three calls */
    for (size_t a = 8; a <= ((size_t)128 << 20); a *= 2)
        for (size_t s = 1; s <= (1 << 20); s = s * 64 + 3) {
            void *q = NULL;
            int rc = posix_memalign(&q, a, s);
            unsigned char *m = memalign(a, s), *x = aligned_alloc(a, s);
            CHECK(rc == 0 && ((uintptr_t)q & (a - 1)) == 0, "posix_memalign(%zu, %zu)", a, s);
            CHECK(m && ((uintptr_t)m & (a - 1)) == 0, "memalign(%zu, %zu)", a, s);
            CHECK(x && ((uintptr_t)x & (a - 1)) == 0, "aligned_alloc(%zu, %zu)", a, s);
            CHECK(malloc_usable_size(m) >= s, "usable size of memalign(%zu, %zu)", a, s);
            if (m) { m[0] = 1; m[s - 1] = 1; }
            if (x) { x[0] = 1; x[s - 1] = 1; }
            free(q), free(m), free(x);
        }
    /* glibc rounds a memalign alignment that is not a power of two up to one */
    size_t odd[][2] = {{48, 64}, {100, 128}, {24, 32}, {3000, 4096}, {(1 << 20) + 1, 2 << 20}};
    for (size_t i = 0; i < 5; i++) {
        void *m = memalign(odd[i][0], 10), *x = aligned_alloc(odd[i][0], 10);
        CHECK(m && ((uintptr_t)m & (odd[i][1] - 1)) == 0, "memalign(%zu) must be %zu-aligned", odd[i][0], odd[i][1]);
        CHECK(x && ((uintptr_t)x & (odd[i][1] - 1)) == 0, "aligned_alloc(%zu) (memalign in 2.36)", odd[i][0]);
        free(m), free(x);
    }
    errno = 0;
    CHECK(memalign(SIZE_MAX / 2 + 2, 10) == NULL && errno == EINVAL, "memalign above SIZE_MAX/2+1 is EINVAL");
    /* large alignments that glibc and jemalloc serve */
    void *q = NULL;
    CHECK(posix_memalign(&q, (size_t)128 << 20, 64) == 0 && ((uintptr_t)q & ((128 << 20) - 1)) == 0,
          "posix_memalign(128 MiB, 64)");
    free(q);
    unsigned char *x = aligned_alloc((size_t)128 << 20, (size_t)128 << 20);
    CHECK(x && ((uintptr_t)x & ((128 << 20) - 1)) == 0, "aligned_alloc(128 MiB, 128 MiB)");
    if (x) { x[0] = 1; x[(128 << 20) - 1] = 1; }
    free(x);
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *v = valloc(100), *pv = pvalloc(100);
    CHECK(v && ((uintptr_t)v & (size_t)(pg - 1)) == 0, "valloc is page-aligned");
    CHECK(pv && ((uintptr_t)pv & (size_t)(pg - 1)) == 0 && malloc_usable_size(pv) >= (size_t)pg,
          "pvalloc is page-aligned and rounds the size up to a page");
    free(v), free(pv);
}

static void usable_size(void)
{
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) is 0");
    unsigned char *prev = NULL;
    size_t prev_n = 0;
    for (size_t s = 0; s < (600 << 10); s = s * 3 / 2 + 1) {
        unsigned char *p = malloc(s);
        size_t u = malloc_usable_size(p);
        CHECK(p && ((uintptr_t)p & 15) == 0 && u >= s, "malloc(%zu): 16-byte aligned, usable >= size", s);
        memset(p, 0xA5, u);  /* every usable byte is the caller's */
        if (prev) CHECK(all_bytes(prev, prev_n, 0x5A), "writing usable bytes of one block hit another");
        free(prev);
        memset(p, 0x5A, u);
        prev = p, prev_n = u;
    }
    free(prev);
    void *z1 = malloc(0), *z2 = malloc(0);
    CHECK(z1 && z2 && z1 != z2, "malloc(0) returns unique pointers");
    free(z1), free(z2);
}

/* ---- threads ---- */

#define CHURN_OPS 20000
static volatile int corrupt;

static void *churn_256k(void *arg)
{
    unsigned char tag = (unsigned char)(uintptr_t)arg, tags[8];
    unsigned char *win[8] = {0};
    size_t n = 256 << 10;
    for (int i = 0; i < CHURN_OPS; i++) {
        int k = i & 7;
        if (win[k]) {
            if (win[k][0] != tags[k] || win[k][n - 1] != tags[k]) corrupt = 1;
            free(win[k]);
        }
        win[k] = malloc(n);
        if (!win[k]) { corrupt = 1; return NULL; }
        tag = (unsigned char)(tag + 4);  /* threads 1..4 never share a tag */
        tags[k] = tag, win[k][0] = tag, win[k][n - 1] = tag;
    }
    for (int k = 0; k < 8; k++) free(win[k]);
    return NULL;
}

static void threads_churn_256k(void)
{
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn_256k, (void *)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(!corrupt, "a 256 KiB block's tags changed while it was live (4 threads)");
}

static void *hold_blocks(void *arg)
{
    void **out = arg;
    for (int i = 0; i < 1000; i++) {
        size_t s = (size_t)(i * 7919) % (300 << 10) + 1;
        unsigned char *p = malloc(s);
        memset(p, (unsigned char)i, s);
        out[i] = p;
    }
    return NULL;  /* exits holding 1,000 blocks */
}

static void thread_exit_holding_blocks(void)
{
    static void *blocks[1000];
    pthread_t t;
    pthread_create(&t, NULL, hold_blocks, blocks);
    pthread_join(t, NULL);
    for (int i = 0; i < 1000; i++) {
        size_t s = (size_t)(i * 7919) % (300 << 10) + 1;
        CHECK(all_bytes(blocks[i], s, (unsigned char)i), "block %d of an exited thread changed", i);
        free(blocks[i]);
    }
    void *again = malloc(100);  /* and the allocator still works */
    CHECK(again != NULL, "malloc after a thread exited");
    free(again);
}

static volatile int stop_threads;

static void *allocate_until_stopped(void *arg)
{
    (void)arg;
    unsigned long i = 0;
    while (!stop_threads) {
        size_t s = (i * 2654435761u) % (512 << 10) + 1;
        char *p = malloc(s);
        p[0] = 1;
        free(p);
        i++;
    }
    return NULL;
}

static int child_allocates(void)
{
    for (int i = 0; i < 1000; i++) {
        size_t s = (size_t)(i * 977) % (300 << 10) + 1;
        char *p = malloc(s);
        if (!p) return 3;
        memset(p, 1, s);
        free(p);
    }
    return 0;
}

static void fork_while_threads_allocate(void)
{
    pthread_t t[3];
    stop_threads = 0;
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, allocate_until_stopped, NULL);
    int bad = 0;
    for (int i = 0; i < 50; i++) {
        pid_t pid = fork();
        if (pid == 0) _exit(child_allocates());
        int st;
        waitpid(pid, &st, 0);
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    stop_threads = 1;
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    CHECK(bad == 0, "%d of 50 forked children could not allocate", bad);
}

/* One thread mallocs while holding a FILE lock (as getline does), one flushes
 * every stream (stdio's list lock, then each FILE's lock), one forks. */
static FILE *shared_file;

static void *malloc_under_file_lock(void *arg)
{
    (void)arg;
    unsigned i = 0;
    while (!stop_threads) {
        flockfile(shared_file);
        free(malloc(++i % 4000 + 1));
        funlockfile(shared_file);
    }
    return NULL;
}

static void *flush_all(void *arg)
{
    (void)arg;
    while (!stop_threads) fflush(NULL);
    return NULL;
}

static void fork_against_stdio(void)
{
    shared_file = fopen("/dev/null", "w");
    pthread_t a, b;
    stop_threads = 0;
    pthread_create(&a, NULL, malloc_under_file_lock, NULL);
    pthread_create(&b, NULL, flush_all, NULL);
    int bad = 0;
    for (int i = 0; i < 300; i++) {
        pid_t pid = fork();
        if (pid == 0) { free(malloc(100)); _exit(0); }
        int st;
        waitpid(pid, &st, 0);
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    stop_threads = 1;
    pthread_join(a, NULL), pthread_join(b, NULL);
    fclose(shared_file);
    CHECK(bad == 0, "%d forked children failed", bad);
}

/* Single-threaded: a timer signal forks from its handler while malloc runs. */
static volatile sig_atomic_t forks_done;

static void fork_in_handler(int sig)
{
    (void)sig;
    int saved = errno;
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, NULL, 0), forks_done++;
    errno = saved;
}

static void fork_from_signal_handler(void)
{
    signal(SIGALRM, fork_in_handler);
    struct itimerval it = {{0, 500}, {0, 500}};
    setitimer(ITIMER_REAL, &it, NULL);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long i = 0;
    do {
        for (int k = 0; k < 1000; k++, i++) free(malloc((i * 2654435761u) % (256 << 10) + 1));
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (t.tv_sec - t0.tv_sec < 2);
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    CHECK(forks_done > 10, "only %d forks from the handler in 2 s", (int)forks_done);
}

static const struct { const char *name; void (*fn)(void); int timeout_s; } sections[] = {
    {"free-keeps-errno", free_keeps_errno, 30},
    {"realloc", realloc_rules, 30},
    {"realloc-split-mapping", realloc_split_mapping, 30},
    {"calloc-zeroes", calloc_zeroes, 60},
    {"huge-is-enomem", huge_is_enomem, 30},
    {"alignments", alignments, 60},
    {"usable-size", usable_size, 30},
    {"threads-churn-256k", threads_churn_256k, 60},
    {"thread-exit-holding-blocks", thread_exit_holding_blocks, 30},
    {"fork-while-threads-allocate", fork_while_threads_allocate, 60},
    {"fork-against-stdio", fork_against_stdio, 60},
    {"fork-from-signal-handler", fork_from_signal_handler, 30},
};
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* Run one section in a child; a hang past its timeout or a signal is a failure. */
static int run_section(size_t i)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        sections[i].fn();
        fflush(stdout);
        _exit(failures ? 1 : 0);
    }
    int st = 0;
    for (int waited_ms = 0;; waited_ms += 10) {
        if (waitpid(pid, &st, WNOHANG) == pid) break;
        if (waited_ms >= sections[i].timeout_s * 1000) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            printf("FAIL %s: hung (killed after %d s)\n", sections[i].name, sections[i].timeout_s);
            return 1;
        }
        usleep(10000);
    }
    if (WIFSIGNALED(st)) {
        printf("FAIL %s: died of signal %d (%s)\n", sections[i].name, WTERMSIG(st), strsignal(WTERMSIG(st)));
        return 1;
    }
    if (WEXITSTATUS(st) != 0) {
        printf("FAIL %s\n", sections[i].name);
        return 1;
    }
    printf("ok %s\n", sections[i].name);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    int failed = 0, ran = 0;
    for (size_t i = 0; i < NSECTIONS; i++) {
        int wanted = argc == 1;
        for (int a = 1; a < argc; a++) wanted |= !strcmp(argv[a], sections[i].name);
        if (wanted) failed += run_section(i), ran++;
    }
    for (int a = 1; a < argc; a++) {
        int known = 0;
        for (size_t i = 0; i < NSECTIONS; i++) known |= !strcmp(argv[a], sections[i].name);
        if (!known) { fprintf(stderr, "malloc_promises: unknown section %s\n", argv[a]); return 2; }
    }
    printf("sections: %d ok, %d failed\n", ran - failed, failed);
    return failed ? 1 : 0;
}
