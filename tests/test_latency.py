"""Latency: every call timed into a histogram that adds up, and each slow
call named with exactly what ran inside it.  The expected counts come from
glibc's rules (a fixed threshold mmaps every block above it and munmaps it
on free; the dynamic threshold, once raised, keeps them on the heap), never
from a timing: timings are benchmarks."""
import shutil
import subprocess

import pytest
from cells import cell_json
from conftest import cli, needs_counts, needs_perf

from allocbench import probes, programs, runner, stats
from allocbench.counters import SYSCALLS

KIB, MIB = 1024, 1 << 20
SIZE, OPS = 132 * KIB, 400


def churn(**kw):
    rec = runner.run_cell(runner.make_spec(pattern="churn", size=SIZE, ops=OPS, repeats=1, latency=True, **kw))
    assert rec["status"] == "ok", rec.get("error")
    return rec


def check_histograms(rec, calls):
    for kind, h in rec["latency"].items():
        assert sum(c for _, c in h["histogram"]) == h["count"] == calls[kind], kind
        edges = [v for v, _ in h["histogram"]]
        assert edges == sorted(edges) and len(set(edges)) == len(edges)
        assert h["p50_ns"] <= h["p90_ns"] <= h["p99_ns"] <= h["p999_ns"] <= h["max_ns"]
        assert h["max_ns"] <= edges[-1] + 1e-6  # the max is in the last bucket


@needs_perf  # naming what ran inside each call counts it with perf
def test_at_a_fixed_threshold_every_malloc_maps_and_every_free_unmaps():
    """132 KiB blocks at a fixed 128 KiB threshold: in the naming pass each
    malloc made exactly one mmap and each free one munmap, and a slow malloc
    took exactly one fault inside it (glibc writes the new chunk's header)."""
    rec = churn(settings={"mmap_threshold": 128 * KIB})
    check_histograms(rec, {"malloc": OPS, "free": OPS})
    totals = rec["latency_attribution"]["totals"]
    assert rec["latency_attribution"]["available"] and rec["latency_attribution"]["all_calls"]
    assert totals["malloc"]["calls"] == OPS and totals["free"]["calls"] == OPS
    assert totals["malloc"]["calls_with"] == {**dict.fromkeys(SYSCALLS, 0), "mmap": OPS}
    assert totals["free"]["calls_with"] == {**dict.fromkeys(SYSCALLS, 0), "munmap": OPS}
    assert totals["malloc"]["syscalls"]["mmap"] == OPS and totals["free"]["syscalls"]["munmap"] == OPS
    slow = rec["slow_calls"]
    assert len(slow) >= 64 and all(c["syscalls"] is not None for c in slow)
    for c in slow:
        want = {**dict.fromkeys(SYSCALLS, 0), "mmap" if c["op"] == "malloc" else "munmap": 1}
        assert c["syscalls"] == want, c
        assert c["faults"] == (1 if c["op"] == "malloc" else 0) and not c["trimmed"]
        assert c["size"] == SIZE if c["op"] == "malloc" else c["size"] >= SIZE
    # each slow call is its syscall's, unless the kernel switched its thread out for half its time
    # or more (preempted: the rule puts that outside the allocator first); on a busy machine it can
    causes = rec["latency_causes"]
    assert causes["unexplained"]["calls"] == causes["interference"]["calls"] == 0
    assert causes["mmap"]["calls"] + causes["munmap"]["calls"] + causes["preempted"]["calls"] == len(slow)


@needs_perf
def test_at_the_dynamic_default_the_raised_threshold_keeps_them_on_the_heap():
    """The timed repeats' first free raised the threshold above 132 KiB: the
    latency passes, which come after them, make no mmap and no munmap."""
    rec = churn()
    check_histograms(rec, {"malloc": OPS, "free": OPS})
    totals = rec["latency_attribution"]["totals"]
    for kind in ("malloc", "free"):
        assert totals[kind]["calls"] == OPS
        assert totals[kind]["calls_with"]["mmap"] == totals[kind]["calls_with"]["munmap"] == 0
    assert all(c["syscalls"]["mmap"] == 0 and c["syscalls"]["munmap"] == 0 for c in rec["slow_calls"])


def test_a_replay_times_the_traces_own_calls(tmp_path):
    """A replay's latency passes time exactly the trace's calls, by kind."""
    from allocbench import traces
    out = str(tmp_path / "cell.trace")
    traces.record([runner.cell_binary(), "pattern=realloc-grow", "size_lo=4096", "size_hi=65536", "ops=200",
                   "repeats=1", "warmup=0", "timeline=0"], out)
    rec = runner.run_cell(runner.make_spec(pattern="trace", trace=out, repeats=1, latency=True))
    assert rec["status"] == "ok", rec.get("error")
    info = traces.info(out)
    ops = info["ops"]
    _, ev = traces.read(out)  # free(NULL) frees nothing and is not replayed
    frees = int(((ev["op"] == traces.FREE) & (ev["ptr"] != 0)).sum())
    want = {"free": frees, "realloc": ops.get("realloc", 0), "malloc": ops.get("malloc", 0)}
    want = {k: v for k, v in want.items() if v}
    assert {k: h["count"] for k, h in rec["latency"].items() if k in want} == want


def test_latency_without_counters_or_touching_still_times_and_says_why():
    rec = churn(counter_method="none", touch=False)
    check_histograms(rec, {"malloc": OPS, "free": OPS})
    att = rec["latency_attribution"]
    assert att["available"] is False and "counter method is none" in att["why"]
    assert all(c["syscalls"] is None and c["size"] is None for c in rec["slow_calls"])
    assert rec["latency_causes"] is None
    proc = cli("run", "--pattern", "churn", "--size", "64K", "--ops", "300", "--latency", "--counter-method", "none",
               "--touch", "none", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "not named: the counter method is none" in proc.stdout


def test_quantile_intervals_come_from_order_statistics():
    """10,000 calls: 9,900 at 100 ns, 100 at 10 us.  The p50's interval is
    all 100 ns; the p99 sits at the edge, so its interval reaches 10 us."""
    h = [[100.0, 9900], [10000.0, 100]]
    assert stats.quantile_interval(h, 0.5) == (100.0, 100.0, 100.0)
    est, lo, hi = stats.quantile_interval(h, 0.99)
    assert est == 100.0 and lo == 100.0 and hi == 10000.0
    assert stats.quantile_interval([[100.0, 50]], 0.99) is None  # n q (1 - q) < 10
    slower = [[100.0, 5000], [10000.0, 5000]]
    c = stats.quantiles([[100.0, 10000]], slower, 0.9)
    assert c.verdict == "slower" and c.low == c.high == c.estimate == 100.0


def test_the_fit_recovers_a_line():
    fit = probes.fit_line([1, 10, 100, 1000], [1000 + 500 * x for x in (1, 10, 100, 1000)])
    assert fit["a"] == pytest.approx(1000) and fit["b"] == pytest.approx(500)
    assert fit["relative_error"] == pytest.approx(0, abs=1e-12)


@needs_counts
def test_trim_pause_returns_what_the_layout_says():
    """Pinned: each freed 64 KiB block is a hole between small blocks, and
    malloc_trim(0) gives each back with one madvise; unpinned on the main arena,
    the last free joins everything to the top and one brk gives it back."""
    res = probes.trim_pause(sizes=[MIB, 2 * MIB, 4 * MIB, 8 * MIB], repeats=1, held_out=4 * MIB)
    cases = {(e["arena"], e["layout"], e["how"]): e for e in res["cases"]}
    for arena in ("main", "thread"):
        for row in cases[(arena, "pinned", "trim")]["rows"]:
            assert row["syscalls"]["madvise"] == row["bytes"] // (64 * KIB), (arena, row)
            assert min(row["released_bytes"]) >= row["bytes"] // 2  # RSS moves by other pages too: a loose bound
    for row in cases[("main", "unpinned", "auto")]["rows"]:
        assert row["syscalls"]["brk"] == 1 and row["syscalls"]["madvise"] == 0
        assert min(row["released_bytes"]) >= row["bytes"] // 2
    fitted = cases[("main", "pinned", "trim")]
    assert fitted["fit"]["points"] == 3 and fitted["held_out"]["bytes"] == 4 * MIB


TRIMMER = r"""
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
static void __attribute__((noinline)) release(void) { malloc_trim(0); }
int main(void) {  /* a pinned heap of 256 MiB in 64 KiB blocks, freed, then trimmed */
    enum { N = 4096, B = 64 << 10 };
    static void *p[N];
    for (int i = 0; i < N; i++) { p[i] = malloc(B); memset(p[i], 1, B); }
    void *pin = malloc(100);
    for (int i = 0; i < N; i++) free(p[i]);
    release();
    free(pin);
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test program")
def test_exec_latency_names_the_trim_and_the_function_that_called_it(tmp_path):
    src = tmp_path / "trimmer.c"
    src.write_text(TRIMMER)
    exe = tmp_path / "trimmer"
    subprocess.run(["gcc", "-O0", "-g", "-fno-builtin", "-o", str(exe), str(src)], check=True)
    rec = programs.run_program([str(exe)], "glibc", {}, 0, latency=True)
    assert rec["status"] == "ok", rec.get("error")
    kinds = rec["latency"]
    assert kinds["malloc_trim"]["count"] == 1 and kinds["malloc"]["count"] == 4097 and kinds["free"]["count"] == 4097
    for h in kinds.values():
        assert sum(c for _, c in h["histogram"]) == h["count"]
    # each slow call's size is its argument, and a free has none
    assert all(c["size"] in (64 * KIB, 100) for c in rec["slow_calls"] if c["op"] == "malloc")
    assert all(c["size"] is None for c in rec["slow_calls"] if c["op"] == "free")
    trims = [c for c in rec["slow_calls"] if c["op"] == "malloc_trim"]
    assert len(trims) == 1 and trims[0]["backtrace"][0]["function"] == "release"
    assert trims[0]["backtrace"][0]["source"].endswith("trimmer.c:5")
    assert rec["latency_program"] == str(exe)


def test_exec_latency_says_which_of_the_commands_processes_it_shows():
    """A command of several processes (pyenv's python3 shim runs bash, readlink and more before it
    execs the interpreter) shows one process's latency, the one that made the most calls: the header
    says which, of how many, and the next, since a shim's shell can outdo a short program (6,996 calls
    against python's 6,989 here)."""
    from allocbench.commands.execute import latency_lines

    def proc(pid, program, malloc, free):
        return {"pid": pid, "program": program, "kinds": {"malloc": {"count": malloc}, "free": {"count": free}}}

    procs = [proc(10, "/usr/bin/bash", 4000, 2996), proc(11, "/usr/bin/readlink", 200, 67),
             proc(9, "/opt/python3.11", 3989, 3000)]
    rec = {"latency": {}, "latency_program": "/usr/bin/bash", "latency_clock": "tsc", "slow_calls": [],
           "latency_clock_overhead_ns": 10, "latency_processes": procs}
    assert latency_lines(rec)[0] == (
        "  latency of /usr/bin/bash, pid 10: of the command's 3 processes, the one that made the most allocation "
        "calls, 6,996; next /opt/python3.11, pid 9, 6,989; each process in --json's latency_processes (tsc; a "
        "reading costs 10 ns, included):")
    rec["latency_processes"] = procs[:1]  # one process: nothing to choose from
    assert latency_lines(rec)[0] == "  latency of /usr/bin/bash (tsc; a reading costs 10 ns, included):"


@needs_perf  # the whole schema: without perf a slow call's syscalls are null
def test_the_cell_latency_output_is_the_schema():
    raw = cell_json("pattern=batch", "size_lo=8192", "size_hi=8192", "ops=64", "repeats=1", "warmup=0",
                    "latency=1")
    from test_house import schema_mismatches

    from allocbench import records
    assert schema_mismatches(raw, records.CELL_OUTPUT) == []


OFFCPU_SLEEPER = r"""
#include <stdio.h>
#include <unistd.h>
#include "offcpu.h"
int main(void) {  /* a 20 ms sleep: the kernel must switch the thread out, and it blocked (no preemption) */
    ab_offcpu o; ab_offcpu_span *s; uint32_t n; size_t m; uint64_t lost;
    if (ab_offcpu_open(&o)) { printf("error %s\n", o.error); return 1; }
    usleep(20000);
    if (ab_offcpu_close(&o, &s, &n, &m, &lost)) { printf("error %s\n", o.error); return 1; }
    for (uint32_t i = 0; i < n; i++)
        printf("%llu %d\n", (unsigned long long)(s[i].in_ns - s[i].out_ns), s[i].preempted);
    printf("lost %llu\n", (unsigned long long)lost);
    return 0;
}
"""


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test program")
def test_the_kernels_switch_records_show_a_sleep_as_time_off_the_cpu(tmp_path):
    from conftest import ROOT
    (tmp_path / "sleeper.c").write_text(OFFCPU_SLEEPER)
    exe = tmp_path / "sleeper"
    subprocess.run(["gcc", "-O1", f"-I{ROOT}/csrc/lib", "-o", str(exe), str(tmp_path / "sleeper.c"),
                    f"{ROOT}/csrc/lib/offcpu.c"], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60).stdout.split("\n")
    if out[0].startswith("error"):
        pytest.skip(f"no switch records here: {out[0]}")
    spans = [tuple(map(int, line.split())) for line in out if line and not line.startswith("lost")]
    assert out[-2] == "lost 0"
    # the sleep is one span of at least 20 ms off the CPU, and the thread was not preempted: it blocked
    assert any(ns >= 20_000_000 and not preempted for ns, preempted in spans), spans


def slow_call(ns, again=None, off=None, preempted=None, **syscalls):
    return {"op": "malloc", "ns": ns, "again_ns": again, "off_cpu_ns": off, "preempted": preempted, "faults": 0,
            "trimmed": False, "syscalls": {**dict.fromkeys(SYSCALLS, 0), **syscalls}}


def test_a_slow_call_is_outside_the_allocator_only_where_its_own_records_say_so():
    from allocbench.records import INTERFERENCE_MIN_NS, latency_causes, outside_cause
    t = 500.0  # the slow threshold (p99.9)
    long = 4 * INTERFERENCE_MIN_NS
    assert outside_cause(slow_call(long, again=100, off=int(0.6 * long), preempted=True), t) == "preempted"
    assert outside_cause(slow_call(long, again=100, off=int(0.4 * long), preempted=True), t) == "interference"
    assert outside_cause(slow_call(long, again=100, off=int(0.6 * long), preempted=False), t) is None  # blocked
    assert outside_cause(slow_call(long, again=100), t) == "interference"
    assert outside_cause(slow_call(long, again=t), t) is None  # slow again: the allocator's own
    assert outside_cause(slow_call(long, again=100, munmap=1), t) is None  # a syscall ran inside: its own
    assert outside_cause(slow_call(INTERFERENCE_MIN_NS - 1, again=100), t) is None  # too short to tell
    calls = [slow_call(long, again=100, off=long, preempted=True), slow_call(long, again=100),
             slow_call(long, again=t, munmap=1), slow_call(long, again=t, munmap=1, mmap=1),
             slow_call(long, again=100, off=long, preempted=False), slow_call(long, again=t)]
    c = latency_causes(calls, t)
    assert c["slow_calls"] == 6 and c["outside_calls"] == 2
    assert (c["preempted"]["calls"], c["interference"]["calls"]) == (1, 1)
    assert (c["munmap"]["calls"], c["mmap"]["calls"], c["blocked"]["calls"], c["unexplained"]["calls"]) == (2, 1, 1, 1)


def test_the_tail_without_the_calls_slowed_from_outside_is_read_from_the_histogram():
    from allocbench.records import hist_quantile, without_outside
    # 1000 calls: 990 at 100 ns, 9 at 1 us, one of 5 ms that was preempted
    hist = [[100.0, 990], [1000.0, 9], [5_000_000.0, 1]]
    assert hist_quantile(hist, 0.99) == 100.0 and hist_quantile(hist, 0.999) == 1000.0
    assert hist_quantile(hist, 1.0) == 5_000_000.0
    kinds = {"malloc": {"histogram": hist, "max_ns": 4_900_000.0}}
    gone = slow_call(4_900_000.0, again=100, off=4_800_000, preempted=True)
    w = without_outside(kinds, [gone, slow_call(1000.0, again=1000.0)], 500.0)["malloc"]
    # 999 calls left: p99 is the 990th (100 ns), p99.9 the 998th (1 us), the max 1 us
    assert w == {"removed": 1, "p99_ns": 100.0, "p999_ns": 1000.0, "max_ns": 1000.0}


def test_a_verdicts_interval_prints_its_bound_on_its_side_of_one():
    """An interval beside "slower" or "faster" never reads as touching 1: digits are added until the
    bound nearest 1 shows its side of it."""
    for low, high, verdict in ((1.0003, 1.02, "slower"), (1.00004, 1.5, "heavier"), (0.98, 0.99996, "faster"),
                               (0.5, 0.9999, "leaner")):
        words = stats.Comparison((low + high) / 2, low, high, 0.95, 10, "paired sign test", verdict).words()
        low_text, high_text = words[words.index("[") + 1:words.index("]")].split(", ")
        assert float(low_text) > 1 if verdict in ("slower", "heavier") else float(high_text) < 1, words
    plain = stats.Comparison(1.5, 1.2, 1.8, 0.95, 10, "paired sign test", "slower")
    assert plain.words() == "1.50x slower [1.20, 1.80]"
