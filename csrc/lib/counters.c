/* Exact in-process counters; see counters.h.  Why each choice:
 * - perf tracepoints count every thread (inherit=1 covers threads started after
 *   the counters opened) and cost one group read per window edge.
 * - Page faults come from getrusage(RUSAGE_SELF): it sums all threads, dead ones
 *   included, and on some kernels perf's software fault events miss faults taken
 *   on the per-VMA-lock path (seen on this project's VMs: 0 instead of 100).
 * - The strace fallback attaches strace to this process and counts only the
 *   lines between two marker syscalls, so Python start-up is never included. */
#define _GNU_SOURCE
#include "counters.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

const char *const ab_syscall_names[AB_NSYSCALLS] = {
#define AB_SYS_NAME(name) #name,
    AB_SYSCALL_LIST(AB_SYS_NAME)
#undef AB_SYS_NAME
};

const char *const ab_method_names[AB_NMETHODS] = {
#define AB_METHOD_NAME(e, v, name) [v] = name,
    AB_METHOD_LIST(AB_METHOD_NAME)
#undef AB_METHOD_NAME
};

const char *const ab_mallinfo2_names[AB_NMALLINFO2] = {
#define AB_MI_NAME(name) #name,
    AB_MALLINFO2_LIST(AB_MI_NAME)
#undef AB_MI_NAME
};

/* strace's filter: the counted syscalls plus the window markers' faccessat */
#define AB_STRACE_NAME(name) #name ","
const char ab_strace_filter[] = "trace=" AB_SYSCALL_LIST(AB_STRACE_NAME) "faccessat";
#undef AB_STRACE_NAME

static void set_error(ab_counter *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

static int64_t ts_ns(const struct timespec *t)
{
    return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

static void mark(const char *path)
{
    /* A failing faccessat is cheap and is not one of the counted syscalls. */
    syscall(SYS_faccessat, AT_FDCWD, path, F_OK);
}

/* Read a small file into buf without malloc; returns bytes read or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    close(fd);
    buf[n] = '\0';
    return (ssize_t)n;
}

/* ---- perf tracepoints ---- */

static int tracepoint_id(const char *tracefs, const char *name, ab_counter *c)
{
    char path[512], buf[32];
    snprintf(path, sizeof path, "%s/events/syscalls/sys_enter_%s/id", tracefs, name);
    if (read_small(path, buf, sizeof buf) <= 0) {
        set_error(c, "cannot read %s: %s (tracefs not mounted? as root: "
                  "mount -t tracefs nodev /sys/kernel/tracing)", path, strerror(errno));
        return -1;
    }
    return atoi(buf);
}

static int perf_open(ab_counter *c, const char *tracefs)
{
    static const char *const candidates[] = {"/sys/kernel/tracing", "/sys/kernel/debug/tracing"};
    if (!tracefs || !*tracefs)
        tracefs = getenv("ALLOCBENCH_TRACEFS");
    for (int i = 0; (!tracefs || !*tracefs) && i < 2; i++) {
        char probe[128];
        snprintf(probe, sizeof probe, "%s/events/syscalls", candidates[i]);
        if (access(probe, F_OK) == 0)
            tracefs = candidates[i];
    }
    if (!tracefs || !*tracefs)
        tracefs = candidates[0];  /* the error names the usual mount point */
    for (int i = 0; i < AB_NSYSCALLS; i++) {
        int id = tracepoint_id(tracefs, ab_syscall_names[i], c);
        if (id < 0)
            return -1;
        struct perf_event_attr a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.type = PERF_TYPE_TRACEPOINT;
        a.config = (uint64_t)id;
        a.inherit = !c->no_inherit;  /* threads created later are counted */
        a.exclude_kernel = 1;   /* works without root; syscall entries still count */
        a.exclude_hv = 1;
        a.read_format = PERF_FORMAT_GROUP;
        int fd = (int)syscall(SYS_perf_event_open, &a, c->task, -1, c->group_fd, PERF_FLAG_FD_CLOEXEC);
        if (fd < 0) {
            set_error(c, "perf_event_open(syscalls:sys_enter_%s): %s", ab_syscall_names[i],
                      strerror(errno));
            return -1;
        }
        if (c->group_fd < 0)
            c->group_fd = fd;
        c->fds[i] = fd;
    }
    return 0;
}

static int perf_read(ab_counter *c, uint64_t vals[1 + AB_NSYSCALLS])
{
    ssize_t want = (ssize_t)sizeof(uint64_t) * (1 + AB_NSYSCALLS);
    if (read(c->group_fd, vals, (size_t)want) != want || vals[0] != AB_NSYSCALLS) {
        set_error(c, "perf group read failed: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- strace attached to ourselves ---- */

int ab_strace_binary(const char *given, char *out, size_t cap, char *err, size_t err_cap)
{
    char found[256] = "";
    const char *path = given && *given ? given : getenv("ALLOCBENCH_STRACE");
    if (!path || !*path) {
        const char *dirs = getenv("PATH");
        path = "/usr/bin/strace";
        while (dirs && *dirs) {  /* the first strace on PATH */
            size_t n = strcspn(dirs, ":");
            snprintf(found, sizeof found, "%.*s/strace", (int)n, dirs);
            if (access(found, X_OK) == 0) {
                path = found;
                break;
            }
            dirs += n + (dirs[n] == ':');
        }
    }
    if (access(path, X_OK) != 0) {
        snprintf(err, err_cap, "%s: %s (Debian package strace)", path, strerror(errno));
        return -1;
    }
    snprintf(out, cap, "%s", path);
    return 0;
}

static int strace_open(ab_counter *c, const char *strace_path)
{
    return ab_strace_binary(strace_path, c->strace_path, sizeof c->strace_path, c->error, sizeof c->error);
}

/* Does pred(text of /proc/self/task/TID/<file>, arg) hold for every thread of this process?
 * Raw getdents64, not opendir: a malloc here would change the heap the next window measures. */
static int every_thread(const char *file, int (*pred)(const char *text, long arg), long arg)
{
    int dfd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    int ok = 1;
    char ents[4096];
    long n;
    while (ok && (n = syscall(SYS_getdents64, dfd, ents, sizeof ents)) > 0) {
        for (long off = 0; ok && off < n;) {
            struct linux_dirent64 { uint64_t ino; int64_t off; unsigned short reclen;
                                    unsigned char type; char name[]; } *e = (void *)(ents + off);
            off += e->reclen;
            if (e->name[0] == '.')
                continue;
            char path[300], buf[4096];
            snprintf(path, sizeof path, "/proc/self/task/%s/%s", e->name, file);
            if (read_small(path, buf, sizeof buf) <= 0)
                continue;  /* the thread just exited */
            ok = pred(buf, arg);
        }
    }
    close(dfd);
    return ok;
}

static int traced_by(const char *status, long tracer)
{
    const char *p = strstr(status, "TracerPid:");
    return p && atoi(p + 10) == tracer;
}

/* Has strace attached every thread of this process yet? */
static int all_threads_traced(pid_t tracer)
{
    return every_thread("status", traced_by, tracer);
}

/* Still exiting: PF_EXITING set and not yet a zombie.  A zombie keeps PF_EXITING but has
 * folded its counts already (do_exit's exit_notify comes after perf_event_exit_task), and a
 * leader that called pthread_exit stays a zombie while the other threads run. */
static int not_exiting(const char *stat, long unused)
{
    (void)unused;
    const char *p = strrchr(stat, ')');  /* after the command name, which may hold anything */
    char state = 0;
    unsigned long flags = 0;
    /* ") state ppid pgrp session tty_nr tpgid flags": PF_EXITING is 0x4 */
    if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %lu", &state, &flags) != 2)
        return 1;
    return !(flags & 0x4) || state == 'Z' || state == 'X';
}

/* A thread joined inside the window woke its joiner from exit_mm, before the kernel
 * folds its perf counts into ours (perf_event_exit_task, later in do_exit), so a
 * read right after pthread_join could miss its syscalls.  (Read from do_exit's
 * order; 2,000 windows under load never showed it.)  So wait, up to a second,
 * until no thread is still exiting (PF_EXITING, set first thing in do_exit).
 * strace needs no wait: it logs each call at its entry, before the thread goes on. */
static void wait_exiting_threads(void)
{
    for (int i = 0; i < 1000 && !every_thread("stat", not_exiting, 0); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
}

/* Each whole line of strace's log, in order, to `each` until it returns nonzero.  Read
 * without malloc, as a window's begin polls it.  -1 if the log cannot be opened, else
 * whether `each` stopped the reading. */
static int log_lines(const char *log, int (*each)(char *line, void *arg), void *arg)
{
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[65536];
    size_t have = 0;
    ssize_t r;
    int stopped = 0;
    while (!stopped && (r = read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)r;
        buf[have] = '\0';
        char *line = buf, *nl;
        while (!stopped && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            stopped = each(line, arg);
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf - 1)
            have = 0;  /* an absurdly long line: its head is all that matters */
    }
    close(fd);
    return stopped;
}

static int line_has(char *line, void *needle) { return strstr(line, needle) != NULL; }

/* Does strace's log hold `needle` yet? */
static int log_has(const char *log, const char *needle)
{
    return log_lines(log, line_has, (void *)needle) == 1;
}

/* Where strace's own messages go: the log's path with ".err" (see ab_strace_attach). */
static void err_path_of(const char *log, char *out, size_t cap)
{
    snprintf(out, cap, "%s.err", log);
}

void ab_strace_remove(const char *log)
{
    char errs[300];
    err_path_of(log, errs, sizeof errs);
    unlink(log);
    unlink(errs);
}

/* The first line strace wrote to its messages' file, into out ("" if none). */
static void first_message(const char *log, char *out, size_t cap)
{
    char errs[300];
    err_path_of(log, errs, sizeof errs);
    out[0] = 0;
    int fd = open(errs, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    out[n > 0 ? n : 0] = 0;
    out[strcspn(out, "\n")] = 0;
}

int ab_strace_attach(const char *strace_bin, pid_t target, char *log, size_t log_cap, pid_t *strace_pid,
                     char *err, size_t err_cap)
{
    snprintf(log, log_cap, "/tmp/allocbench-strace-XXXXXX");
    int fd = mkstemp(log);
    if (fd < 0) {
        snprintf(err, err_cap, "strace's log, mkstemp: %s", strerror(errno));
        log[0] = 0;
        return -1;
    }
    close(fd);
    /* strace's own messages (an attach refused, or a warning it prints on some kernels, such as
     * "entering, ptrace_syscall_info.op == 2") go to a file beside the log, made here (O_EXCL: not
     * a link someone left), read into err if strace fails and removed with the log; they reached the
     * caller's stderr.  /bin/sh redirects them, since a file action would malloc, and a window's
     * begin calls this. */
    char errs[300], message[200];
    err_path_of(log, errs, sizeof errs);
    fd = open(errs, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, err_cap, "strace's messages, %s: %s", errs, strerror(errno));
        unlink(log);
        log[0] = 0;
        return -1;
    }
    close(fd);
    int here = target == getpid();
    if (here)
        prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);  /* Yama: let our child trace us */
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)target);
    /* the shell execs strace in its own process: *strace_pid is strace's */
    char *argv[] = {"sh", "-c", "e=$1; shift; exec \"$@\" 2>>\"$e\"", "sh", errs, (char *)strace_bin,
                    "-f", "-qq", "-e", (char *)ab_strace_filter, "-o", log, "-p", pid, NULL};
    int rc = posix_spawn(strace_pid, "/bin/sh", NULL, NULL, argv, environ);
    if (rc) {
        snprintf(err, err_cap, "spawning /bin/sh for %s: %s", strace_bin, strerror(rc));
        goto failed;
    }
    for (int i = 0; i < 10000; i++) {  /* up to 10 s */
        int status;
        if (waitpid(*strace_pid, &status, WNOHANG) == *strace_pid) {
            first_message(log, message, sizeof message);
            snprintf(err, err_cap, "strace exited before attaching (status %d): %s", status,
                     message[0] ? message : "ptrace not permitted?");
            goto failed;
        }
        /* TracerPid shows from strace's PTRACE_SEIZE, before it stops the threads and starts
         * tracing their syscalls: only a marker seen in its log says what follows is traced. */
        if (!here || all_threads_traced(*strace_pid)) {
            if (here)
                mark(AB_MARK_ATTACHED);
            if (log_has(log, AB_MARK_ATTACHED))
                return 0;
        }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    kill(*strace_pid, SIGKILL);
    waitpid(*strace_pid, NULL, 0);
    snprintf(err, err_cap, "strace did not attach within 10 s");
failed:  /* no log is left behind */
    ab_strace_remove(log);
    log[0] = 0;
    return -1;
}

static int strace_begin(ab_counter *c)
{
    return ab_strace_attach(c->strace_path, getpid(), c->strace_log, sizeof c->strace_log, &c->strace_pid,
                            c->error, sizeof c->error);
}

/* The launcher's child, before its exec: a marker each millisecond until `go` is readable,
 * so that ab_strace_attach, run by its parent, sees strace tracing it. */
void ab_strace_await_attach(int go)
{
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);  /* Yama: strace is not our ancestor */
    struct pollfd p = {go, POLLIN, 0};
    while (poll(&p, 1, 1) == 0)
        mark(AB_MARK_ATTACHED);
}

/* Counting a window in strace's log: state 0 before the begin marker, 1 inside, 2 after
 * the end marker, 3 at an end marker with no begin.  Unbounded (the launcher's whole run),
 * the markers are skipped and every traced call counts. */
typedef struct log_count {
    int state, bounded;
    int64_t *out;
} log_count;

/* One line: counts a traced syscall's entry inside the window; nonzero once past its end. */
static int count_line(char *line, void *arg)
{
    log_count *w = arg;
    int begin = strstr(line, AB_MARK_BEGIN) != NULL, end = !begin && strstr(line, AB_MARK_END);
    if (begin || end) {
        if (w->bounded)
            w->state = begin ? 1 : w->state == 1 ? 2 : 3;
        return w->state >= 2;
    }
    if (w->state != 1)
        return 0;
    char *p = line;
    while (*p >= '0' && *p <= '9') p++;   /* "PID  name(" with -f -o */
    while (*p == ' ') p++;
    if (*p == '<' || *p == '-' || *p == '+')
        return 0;  /* "<... resumed>", signals and exits are not new calls */
    size_t len = strcspn(p, "(");
    for (int i = 0; i < AB_NSYSCALLS; i++)
        if (strlen(ab_syscall_names[i]) == len && !strncmp(p, ab_syscall_names[i], len))
            w->out[i]++;
    return 0;
}

int ab_strace_count_log(const char *log, int bounded, int64_t out[AB_NSYSCALLS], char *err, size_t err_cap)
{
    for (int i = 0; i < AB_NSYSCALLS; i++)
        out[i] = 0;
    log_count w = {bounded ? 0 : 1, bounded, out};
    if (log_lines(log, count_line, &w) < 0) {
        snprintf(err, err_cap, "strace log %s: %s", log, strerror(errno));
        return -1;
    }
    if (bounded && w.state == 3) {
        snprintf(err, err_cap, "strace log has the window's end but not its begin (strace began tracing late)");
        return -1;
    }
    if (bounded && w.state != 2) {
        snprintf(err, err_cap, "strace log lacks the window markers (strace detached early?)");
        return -1;
    }
    return 0;
}

static int strace_end(ab_counter *c, int64_t out[AB_NSYSCALLS])
{
    kill(c->strace_pid, SIGINT);  /* strace detaches and flushes */
    waitpid(c->strace_pid, NULL, 0);
    int rc = ab_strace_count_log(c->strace_log, 1, out, c->error, sizeof c->error);
    ab_strace_remove(c->strace_log);
    return rc;
}

/* ---- public API ---- */

int ab_counter_open_task(ab_counter *c, pid_t task)
{
    memset(c, 0, sizeof *c);
    c->group_fd = -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        c->fds[i] = -1;
    c->method = AB_METHOD_PERF;
    c->task = task;
    return perf_open(c, NULL);
}

int ab_tracepoints_hold(char *err, size_t cap)
{
    static ab_counter held;  /* never closed: it lives as long as this process */
    if (held.method == AB_METHOD_PERF)
        return 0;
    memset(&held, 0, sizeof held);
    held.group_fd = -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        held.fds[i] = -1;
    held.no_inherit = 1;
    if (perf_open(&held, NULL)) {
        snprintf(err, cap, "%s", held.error);
        for (int i = 0; i < AB_NSYSCALLS; i++)
            if (held.fds[i] >= 0)
                close(held.fds[i]);
        held.method = AB_METHOD_NONE;
        return -1;
    }
    held.method = AB_METHOD_PERF;
    return 0;
}

int ab_counter_open_thread(ab_counter *c)
{
    memset(c, 0, sizeof *c);
    c->group_fd = -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        c->fds[i] = -1;
    c->method = AB_METHOD_PERF;
    c->no_inherit = 1;
    return perf_open(c, NULL);
}

int ab_counter_read_totals(ab_counter *c, int64_t out[AB_NSYSCALLS])
{
    uint64_t vals[1 + AB_NSYSCALLS];
    if (perf_read(c, vals))
        return -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        out[i] = (int64_t)vals[1 + i];
    return 0;
}

int ab_counter_open(ab_counter *c, int method, const char *tracefs, const char *strace_path)
{
    memset(c, 0, sizeof *c);
    c->group_fd = -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        c->fds[i] = -1;
    c->method = method;
    int rc = 0;
    if (method == AB_METHOD_PERF)
        rc = perf_open(c, tracefs);
    else if (method == AB_METHOD_STRACE)
        rc = strace_open(c, strace_path);
    else if (method != AB_METHOD_NONE) {
        set_error(c, "unknown counter method %d", method);
        rc = -1;
    }
    if (rc) {
        char why[sizeof c->error];
        memcpy(why, c->error, sizeof why);
        ab_counter_close(c);
        memcpy(c->error, why, sizeof why);
    }
    return rc;
}

const int ab_method_order[AB_NMETHODS] = {
#define AB_METHOD_ORDER(e, v, n) e,
    AB_METHOD_LIST(AB_METHOD_ORDER)
#undef AB_METHOD_ORDER
};

const char *ab_counter_open_named(ab_counter *c, const char *name, char *note, size_t cap)
{
    const int *order = ab_method_order;
    const char *env = getenv("ALLOCBENCH_COUNTER_METHOD");
    if ((!name || !strcmp(name, "auto")) && env && *env)
        name = env;  /* the user's default, for cells, probes and Python alike */
    int any = !name || !strcmp(name, "auto");
    note[0] = '\0';
    for (int i = 0; i < AB_NMETHODS; i++) {
        const char *n = ab_method_names[order[i]];
        if (!any && strcmp(name, n))
            continue;
        if (ab_counter_open(c, order[i], NULL, NULL) == 0)
            return n;
        size_t used = strlen(note);
        snprintf(note + used, cap - used, "%s%s: %s", used ? "; " : "", n, c->error);
        if (!any)
            return NULL;
    }
    if (!any)
        snprintf(note, cap, "unknown counter method %s", name);
    return NULL;
}

void ab_counter_close(ab_counter *c)
{
    for (int i = 0; i < AB_NSYSCALLS; i++)
        if (c->fds[i] >= 0)
            close(c->fds[i]);
    memset(c, 0, sizeof *c);
    c->group_fd = -1;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        c->fds[i] = -1;
    c->method = AB_METHOD_NONE;
}

int ab_window_begin(ab_counter *c, ab_window *w)
{
    if (c->method == AB_METHOD_STRACE && strace_begin(c))
        return -1;
    mark(AB_MARK_BEGIN);
    if (c->method == AB_METHOD_PERF && perf_read(c, w->perf_begin))
        return -1;
    getrusage(RUSAGE_SELF, &w->ru_begin);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &w->cpu_begin);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &w->thread_cpu_begin);
    clock_gettime(CLOCK_MONOTONIC, &w->wall_begin);
    return 0;
}

int ab_window_end(ab_counter *c, ab_window *w, ab_counts *out)
{
    struct timespec wall, cpu, tcpu;
    struct rusage ru;
    uint64_t vals[1 + AB_NSYSCALLS];
    clock_gettime(CLOCK_MONOTONIC, &wall);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &tcpu);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    getrusage(RUSAGE_SELF, &ru);
    int rc = 0;
    if (c->method == AB_METHOD_PERF) {
        wait_exiting_threads();
        rc = perf_read(c, vals);
    }
    mark(AB_MARK_END);

    out->wall_ns = ts_ns(&wall) - ts_ns(&w->wall_begin);
    out->cpu_ns = ts_ns(&cpu) - ts_ns(&w->cpu_begin);
    out->thread_cpu_ns = ts_ns(&tcpu) - ts_ns(&w->thread_cpu_begin);
    out->minor_faults = ru.ru_minflt - w->ru_begin.ru_minflt;
    out->major_faults = ru.ru_majflt - w->ru_begin.ru_majflt;
    for (int i = 0; i < AB_NSYSCALLS; i++)
        out->syscalls[i] = -1;
    if (c->method == AB_METHOD_PERF && rc == 0)
        for (int i = 0; i < AB_NSYSCALLS; i++)
            out->syscalls[i] = (int64_t)(vals[1 + i] - w->perf_begin[1 + i]);
    else if (c->method == AB_METHOD_STRACE)
        rc = strace_end(c, out->syscalls);
    if (rc)
        for (int i = 0; i < AB_NSYSCALLS; i++)
            out->syscalls[i] = -1;
    return rc;
}

static int64_t kb_field(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);
    return p ? atoll(p + strlen(key)) * 1024 : -1;
}

int64_t ab_resident_bytes(void)
{
    char buf[256];
    long long size, resident;
    if (read_small("/proc/self/statm", buf, sizeof buf) <= 0 || sscanf(buf, "%lld %lld", &size, &resident) != 2)
        return -1;
    return resident * sysconf(_SC_PAGESIZE);
}

int64_t ab_anon_bytes(void)
{
    char buf[4096];
    return read_small("/proc/self/smaps_rollup", buf, sizeof buf) > 0 ? kb_field(buf, "\nAnonymous:") : -1;
}

uintptr_t ab_heap_top(void)
{
    return (uintptr_t)syscall(SYS_brk, 0);
}

int ab_footprint_read(ab_footprint *f)
{
    char buf[4096];
    memset(f, 0, sizeof *f);
    f->rss_bytes = f->anon_bytes = f->peak_rss_bytes = -1;
    if (read_small("/proc/self/smaps_rollup", buf, sizeof buf) > 0) {
        f->rss_bytes = kb_field(buf, "\nRss:");
        f->anon_bytes = kb_field(buf, "\nAnonymous:");
    }
    if (read_small("/proc/self/status", buf, sizeof buf) > 0)
        f->peak_rss_bytes = kb_field(buf, "\nVmHWM:");
    f->heap_top = ab_heap_top();
    ab_mallinfo2_read(f->mallinfo2);
    return f->rss_bytes < 0 ? -1 : 0;
}

/* Call fn on each line of a /proc file, read in pieces (no stdio, no malloc:
 * the recorder calls this inside someone else's process).  -1: unreadable. */
static int each_line(const char *path, void (*fn)(char *line, void *ctx), void *ctx)
{
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return -1;
    char buf[8192];
    size_t have = 0;
    ssize_t r;
    while ((r = read(f, buf + have, sizeof buf - 1 - have)) > 0) {
        have += (size_t)r;
        buf[have] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            fn(line, ctx);
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
    }
    close(f);
    return 0;
}

/* A thread arena's heap is HEAP_MAX_SIZE (64 MiB) aligned to itself: a read-write part at the
 * boundary and, unless it has grown to the whole 64 MiB, glibc's PROT_NONE reserve up to the next
 * boundary. Both parts must be seen: the kernel aligns any anonymous mapping of 2 MiB or more to
 * 2 MiB, so a stray one starts on a 64 MiB boundary one time in 32. */
#define AB_HEAP_MAX ((uint64_t)64 << 20)

struct heaps {
    int count;
    int64_t bytes;
    uint64_t lo, hi;  /* a read-write part at a boundary, waiting for the line after it */
};

static int anonymous(const char *perms) { return !strchr(perms, '/') && !strchr(perms, '['); }

/* The heap(s) whose read-write part is [h->lo, h->hi), reserved up to `end`: full heaps merged
 * into one mapping count one each. */
static void settle_heap(struct heaps *h, uint64_t end)
{
    if (h->hi && end >= h->lo + AB_HEAP_MAX) {
        h->count += (int)((end - h->lo) / AB_HEAP_MAX);
        h->bytes += (int64_t)(h->hi - h->lo);
    }
    h->lo = h->hi = 0;
}

static void count_heap(char *line, void *ctx)
{
    struct heaps *h = ctx;
    char *end;
    uint64_t lo = strtoull(line, &end, 16), hi = strtoull(end + 1, NULL, 16);
    char *perms = strchr(line, ' ');
    if (!perms)
        return;
    int reserve = !strncmp(perms + 1, "---p", 4) && anonymous(perms) && lo == h->hi;
    settle_heap(h, reserve ? hi : h->hi);
    if (!strncmp(perms + 1, "rw-p", 4) && lo % AB_HEAP_MAX == 0 && anonymous(perms))
        h->lo = lo, h->hi = hi;
}

int ab_arena_heaps_sized(int64_t *bytes)
{
    struct heaps h = {0, 0, 0, 0};
    int rc = each_line("/proc/self/maps", count_heap, &h);
    settle_heap(&h, h.hi);
    if (bytes)
        *bytes = rc ? -1 : h.bytes;
    return rc ? -1 : h.count;
}

int ab_arena_heaps(void) { return ab_arena_heaps_sized(NULL); }

struct file_anon { int file_backed; int64_t bytes; };

static void count_file_anon(char *line, void *ctx)
{
    struct file_anon *fa = ctx;
    if (line[0] >= 'A' && line[0] <= 'Z') {  /* a field of the current mapping */
        if (fa->file_backed && !strncmp(line, "Anonymous:", 10))
            fa->bytes += strtoll(line + 10, NULL, 10) * 1024;
        return;
    }
    fa->file_backed = strchr(line, '/') != NULL;  /* a mapping's first line: its path, if a file's */
}

int64_t ab_file_backed_anon_bytes(void)
{
    struct file_anon fa = {0, 0};
    return each_line("/proc/self/smaps", count_file_anon, &fa) ? -1 : fa.bytes;
}

void ab_mallinfo2_read(uint64_t out[AB_NMALLINFO2])
{
    struct mallinfo2 mi = mallinfo2();
#define AB_MI_COPY(name) out[AB_MI_##name] = mi.name;
    AB_MALLINFO2_LIST(AB_MI_COPY)
#undef AB_MI_COPY
}

int ab_reset_peak_rss(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t r = write(fd, "5", 1);  /* "5" resets VmHWM to the current RSS */
    close(fd);
    return r == 1 ? 0 : -1;
}
