/* allocbench-launch: run an unmodified program once, counting its memory
 * syscalls exactly (the whole process tree: threads and children), and
 * sampling its RSS over time.  Prints one JSON object.
 *
 *   allocbench-launch [hz=N] [method=auto|perf|strace|none] [timeout=S]
 *                     [env=KEY=VALUE ...] [out=FILE] -- CMD ARGS...
 *
 * The JSON goes to out=FILE (default stdout); the program keeps stdout and stderr.
 *
 * perf: the child waits on a pipe while the parent opens the tracepoint group
 * on its pid with inherit=1, then the child execs.  strace: the child execs
 * `strace -f` limited to the six syscalls, and the log is counted (faults then
 * include strace's own).  env= entries go to the program only, never to the
 * launcher.  RSS samples are the launched process's own (/proc/PID/smaps_rollup),
 * not its children's; faults, CPU time and max RSS come from wait4's rusage,
 * which covers every child it reaped. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static long kb_field(const char *buf, const char *key)
{
    const char *p = strstr(buf, key);
    return p ? atol(p + strlen(key)) * 1024 : -1;
}

typedef struct sample {
    int64_t t_ns, rss, anon, huge;
} sample;

int main(int argc, char **argv)
{
    int hz = 100, timeout_s = 0, first = 0;
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
        else if (!strncmp(argv[i], "timeout=", 8))
            timeout_s = atoi(argv[i] + 8);
        else if (!strncmp(argv[i], "out=", 4))
            out_path = argv[i] + 4;
        else if (!strncmp(argv[i], "env=", 4) && nenv < 256)
            envs[nenv++] = argv[i] + 4;
        else {
            fprintf(stderr, "allocbench-launch: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!first || first >= argc || hz < 1 || hz > 10000) {
        fprintf(stderr, "allocbench-launch: usage: allocbench-launch [hz=N] [method=M] [env=K=V] -- CMD ARGS\n");
        return 2;
    }

    /* Decide the method here, on this process, as the cells do. */
    ab_counter probe;
    char note[1024];
    const char *chosen = ab_counter_open_named(&probe, method, note, sizeof note);
    if (!chosen) {
        fprintf(stderr, "allocbench-launch: counter method: %s\n", note);
        return 3;
    }
    ab_counter_close(&probe);
    char strace_log[64] = "";
    if (!strcmp(chosen, "strace")) {
        snprintf(strace_log, sizeof strace_log, "/tmp/allocbench-launch-%d.strace", getpid());
    }

    int go[2], err[2];
    if (pipe(go) || pipe2(err, O_CLOEXEC)) {
        perror("pipe");
        return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(go[1]);
        close(err[0]);
        for (int i = 0; i < nenv; i++)
            putenv(envs[i]);
        char c;
        if (read(go[0], &c, 1) != 1)
            _exit(126);
        close(go[0]);
        if (strace_log[0]) {
            char filter[256];
            snprintf(filter, sizeof filter, "trace=brk,mmap,munmap,mremap,madvise,mprotect");
            char **sargv = calloc((size_t)(argc - first + 10), sizeof *sargv);
            int k = 0;
            sargv[k++] = "strace", sargv[k++] = "-f", sargv[k++] = "-qq", sargv[k++] = "-e";
            sargv[k++] = filter, sargv[k++] = "-o", sargv[k++] = strace_log, sargv[k++] = "--";
            for (int i = first; i < argc; i++)
                sargv[k++] = argv[i];
            execvp("strace", sargv);
        } else {
            execvp(argv[first], argv + first);
        }
        int e = errno;
        if (write(err[1], &e, sizeof e) != sizeof e)
            _exit(127);
        _exit(127);
    }
    close(go[0]);
    close(err[1]);
    ab_counter c;
    int counting = !strcmp(chosen, "perf");
    if (counting && ab_counter_open_task(&c, pid)) {
        snprintf(note, sizeof note, "perf on the child: %s", c.error);
        counting = 0, chosen = "none";
    }
    int64_t t0 = now_ns();
    if (write(go[1], "g", 1) != 1) {
        perror("release");
        return 1;
    }
    close(go[1]);

    size_t cap = 1024, n = 0;
    sample *s = malloc(cap * sizeof *s);
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    struct rusage ru;
    int status = 0, timed_out = 0;
    for (;;) {
        pid_t done = wait4(pid, &status, WNOHANG, &ru);
        if (done == pid)
            break;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ssize_t got = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (got > 0) {
                buf[got] = 0;
                if (n == cap)
                    s = realloc(s, (cap *= 2) * sizeof *s);
                s[n++] = (sample){now_ns() - t0, kb_field(buf, "\nRss:"), kb_field(buf, "\nAnonymous:"),
                                  kb_field(buf, "\nAnonHugePages:")};
            }
        }
        if (timeout_s && now_ns() - t0 > (int64_t)timeout_s * 1000000000) {
            kill(pid, SIGKILL);
            wait4(pid, &status, 0, &ru);
            timed_out = 1;
            break;
        }
        struct timespec tick = {0, 1000000000L / hz};
        nanosleep(&tick, NULL);
    }
    int64_t wall = now_ns() - t0;
    int exec_errno = 0;
    if (read(err[0], &exec_errno, sizeof exec_errno) != sizeof exec_errno)
        exec_errno = 0;

    int64_t counts[AB_NSYSCALLS];
    int have_counts = 0;
    if (counting)
        have_counts = ab_counter_read_totals(&c, counts) == 0;
    else if (strace_log[0]) {
        FILE *f = fopen(strace_log, "r");
        char line[1024];
        memset(counts, 0, sizeof counts);
        while (f && fgets(line, sizeof line, f)) {
            char *p = line + strspn(line, "0123456789 ");  /* strace -f prefixes the pid */
            for (int i = 0; i < AB_NSYSCALLS; i++) {
                size_t len = strlen(ab_syscall_names[i]);
                if (!strncmp(p, ab_syscall_names[i], len) && p[len] == '(')
                    counts[i]++;
            }
        }
        if (f)
            fclose(f), have_counts = 1;
        unlink(strace_log);
        snprintf(note, sizeof note, "strace -f: faults and CPU time include strace's own");
    }

    if (out_path && !freopen(out_path, "w", stdout)) {
        perror(out_path);
        return 1;
    }
    printf("{\"counter_method\":\"%s\",\"counter_note\":", chosen);
    if (note[0]) printf("\"%s\"", note); else printf("null");
    printf(",\"exec_error\":");
    if (exec_errno) printf("\"%s\"", strerror(exec_errno)); else printf("null");
    if (WIFEXITED(status))
        printf(",\"exit_status\":%d,\"signal\":null", WEXITSTATUS(status));
    else
        printf(",\"exit_status\":null,\"signal\":\"%s\"", WIFSIGNALED(status) ? sigabbrev_np(WTERMSIG(status)) : "?");
    printf(",\"timed_out\":%s,\"wall_ns\":%lld,\"user_ns\":%lld,\"sys_ns\":%lld,\"minor_faults\":%ld,"
           "\"major_faults\":%ld,\"max_rss_bytes\":%ld,\"syscalls\":",
           timed_out ? "true" : "false", (long long)wall,
           (long long)ru.ru_utime.tv_sec * 1000000000 + ru.ru_utime.tv_usec * 1000,
           (long long)ru.ru_stime.tv_sec * 1000000000 + ru.ru_stime.tv_usec * 1000,
           ru.ru_minflt, ru.ru_majflt, ru.ru_maxrss * 1024);
    if (have_counts) {
        printf("{");
        for (int i = 0; i < AB_NSYSCALLS; i++)
            printf("%s\"%s\":%lld", i ? "," : "", ab_syscall_names[i], (long long)counts[i]);
        printf("}");
    } else {
        printf("null");
    }
    const char *cols[] = {"t_ns", "rss_bytes", "anon_bytes", "anon_huge_bytes"};
    printf(",\"timeline\":{");
    for (int k = 0; k < 4; k++) {
        printf("%s\"%s\":[", k ? "," : "", cols[k]);
        for (size_t i = 0; i < n; i++) {
            int64_t v = k == 0 ? s[i].t_ns : k == 1 ? s[i].rss : k == 2 ? s[i].anon : s[i].huge;
            printf("%s%lld", i ? "," : "", (long long)v);
        }
        printf("]");
    }
    printf("}}\n");
    return 0;
}
