"""allocbench exec: unmodified programs under every knob, counted over the whole
process tree; the threshold explainer; compare.  Expected values come from the
programs' own calls and glibc's chunk rounding."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ENV, NO_COUNTER, cli, needs_perf, needs_strace, one_line_error

from allocbench import programs
from allocbench.glibc_constants import request2size

KIB, MIB, PAGE = 1024, 1 << 20, os.sysconf("SC_PAGE_SIZE")
# Linux (6.2 on) keeps a process's RSS in per-CPU counters and reads them without summing: each
# of its file and anon counts can be off by the batch (max(32, 2 x CPUs) pages) on every CPU,
# both in /proc and in the high-water mark wait4 reports. Two CI runs here read a 64 MiB rise 39
# and 23 pages short.
_CPUS = os.cpu_count() or 1
RSS_SLACK = 2 * max(32, 2 * _CPUS) * _CPUS * 4096
pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test programs")


def build(tmp_path, name, source, flags=()):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run(["gcc", "-O0", "-rdynamic", "-fno-builtin", *flags, "-o", str(exe), str(src)], check=True)
    return str(exe)


THRESHOLD_MOVER = r"""
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *big = malloc(1 << 20); memset(big, 1, 1 << 20); free(big);   /* mmapped, then freed */
    for (int i = 0; i < 100; i++) { char *p = malloc(512 << 10); memset(p, 1, 512 << 10); free(p); }
    return 0;
}
"""


def mmapped_chunk(request: int) -> int:
    """glibc: an mmapped chunk is request2size(request) + SIZE_SZ, rounded up to pages."""
    nb = request2size(request)
    return -(-(nb + 8) // PAGE) * PAGE


METHODS = [pytest.param("perf", marks=needs_perf), pytest.param("strace", marks=needs_strace)]


@pytest.mark.parametrize("method", METHODS)
def test_a_fixed_threshold_costs_exactly_one_mmap_and_munmap_per_block(tmp_path, monkeypatch, method):
    """Under strace too: the settings reach the program, and the loader-alone run is
    the program's loader, not strace listing its own libraries."""
    monkeypatch.setenv("ALLOCBENCH_COUNTER_METHOD", method)
    exe = build(tmp_path, "mover", THRESHOLD_MOVER)
    dyn = programs.run_program([exe], "glibc", {}, 0, loader_cache={})
    fixed = programs.run_program([exe], "glibc", {"mmap_threshold": 128 * KIB}, 0, loader_cache={})
    assert dyn["status"] == fixed["status"] == "ok"
    assert dyn["counter_method"] == fixed["counter_method"] == method
    assert fixed["syscalls"]["mmap"] - dyn["syscalls"]["mmap"] == 100
    assert fixed["syscalls"]["munmap"] - dyn["syscalls"]["munmap"] == 100
    assert dyn["loader"]["syscalls"]["mmap"] == fixed["loader"]["syscalls"]["mmap"]
    assert "LD_TRACE_LOADED_OBJECTS" in dyn["loader"]["method"]


@needs_perf
@needs_strace
def test_under_strace_the_faults_and_peak_are_the_programs_own(tmp_path, monkeypatch):
    """strace attaches to the launcher's own child, so wait4 reports the program alone: its
    faults as under perf (the child's few pre-exec pages aside), not strace's hundreds added,
    and its peak, not strace's larger one (about 1 MiB against strace's 3.5)."""
    exe = build(tmp_path, "small", "int main(void) { return 0; }")
    runs = {}
    for method in ("perf", "strace"):
        monkeypatch.setenv("ALLOCBENCH_COUNTER_METHOD", method)
        runs[method] = programs.run_program([exe], "glibc", {}, 0)
        assert runs[method]["status"] == "ok" and runs[method]["counter_method"] == method
    perf, strace = runs["perf"], runs["strace"]
    assert abs(strace["minor_faults"] - perf["minor_faults"]) <= 32
    assert strace["peak_rss_bytes"] <= perf["peak_rss_bytes"] + RSS_SLACK
    assert strace["syscalls"] == perf["syscalls"]


def test_exec_without_a_counter_says_the_syscalls_were_not_counted(tmp_path):
    proc = cli("exec", "--repeats", "1", "--out", tmp_path / "p.jsonl", "--", "true", env=NO_COUNTER)
    assert proc.returncode == 0, proc.stderr
    assert "s, syscalls not counted (counter none) (loader alone: -)" in proc.stdout


def test_explain_names_the_one_rise_its_caller_and_what_it_moved(tmp_path):
    exe = build(tmp_path, "mover", THRESHOLD_MOVER)
    rec = programs.run_program([exe], "glibc", {}, 0, explain=True)
    e = rec["explain"]
    assert len(e["rises"]) == 1 and e["rise_count"] == 1
    rise = e["rises"][0]
    assert rise["old_threshold"] == 128 * KIB and rise["new_threshold"] == mmapped_chunk(1 << 20)
    assert rise["trim_threshold"] == 2 * rise["new_threshold"]
    assert rise["backtrace"][0]["function"] == "main"  # free's caller first, named (the program has symbols)
    assert rise["backtrace"][0]["object"] == exe and rise["backtrace"][0]["offset"].startswith("0x")
    assert e["moved_blocks"] == 100 and e["moved_bytes"] == 100 * 512 * KIB
    fixed = programs.run_program([exe], "glibc", {"mmap_threshold": 128 * KIB}, 0, explain=True)
    assert fixed["explain"]["rises"] == [] and fixed["explain"]["moved_blocks"] == 0


@pytest.mark.slow
def test_the_explainers_model_agrees_with_probe_dynamic(tmp_path, dynamic_probe):
    """For each size probe dynamic frees, the boundary it finds is the raised
    threshold less 23 bytes (chunk rounding); the shim must raise to exactly that."""
    found = dynamic_probe
    exe = build(tmp_path, "free_one", r"""
#include <stdlib.h>
#include <string.h>
int main(int c, char **v) { size_t n = strtoull(v[1], 0, 10); char *p = malloc(n); memset(p, 1, n); free(p); return 0; }
""")
    checked = 0
    for row in found["steps"]:
        if row["freed"] is None or row["freed"] > 32 * MIB:
            continue
        rec = programs.run_program([exe, str(row["freed"])], "glibc", {}, 0, explain=True)
        rises = rec["explain"]["rises"]
        if row["boundary"] is not None and row["boundary"] + 23 > 128 * KIB and rises:
            assert rises[-1]["new_threshold"] == row["boundary"] + 23, row
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("method", METHODS)
def test_rss_over_time_shows_the_rise_and_the_fall(tmp_path, monkeypatch, method):
    """The samples are the program's own, under strace too (strace attaches to it).
    Each phase lasts until the launcher has sampled it, whatever the machine's load:
    the program counts the launcher's sleeps (voluntary switches), and each sleep of its
    sampling loop ends in a sample (poll's timeout never ends before the next tick)."""
    monkeypatch.setenv("ALLOCBENCH_COUNTER_METHOD", method)
    exe = build(tmp_path, "wave", r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char status[64];
static long sleeps(void) {  /* the launcher's voluntary switches so far */
    char buf[4096] = ""; FILE *f = fopen(status, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0; if (f) fclose(f); buf[n] = 0;
    char *p = strstr(buf, "\nvoluntary_ctxt_switches:"); if (!p) exit(3);
    return atol(p + 26); }
static void wait_samples(int n) {  /* one more sleep than samples: the first may end a loop begun earlier */
    long s0 = sleeps(); while (sleeps() < s0 + n + 1) usleep(1000); }
int main(void) {
    char path[64], comm[64] = ""; FILE *f;  /* the launcher is our parent, whatever the counter */
    snprintf(path, sizeof path, "/proc/%d/comm", getppid());
    if ((f = fopen(path, "r"))) { if (!fgets(comm, sizeof comm, f)) comm[0] = 0; fclose(f); }
    if (strncmp(comm, "allocbench-laun", 15)) return 3;
    snprintf(status, sizeof status, "/proc/%d/status", getppid());
    wait_samples(2); char *p = malloc(64 << 20); memset(p, 1, 64 << 20);
    wait_samples(2); free(p); wait_samples(6); return 0; }
""")
    rec = programs.run_program([exe], "glibc", {}, 0, hz=100)
    assert rec["exit_status"] == 0, "the program did not find its launcher"
    assert rec["counter_method"] == method
    rss = rec["timeline"]["rss_bytes"]
    top = max(rss)
    # the program's own baseline is the least sample before the peak: the first sample can be the
    # launcher's, before its exec
    base = min(rss[:rss.index(top) + 1])
    # the peak is the kernel's own high-water mark (wait4's rusage), whatever the sampling caught
    assert rec["peak_rss_bytes"] - base >= 64 * MIB - RSS_SLACK
    assert top - base >= 64 * MIB - RSS_SLACK and rec["final_rss_bytes"] <= top - 60 * MIB
    assert rss.index(top) < len(rss) - 5  # it fell while the program was still running


def test_a_crash_is_a_failed_record_and_the_grid_goes_on(tmp_path):
    exe = build(tmp_path, "crash", "int main(void) { *(volatile int *)0 = 1; return 0; }")
    out = tmp_path / "p.jsonl"
    recs = programs.run_grid([exe], programs.load_grid("quick"), 1, str(out))
    assert len(recs) == 2 and all(r["status"] == "failed" and r["signal"] == "SEGV" for r in recs)
    assert all("SIGSEGV" in r["error"] for r in recs)
    assert len(out.read_text().splitlines()) == 2


def test_exec_resumes_only_runs_of_the_same_build(tmp_path, capsys):
    """A rerun into the same file measures nothing again; once the program's executable changed, the
    file's runs are another build's: it is moved aside whole and every run measured again (before,
    the old numbers were resumed as the new program's)."""
    exe = build(tmp_path, "prog", "int main(void) { return 0; }")
    out = tmp_path / "p.jsonl"
    grid = programs.load_grid("quick")
    first = programs.run_grid([exe], grid, 1, str(out))
    assert len(first) == len(grid) and all(r["status"] == "ok" and r["build"] for r in first)
    assert programs.run_grid([exe], grid, 1, str(out)) == []
    build(tmp_path, "prog", "int main(void) { return 1 - 1; }  /* another build */", flags=("-O1",))
    capsys.readouterr()
    again = programs.run_grid([exe], grid, 1, str(out))
    assert len(again) == len(grid)
    assert f"{out} held {len(grid)} of {len(grid)} records measured by another build" in capsys.readouterr().err
    assert len((tmp_path / "p.jsonl.stale").read_text().splitlines()) == len(grid)


@pytest.mark.parametrize("args,message", [
    (["exec", "--"], "no command: give it after --, e.g. allocbench exec -- "),
    (["exec", "--", "no-such-command-here"], "command not found"),
    (["exec", "--mmap-threshold", "64M", "--", "true"], "mmap_threshold must be"),
    (["exec", "--tcache-count", "70000", "--", "true"], "tcache_count must be"),
    (["exec", "--grid", "nosuchgrid", "--", "true"], "grid nosuchgrid"),
    (["exec", "--repeats", "0", "--", "true"], "--repeats must be at least 1"),
    (["exec", "--hz", "0", "--", "true"], "--hz must be from 1 to"),
    (["exec", "--input", "/no/such/file", "--", "cat"], "--input /no/such/file: no such file"),
])
def test_bad_input_is_one_line_and_records_nothing(tmp_path, args, message):
    out = tmp_path / "p.jsonl"
    proc = cli(*args[:1], "--out", str(out), *args[1:])
    assert one_line_error(proc, message), proc.stderr
    assert not out.exists()


BINARY = bytes(range(256)) * 4  # every byte value, not UTF-8


def test_the_programs_input_and_output_are_its_own_bytes(tmp_path):
    """stdin comes from --input (else /dev/null), stdout goes to the run's log
    unchanged, or with --show-output to allocbench's own stdout unchanged."""
    data = tmp_path / "in.bin"
    data.write_bytes(BINARY)
    out = tmp_path / "p.jsonl"
    proc = cli("exec", "--input", data, "--repeats", "1", "--out", out, "--", "cat", text=False)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    assert rec["status"] == "ok" and open(rec["log"], "rb").read() == BINARY
    shown = cli("exec", "--input", data, "--repeats", "2", "--show-output", "--", "cat", text=False)
    assert shown.returncode == 0 and shown.stdout == BINARY * 2  # allocbench's own lines went to stderr
    quiet = cli("exec", "--repeats", "1", "--show-output", "--", "cat", text=False)  # /dev/null: no wait
    assert quiet.returncode == 0 and quiet.stdout == b""


def test_a_timeout_is_exit_1_and_a_failed_record(tmp_path):
    """A timeout is a measurement that failed (exit 1), never bad input (2).  It is the one asked for:
    the launcher took whole seconds, so 1.5 s killed at 1 s (and 0.05 s at 1 s, said as 0.05)."""
    out = tmp_path / "p.jsonl"
    proc = cli("exec", "--timeout", "1.5", "--repeats", "1", "--out", out, "--", "sleep", "30")
    assert proc.returncode == 1 and "timed out after 1.5 s" in proc.stderr, proc.stderr
    rec = json.loads(out.read_text())
    assert rec["status"] == "failed" and rec["error"] == "timeout: killed after 1.5 s"
    assert rec["wall_ns"] >= 1.5e9  # killed at its deadline, not before


def sleepers(tag: str) -> list[int]:
    """The processes whose command line holds tag, once the SIGKILLed ones are gone: a kill is
    sent before its target dies, so the test waits up to 10 s; a process never killed (a
    `sleep 1000`) is still there then, and the test fails."""
    import time

    deadline = time.monotonic() + 10
    while True:
        left = [int(p) for p in os.listdir("/proc") if p.isdigit() and tag.encode() in _cmdline(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _cmdline(pid: str) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_a_timeout_kills_the_whole_process_tree(tmp_path):
    """A shell script's background child would outlive the run: the launcher kills the
    program's process group, on a timeout and when the program ends."""
    script = tmp_path / "bg.sh"
    tag = f"1000.{os.getpid()}"  # sleep accepts a fraction: this names our sleeps among the machine's
    script.write_text(f"#!/bin/sh\nsleep {tag} &\nsleep {tag}\n")
    script.chmod(0o755)
    proc = cli("exec", "--timeout", "1", "--repeats", "1", "--", str(script))
    assert proc.returncode == 1 and "timed out" in proc.stderr
    assert sleepers(tag) == []
    script.write_text(f"#!/bin/sh\nsleep {tag} &\nexit 0\n")  # ends at once, its child does not
    assert cli("exec", "--repeats", "1", "--", str(script)).returncode == 0
    assert sleepers(tag) == []


def test_sigterm_ends_allocbench_and_everything_it_started(tmp_path):
    """`timeout 60 allocbench exec ...`, a service manager, CI: SIGTERM killed the Python process alone,
    and the launcher and the program ran on to their own timeout (600 s).  Now it unwinds as Ctrl-C
    does, exit 143.  The signal is sent once the program runs: no timing is assumed."""
    import time

    tag = f"1000.{os.getpid()}3"
    proc = subprocess.Popen([sys.executable, "-m", "allocbench", "exec", "--repeats", "1", "--", "sleep", tag],
                            env={**ENV, "TMPDIR": str(tmp_path)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    program = b"sleep\0" + tag.encode() + b"\0"
    deadline = time.monotonic() + 120
    while not any(_cmdline(p) == program for p in os.listdir("/proc") if p.isdigit()):
        assert proc.poll() is None and time.monotonic() < deadline, "the program never started"
        time.sleep(0.05)
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.strip() == "allocbench: terminated", err
    assert sleepers(tag) == []
    assert list(tmp_path.iterdir()) == []  # the launcher's temporary file is gone too


def test_a_program_that_fails_is_exit_1_and_a_failed_record(tmp_path):
    out = tmp_path / "p.jsonl"
    proc = cli("exec", "--repeats", "1", "--out", out, "--", "sh", "-c", "exit 3")
    assert proc.returncode == 1
    rec = json.loads(out.read_text())
    assert rec["status"] == "failed" and rec["error"] == "exit status 3"


def test_settings_reach_the_program_as_tunables_and_preloads():
    env = programs.program_env("glibc", {"mmap_threshold": 131072, "arena_max": 2, "tcache_count": 0})
    assert env["GLIBC_TUNABLES"] == ("glibc.malloc.mmap_threshold=131072:glibc.malloc.arena_max=2:"
                                     "glibc.malloc.tcache_count=0")
    assert "LD_PRELOAD" not in env
    env = programs.program_env("toy", {"toy_policy": "dontneed"})
    assert env["TOYALLOC_POLICY"] == "dontneed" and env["LD_PRELOAD"].endswith("libtoyalloc.so")


def _program_runs(path, walls, glibc="2.36", settings=None, method="perf"):
    base = {"kind": "program", "command": ["x"], "allocator": "glibc", "settings": settings or {}, "status": "ok",
            "syscalls": {"mmap": 10}, "peak_rss_bytes": 100, "env": {"glibc": glibc}, "counter_method": method}
    path.write_text("".join(json.dumps({**base, "repeat": i, "wall_ns": w}) + "\n" for i, w in enumerate(walls)))


def test_compare_states_each_rows_test(tmp_path):
    """Unpaired 5 against 5 runs: the Mann-Whitney interval is the 3rd smallest to
    the 3rd largest of the 25 ratios (1 - 2 * 4/252 = 96.8% coverage).  Runs
    three times as long, spread alike: "3.00x slower" with an interval above 1."""
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    _program_runs(a, (100, 104, 98, 102, 96))
    _program_runs(b, (300, 312, 294, 306, 288), glibc="2.41")
    proc = cli("compare", a, b)
    assert proc.returncode == 0, proc.stderr
    assert "glibc: 2.36 vs 2.41" in proc.stdout and "counted by" not in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("x | glibc"))
    ratios = sorted(y / x for x in (100, 104, 98, 102, 96) for y in (300, 312, 294, 306, 288))
    assert f"time 3.00x slower [{ratios[2]:.2f}, {ratios[-3]:.2f}]" in row
    same = cli("compare", a, a)
    assert all("time not significant" in line for line in same.stdout.splitlines() if line.startswith("x |"))
    assert "geometric mean of the time ratios: 1.000x over 1 rows (1 not significant)" in same.stdout
    _program_runs(c, (100, 104))  # too few runs for an interval: untested, never "not significant"
    few = next(line for line in cli("compare", c, c).stdout.splitlines() if line.startswith("x | glibc"))
    assert "time untested (unpaired Mann-Whitney, 2 runs" in few and "not significant" not in few
    # before and after tuning: the same program under another setting, compared setting against setting
    _program_runs(c, (300, 312, 294, 306, 288), settings={"mmap_threshold": 131072})
    tuned = cli("compare", a, c)
    assert "setting against setting" in tuned.stdout
    assert "x | glibc dynamic -> glibc @128 KiB: time 3.00x slower" in tuned.stdout
    # runs under strace are slowed by it: the header says how each file was counted
    _program_runs(c, (300, 312, 294, 306, 288), method="strace")
    assert "environments differ: counted by perf vs strace" in cli("compare", a, c).stdout


def test_compare_pairs_the_rows_of_two_clones_and_of_latency_passes(tmp_path):
    """The same bench run in two clones: a program's interpreter is each clone's own
    (/a/.venv/bin/python and /b/.venv/bin/python), and a cell with latency passes records its own
    histograms in its latency field.  Neither is a different measurement: each row pairs with its
    twin, where compare said "only in A: 1, only in B: 1"."""
    walls = (100, 104, 98, 102, 96)
    runs = {"kind": "program", "allocator": "glibc", "settings": {}, "status": "ok", "syscalls": {"mmap": 10},
            "peak_rss_bytes": 100, "env": {"glibc": "2.36"}, "counter_method": "perf"}
    cell = {"pattern": "churn", "size_lo": 98304, "size_hi": 98304, "ops": 5000, "threads": 1, "touch": True,
            "allocator": "glibc", "settings": {}, "status": "ok", "syscalls_per_op": {"mmap": 0},
            "peak_rss_bytes": 100, "ns_per_op_repeats": list(walls), "env": {"glibc": "2.36"}}
    for clone in ("a", "b"):
        (tmp_path / f"{clone}-programs.jsonl").write_text("".join(
            json.dumps({**runs, "command": [f"/{clone}/.venv/bin/python", "s.py"], "repeat": i, "wall_ns": w}) + "\n"
            for i, w in enumerate(walls)))
        histogram = {"malloc": {"count": 5000, "max_ns": 100 if clone == "a" else 120}}
        (tmp_path / f"{clone}-cells.jsonl").write_text(json.dumps({**cell, "latency": histogram}) + "\n")
    for kind in ("programs", "cells"):
        proc = cli("compare", tmp_path / f"a-{kind}.jsonl", tmp_path / f"b-{kind}.jsonl")
        assert proc.returncode == 0, proc.stderr
        assert "only in" not in proc.stdout and "over 1 rows (1 not significant)" in proc.stdout, proc.stdout


@pytest.mark.parametrize("case,message", [("missing", "no such results file"), ("cut", "cut short"),
                                          ("disjoint", "no cell or program is in both"),
                                          ("fidelity", "compare takes cells or program runs, not fidelity")])
def test_compare_refuses_bad_input_in_one_line(tmp_path, case, message):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _program_runs(a, (100, 101, 102))
    if case == "cut":
        b.write_text(a.read_text()[:-20])
    elif case == "disjoint":
        b.write_text(json.dumps({"kind": "program", "command": ["y"], "allocator": "glibc", "settings": {},
                                 "status": "ok", "repeat": 0, "wall_ns": 1, "env": {}}) + "\n")
    elif case == "fidelity":  # records with no time to compare: they crashed it (exit 70)
        b.write_text(json.dumps({"kind": "fidelity", "trace": "t", "allocator": "glibc", "status": "ok"}) + "\n")
    assert one_line_error(cli("compare", a, b), message)


@pytest.mark.slow
@needs_perf
@pytest.mark.parametrize("setting", [{"trim_threshold": 64 * MIB}, {"top_pad": 128 * KIB}, {"mmap_max": 65536}])
def test_a_threshold_tunable_freezes_the_dynamic_threshold_as_mallopt_does(tmp_path, setting, dynamic_probe):
    """probe dynamic shows mallopt of M_TRIM_THRESHOLD, M_TOP_PAD or M_MMAP_MAX keeps
    the threshold at 128 KiB after a 1 MiB free; the same tunable does the same to a
    program: its 100 blocks of 512 KiB stay mmapped (100 more mmaps than dynamic)."""
    frozen = dynamic_probe["frozen_by"]
    name = {"trim_threshold": "M_TRIM_THRESHOLD", "top_pad": "M_TOP_PAD", "mmap_max": "M_MMAP_MAX"}[next(iter(setting))]
    assert frozen[name]["boundary_after_freeing_1MiB"] + 23 == 128 * KIB  # mallopt froze it
    exe = build(tmp_path, "mover", THRESHOLD_MOVER)
    dyn = programs.run_program([exe], "glibc", {}, 0, explain=True)  # the same preloads in both runs
    tun = programs.run_program([exe], "glibc", setting, 0, explain=True)
    assert tun["syscalls"]["mmap"] - dyn["syscalls"]["mmap"] == 100
    assert tun["explain"]["rises"] == []  # the shim agrees: no rise under the tunable


@pytest.mark.skipif(not shutil.which("c++filt"), reason="binutils' c++filt demangles")
def test_call_sites_are_demangled_in_full_and_shortened_for_a_line():
    frames = [{"function": "_ZN7rocksdb10BuildTableERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE",
               "object": "/usr/lib/librocksdb.so.7", "offset": "0x10"}, {"function": "array_dealloc", "object": "x",
                                                                         "offset": "0x20", "source": "a.c:3"}]
    programs.demangle(frames)
    assert frames[0]["function"].startswith("rocksdb::BuildTable(std::__cxx11::basic_string<char")
    assert frames[0]["function_mangled"].startswith("_ZN7rocksdb10BuildTable")
    assert "function_mangled" not in frames[1]  # a C name stays as it is
    assert programs.frame_text(frames[0]) == "rocksdb::BuildTable (librocksdb.so.7+0x10)"
    assert programs.frame_text(frames[1]) == "array_dealloc (a.c:3)"
    assert programs.short_function("std::vector<int, std::allocator<int> >::push_back(int const&)") == \
        "std::vector<…>::push_back"
    assert len(programs.short_function("f" * 500)) == 60
