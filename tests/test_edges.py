"""allocbench at its edges: help, the exit-code contract, replays that must
never wait forever, traces that survive what real programs do, and inputs
made to break things (hypothesis builds them from the real grammar)."""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, ZSTD_TRACE, cli, fresh_python, one_line_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from allocbench import _native, runner, traces
from allocbench.commands import COMMANDS, build_parser

REPLAY_BOUND_S = 20


# ---- help ----

def test_help_of_allocbench_and_every_verb_exits_0_within_100_columns():
    verbs = [[]] + [[c.NAME] for c in COMMANDS] + [["trace", "info"]]
    for verb in verbs:
        proc = cli(*verb, "--help", env={**os.environ, "PYTHONPATH": ROOT, "COLUMNS": "100"})
        assert proc.returncode == 0 and "usage: allocbench" in proc.stdout, (verb, proc.stderr)
        wide = [line for line in proc.stdout.splitlines() if len(line) > 100]
        assert not wide, (verb, wide)


# ---- replays that must end ----

def replay_record(trace: str, **kw) -> dict:
    spec = runner.make_spec(pattern="trace", trace=trace, repeats=1, warmup=0, replay_threads="recorded", **kw)
    return runner.run_cell(spec, timeout=REPLAY_BOUND_S)


@pytest.mark.parametrize("settings_", [{}, {"arena_max": 1}, {"arena_max": 2}, {"arena_max": 4}])
def test_a_zstd_trace_whose_threads_free_after_their_exit_replays_on_its_threads(settings_):
    """zstd -T2's workers call free(NULL) twice after the recorder's exit marker (glibc's
    own thread teardown), and one makes no call before its exit: the replay used to wait
    on that thread's own exit forever."""
    header, ev = traces.read(ZSTD_TRACE)
    threads = traces.thread_of(ev)
    after_exit = [t for t in range(1, threads.max() + 1)
                  if (ev["op"][threads == t][-1] != traces.THREAD_EXIT)]
    assert after_exit, "the fixture must hold events after an exit marker"
    rec = replay_record(ZSTD_TRACE, settings=settings_)
    assert rec["status"] == "ok", rec["error"]
    assert rec["replay_thread_count"] == threads.max() + 1
    assert rec["replay_reordered"] == 0  # free(NULL) is a no-op: nothing real was moved


OP = traces.OP_CODE


@st.composite
def threaded_traces(draw):
    """Traces of the shapes real programs make: calls after a thread's exit marker
    (real ones and free(NULL)), threads that never exit, threads that make no call,
    frees of blocks whose thread has exited, free(NULL) anywhere."""
    nthreads = draw(st.integers(1, 5))
    rows, live, state = [], [], {0: "running"}
    clock = iter(range(1, 10**6))
    ptrs = iter(range(0x10000, 0x10000 + 10**8, 0x100))

    def add(op, t, ptr=0, old=0, size=0):
        rows.append((next(clock), ptr, old, size, 1000 + t, OP[op]))

    add("malloc", 0, next(ptrs), 0, 64)  # thread 0 makes the first call
    live.append(rows[-1][1])
    kinds = ["malloc", "free", "free_null", "realloc", "exit"]
    for t, kind, pick in draw(st.lists(st.tuples(st.integers(0, nthreads - 1), st.sampled_from(kinds),
                                                 st.integers(0, 10**6)), min_size=1, max_size=80)):
        if t not in state:  # created by thread 0, then started
            add("thread_create", 0, 1, 0, t)
            add("thread_start", t, 0, 1000, t)
            state[t] = "running"
        if kind == "exit":
            if t and state[t] == "running":
                add("thread_exit", t, 0, 0, t)
                state[t] = "exited"  # it may still make calls: glibc's teardown does
        elif kind == "malloc" or (kind in ("free", "realloc") and not live):
            add("malloc", t, next(ptrs), 0, (16, 1000, 200000)[pick % 3])
            live.append(rows[-1][1])
        elif kind == "free":
            add("free", t, live.pop(pick % len(live)))
        elif kind == "realloc":
            old = live.pop(pick % len(live))
            add("realloc", t, next(ptrs), old, (24, 5000, 300000)[pick % 3])
            live.append(rows[-1][1])
        else:
            add("free", t)
    ev = np.zeros(len(rows), dtype=traces.EVENT_DTYPE)
    for name, column in zip(("t_ns", "ptr", "old", "size", "tid", "op"), zip(*rows)):
        ev[name] = column
    return ev


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(ev=threaded_traces(), window=st.sampled_from([1, 2, 1024]))
def test_every_threaded_trace_replays_within_a_bound(tmp_path, ev, window):
    path = str(tmp_path / "made.trace")
    traces.write(path, ev, {"made": "by hypothesis"})
    rec = replay_record(path, replay_window=window)
    assert rec["status"] == "ok", rec["error"]  # a timeout here is a replay that waited forever


# ---- traces that survive what real programs do ----

def build(tmp_path, name: str, source: str) -> str:
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = str(tmp_path / name)
    subprocess.run(["gcc", "-O1", "-fno-builtin", "-pthread", "-o", exe, str(src)], check=True)
    return exe


def test_an_unfinished_trace_is_read_without_its_sparse_tail(tmp_path):
    """A process that ends by exec keeps its trace at the recorder's full sparse length, with no count
    in the header.  Reading it takes the records up to the first empty one, a chunk at a time: with
    1 GiB of address space to spare, a 4 GiB sparse tail reads.  Read whole, every such file took
    its length in memory (and 0.4 s of the kernel's zero-filling for the recorder's 2.5 GiB):
    `record` of a command run through pyenv's shim, which execs dozens of times, took 26 s."""
    path = str(tmp_path / "unfinished.trace")
    ev = np.zeros(3, dtype=traces.EVENT_DTYPE)
    ev["op"], ev["ptr"], ev["size"] = 1, (0x1000, 0x2000, 0x3000), 64  # three mallocs
    traces.write(path, ev, {"command": "made"})
    with open(path, "r+b") as f:
        f.seek(traces.head_offset("events"))
        f.write(bytes(8))  # no count: the process ended without the recorder's destructor
    os.truncate(path, 4 << 30)
    out = fresh_python(f"""
        import resource
        from allocbench import traces
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (1 << 30), resource.RLIM_INFINITY))
        header, events = traces.read({path!r})
        print(header["events"], events["ptr"].tolist())
    """).stdout
    assert out.split(None, 1) == ["3", "[4096, 8192, 12288]\n"], out


def test_a_100kb_argument_is_kept_whole_in_the_trace(tmp_path):
    out = str(tmp_path / "echo.trace")
    arg = "x" * 100_000
    assert cli("record", "--out", out, "--", "/bin/echo", arg).returncode == 0
    header, _ = traces.read(out)
    assert header["argv"] == ["/bin/echo", arg]
    assert header["header_bytes"] % 4096 == 0 and header["header_bytes"] > 100_000
    info = cli("trace", "info", out)
    assert info.returncode == 0 and all(len(line) < 300 for line in info.stdout.splitlines())


EXIT_RACE = r"""
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *churn(void *a) {
    for (int i = 0; i < 3000; i++) { void *p = malloc(64 + (size_t)a); void *q = realloc(p, 200); free(q); }
    pause();  /* still there at exit, done with its calls */
    return a;
}
int main(void) {
    pthread_t t;
    for (long i = 0; i < 64; i++) pthread_create(&t, 0, churn, (void *)i);
    for (int i = 0; i < 2000; i++) free(malloc(100));
    return 0;  /* exit() while 64 threads are inside malloc, realloc and free */
}
"""


@pytest.mark.slow
def test_threads_allocating_while_main_returns_leave_a_readable_trace(tmp_path):
    exe = build(tmp_path, "race", EXIT_RACE)
    for run in range(10):
        out = str(tmp_path / f"race{run}.trace")
        files, status = traces.record([exe], out, timeout=60)
        assert status == 0
        header, ev = traces.read(files[0])  # TraceError on a hole: "unknown op 0"
        assert header["events"] == len(ev) > 2000
        assert header["flags"] & traces.TRACE_FLAGS["overflow"] == 0


FORKER = r"""
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile int stop;
static void *churn(void *a) {
    while (!stop) { void *p = malloc(300000); free(p); free(malloc(40)); usleep(100); }  /* moves the threshold */
    return a;
}
int main(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, churn, 0);
    for (int k = 0; k < 30; k++) {
        pid_t pid = fork();
        if (pid == 0) { for (int i = 0; i < 100; i++) free(malloc(500000)); _exit(0); }
        int status;
        if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 1;
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    return 0;
}
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", [["record", "--out", "{out}"], ["exec", "--explain-threshold", "--repeats", "1"],
                                 ["exec", "--latency", "--repeats", "1"]])
def test_a_program_that_forks_while_threads_allocate_finishes_under_every_shim(tmp_path, how):
    exe = build(tmp_path, "forker", FORKER)
    for _ in range(3):
        args = [a.format(out=tmp_path / "f.trace") for a in how]
        proc = cli(*args, "--timeout", "60", "--", exe, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr


EIGHT_RISERS = r"""
#include <pthread.h>
#include <stdlib.h>
static pthread_barrier_t go;
static void *rise(void *a) {
    size_t n = 200000 + 50000 * (size_t)a;
    void *p = malloc(n);
    pthread_barrier_wait(&go);
    free(p);  /* eight mmapped chunks freed at once: each may raise the threshold */
    return a;
}
int main(void) {
    pthread_t t[8];
    pthread_barrier_init(&go, 0, 8);
    for (long i = 0; i < 8; i++) pthread_create(&t[i], 0, rise, (void *)i);
    for (int i = 0; i < 8; i++) pthread_join(t[i], 0);
    return 0;
}
"""


def test_explainer_lines_from_eight_threads_all_parse(tmp_path):
    from allocbench.programs import program_env
    from allocbench.shimlog import EXPLAIN, parse_explain

    exe = build(tmp_path, "risers", EIGHT_RISERS)
    for _ in range(5):
        log = tmp_path / "explain.log"
        env = {**os.environ, **program_env("glibc", {}, str(log))}
        subprocess.run([exe], env=env, check=True, timeout=60)
        text = log.read_text()
        lines = text.splitlines()
        assert all(any(p.match(line) for p in EXPLAIN.values()) for line in lines), text
        got = parse_explain(text)
        assert got["rise_count"] == len(got["rises"]) >= 1
        # each rise moves the threshold up and has its backtrace; threads may log them out of order, but
        # each rise starts where another ended (one compare-and-swap each): a chain from 128 KiB
        rises = sorted(got["rises"], key=lambda r: r["new_threshold"])
        assert all(r["new_threshold"] > r["old_threshold"] and r["backtrace"] for r in rises)
        assert [r["old_threshold"] for r in rises] == [128 << 10] + [r["new_threshold"] for r in rises[:-1]]
        assert got["final_threshold"] == rises[-1]["new_threshold"]


# ---- bad input: one line, exit 2, nothing written ----

def test_an_unwritable_out_is_refused_before_any_work(tmp_path):
    marker = tmp_path / "ran"
    bad = "/proc/no/such/out.jsonl"
    for argv in (["exec", "--out", bad, "--", "touch", marker],
                 ["sweep", "--preset", "quick", "--out", bad],
                 ["advise", "--out", "/proc/no/such/folder", "--", "touch", marker]):
        proc = cli(*argv, timeout=60)
        assert one_line_error(proc, "/proc/no/such"), (argv, proc.stderr)
        assert not marker.exists()


def test_records_are_appended_only_to_a_file_of_records(tmp_path):
    """run, inspect and trace info appended a JSON line to whatever --out named: a trace given by
    mistake lost its shape.  Each now refuses a file that holds something else, and leaves it as it was."""
    trace = tmp_path / "t.trace"
    shutil.copy(ZSTD_TRACE, trace)
    before = trace.read_bytes()
    for argv in (["run", "--size", "4K", "--ops", "10"], ["inspect", os.getpid()],
                 ["trace", "info", "--fidelity", trace]):
        proc = cli(*argv, "--out", trace, timeout=60)
        assert one_line_error(proc, "records are appended only to a file of records"), (argv, proc.stderr)
        assert trace.read_bytes() == before


TOY_AB = os.path.join(ROOT, "scripts", "toy-ab")


def run_script(path: str, *argv, env: dict | None = None, cwd=None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """One of scripts/ run as from a clone; env: variables set on top of this environment."""
    return subprocess.run([sys.executable, path, *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


def toy_ab(*argv, **kw) -> subprocess.CompletedProcess:
    return run_script(TOY_AB, *argv, **kw)


@pytest.mark.parametrize("argv, says", [
    (["glibc", "no/such-ref"], "neither an allocator"),
    (["glibc", "HEAD:-lm"], "only -D, -U and -O flags"),
    (["glibc", "glibc"], "each side once"),
    (["glibc", "HEAD", "--pairs", "0"], "at least 1"),
    (["glibc", "HEAD", "--program", "espresso"], "invalid choice")])
def test_the_toy_ab_script_refuses_bad_input_with_2_before_any_run(argv, says):
    proc = toy_ab(*argv)
    assert proc.returncode == 2 and says in proc.stderr.splitlines()[-1], proc.stderr
    assert proc.stdout == "" and "pair 1/" not in proc.stderr


SIDE_MEDIANS = r"median wall \d+\.\d{3} s, ([\d,]+ faults|faults not counted), peak RSS (\d+\.\d MiB|not sampled)\n"


def test_the_toy_ab_script_builds_a_ref_and_compares_it_pair_by_pair():
    proc = toy_ab("glibc", "HEAD:-DTOY_NO_FREE_CHECK", "--program", "rptest", "--pairs", "1")
    assert proc.returncode == 0, proc.stderr
    # each side's medians, then the verdict: one pair is too few for an interval, and the verdict says
    # so; the sign count is of that one pair
    assert re.fullmatch(r"rptest: glibc: " + SIDE_MEDIANS + r"rptest: HEAD:-DTOY_NO_FREE_CHECK: " + SIDE_MEDIANS
                        + r"rptest: HEAD:-DTOY_NO_FREE_CHECK / glibc: untested \(paired sign test, 1 runs: too few "
                        r"for a 95% interval\), faster in [01] of 1\n", proc.stdout), proc.stdout


def test_the_toy_ab_script_refuses_a_build_that_would_not_replace_malloc():
    # without TOY_PRELOAD the library exports only the toy_ functions: preloaded, it would leave every
    # run to glibc's malloc, a comparison of glibc with itself under the toy's name
    proc = toy_ab("glibc", "HEAD:-UTOY_PRELOAD", "--program", "rptest", "--pairs", "1")
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.splitlines()[-1] == ("toy-ab: HEAD:-UTOY_PRELOAD: its build exports no malloc and free, "
                                            "so preloading it would measure glibc")


def test_the_toy_ab_script_builds_an_older_ref_by_its_own_recipe():
    # 3643d55's toy exported malloc from csrc/preload/toy_preload.c, a file this clone's recipe no
    # longer lists: built by this clone's recipe, its library would export no malloc
    old = "3643d55"
    if subprocess.run(["git", "-C", ROOT, "cat-file", "-e", old + "^{commit}"]).returncode:
        pytest.skip(f"{old} is not in this clone's history")
    proc = toy_ab("glibc", old, "--program", "rptest", "--pairs", "1")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^rptest: 3643d55 / glibc: ", proc.stdout, re.M), proc.stdout


TOY_PEERS = os.path.join(ROOT, "scripts", "toy-peers")


@pytest.mark.slow
def test_toy_peers_resumes_only_runs_of_the_same_builds(tmp_path):
    """make toy-speed's runs resume (a run already made is not made again), but only runs that measured
    the same builds: a file holding one run of another build (the toy, a peer program or a library
    changed since) is moved aside whole, byte for byte, and the table starts over, never mixing the two."""
    out = tmp_path / "peers.jsonl"

    def toy_peers():
        return run_script(TOY_PEERS, str(out), "--rounds", "1")

    first = toy_peers()
    assert first.returncode == 0, first.stderr
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert runs and all(re.fullmatch(r"[0-9a-f]{16}", r["build"]) for r in runs)
    before = out.read_bytes()
    again = toy_peers()  # every run made, of the same builds: nothing to do
    assert again.returncode == 0 and "starting over" not in again.stderr, again.stderr
    assert out.read_bytes() == before
    runs[0]["build"] = "0" * 16  # as if made by an older toy
    stale = "".join(json.dumps(r, sort_keys=True) + "\n" for r in runs)
    out.write_text(stale)
    third = toy_peers()
    assert third.returncode == 0, third.stderr
    assert f"held 1 of {len(runs)} records measured by another build" in third.stderr, third.stderr
    assert f"moved to {out}.stale, starting over" in third.stderr
    assert (tmp_path / "peers.jsonl.stale").read_text() == stale
    fresh = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(fresh) == len(runs) and "0" * 16 not in {r["build"] for r in fresh}


def test_the_toy_ab_script_refuses_instructions_without_valgrind():
    proc = toy_ab("glibc", "HEAD", "--instructions", env={"PATH": "/nonexistent"}, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr.splitlines() == ["toy-ab: --instructions runs valgrind's cachegrind: apt-get install valgrind"]


COUNTS = (r"[\d,]+ instructions, [\d,]+ data reads, [\d,]+ data writes, [\d,]+ L1 read misses, [\d,]+ L1 write "
          r"misses, [\d,]+ L2 read misses, [\d,]+ L2 write misses")


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is missing (make system installs it)")
def test_the_toy_ab_script_counts_what_the_check_costs_in_cachegrind():
    """One run of each side in cachegrind.  The build without free's key check executes the same
    program with that load (a data read) and its compare (an instruction) gone from every fast-path
    free.  alloc-test frees 3,000,000 blocks; a free takes the slow path only when its class's thread
    cache is full, which then flushes half of it (at least 32 slots of a class of 1 KiB or less, 64 KiB
    a class), so at least 32 of every 33 frees are fast: 2,900,000 at least.  Two builds of one source
    differ by a few hundred instructions (the loader's work on the library's name)."""
    proc = toy_ab("HEAD", "HEAD:-DTOY_NO_FREE_CHECK", "--program", "alloc-test", "--instructions")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"cachegrind's caches: .*", lines[0]) and len(lines) == 3, proc.stdout
    assert re.fullmatch(r"alloc-test: HEAD: " + COUNTS, lines[1]), lines[1]
    m = re.fullmatch(r"alloc-test: HEAD:-DTOY_NO_FREE_CHECK: " + COUNTS + r" \((-[\d,]+) instructions against HEAD\)",
                     lines[2])
    assert m, lines[2]
    count = lambda line, what: int(re.search(r"([\d,]+) " + what, line).group(1).replace(",", ""))  # noqa: E731
    fewer = count(lines[1], "instructions") - count(lines[2], "instructions")
    assert fewer >= 2_900_000 and int(m.group(1).replace(",", "")) == -fewer
    assert count(lines[1], "data reads") - count(lines[2], "data reads") >= 2_900_000


def test_the_toy_ab_script_runs_a_real_program_of_the_bench(tmp_path):
    """By name, one of make bench's real programs (gcc compiling counters.c into the script's own
    temporary folder, removed at the end), under each side in turns."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = toy_ab("glibc", "toy", "--program", "gcc", "--pairs", "1", cwd=tmp_path, env={"TMPDIR": str(tmp)})
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"gcc: glibc: " + SIDE_MEDIANS + r"gcc: toy: " + SIDE_MEDIANS
                        + r"gcc: toy / glibc: untested .*, faster in [01] of 1\n", proc.stdout), proc.stdout
    assert list(tmp.iterdir()) == []


def test_a_cut_or_flipped_trace_is_one_line_and_exit_2_everywhere(tmp_path):
    data = open(ZSTD_TRACE, "rb").read()
    header, _ = traces.read(ZSTD_TRACE)
    cut = tmp_path / "cut.trace"
    cut.write_bytes(data[:traces.event_offset(header, 7) + 13])
    flipped = tmp_path / "flipped.trace"
    at = traces.head_offset("record_bytes")
    flipped.write_bytes(data[:at] + (41).to_bytes(4, "little") + data[at + 4:])
    for bad, where in ((cut, f"offset {traces.event_offset(header, 7)}"), (flipped, "offset 8")):
        for argv in (["trace", "info", bad],
                     ["run", "--pattern", "trace", "--trace", bad],
                     ["run", "--pattern", "trace", "--trace", bad, "--replay-threads", "recorded"]):
            proc = cli(*argv, timeout=60)
            assert one_line_error(proc, where), (argv, proc.stderr)


# ---- the trace readers, fuzzed: TraceError naming an offset, never a crash or a hang ----

def _both_readers(path: str) -> tuple[str | None, str | None]:
    """(Python's error, the C loader's error); None where the file was accepted."""
    try:
        traces.read(path)
        py = None
    except traces.TraceError as e:
        py = str(e)
    try:
        _native.check_trace(path, "recorded", 16)
        c = None
    except ValueError as e:
        c = str(e)
    return py, c


def test_every_cut_of_a_real_trace_is_refused_by_offset_or_read_whole(tmp_path):
    data = open(ZSTD_TRACE, "rb").read()
    header, ev = traces.read(ZSTD_TRACE)
    path = str(tmp_path / "c.trace")
    for end in list(range(0, 64)) + list(range(header["header_bytes"] - 2, len(data), 7)):
        with open(path, "wb") as f:
            f.write(data[:end])
        py, c = _both_readers(path)
        whole = end >= header["header_bytes"] and (end - header["header_bytes"]) % 40 == 0
        if whole and end < len(data):  # fewer records than the header counts
            assert py and "counts" in py and c and "counts" in c, (end, py, c)
        elif not whole:
            assert py and "offset" in py and c and "offset" in c, (end, py, c)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 4095 + 40 * 239), value=st.integers(0, 255), junk=st.binary(max_size=200))
def test_flipped_bytes_and_random_files_never_crash_a_reader(tmp_path, offset, value, junk):
    data = bytearray(open(ZSTD_TRACE, "rb").read())
    data[offset] = value
    path = str(tmp_path / "f.trace")
    for blob in (bytes(data), junk, traces.MAGIC + junk):
        with open(path, "wb") as f:
            f.write(blob)
        py, c = _both_readers(path)  # either may accept a flipped value it cannot tell from a real one
        assert py is None or "offset" in py
        assert c is None or "offset" in c or "never allocated" in c or "threads" in c, c


# ---- the command line, fuzzed ----

BAD_VALUES = ["", "-1", "0", "nan", "1e999", "128Q", "-", "x" * 5000, "/proc/no/such", "99999999999999999999999"]


def _verb_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command_name")
    out = {}
    for name, verb in sub.choices.items():
        flags = [a for a in verb._actions if a.option_strings and a.dest != "help" and a.nargs != 0]
        out[name] = [a.option_strings[-1] for a in flags]
    return out


VERB_FLAGS = _verb_flags()
# positionals that keep a verb from doing real work: a file that is not there, a command that ends at once
POSITIONALS = {"probe": ["nosuch"], "calibrate": ["--runs", "nan"], "compare": ["/no/a", "/no/b"],
               "report": ["/no/such.jsonl"], "plot": ["/no/such.jsonl"], "trace": ["info", "/no/such.trace"],
               "exec": ["--", "true"], "record": ["--", "true"], "advise": ["--", "/no/such/program"]}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_cli_answers_malformed_flags_with_one_line_never_a_traceback(tmp_path, data):
    verb = data.draw(st.sampled_from(sorted(VERB_FLAGS)))
    flags = VERB_FLAGS[verb] or ["--json"]
    chosen = data.draw(st.lists(st.sampled_from(flags), min_size=1, max_size=3, unique=True))
    argv = [verb]
    for flag in chosen:
        argv += [flag, data.draw(st.sampled_from(BAD_VALUES))]
    if "--out" not in chosen and verb in ("sweep", "record"):
        argv += ["--out", str(tmp_path / "o")]
    if verb == "sweep" and "--config" not in chosen:  # a valid sweep measures one small cell, not a preset
        grid = tmp_path / "grid.json"
        grid.write_text(json.dumps({"blocks": [{"pattern": "churn", "allocators": ["glibc"], "sizes": [4096],
                                                "ops": 50, "repeats": 1}]}))
        argv += ["--config", str(grid)]
    argv += POSITIONALS.get(verb, [])
    proc = cli(*argv, timeout=120, cwd=tmp_path)  # a relative --out lands in the test's folder
    assert proc.returncode in (0, 1, 2), (argv, proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, (argv, proc.stderr[-2000:])
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1, (argv, proc.stderr[-2000:])


# ---- glibc's constants, from first principles ----

def test_glibc_sizes_from_first_principles_and_the_c_boundary_agrees():
    from allocbench.glibc_constants import DEFAULT_MMAP_THRESHOLD, request2size, smallest_mmapped_request

    # an 8-byte size field, 16-byte alignment, 32 bytes at least
    assert [request2size(n) for n in (0, 24, 25, 40, 41, 131048, 131049)] == [32, 32, 48, 48, 64, 131056, 131072]
    b = smallest_mmapped_request(DEFAULT_MMAP_THRESHOLD)
    assert request2size(b) == DEFAULT_MMAP_THRESHOLD > request2size(b - 1)
    assert b == _native.GLIBC_DEFAULT_BOUNDARY  # trace.h's copy, used by the cell and the shims


# ---- the build ----

@pytest.mark.slow
def test_touching_a_header_rebuilds_the_extension(tmp_path):
    """setup.py depends on every header of csrc/lib and csrc/preload: the X-macro lists
    (trace.h, hooks.h, shimlog.h) reach _native whenever they change."""
    work = tmp_path / "tree"
    for part in ("csrc", "allocbench", "setup.py", "pyproject.toml", "README.md"):
        src = os.path.join(ROOT, part)
        (shutil.copytree if os.path.isdir(src) else shutil.copy)(src, work / part)
    for so in (work / "allocbench").glob("_native*.so"):
        so.unlink()

    def build_ext() -> float:
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=work, check=True,
                       capture_output=True, timeout=600, env={**os.environ, "ALLOCBENCH_CFLAGS": "-O0"})
        (so,) = (work / "allocbench").glob("_native*.so")
        return so.stat().st_mtime_ns

    first = build_ext()
    assert build_ext() == first  # nothing changed: nothing rebuilt
    for header in ("csrc/lib/trace.h", "csrc/preload/shimlog.h"):
        os.utime(work / header)
        again = build_ext()
        assert again > first, header
        first = again


def test_exit_status_of_the_contract_is_written_in_the_readme():
    readme = open(os.path.join(ROOT, "README.md")).read()
    section = readme[readme.index("## Exit status"):]
    for code in ("0", "1", "2", "70"):
        assert f"`{code}`" in section.split("\n## ")[0]
    json.dumps(section)  # readable text


@pytest.mark.parametrize("allocator", ["glibc", "toy"])
def test_a_cell_whose_malloc_returns_null_is_failed_not_measured(allocator):
    """Under a 2 GiB address-space limit a 4 GiB malloc returns NULL: the cell timed the failure, not
    the allocator's paths, so the run is failed (exit 1) with the reason, never a row of numbers."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "allocbench", "run", "--allocator", allocator, "--size", "4G",
                           "--ops", "1", "--json"], capture_output=True, text=True, preexec_fn=limit,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=120)
    assert proc.returncode == 1, proc.stderr
    rec = json.loads(proc.stdout)
    assert rec["status"] == "failed" and "returned NULL" in rec["error"]
