/* allocbench-mmap-probe: the mmap facts the project grew from, one observation
 * per fresh process, printed as one JSON object.  Modes:
 *   read-vs-mmap FILE METHOD CONSUME CACHE REPEATS
 *       METHOD read4k|read64k|read1m|mmap|populate|sequential|random
 *       CONSUME all (sum every 8-byte word) | page (one byte per page)
 *       CACHE warm | cold (posix_fadvise DONTNEED before each repeat, checked by mincore)
 *   lazy [hugepage]      a 1 GiB anonymous mapping, step by step
 *   unmappable DIR       mmap on things that are not regular files
 *   shared FILE          MAP_SHARED between a parent and a forked child
 *   private FILE         MAP_PRIVATE and copy-on-write after fork
 *   shm                  POSIX shared memory and shared anonymous memory
 *   shm-reader NAME      (internal) a separately started reader of shm */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"

static long page;

static void die(const char *what)
{
    fprintf(stderr, "allocbench-mmap-probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void faults(long *minor, long *major)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *minor = ru.ru_minflt, *major = ru.ru_majflt;
}

/* ---- read() against mmap() ---- */

static uint64_t sum_words(const unsigned char *p, size_t n)
{
    uint64_t s = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        s += w;
    }
    for (; i < n; i++)
        s += p[i];
    return s;
}

static uint64_t sum_pages(const unsigned char *p, size_t n)
{
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += (size_t)page)
        s += p[i];
    return s;
}

/* The same consumption through read(): every byte, or one byte per page. */
static uint64_t consume_buffer(const unsigned char *buf, size_t got, size_t file_off, int all)
{
    if (all)
        return sum_words(buf, got);  /* buffers are multiples of 8 and of a page */
    uint64_t s = 0;
    for (size_t i = (size_t)((page - file_off % (size_t)page) % (size_t)page); i < got; i += (size_t)page)
        s += buf[i];
    return s;
}

static long resident_pages(int fd, size_t size)
{
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return -1;
    size_t n = (size + (size_t)page - 1) / (size_t)page;
    unsigned char *vec = malloc(n);
    long r = 0;
    if (vec && mincore(m, size, vec) == 0)
        for (size_t i = 0; i < n; i++)
            r += vec[i] & 1;
    free(vec);
    munmap(m, size);
    return r;
}

static int read_vs_mmap(int argc, char **argv)
{
    if (argc != 7)
        return 2;
    const char *path = argv[2], *method = argv[3];
    int all = !strcmp(argv[4], "all"), cold = !strcmp(argv[5], "cold");
    int repeats = atoi(argv[6]);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        die(path);
    struct stat st;
    fstat(fd, &st);
    size_t size = (size_t)st.st_size;
    size_t buf_size = !strcmp(method, "read4k") ? 4096 : !strcmp(method, "read64k") ? 65536
                      : !strcmp(method, "read1m") ? 1 << 20 : 0;
    int map_flags = MAP_PRIVATE | (!strcmp(method, "populate") ? MAP_POPULATE : 0);
    int advice = !strcmp(method, "sequential") ? MADV_SEQUENTIAL : !strcmp(method, "random") ? MADV_RANDOM : -1;
    if (!buf_size && strcmp(method, "mmap") && strcmp(method, "populate") && advice < 0)
        return 2;
    unsigned char *buf = buf_size ? aligned_alloc((size_t)page, buf_size) : NULL;

    /* the reference: read() of the whole file, consumed the same way */
    uint64_t expect = 0;
    {
        unsigned char *ref = aligned_alloc((size_t)page, 1 << 20);
        size_t off = 0;
        ssize_t got;
        while ((got = pread(fd, ref, 1 << 20, (off_t)off)) > 0) {
            expect += consume_buffer(ref, (size_t)got, off, all);
            off += (size_t)got;
        }
        free(ref);
    }
    ab_counter c;
    char note[512];
    const char *counter = ab_counter_open_named(&c, NULL, note, sizeof note);
    printf("{\"method\":\"%s\",\"consume\":\"%s\",\"cache\":\"%s\",\"size_bytes\":%zu,\"counter\":\"%s\",\"repeats\":[",
           method, all ? "all" : "page", cold ? "cold" : "warm", size, counter ? counter : "none");
    for (int r = 0; r < repeats; r++) {
        long resident = -1;
        if (cold) {
            fsync(fd);  /* only clean pages can be dropped */
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            resident = resident_pages(fd, size);
        } else if (r == 0) {  /* warm: read it once so every page is cached */
            size_t off = 0;
            ssize_t got;
            unsigned char tmp[65536];
            while ((got = pread(fd, tmp, sizeof tmp, (off_t)off)) > 0)
                off += (size_t)got;
        }
        long min0, maj0, min1, maj1;
        uint64_t sum = 0, reads = 0;
        ab_window w;
        ab_counts counts;
        faults(&min0, &maj0);
        if (counter)
            ab_window_begin(&c, &w);
        int64_t t0 = now_ns();
        if (buf_size) {
            size_t off = 0;
            ssize_t got;
            lseek(fd, 0, SEEK_SET);
            while ((got = read(fd, buf, buf_size)) > 0) {
                reads++;
                sum += consume_buffer(buf, (size_t)got, off, all);
                off += (size_t)got;
            }
            reads++;  /* the read() that returned 0 at the end of the file */
        } else {
            unsigned char *m = mmap(NULL, size, PROT_READ, map_flags, fd, 0);
            if (m == MAP_FAILED)
                die("mmap");
            if (advice >= 0)
                madvise(m, size, advice);
            sum = all ? sum_words(m, size) : sum_pages(m, size);
            munmap(m, size);
        }
        int64_t t1 = now_ns();
        if (counter)
            ab_window_end(&c, &w, &counts);
        faults(&min1, &maj1);
        printf("%s{\"ns\":%lld,\"sum_ok\":%s,\"read_calls\":%llu,\"minor_faults\":%ld,\"major_faults\":%ld,"
               "\"resident_pages_before\":%ld,\"syscalls\":{", r ? "," : "", (long long)(t1 - t0),
               sum == expect ? "true" : "false", (unsigned long long)reads, min1 - min0, maj1 - maj0, resident);
        for (int i = 0; i < AB_NSYSCALLS; i++) {
            printf("%s\"%s\":", i ? "," : "", ab_syscall_names[i]);
            if (!counter || counts.syscalls[i] < 0)
                printf("null");
            else
                printf("%lld", (long long)counts.syscalls[i]);
        }
        printf("}}");
    }
    printf("]}\n");
    return 0;
}

/* ---- lazy mapping ---- */

/* One field of /proc/self/smaps ("Rss:", "Private_Dirty:", ...) for the mapping
 * that contains addr, in bytes; -1 when it cannot be read. */
static long smaps_field(void *addr, const char *key)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char c;
        if (sscanf(line, "%lx-%lx %c", &lo, &hi, &c) == 3) {  /* a mapping's header line */
            in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
            continue;
        }
        if (in && !strncmp(line, key, n))
            v = atol(line + n) * 1024;
    }
    if (f)
        fclose(f);
    return v;
}

static long vm_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmSize:", 7))
            v = atol(line + 7) * 1024;
    if (f)
        fclose(f);
    return v;
}

static void lazy_step(const char *name, void *m, long min0, int first)
{
    long rss = smaps_field(m, "Rss:"), huge = smaps_field(m, "AnonHugePages:"), mn, mj;
    faults(&mn, &mj);
    printf("%s{\"step\":\"%s\",\"vm_size_bytes\":%ld,\"region_rss_bytes\":%ld,\"anon_huge_bytes\":%ld,"
           "\"minor_faults\":%ld}", first ? "" : ",", name, vm_size(), rss, huge, mn - min0);
}

static int lazy(int argc, char **argv)
{
    int huge = argc > 2 && !strcmp(argv[2], "hugepage");
    size_t size = (size_t)1 << 30, written = (size_t)64 << 20;
    char thp[128] = "unknown";
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f && fgets(thp, sizeof thp, f))
        thp[strcspn(thp, "\n")] = 0;
    if (f)
        fclose(f);
    long min0, maj0;
    long vm0 = vm_size();
    faults(&min0, &maj0);
    unsigned char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        die("mmap 1 GiB");
    int advised = huge ? madvise(m, size, MADV_HUGEPAGE) == 0 : 0;
    printf("{\"thp_enabled\":\"%s\",\"hugepage\":%s,\"madvise_ok\":%s,\"page_size\":%ld,"
           "\"mapping_bytes\":%zu,\"written_bytes\":%zu,\"vm_size_before_bytes\":%ld,\"steps\":[",
           thp, huge ? "true" : "false", advised ? "true" : "false", page, size, written, vm0);
    lazy_step("mapped", m, min0, 1);
    m[0] = 1;
    lazy_step("touched one page", m, min0, 0);
    /* written from 2 MiB on, so a huge page does not already cover it */
    memset(m + (2 << 20), 1, written);
    lazy_step("wrote 64 MiB", m, min0, 0);
    volatile uint64_t s = 0;
    for (size_t off = (size_t)512 << 20; off < ((size_t)512 << 20) + written; off += (size_t)page)
        s += m[off];  /* pages never written: the zero page */
    lazy_step("read 64 MiB never written", m, min0, 0);
    printf("],\"zero_sum\":%llu}\n", (unsigned long long)s);
    return 0;
}

/* ---- what cannot be mapped ---- */

static const char *errno_name(int e)
{
    switch (e) {
    case 0: return "OK";
    case ENODEV: return "ENODEV";
    case EACCES: return "EACCES";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EIO: return "EIO";
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return strerrorname_np(e) ? strerrorname_np(e) : "?";
    }
}

static void try_map(const char *what, int fd, size_t len, int prot, int first)
{
    printf("%s{\"what\":\"%s\"", first ? "" : ",", what);
    const char *kinds[] = {"shared", "private"};
    int flags[] = {MAP_SHARED, MAP_PRIVATE};
    for (int k = 0; k < 2; k++) {
        errno = 0;
        void *m = fd < -1 ? MAP_FAILED : mmap(NULL, len, prot, flags[k], fd, 0);
        int e = m == MAP_FAILED ? errno : 0;
        if (m != MAP_FAILED)
            munmap(m, len);
        printf(",\"%s\":\"%s\"", kinds[k], errno_name(e));
    }
    printf("}");
}

static int unmappable(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    const char *dir = argv[2];
    char path[4096];
    printf("{\"results\":[");
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    try_map("a directory", d, (size_t)page, PROT_READ, 1);
    int p[2];
    if (pipe(p))
        die("pipe");
    try_map("a pipe's read end", p[0], (size_t)page, PROT_READ, 0);
    try_map("a pipe's write end", p[1], (size_t)page, PROT_WRITE, 0);
    snprintf(path, sizeof path, "%s/fifo", dir);
    mkfifo(path, 0600);
    int fifo = open(path, O_RDWR | O_NONBLOCK);
    try_map("a FIFO", fifo, (size_t)page, PROT_READ, 0);
    int us = socket(AF_UNIX, SOCK_STREAM, 0), udp = socket(AF_INET, SOCK_DGRAM, 0),
        tcp = socket(AF_INET, SOCK_STREAM, 0);
    try_map("a unix socket", us, (size_t)page, PROT_READ, 0);
    try_map("a UDP socket", udp, (size_t)page, PROT_READ, 0);
    try_map("a TCP socket", tcp, (size_t)page, PROT_READ, 0);
    int ev = eventfd(0, 0);
    try_map("an eventfd", ev, (size_t)page, PROT_READ, 0);
    int proc = open("/proc/self/status", O_RDONLY);
    try_map("a /proc file", proc, (size_t)page, PROT_READ, 0);
    int null = open("/dev/null", O_RDWR);
    try_map("/dev/null", null, (size_t)page, PROT_READ, 0);
    int zero = open("/dev/zero", O_RDWR);
    try_map("/dev/zero", zero, (size_t)page, PROT_READ, 0);
    snprintf(path, sizeof path, "%s/empty", dir);
    int empty = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    try_map("an empty regular file", empty, (size_t)page, PROT_READ, 0);
    snprintf(path, sizeof path, "%s/one-page", dir);
    int reg = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (ftruncate(reg, page))
        die("ftruncate");
    try_map("a regular file, zero length", reg, 0, PROT_READ, 0);
    try_map("a regular file, one page", reg, (size_t)page, PROT_READ, 0);
    printf("]");
    /* touching a mapping of an empty file, in a child: the page has no file behind it */
    pid_t pid = fork();
    if (pid == 0) {
        volatile char *m = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, empty, 0);
        if (m == MAP_FAILED)
            _exit(3);
        (void)m[0];
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf(",\"touch_empty_file\":\"%s\"}\n",
           WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : WEXITSTATUS(status) ? "mmap failed" : "no signal");
    return 0;
}

/* ---- shared and private file mappings ---- */

static int make_file(const char *path, size_t size, unsigned char fill)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        die(path);
    unsigned char *buf = malloc(size);
    memset(buf, fill, size);
    if (write(fd, buf, size) != (ssize_t)size)
        die("write");
    free(buf);
    fsync(fd);
    return fd;
}

static int shared(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    size_t size = (size_t)page * 4;
    int fd = make_file(argv[2], size, 'a');
    volatile unsigned char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    int to_child[2], to_parent[2];
    if (pipe(to_child) || pipe(to_parent))
        die("pipe");
    char tok;
    pid_t pid = fork();
    if (pid == 0) {
        m[0] = 'C';  /* the child writes; the parent looks */
        if (write(to_parent[1], "x", 1) != 1 || read(to_child[0], &tok, 1) != 1)
            _exit(1);
        int saw = m[page] == 'P';  /* the parent's write, through the inherited mapping */
        unsigned char *fresh = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        int saw_fresh = fresh != MAP_FAILED && fresh[page] == 'P';
        _exit(saw && saw_fresh ? 0 : 2);
    }
    if (read(to_parent[0], &tok, 1) != 1)
        die("pipe");
    int parent_sees = m[0] == 'C';
    unsigned char *fresh = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    int parent_fresh_sees = fresh != MAP_FAILED && fresh[0] == 'C';
    unsigned char byte = 0;
    int read_sees_before_msync = pread(fd, &byte, 1, 0) == 1 && byte == 'C';
    m[page] = 'P';
    if (write(to_child[1], "x", 1) != 1)
        die("pipe");
    int status;
    waitpid(pid, &status, 0);
    int child_sees = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    msync((void *)m, size, MS_SYNC);
    /* the bytes are in the file: drop the (clean) cache and read the disk again */
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    long cached = resident_pages(fd, size);
    unsigned char again[2] = {0, 0};
    int in_file = pread(fd, &again[0], 1, 0) == 1 && pread(fd, &again[1], 1, page) == 1 &&
                  again[0] == 'C' && again[1] == 'P';

    /* two processes increment one shared counter, without and with atomics.
     * Updates are lost only while both run at once, so they meet at a barrier
     * first and stamp when they start and end; a round whose runs overlapped
     * less than a fifth of the shorter one (a busy machine ran them one after
     * the other) is run again, up to 10 times. */
    long n = 2000000;
    long lost[2], overlap_ns = 0;
    int rounds = 0;
    for (int atomic = 0; atomic < 2; atomic++) {
        struct shared_race { volatile long ctr; int arrived; int64_t start[2], end[2]; } *race =
            mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        for (int attempt = 0; attempt < 10; attempt++) {
            race->ctr = 0, race->arrived = 0;
            pid_t kids[2];
            for (int k = 0; k < 2; k++)
                if ((kids[k] = fork()) == 0) {
                    __atomic_add_fetch(&race->arrived, 1, __ATOMIC_SEQ_CST);
                    while (__atomic_load_n(&race->arrived, __ATOMIC_SEQ_CST) < 2)
                        sched_yield();
                    race->start[k] = now_ns();
                    for (long i = 0; i < n; i++) {
                        if (atomic)
                            __atomic_fetch_add(&race->ctr, 1, __ATOMIC_RELAXED);
                        else
                            race->ctr = race->ctr + 1;
                    }
                    race->end[k] = now_ns();
                    _exit(0);
                }
            for (int k = 0; k < 2; k++)
                waitpid(kids[k], NULL, 0);
            int64_t both = (race->end[0] < race->end[1] ? race->end[0] : race->end[1]) -
                           (race->start[0] > race->start[1] ? race->start[0] : race->start[1]);
            int64_t shorter = race->end[0] - race->start[0] < race->end[1] - race->start[1]
                                  ? race->end[0] - race->start[0] : race->end[1] - race->start[1];
            rounds++;
            if (!atomic)
                overlap_ns = both > 0 ? both : 0;
            if (both * 5 >= shorter)
                break;
        }
        lost[atomic] = 2 * n - race->ctr;
    }
    printf("{\"parent_sees_child_write\":%s,\"parent_fresh_mapping_sees\":%s,\"child_sees_parent_write\":%s,"
           "\"read_sees_write_before_msync\":%s,\"cached_pages_after_drop\":%ld,\"in_file_after_msync\":%s,"
           "\"increments_per_process\":%ld,\"lost_updates_plain\":%ld,\"lost_updates_atomic\":%ld,"
           "\"plain_overlap_ns\":%ld,\"race_rounds\":%d}\n",
           parent_sees ? "true" : "false", parent_fresh_sees ? "true" : "false", child_sees ? "true" : "false",
           read_sees_before_msync ? "true" : "false", cached, in_file ? "true" : "false", n, lost[0], lost[1],
           overlap_ns, rounds);
    return 0;
}

static int private_cow(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    size_t file_pages = 16, anon_pages = 1024;
    size_t fsize = file_pages * (size_t)page, asize = anon_pages * (size_t)page;
    int fd = make_file(argv[2], fsize, 'o');
    unsigned char *fm = mmap(NULL, fsize, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    unsigned char *am = mmap(NULL, asize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fm == MAP_FAILED || am == MAP_FAILED)
        die("mmap");
    volatile uint64_t s = 0;
    for (size_t i = 0; i < fsize; i += (size_t)page)
        s += fm[i];  /* read: file pages mapped from the page cache, shared and clean */
    memset(am, 'p', asize);  /* the parent's own anonymous pages */
    int p[2];
    if (pipe(p))
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        long mn0, mj0, mn1, mj1, mn2, mj2;
        long pd0 = smaps_field(fm, "Private_Dirty:"), sc0 = smaps_field(fm, "Shared_Clean:");
        long an0 = smaps_field(am, "Private_Dirty:");
        faults(&mn0, &mj0);  /* the first call copies the stack page its struct lives on (COW) */
        faults(&mn0, &mj0);
        for (size_t i = 0; i < fsize; i += (size_t)page)
            fm[i] = 'c';
        faults(&mn1, &mj1);
        for (size_t i = 0; i < asize; i += (size_t)page)
            am[i] = 'c';
        faults(&mn2, &mj2);
        long pd1 = smaps_field(fm, "Private_Dirty:"), sc1 = smaps_field(fm, "Shared_Clean:");
        long an1 = smaps_field(am, "Private_Dirty:");
        char out[512];
        int n = snprintf(out, sizeof out,
                         "\"child\":{\"file_private_dirty_before\":%ld,\"file_shared_clean_before\":%ld,"
                         "\"file_private_dirty_after\":%ld,\"file_shared_clean_after\":%ld,"
                         "\"anon_private_dirty_before\":%ld,\"anon_private_dirty_after\":%ld,"
                         "\"file_write_faults\":%ld,\"anon_write_faults\":%ld}",
                         pd0, sc0, pd1, sc1, an0, an1, mn1 - mn0, mn2 - mn1);
        if (write(p[1], out, (size_t)n) != n)
            _exit(1);
        _exit(0);
    }
    close(p[1]);
    char child[600] = "";
    ssize_t got = read(p[0], child, sizeof child - 1);
    if (got > 0)
        child[got] = 0;
    waitpid(pid, NULL, 0);
    size_t parent_changed = 0;
    for (size_t i = 0; i < fsize; i++)
        parent_changed += fm[i] != 'o';
    for (size_t i = 0; i < asize; i++)
        parent_changed += am[i] != 'p';
    unsigned char *disk = malloc(fsize);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    size_t file_changed = pread(fd, disk, fsize, 0) == (ssize_t)fsize ? 0 : fsize;
    for (size_t i = 0; i < fsize && !file_changed; i++)
        file_changed += disk[i] != 'o';
    printf("{\"file_pages\":%zu,\"anon_pages\":%zu,%s,\"parent_bytes_changed\":%zu,\"file_bytes_changed\":%zu,"
           "\"libc_mappings\":[", file_pages, anon_pages, child, parent_changed, file_changed);
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int first = 1;
    while (maps && fgets(line, sizeof line, maps))
        if (strstr(line, "/libc.so")) {
            char perms[8] = "", file[400] = "";
            unsigned long lo, hi;
            if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %399s", &lo, &hi, perms, file) >= 3) {
                printf("%s{\"perms\":\"%s\",\"bytes\":%lu,\"file\":\"%s\"}", first ? "" : ",", perms, hi - lo, file);
                first = 0;
            }
        }
    if (maps)
        fclose(maps);
    printf("]}\n");
    free(disk);
    return 0;
}

/* ---- POSIX shared memory ---- */

static int shm(int argc, char **argv)
{
    (void)argc;
    char name[64];
    snprintf(name, sizeof name, "/allocbench-probe-%d", getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        die("shm_open");
    size_t size = (size_t)page;
    if (ftruncate(fd, (off_t)size))
        die("ftruncate");
    char *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    strcpy(m, "written by the creator");
    char path[128];
    snprintf(path, sizeof path, "/dev/shm%s", name);
    struct stat st;
    int is_file = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    struct statfs fs;
    statfs("/dev/shm", &fs);
    /* a separately started process (this program again, exec'd) reads it */
    char reader_out[256] = "";
    int p[2];
    if (pipe(p))
        die("pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        execl("/proc/self/exe", argv[0], "shm-reader", name, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    ssize_t got = read(p[0], reader_out, sizeof reader_out - 1);
    reader_out[got > 0 ? got : 0] = 0;
    reader_out[strcspn(reader_out, "\n")] = 0;
    waitpid(pid, NULL, 0);
    shm_unlink(name);

    /* shared anonymous memory with a forked child: what backs it */
    char *anon = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t kid = fork();
    if (kid == 0) {
        strcpy(anon, "written by the child");
        _exit(0);
    }
    waitpid(kid, NULL, 0);
    char backing[400] = "";
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)anon >= lo && (uintptr_t)anon < hi) {
            char *f = line;
            for (int field = 0; field < 5 && f; field++)
                f = strchr(f, ' '), f = f ? f + strspn(f, " ") : NULL;
            snprintf(backing, sizeof backing, "%s", f ? f : "");
            backing[strcspn(backing, "\n")] = 0;
        }
    }
    if (maps)
        fclose(maps);
    printf("{\"name\":\"%s\",\"path\":\"%s\",\"is_regular_file\":%s,\"fs_magic\":\"0x%lx\",\"tmpfs_magic\":\"0x%x\","
           "\"reader_saw\":\"%s\",\"anon_shared_child_write_seen\":%s,\"anon_shared_backing\":\"%s\"}\n",
           name, path, is_file ? "true" : "false", (unsigned long)fs.f_type, 0x01021994, reader_out,
           !strcmp(anon, "written by the child") ? "true" : "false", backing);
    return 0;
}

static int shm_reader(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    int fd = shm_open(argv[2], O_RDONLY, 0);
    if (fd < 0)
        die("shm_open");
    char *m = mmap(NULL, (size_t)page, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        die("mmap");
    printf("%.100s\n", m);
    return 0;
}

int main(int argc, char **argv)
{
    page = sysconf(_SC_PAGESIZE);
    const char *mode = argc > 1 ? argv[1] : "";
    int rc = !strcmp(mode, "read-vs-mmap") ? read_vs_mmap(argc, argv)
             : !strcmp(mode, "lazy") ? lazy(argc, argv)
             : !strcmp(mode, "unmappable") ? unmappable(argc, argv)
             : !strcmp(mode, "shared") ? shared(argc, argv)
             : !strcmp(mode, "private") ? private_cow(argc, argv)
             : !strcmp(mode, "shm") ? shm(argc, argv)
             : !strcmp(mode, "shm-reader") ? shm_reader(argc, argv) : 2;
    if (rc == 2)
        fprintf(stderr, "usage: allocbench-mmap-probe read-vs-mmap FILE METHOD all|page warm|cold REPEATS | "
                        "lazy [hugepage] | unmappable DIR | shared FILE | private FILE | shm\n");
    return rc;
}
