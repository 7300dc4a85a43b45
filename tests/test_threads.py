"""Replay on the recorded threads: every call replayed once and in causal
order, peak live within the pacing window's bound, arenas as the program
had them, and the fidelity report.  Expected values come from what the test
programs do (their threads, blocks and sizes) and from glibc's arena rules."""
import shutil
import subprocess

import numpy as np
import pytest
from conftest import cli, needs_perf, one_line_error

from allocbench import fidelity, runner, traces

KIB, MIB = 1024, 1 << 20
pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test programs")

# one thread allocates 5000 blocks of 3000 B into a ring of 64, another frees them
HANDOFF = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#define N 5000
#define RING 64
static void *ring[RING];
static atomic_int head, tail;
static void *producer(void *a) {
    for (int i = 0; i < N; i++) {
        while (atomic_load(&head) - atomic_load(&tail) == RING) ;
        ring[i % RING] = malloc(3000);
        atomic_store(&head, i + 1);
    }
    return a;
}
static void *consumer(void *a) {
    for (int i = 0; i < N; i++) {
        while (atomic_load(&head) == i) ;
        free(ring[i % RING]);
        atomic_store(&tail, i + 1);
    }
    return a;
}
int main(void) {
    pthread_t p, c;
    pthread_create(&p, 0, producer, 0);
    pthread_create(&c, 0, consumer, 0);
    pthread_join(p, 0); pthread_join(c, 0);
    return 0;
}
"""

# THREADS threads take turns (a condition variable passes the turn) allocating BURST bytes of
# 16 KiB blocks and freeing all but every 50th; each stays alive until all have had their turn
TURNS = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#define THREADS 4
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn;
static void *work(void *arg) {
    int me = (int)(long)arg;
    pthread_mutex_lock(&m); while (turn != me) pthread_cond_wait(&cv, &m); pthread_mutex_unlock(&m);
    enum { B = 16 << 10, N = (16 << 20) / B };
    void **p = malloc(N * sizeof *p);
    for (int i = 0; i < N; i++) { p[i] = malloc(B); memset(p[i], me, B); }
    for (int i = 0; i < N; i++) if (i % 50) free(p[i]);
    pthread_mutex_lock(&m); turn++; pthread_cond_broadcast(&cv);
    while (turn < THREADS) pthread_cond_wait(&cv, &m);
    pthread_mutex_unlock(&m);
    return p;
}
int main(void) {
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], 0, work, (void *)i);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], 0);
    return 0;
}
"""
TURN_THREADS, BURST = 4, 16 * MIB

# two waves of 4 threads; each allocates 200 blocks of 1000 B, meets its wave at a barrier
# (so the 4 hold arenas at once), frees 100 and exits; the second wave starts once the first
# is joined, so glibc hands it the first wave's 4 arenas
WAVES = r"""
#include <pthread.h>
#include <stdlib.h>
static pthread_barrier_t wave;
static void *work(void *a) {
    void *p[200];
    for (int i = 0; i < 200; i++) p[i] = malloc(1000);
    pthread_barrier_wait(&wave);
    for (int i = 0; i < 100; i++) free(p[i]);
    return a;
}
int main(void) {
    pthread_barrier_init(&wave, 0, 4);
    for (int w = 0; w < 2; w++) {
        pthread_t t[4];
        for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
        for (int i = 0; i < 4; i++) pthread_join(t[i], 0);
    }
    return 0;
}
"""

SINGLE = r"""
#include <stdlib.h>
#include <string.h>
int main(void) {  /* brk growth and trims, mmapped blocks, and a threshold that moves */
    void *p[300];
    for (int i = 0; i < 300; i++) { p[i] = malloc(1000 + 977 * i); memset(p[i], 1, 1000 + 977 * i); }
    for (int i = 0; i < 300; i += 2) free(p[i]);
    for (int i = 1; i < 300; i += 2) free(p[i]);
    return 0;
}
"""


def build_and_record(tmp_path, name, source, **record):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run(["gcc", "-O0", "-fno-builtin", "-pthread", "-o", str(exe), str(src)], check=True)
    out = str(tmp_path / f"{name}.trace")
    files, status = traces.record([str(exe)], out, **record)
    assert status == 0 and files[0] == out
    return out


def replay(trace, mode="recorded", window=None, **settings):
    rec = runner.run_cell(runner.make_spec(pattern="trace", trace=trace, repeats=1, warmup=1, settings=settings,
                                           replay_threads=mode, replay_window=window))
    assert rec["status"] == "ok", rec.get("error")
    return rec


def calls_of(trace):
    """(allocation calls that returned a block, frees of a block: free(NULL) frees nothing)."""
    _, ev = traces.read(trace)
    allocs = int((np.isin(ev["op"], list(traces.ALLOCATING)) & (ev["ptr"] != 0)).sum())
    return allocs, int(((ev["op"] == traces.FREE) & (ev["ptr"] != 0)).sum())


@pytest.fixture(scope="module")
def handoff(tmp_path_factory):
    return build_and_record(tmp_path_factory.mktemp("handoff"), "handoff", HANDOFF)


def test_trace_info_names_the_threads_and_their_cross_thread_frees(handoff):
    i = traces.info(handoff)
    assert i["threads"] == 3 and i["cross_thread_frees"] == 5000
    _, ev = traces.read(handoff)
    threads = traces.thread_of(ev)
    (producer,) = set(threads[(ev["op"] == traces.OP_CODE["malloc"]) & (ev["size"] == 3000)].tolist())
    consumer = next(t for t in i["per_thread"] if t["thread"] not in (producer, 0) and t["frees"])
    producer = i["per_thread"][producer]
    # the consumer frees the producer's 5000 blocks (and, exiting, glibc may free its own: free(NULL))
    assert consumer["frees"] == 5000 and consumer["cross_thread_free_share"] == 1.0
    assert 3000 <= producer["peak_live_bytes"] <= 64 * 3000  # the ring holds at most 64 in flight
    assert producer["exited"] and consumer["exited"]


@pytest.mark.parametrize("window", [1, 16, 1024])
def test_cross_thread_frees_wait_for_their_allocation(handoff, window):
    """Every block the consumer frees was made first: the replay makes
    exactly the trace's calls, none fails, it ends holding what the program
    held, and its live peak is the trace's within the window's bound (a
    thread may run `window` events ahead, each at most the largest block)."""
    rec = replay(handoff, window=window)
    allocs, frees = calls_of(handoff)
    info = traces.info(handoff)
    assert rec["replay_threads"] == "recorded" and rec["replay_window"] == window
    assert rec["trace_threads"] == rec["replay_thread_count"] == 3
    assert (rec["replay_allocs"], rec["replay_frees"], rec["replay_failed"]) == (allocs, frees, 0)
    assert rec["live_at_end_bytes"] == info["live_at_end_bytes"]
    _, ev = traces.read(handoff)
    bound = window * int(ev["size"].max())
    assert abs(rec["replay_peak_live_bytes"] - info["peak_live_bytes"]) <= bound
    assert rec["live_bytes_peak"] == info["peak_live_bytes"]  # the trace's own, beside the replay's


@pytest.fixture(scope="module")
def turns(tmp_path_factory):
    return build_and_record(tmp_path_factory.mktemp("turns"), "turns", TURNS)


def test_threads_taking_turns_keep_an_arena_peak_each(turns):
    """Each thread's arena keeps its burst (every 50th block pins the heap), so
    on the recorded threads glibc's default holds about THREADS bursts at once;
    with arena_max=1 the threads share one heap and it holds one burst (plus
    the kept blocks); on one thread there is one heap whatever the setting."""
    kept = TURN_THREADS * BURST // 50
    # window 1: strictly in the recorded order, so no thread's burst overlaps another's whatever the scheduling
    default = replay(turns, window=1)["footprint_bytes_peak"]
    shared = replay(turns, window=1, arena_max=1)["footprint_bytes_peak"]
    one = replay(turns, mode="one")["footprint_bytes_peak"]
    assert default >= 0.9 * TURN_THREADS * BURST
    assert BURST <= shared <= 1.25 * (BURST + kept)
    assert BURST <= one <= 1.25 * (BURST + kept)


def test_threads_that_exit_and_are_replaced_reuse_their_arenas(tmp_path):
    """The second wave takes over the first wave's 4 arenas: 4 heaps, in the
    program and in its replay on the recorded threads (without the exits in
    order, the second wave would make new ones); none on one thread."""
    trace = build_and_record(tmp_path, "waves", WAVES, env={"ALLOCBENCH_TRACE_SYSCALLS": "1"})
    assert traces.read(trace)[0]["at_exit"]["arena_heaps"] == 4
    assert traces.info(trace)["threads"] == 9
    for window in (1, 1024):
        assert replay(trace, window=window)["arena_heaps"] == 4
    assert replay(trace, mode="one")["arena_heaps"] == 0


@pytest.mark.slow
@needs_perf  # fidelity compares the recorder's syscall counts, which perf takes
def test_fidelity_says_one_thread_is_far_from_a_threaded_program(turns):
    rec = fidelity.measure(turns)
    p = rec["program_run"]
    assert p["threads"] == TURN_THREADS + 1 and p["arena_heaps"] == TURN_THREADS
    assert p["peak_anon_growth_bytes"] >= 0.9 * TURN_THREADS * BURST
    one, threads = rec["replays"]
    assert one["mode"] == "one" and one["faithful"] is False
    assert {"peak", "arena_heaps"} <= set(one["not_faithful_because"])
    assert one["errors"]["peak_anon_growth"]["relative"] < -0.5
    assert threads["mode"] == "recorded" and threads["faithful"] is True
    assert threads["errors"]["arena_heaps"] == 0
    lines = fidelity.summary_lines(rec)
    assert any("one thread (one): NOT faithful" in line for line in lines)


@needs_perf
def test_fidelity_of_a_single_threaded_program_is_exact_in_its_syscalls(tmp_path):
    """One thread, one heap, the same calls in the same order from a heap as
    fresh as the program's: malloc's syscalls match exactly."""
    trace = build_and_record(tmp_path, "single", SINGLE)
    rec = fidelity.measure(trace)
    (r,) = rec["replays"]
    assert r["mode"] == "one" and r["syscalls_exact"], r["errors"]["malloc_syscalls"]
    assert rec["program_run"]["malloc_syscalls"]["brk"] > 2 and rec["program_run"]["malloc_syscalls"]["mmap"] > 0
    assert r["faithful"] is True and rec["same_calls_as_given"]


def test_bad_threaded_traces_are_one_line_errors(tmp_path, handoff):
    data = open(handoff, "rb").read()
    header, ev = traces.read(handoff)
    cut = tmp_path / "cut.trace"
    cut.write_bytes(data[:traces.event_offset(header, 100) + 7])
    assert one_line_error(cli("run", "--pattern", "trace", "--trace", cut, "--replay-threads", "recorded",
                              timeout=60), "truncated record")
    # the consumer frees a block that was never allocated
    threads = traces.thread_of(ev)
    i = int(np.flatnonzero((ev["op"] == traces.FREE) & (threads != 0) & (ev["ptr"] != 0))[10])
    bad = bytearray(data)
    offset = traces.event_offset(header, i, "ptr")
    bad[offset:offset + 8] = (0xDEAD0000).to_bytes(8, "little")
    forged = tmp_path / "forged.trace"
    forged.write_bytes(bytes(bad))
    assert one_line_error(cli("run", "--pattern", "trace", "--trace", forged, "--replay-threads", "recorded",
                              timeout=60), "which the trace never allocated")
    assert one_line_error(cli("run", "--pattern", "trace", "--trace", handoff, "--replay-threads", "recorded",
                              "--replay-window", "0", timeout=60), "replay_window")
    assert one_line_error(cli("trace", "info", handoff, "--fidelity", "--replay-window", "0", timeout=60),
                          "--replay-window")


def test_a_heap_is_counted_only_with_its_reserve_up_to_the_next_64_mib_boundary():
    """glibc maps a thread heap as 64 MiB aligned to itself: a read-write part and PROT_NONE up
    to the next boundary. A read-write mapping that merely starts on a boundary (the kernel puts
    1 in 32 of its 2 MiB-aligned mappings there) is not a heap; two full heaps merged into one
    mapping are two."""
    import ctypes
    import mmap

    from allocbench import _native
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    heap, rw, none = 64 * MIB, mmap.PROT_READ | mmap.PROT_WRITE, 0  # 0: PROT_NONE
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    fixed = flags | 0x100000  # MAP_FIXED_NOREPLACE

    def place(addr, size, prot):
        got = libc.mmap(addr, size, prot, fixed if addr else flags, -1, 0)
        assert got not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        return got

    room = place(None, 4 * heap, none)  # an aligned 128 MiB inside, then given back
    base = (room + heap - 1) & ~(heap - 1)
    libc.munmap(room, 4 * heap)
    before, _ = _native.arena_heaps()
    try:
        place(base, 8 * MIB, rw)  # a stray mapping on the boundary
        assert _native.arena_heaps()[0] == before
        place(base + 8 * MIB, heap - 8 * MIB, none)  # glibc's reserve after it: now a heap
        count, nbytes = _native.arena_heaps()
        assert count == before + 1 and nbytes >= 8 * MIB
        libc.munmap(base, heap)
        place(base, 2 * heap, rw)  # two full heaps, merged by the kernel into one mapping
        assert _native.arena_heaps()[0] == before + 2
    finally:
        libc.munmap(base, 2 * heap)
