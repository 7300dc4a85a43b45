/* allocbench-launch: run an unmodified program once, counting its memory
 * syscalls exactly (the whole process tree: threads and children), and
 * sampling its RSS over time.  Prints one JSON object.
 *
 *   allocbench-launch [hz=N] [method=auto|perf|strace|none] [timeout_ms=N]
 *                     [env=KEY=VALUE ...] [out=FILE] [plain=1] -- CMD ARGS...
 *
 * The JSON goes to out=FILE (default stdout).  The program inherits this
 * process's stdin, stdout and stderr (allocbench points them at --input, a
 * log file, or the terminal).  env= entries go to the program only.
 *
 * - perf: the child waits on a pipe while the parent opens the tracepoint
 *   group on its pid with inherit=1, then the child execs.  strace: the
 *   parent attaches `strace -f -p` to the waiting child, with counters.c's
 *   filter, and releases it once the log shows the child's marker; counters.c's
 *   parser counts the log.  Either way the program stays this process's child,
 *   so wait4's faults, CPU time and max RSS are its own.
 * - The end: a pidfd becomes readable the moment the program exits, so the
 *   wall time ends then, not at the next sample.
 * - RSS samples come from /proc/PID/statm, which reads the memory counters
 *   without the program's mmap lock; /proc/PID/smaps_rollup walks the page
 *   tables under that lock (the program's mmap, munmap and brk wait on it),
 *   so it is read at most once a second, for the huge-page column.  Samples
 *   are the launched program's own, not its children's; faults, CPU time and
 *   max RSS come from wait4's rusage (max RSS: the largest single process).
 * - plain=1: fork, exec, wait4 and the clock, nothing else (make exec-overhead
 *   times programs with it, paired against the measured runs). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "json.h"

#define SMAPS_EVERY_NS 1000000000LL  /* smaps_rollup takes the program's mmap lock */

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static long long kb_field(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);
    return p ? atoll(p + strlen(key)) * 1024 : -1;
}

static ssize_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n >= 0)
        buf[n] = 0;
    return n;
}

/* strace ends once every tracee has: wait for it, so its log is whole.  A tracee that left the
 * program's group (a daemon) may still run: after 5 s strace detaches and flushes on SIGINT. */
static void strace_finish(pid_t strace_pid)
{
    for (int i = 0; i < 5000; i++) {
        if (waitpid(strace_pid, NULL, WNOHANG) == strace_pid)
            return;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    kill(strace_pid, SIGINT);
    waitpid(strace_pid, NULL, 0);
}

typedef struct sample {
    int64_t t_ns, rss, anon, huge;  /* huge: -1 where smaps_rollup was not read */
} sample;

/* A failure of the launcher itself: said on stderr (which is the program's log)
 * and as {"error": ...} in the JSON file, where allocbench looks first. */
static FILE *json_out;
static int fail(int status, const char *what, const char *why)
{
    fprintf(stderr, "allocbench-launch: %s: %s\n", what, why);
    if (json_out) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s: %s", what, why);
        ab_json j;
        ab_json_init(&j, json_out);
        ab_json_object(&j, NULL);
        ab_json_str(&j, "error", msg);
        ab_json_end_object(&j);
        fputc('\n', json_out);
        fflush(json_out);
    }
    return status;
}

static void usage(void)
{
    fprintf(stderr, "allocbench-launch: usage: allocbench-launch [hz=N] [method=M] [timeout_ms=N] [env=K=V] "
                    "[out=FILE] [plain=1] -- CMD ARGS\n");
    exit(2);
}

/* The plain timer: the measured run's sequence (fork, a child that waits to be
 * released, exec, the clock from the release to wait4's return) with nothing
 * else: no counters, no sampling, a blocking wait4. */
static int run_plain(char **cmd, FILE *out)
{
    int go[2];
    if (pipe2(go, O_CLOEXEC))
        return 1;
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(126);
        execvp(cmd[0], cmd);
        _exit(127);
    }
    int status;
    struct rusage ru;
    int64_t t0 = now_ns();
    if (write(go[1], "g", 1) != 1)
        return 1;
    wait4(pid, &status, 0, &ru);
    int64_t wall = now_ns() - t0;
    ab_json j;
    ab_json_init(&j, out);
    ab_json_object(&j, NULL);
    ab_json_int(&j, "wall_ns", wall);
    ab_json_int(&j, "exit_status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    ab_json_end_object(&j);
    fputc('\n', out);
    return 0;
}

int main(int argc, char **argv)
{
    int hz = 100, first = 0, plain = 0;
    int64_t timeout_ns = 0;  /* 0: none */
    const char *method = "auto", *out_path = NULL;
    char *envs[256];
    int nenv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            first = i + 1;
            break;
        }
        if (!strncmp(argv[i], "hz=", 3))
            hz = atoi(argv[i] + 3);
        else if (!strncmp(argv[i], "method=", 7))
            method = argv[i] + 7;
        else if (!strncmp(argv[i], "timeout_ms=", 11))
            timeout_ns = atoll(argv[i] + 11) * 1000000;
        else if (!strncmp(argv[i], "out=", 4))
            out_path = argv[i] + 4;
        else if (!strncmp(argv[i], "plain=", 6))
            plain = atoi(argv[i] + 6);
        else if (!strncmp(argv[i], "env=", 4) && nenv < 256)
            envs[nenv++] = argv[i] + 4;
        else {
            fprintf(stderr, "allocbench-launch: unknown option %s\n", argv[i]);
            usage();
        }
    }
    if (!first || first >= argc || hz < 1 || hz > AB_LAUNCH_MAX_HZ)
        usage();
    FILE *out = stdout;
    if (out_path && !(out = fopen(out_path, "w"))) {
        perror(out_path);
        return 1;
    }
    json_out = out_path ? out : NULL;
    if (plain)
        return run_plain(argv + first, out);

    /* Decide the method here, on this process, as the cells do. */
    ab_counter probe;
    char note[1024];
    const char *chosen = ab_counter_open_named(&probe, method, note, sizeof note);
    if (!chosen)
        return fail(3, "counter method", note);
    ab_counter_close(&probe);
    char strace_log[64] = "", strace_bin[256] = "";
    int tracing = !strcmp(chosen, "strace");
    if (tracing && ab_strace_binary(NULL, strace_bin, sizeof strace_bin, note, sizeof note))
        return fail(3, "strace", note);

    int go[2], err[2];
    if (pipe2(go, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        return fail(1, "pipe", strerror(errno));
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);  /* the program and whatever it starts: one group, killed whole */
        for (int i = 0; i < nenv; i++)
            putenv(envs[i]);
        if (tracing)
            ab_strace_await_attach(go[0]);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(126);
        execvp(argv[first], argv + first);
        int e = errno;
        if (write(err[1], &e, sizeof e) != sizeof e)
            _exit(127);
        _exit(127);
    }
    if (pid < 0)
        return fail(1, "fork", strerror(errno));
    setpgid(pid, pid);  /* also here: the group exists before either side goes on */
    close(go[0]);
    close(err[1]);
    ab_counter c;
    int counting = !strcmp(chosen, "perf");
    if (counting && ab_counter_open_task(&c, pid)) {
        snprintf(note, sizeof note, "perf on the child: %s", c.error);
        counting = 0, chosen = "none";
    }
    pid_t strace_pid = 0;
    char why[512];
    if (tracing
        && ab_strace_attach(strace_bin, pid, strace_log, sizeof strace_log, &strace_pid, why, sizeof why)) {
        snprintf(note, sizeof note, "strace on the child: %s", why);
        chosen = "none";
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    int64_t t0 = now_ns();
    if (write(go[1], "g", 1) != 1)
        return fail(1, "releasing the child", strerror(errno));
    close(go[1]);

    size_t cap = 1024, n = 0;
    sample *s = malloc(cap * sizeof *s);
    if (!s) {
        kill(-pid, SIGKILL);
        return fail(1, "the samples", strerror(errno));
    }
    char statm[64], smaps[64], buf[4096];
    snprintf(statm, sizeof statm, "/proc/%d/statm", pid);
    snprintf(smaps, sizeof smaps, "/proc/%d/smaps_rollup", pid);
    long page = sysconf(_SC_PAGESIZE);
    int64_t period = 1000000000LL / hz, next = t0, last_smaps = t0 - SMAPS_EVERY_NS;
    struct rusage ru;
    int status = 0, timed_out = 0;
    for (;;) {
        int64_t now = now_ns();
        if (now >= next) {  /* a sample: statm always, smaps_rollup at most once a second */
            long long size, resident, shared;
            /* resident 0: the process is exiting and its memory already released, not a sample of it */
            if (read_file(statm, buf, sizeof buf) > 0 && sscanf(buf, "%lld %lld %lld", &size, &resident, &shared) == 3
                && resident > 0) {
                int64_t huge = -1;
                if (now - last_smaps >= SMAPS_EVERY_NS && read_file(smaps, buf, sizeof buf) > 0) {
                    huge = kb_field(buf, "\nAnonHugePages:");
                    last_smaps = now;
                }
                if (n == cap) {  /* out of room and out of memory: keep the samples so far, drop this one */
                    sample *more = realloc(s, 2 * cap * sizeof *s);
                    if (more)
                        s = more, cap *= 2;
                }
                if (n < cap)
                    s[n++] = (sample){now - t0, resident * page, (resident - shared) * page, huge};
            }
            while (next <= now)
                next += period;
        }
        if (timeout_ns && now - t0 >= timeout_ns) {
            kill(-pid, SIGKILL);  /* the whole group: a shell's children with it */
            wait4(pid, &status, 0, &ru);
            timed_out = 1;
            break;
        }
        int64_t until = timeout_ns && t0 + timeout_ns < next ? t0 + timeout_ns : next;  /* a tick, or the deadline */
        int wait_ms = (int)((until - now + 999999) / 1000000);
        if (pidfd >= 0) {
            struct pollfd p = {pidfd, POLLIN, 0};
            if (poll(&p, 1, wait_ms) > 0 && wait4(pid, &status, WNOHANG, &ru) == pid)
                break;
        } else {  /* no pidfd (an old kernel): the exit is seen at the next tick */
            if (wait4(pid, &status, WNOHANG, &ru) == pid)
                break;
            int64_t left = until - now_ns();
            if (left < 0)
                left = 0;
            struct timespec tick = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
            nanosleep(&tick, NULL);
        }
    }
    int64_t wall = now_ns() - t0;
    kill(-pid, SIGKILL);  /* what the program left running in its group (a shell's background job) ends with it */
    int exec_errno = 0;
    if (read(err[0], &exec_errno, sizeof exec_errno) != sizeof exec_errno)
        exec_errno = 0;

    int64_t counts[AB_NSYSCALLS];
    int have_counts = 0;
    if (counting)
        have_counts = ab_counter_read_totals(&c, counts) == 0;
    else if (strace_log[0]) {
        strace_finish(strace_pid);
        have_counts = ab_strace_count_log(strace_log, 0, counts, note, sizeof note) == 0;
        ab_strace_remove(strace_log);
        if (have_counts)
            snprintf(note, sizeof note, "strace -f: times include strace's stop at each of the program's syscalls");
    }

    ab_json j;
    ab_json_init(&j, out);
    ab_json_object(&j, NULL);
    ab_json_str(&j, "counter_method", chosen);
    ab_json_str(&j, "counter_note", note[0] ? note : NULL);
    ab_json_str(&j, "exec_error", exec_errno ? strerror(exec_errno) : NULL);
    if (WIFEXITED(status)) {
        ab_json_int(&j, "exit_status", WEXITSTATUS(status));
        ab_json_null(&j, "signal");
    } else {
        ab_json_null(&j, "exit_status");
        ab_json_str(&j, "signal", WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : "?");
    }
    ab_json_bool(&j, "timed_out", timed_out);
    ab_json_int(&j, "wall_ns", wall);
    ab_json_int(&j, "user_ns", (long long)ru.ru_utime.tv_sec * 1000000000 + ru.ru_utime.tv_usec * 1000);
    ab_json_int(&j, "sys_ns", (long long)ru.ru_stime.tv_sec * 1000000000 + ru.ru_stime.tv_usec * 1000);
    ab_json_int(&j, "minor_faults", ru.ru_minflt);
    ab_json_int(&j, "major_faults", ru.ru_majflt);
    ab_json_int(&j, "max_rss_bytes", (long long)ru.ru_maxrss * 1024);
    if (have_counts) {
        ab_json_object(&j, "syscalls");
        for (int i = 0; i < AB_NSYSCALLS; i++)
            ab_json_int(&j, ab_syscall_names[i], counts[i]);
        ab_json_end_object(&j);
    } else {
        ab_json_null(&j, "syscalls");
    }
    ab_json_object(&j, "timeline");
    const char *cols[] = {"t_ns", "rss_bytes", "anon_bytes", "anon_huge_bytes"};
    for (int k = 0; k < 4; k++) {
        ab_json_array(&j, cols[k]);
        for (size_t i = 0; i < n; i++) {
            int64_t v = k == 0 ? s[i].t_ns : k == 1 ? s[i].rss : k == 2 ? s[i].anon : s[i].huge;
            ab_json_count(&j, NULL, v);
        }
        ab_json_end_array(&j);
    }
    ab_json_end_object(&j);
    ab_json_end_object(&j);
    fputc('\n', out);
    return 0;
}
