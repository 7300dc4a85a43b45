"""Exact counts: the counters against known workloads and against strace."""

import os
import shutil
import subprocess

import pytest
from cells import MARK_ATTACHED, MARK_BEGIN, MARK_END, STRACE_SET, cell_json, run_cell_raw, strace_windows
from conftest import ROOT, fresh_json, needs_perf, needs_strace

from allocbench import _native, counters
from allocbench.units import KIB

N = 2000
FIXED_128K = "mallopt=-3:131072"
PAGE = 4096


@needs_perf
def test_fixed_threshold_churn_is_one_mmap_and_munmap_per_op():
    out = cell_json("pattern=churn", f"size_lo={200 * KIB}", f"ops={N}", "repeats=3",
                    "method=perf", FIXED_128K)
    for rep in out["repeats"]:
        c = rep["counts"]
        assert c["syscalls"]["mmap"] == N and c["syscalls"]["munmap"] == N
        assert c["syscalls"]["brk"] == 0
        assert c["minor_faults"] >= N * (200 * KIB // PAGE)  # every page of a fresh mapping faults


@pytest.mark.parametrize("method", [pytest.param("perf", marks=needs_perf),
                                    pytest.param("strace", marks=needs_strace)])
def test_dynamic_threshold_churn_makes_at_most_one_mmap(method):
    out = cell_json("pattern=churn", f"size_lo={200 * KIB}", f"ops={N}", "repeats=1",
                    "warmup=0", f"method={method}")
    c = out["repeats"][0]["counts"]["syscalls"]
    assert c["mmap"] <= 1 and c["munmap"] <= 1


WORKLOADS = {
    "churn-fixed": ["pattern=churn", f"size_lo={200 * KIB}", FIXED_128K],
    "batch": ["pattern=batch", f"size_lo={256 * KIB}", "live=32"],
    "fifo-band": ["pattern=band", f"size_lo={96 * KIB}", f"size_hi={160 * KIB}", "live=16"],
    "realloc-grow": ["pattern=realloc-grow", f"size_lo={64 * KIB}", f"size_hi={4096 * KIB}"],
    "fragment": ["pattern=fragment", f"size_lo={256 * KIB}", "live=16"],
    "threads": ["pattern=churn", f"size_lo={64 * KIB}", "threads=3"],
}


@needs_perf
@needs_strace
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_perf_counts_match_strace_exactly(workload, tmp_path):
    log = tmp_path / "strace.log"
    out = cell_json(*WORKLOADS[workload], "ops=500", "repeats=2", "warmup=1", "method=perf",
                    prefix=["strace", "-f", "-qq", "-e", STRACE_SET, "-o", str(log)])
    windows = strace_windows(log)
    assert len(windows) == 3  # warm-up + 2 repeats, in order
    for rep, seen in zip(out["repeats"], windows[1:]):
        assert rep["counts"]["syscalls"] == seen
    assert any(sum(w.values()) for w in windows)  # the comparison is not of empty windows


@needs_perf
@needs_strace
@pytest.mark.parametrize("workload", ["churn-fixed", "batch", "realloc-grow", "fragment"])
def test_strace_method_matches_perf(workload):
    """Deterministic single-threaded workloads: both methods, separate processes."""
    args = [*WORKLOADS[workload], "ops=300", "repeats=1", "warmup=1"]
    perf = cell_json(*args, "method=perf")
    strace = cell_json(*args, "method=strace")
    assert strace["counter_method"] == "strace"
    assert strace["repeats"][0]["counts"]["syscalls"] == perf["repeats"][0]["counts"]["syscalls"]


@needs_perf
@needs_strace
def test_python_measure_counts_a_thread_started_inside_the_window(tmp_path):
    """measure() from Python, a worker thread started in the window: its arena
    mapping is counted, and every count equals what strace saw between the markers.
    Python's join returns once the thread's Python part is done, before glibc
    madvises its stack away and the thread exits: the window waits for the
    thread to leave /proc, or that madvise would fall on either side of its end."""
    log = tmp_path / "strace.log"
    out = fresh_json("""
        import json, os, threading, time
        from allocbench import glibc, measure
        tids = []
        def work():
            tids.append(threading.get_native_id())
            glibc.Block(1000).free()
        with measure("perf") as m:
            t = threading.Thread(target=work)
            t.start()
            t.join()
            while os.path.exists(f"/proc/self/task/{tids[0]}"):
                time.sleep(0.001)
        print(json.dumps(m.syscalls))
    """, prefix=["strace", "-f", "-qq", "-e", STRACE_SET, "-o", str(log)])
    windows = strace_windows(log)
    assert len(windows) == 1 and out == windows[0]
    assert out["mmap"] >= 2  # the thread's stack and its arena's heap
    # (no brk assertion here: the interpreter's own mallocs in the main thread may
    # grow the main heap; test_probes checks a thread's no-brk fact in a C cell)


@needs_perf
@needs_strace
def test_python_measure_one_mmapped_block(tmp_path):
    """measure() around a 1 MiB Block: its mmap and munmap are seen, and every
    count equals strace's (the interpreter may add its own arena mappings)."""
    log = tmp_path / "strace.log"
    out = fresh_json("""
        import json
        from allocbench import glibc, measure
        glibc.mallopt("mmap_threshold", 128 * 1024)
        with measure() as m:
            b = glibc.Block(1 << 20)
            b.fill(1)
            b.free()
        print(json.dumps(m.to_dict()))
    """, prefix=["strace", "-f", "-qq", "-e", STRACE_SET, "-o", str(log)])
    assert [out["syscalls"]] == strace_windows(log)
    assert out["syscalls"]["mmap"] >= 1 and out["syscalls"]["munmap"] >= 1
    assert out["minor_faults"] >= 256
    assert out["before"]["rss_bytes"] > 0 and out["wall_ns"] > 0


ZOMBIE_LEADER = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include "counters.h"

static pid_t leader;

static char leader_state(void)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)leader);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p ? p[2] : '?';
}

static void *worker(void *unused)
{
    (void)unused;
    while (leader_state() != 'Z')  /* the main thread has called pthread_exit */
        usleep(1000);
    ab_counter c;
    if (ab_counter_open(&c, AB_METHOD_PERF, NULL, NULL)) {
        fprintf(stderr, "%s\n", c.error);
        exit(1);
    }
    ab_window w;
    ab_counts out;
    ab_window_begin(&c, &w);
    void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munmap(p, 1 << 16);
    struct rusage before, after;
    getrusage(RUSAGE_THREAD, &before);
    ab_window_end(&c, &w, &out);
    getrusage(RUSAGE_THREAD, &after);
    printf("%lld %lld %ld\n", (long long)out.syscalls[AB_SYS_mmap], (long long)out.syscalls[AB_SYS_munmap],
           after.ru_nvcsw - before.ru_nvcsw);
    exit(0);
}

int main(void)
{
    leader = getpid();
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_exit(NULL);
}
"""


@needs_perf
def test_a_zombie_leader_does_not_hold_a_perf_window_open(tmp_path):
    """A main thread that called pthread_exit stays a zombie, PF_EXITING set, while the
    other threads run. Its counts are folded already, so the window's end must not wait
    for it: waiting is 1,000 sleeps of 1 ms, each one voluntary switch of this thread."""
    src = tmp_path / "zombie_leader.c"
    src.write_text(ZOMBIE_LEADER)
    exe = tmp_path / "zombie_leader"
    lib = os.path.join(ROOT, "csrc", "lib")
    subprocess.run(["gcc", "-O1", "-Wall", "-Werror", "-fno-builtin-malloc", "-I", lib, "-o", str(exe), str(src),
                    os.path.join(lib, "counters.c"), "-lpthread"], check=True)
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    mmaps, munmaps, sleeps = map(int, proc.stdout.split())
    assert (mmaps, munmaps) == (1, 1)
    assert sleeps < 1000


def strace_log(tmp_path, *marks_and_calls):
    """A `strace -f -o` log of pid 7: marker paths become faccessat lines, the rest are copied."""
    log = tmp_path / "strace.log"
    log.write_text("".join(f'7 faccessat(AT_FDCWD, "{x}", F_OK) = -1 ENOENT (No such file or directory)\n'
                           if x in (MARK_ATTACHED, MARK_BEGIN, MARK_END) else f"7 {x}\n" for x in marks_and_calls))
    return str(log)


def test_strace_counts_only_between_the_window_markers(tmp_path):
    """A brk before the window (and the attach marker), two brk and one mmap inside (one brk
    split by strace into a first line and its resumption, counted once), a munmap after."""
    log = strace_log(tmp_path, "brk(NULL) = 0x1000", MARK_ATTACHED, MARK_BEGIN, "brk(NULL) = 0x1000",
                     "brk(0x22000 <unfinished ...>", "mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3, 0) = 0x7f0",
                     "<... brk resumed>) = 0x22000", MARK_END, "munmap(0x7f0, 4096) = 0")
    assert _native.strace_log_counts(log) == {**dict.fromkeys(counters.SYSCALLS, 0), "brk": 2, "mmap": 1}
    assert _native.strace_log_counts(log, bounded=False)["munmap"] == 1  # a whole program's log: every line


@pytest.mark.parametrize("lines,message", [
    ((MARK_END,), "began tracing late"),  # strace traced the end but had not begun at the begin
    (("brk(NULL) = 0x1000",), "lacks the window markers"),
    ((MARK_BEGIN, "brk(NULL) = 0x1000"), "lacks the window markers"),  # detached before the end
])
def test_a_strace_window_without_both_markers_is_an_error_not_zero(tmp_path, lines, message):
    with pytest.raises(ValueError, match=message):
        _native.strace_log_counts(strace_log(tmp_path, *lines))


def test_unavailable_perf_is_reported_not_zero(tmp_path):
    env = {"ALLOCBENCH_TRACEFS": str(tmp_path / "no-tracefs")}
    proc = run_cell_raw("pattern=churn", "size_lo=1024", "ops=10", "method=perf", env=env)
    assert proc.returncode == 3 and "no-tracefs" in proc.stderr
    env["ALLOCBENCH_STRACE"] = str(tmp_path / "no-strace")
    out = cell_json("pattern=churn", "size_lo=1024", "ops=10", "method=auto", env=env)
    assert out["counter_method"] == "none"
    assert "perf:" in out["counter_note"] and "strace:" in out["counter_note"]
    assert all(v is None for v in out["repeats"][0]["counts"]["syscalls"].values())


@needs_strace
def test_straces_own_messages_stay_off_stderr_and_name_a_failed_attach(tmp_path):
    """strace prints warnings of its own on some kernels ("entering, ptrace_syscall_info.op == 2",
    seen here once on a busy machine, in `allocbench info | head -1`'s stderr) and its reason when it
    cannot attach; both reached the caller's stderr.  They go to a file beside strace's log now: a
    counted run's stderr has none of them, and a failed attach's error gives strace's reason where
    it guessed "ptrace not permitted?"."""
    noisy, refusing = tmp_path / "noisy-strace", tmp_path / "refusing-strace"
    noisy.write_text('#!/bin/sh\necho "strace: pid 1: entering, ptrace_syscall_info.op == 2" >&2\n'
                     f'exec {shutil.which("strace")} "$@"\n')
    refusing.write_text('#!/bin/sh\necho "strace: attach: ptrace(PTRACE_SEIZE, 1): Operation not permitted" >&2\n'
                        "exit 1\n")
    noisy.chmod(0o755)
    refusing.chmod(0o755)
    args = ("pattern=churn", "size_lo=1024", "ops=10", "method=strace")
    proc = run_cell_raw(*args, env={"ALLOCBENCH_STRACE": str(noisy)})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    failed = cell_json(*args, env={"ALLOCBENCH_STRACE": str(refusing)})  # the cell's record says why
    assert "strace exited before attaching (status 256): strace: attach: ptrace(PTRACE_SEIZE, 1): Operation " \
           "not permitted" in failed["error"], failed


def test_python_api_unavailable_method(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLOCBENCH_TRACEFS", str(tmp_path / "nothing"))
    monkeypatch.setattr(counters, "_cache", {})
    with pytest.raises(counters.CounterUnavailable, match="nothing"):
        with counters.measure("perf"):
            pass
    monkeypatch.setenv("ALLOCBENCH_STRACE", str(tmp_path / "no-strace"))
    with counters.measure("auto") as m:
        pass
    assert m.method == "none" and set(m.syscalls.values()) == {None}
    assert "not measured" in m.error
    with pytest.raises(ValueError):
        counters.open_counter("bogus")
