/* allocbench-probe: single observations of glibc malloc's state, each in a
 * fresh process (the caller searches by running it many times).
 *
 *   allocbench-probe MODE [mallopt=PARAM:VALUE ...] [history=S1,S2,...] ARGS
 *
 * history: before the observation, malloc and free each size in turn (freeing
 * an mmapped chunk is what moves glibc's dynamic threshold).
 * exhaust=1: then use up the top chunk, so the next request must grow the heap
 * (the first malloc of a process leaves about M_TOP_PAD = 128 KiB of top chunk,
 * which serves requests above the threshold with no mmap at all).
 *
 *   mmapped SIZE        malloc(SIZE) once: {"mmapped":0|1,"top_before":N}
 *   trims TOTAL BLOCK   malloc TOTAL bytes from the heap (pieces of BLOCK), free
 *                       them so that only the last free can trim: {"trimmed":0|1,
 *                       "top_at_last_free":N,...} (did brk shrink, and at what top size)
 *   free-chunk SIZE     a free chunk of 2*SIZE inside the heap, then malloc(SIZE)
 *   top-chunk SIZE      M_TOP_PAD leaves a large top chunk, then malloc(SIZE)
 *   pinned N SIZE       N heap blocks of SIZE and one small block after them;
 *                       free the N; malloc_trim(0): heap top, RSS and madvise
 *                       counts at each step
 *   trim-pause BYTES layout=pinned|unpinned arena=main|thread how=trim|auto
 *                       BYTES of 64 KiB heap blocks, written, on the main arena
 *                       or a thread's; how=trim: the trim threshold out of reach,
 *                       all freed, then malloc_trim(0) timed; how=auto: all but
 *                       the last freed, then the last free, which trims, timed.
 *                       pinned: a small block after each one, so the freed
 *                       blocks stay 64 KiB holes that only malloc_trim returns.
 *                       {"ns":N,"released_bytes":N,"syscalls":{...},...}
 */
#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "opts.h"

/* glibc-internal: bit 1 of the size word just before the block is IS_MMAPPED */
static int is_mmapped(void *p) { return (*(volatile size_t *)((uintptr_t)p - sizeof(size_t)) & 2) != 0; }

static void touch(char *p, size_t n)
{
    for (size_t i = 0; i < n; i += 4096)
        p[i] = 1;
}

static void *volatile sink;

/* Allocate what is left of the top chunk but MINSIZE (32 bytes on 64-bit):
 * a request of r bytes takes a chunk of (r + 8 + 15) & ~15, so r = top - 40. */
static void exhaust_top(void)
{
    sink = malloc(16);  /* initialise the heap (and the tcache) first */
    size_t top = mallinfo2().keepcost;
    if (top > 64)
        sink = malloc(top - 40);
}

static void print_fp(const char *name, const ab_footprint *f)
{
    printf("\"%s\":{\"heap_top\":%llu,\"rss_bytes\":%lld,\"arena\":%llu,\"keepcost\":%llu,"
           "\"fordblks\":%llu}", name, (unsigned long long)f->heap_top, (long long)f->rss_bytes,
           (unsigned long long)f->mallinfo2[AB_MI_arena], (unsigned long long)f->mallinfo2[AB_MI_keepcost],
           (unsigned long long)f->mallinfo2[AB_MI_fordblks]);
}

/* trim-pause: see the top of this file.  Runs on the calling thread or a new one. */
typedef struct trim_pause {
    size_t bytes;
    int pinned, automatic;
    ab_counter *c;
    long long ns, rss_before, rss_after;
    ab_counts counts;
    int ok;
} trim_pause;

static void *run_trim_pause(void *arg)
{
    trim_pause *tp = arg;
    const size_t block = (size_t)64 << 10;
    size_t n = tp->bytes / block;
    char **ps = mmap(NULL, n * sizeof *ps + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (ps == MAP_FAILED || n < 2)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        ps[i] = malloc(block);
        if (!ps[i] || is_mmapped(ps[i]))
            return NULL;
        touch(ps[i], block);
        if (tp->pinned)  /* a long-lived small object after each block: the holes never join or reach the top */
            sink = malloc(64);
    }
    for (size_t i = 0; i + 1 < n; i++)  /* bottom up: one free chunk grows below the last block */
        free(ps[i]);
    if (!tp->automatic)
        free(ps[n - 1]);
    ab_window w;
    struct timespec t0, t1;
    tp->rss_before = ab_resident_bytes();
    ab_window_begin(tp->c, &w);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (tp->automatic)
        free(ps[n - 1]);  /* joins the free chunk and the top: the trim test runs in this free */
    else
        malloc_trim(0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ab_window_end(tp->c, &w, &tp->counts);
    tp->rss_after = ab_resident_bytes();
    tp->ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
    tp->ok = 1;
    munmap(ps, n * sizeof *ps + 1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: allocbench-probe MODE [mallopt=P:V] [history=S,...] ARGS\n");
        return 2;
    }
    const char *mode = argv[1];
    unsigned long long args[2] = {0, 0};
    int nargs = 0, exhaust = 0;
    /* settings first, then the history, whatever the order on the command line */
    for (int i = 2; i < argc; i++) {
        int param, value;
        if (sscanf(argv[i], "mallopt=%d:%d", &param, &value) == 2) {
            if (mallopt(param, value) != 1) {
                fprintf(stderr, "allocbench-probe: mallopt(%d, %d) refused\n", param, value);
                return 2;
            }
        } else if (!strcmp(argv[i], "exhaust=1")) {
            exhaust = 1;
        } else if (!strchr(argv[i], '=') && nargs < 2) {
            args[nargs++] = strtoull(argv[i], NULL, 10);
        }
    }
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "history=", 8))
            continue;
        for (char *s = argv[i] + 8; *s;) {
            char *end;
            size_t n = strtoull(s, &end, 10);
            if (end == s)
                break;
            void *p = malloc(n);
            sink = p;
            free(p);
            s = *end == ',' ? end + 1 : end;
        }
    }
    if (exhaust)
        exhaust_top();
    ab_footprint before, mid, after;
    if (!strcmp(mode, "mmapped") && nargs == 1) {
        ab_footprint_read(&before);
        void *p = malloc(args[0]);
        sink = p;
        printf("{\"mmapped\":%d,\"top_before\":%llu}\n", p ? is_mmapped(p) : -1,
               (unsigned long long)before.mallinfo2[AB_MI_keepcost]);
    } else if (!strcmp(mode, "trims") && nargs == 2) {
        /* A = k blocks of BLOCK, then B = the rest (at least BLOCK), all from the
         * heap.  Free A first (one free chunk below B, the top still small),
         * then B: it joins that chunk and the top, and only this free can meet
         * the trim test, with the top's size computed exactly. */
        size_t total = args[0], block = args[1];
        size_t k = total / block > 1 ? total / block - 1 : 0, n = k + 1;
        void **ps = calloc(n, sizeof *ps);
        for (size_t i = 0; i < n; i++)
            ps[i] = malloc(i < k ? block : total - k * block);
        int heap = 1;
        size_t merged = 0;
        for (size_t i = 0; i < n; i++) {
            heap &= !is_mmapped(ps[i]);
            merged += *(size_t *)((uintptr_t)ps[i] - sizeof(size_t)) & ~(size_t)7;
        }
        ab_footprint_read(&before);
        for (size_t i = 0; i < k; i++)
            free(ps[i]);
        size_t top = mallinfo2().keepcost;
        free(ps[k]);
        ab_footprint_read(&after);
        printf("{\"trimmed\":%d,\"all_on_heap\":%d,\"heap_top_drop\":%lld,\"top_at_last_free\":%zu}\n",
               after.heap_top < before.heap_top, heap,
               (long long)(before.heap_top - after.heap_top), top + merged);
    } else if ((!strcmp(mode, "free-chunk") || !strcmp(mode, "top-chunk")) && nargs == 1) {
        size_t size = args[0];
        if (mode[0] == 'f') {
            /* two heap blocks just under the threshold, a guard, then free both:
             * they coalesce into one free chunk big enough for `size` */
            void *a = malloc(size / 2 + 64), *b = malloc(size / 2 + 64), *guard = malloc(32);
            sink = guard;
            printf("{\"setup_on_heap\":%d,", !is_mmapped(a) && !is_mmapped(b));
            free(a);
            free(b);
        } else {
            void *warm = malloc(32);  /* the first heap growth takes M_TOP_PAD extra */
            sink = warm;
            printf("{\"setup_on_heap\":%d,", !is_mmapped(warm));
        }
        ab_footprint_read(&before);
        void *p = malloc(size);
        sink = p;
        ab_footprint_read(&after);
        printf("\"mmapped\":%d,\"heap_grew\":%d,\"top_before\":%llu}\n", is_mmapped(p),
               after.heap_top > before.heap_top, (unsigned long long)before.mallinfo2[AB_MI_keepcost]);
    } else if (!strcmp(mode, "pinned") && nargs == 2) {
        size_t n = args[0], size = args[1];
        char **ps = calloc(n, sizeof *ps);
        ab_counter c;
        char note[1024];
        const char *method = ab_counter_open_named(&c, getenv("ALLOCBENCH_COUNTER_METHOD"), note, sizeof note);
        if (!method)
            method = "none", ab_counter_open(&c, AB_METHOD_NONE, NULL, NULL);
        ab_window w;
        ab_counts free_counts, trim_counts;
        for (size_t i = 0; i < n; i++) {
            ps[i] = malloc(size);
            touch(ps[i], size);
        }
        void *pin = malloc(64);
        sink = pin;
        ab_footprint_read(&before);
        ab_window_begin(&c, &w);
        for (size_t i = 0; i < n; i++)
            free(ps[i]);
        ab_window_end(&c, &w, &free_counts);
        ab_footprint_read(&mid);
        ab_window_begin(&c, &w);
        int released = malloc_trim(0);
        ab_window_end(&c, &w, &trim_counts);
        ab_footprint_read(&after);
        printf("{");
        print_fp("allocated", &before);
        printf(",");
        print_fp("freed", &mid);
        printf(",");
        print_fp("trimmed", &after);
        printf(",\"trim_released\":%d,\"counter\":\"%s\"", released, method);
        const char *names[] = {"free", "trim"};
        ab_counts *cs[] = {&free_counts, &trim_counts};
        for (int k = 0; k < 2; k++) {
            printf(",\"%s_syscalls\":{", names[k]);
            for (int i = 0; i < AB_NSYSCALLS; i++) {
                printf("%s\"%s\":", i ? "," : "", ab_syscall_names[i]);
                if (cs[k]->syscalls[i] < 0) printf("null");
                else printf("%lld", (long long)cs[k]->syscalls[i]);
            }
            printf("}");
        }
        printf("}\n");
    } else if (!strcmp(mode, "trim-pause") && nargs == 1) {
        ab_counter c;
        char note[1024];
        const char *method = ab_counter_open_named(&c, getenv("ALLOCBENCH_COUNTER_METHOD"), note, sizeof note);
        if (!method)
            method = "none", ab_counter_open(&c, AB_METHOD_NONE, NULL, NULL);
        trim_pause tp = {.bytes = args[0], .c = &c,
                         .pinned = !strcmp(ab_opt_str(argc, argv, "layout", "unpinned"), "pinned"),
                         .automatic = !strcmp(ab_opt_str(argc, argv, "how", "trim"), "auto")};
        if (!tp.automatic)
            mallopt(M_TRIM_THRESHOLD, INT32_MAX);  /* no free trims before malloc_trim does */
        if (!strcmp(ab_opt_str(argc, argv, "arena", "main"), "thread")) {
            pthread_t t;
            if (pthread_create(&t, NULL, run_trim_pause, &tp) || pthread_join(t, NULL))
                tp.ok = 0;
        } else {
            run_trim_pause(&tp);
        }
        if (!tp.ok) {
            fprintf(stderr, "allocbench-probe: trim-pause: could not lay out %zu bytes of 64 KiB heap blocks\n",
                    tp.bytes);
            return 1;
        }
        printf("{\"ns\":%lld,\"rss_before\":%lld,\"rss_after\":%lld,\"released_bytes\":%lld,\"counter\":\"%s\","
               "\"syscalls\":{", tp.ns, tp.rss_before, tp.rss_after, tp.rss_before - tp.rss_after, method);
        for (int i = 0; i < AB_NSYSCALLS; i++) {
            printf("%s\"%s\":", i ? "," : "", ab_syscall_names[i]);
            if (tp.counts.syscalls[i] < 0) printf("null");
            else printf("%lld", (long long)tp.counts.syscalls[i]);
        }
        printf("}}\n");
    } else {
        fprintf(stderr, "allocbench-probe: unknown mode or wrong arguments: %s\n", mode);
        return 2;
    }
    return 0;
}
