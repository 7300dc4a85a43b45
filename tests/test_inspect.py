"""allocbench inspect PID: a process with a known heap, started here as a
user's service would be, read from outside.  Every expected value is the
process's own word about itself (its mallinfo2(), its malloc_info(), the RSS
its own malloc_trim(0) gives back) or glibc's chunk arithmetic."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ENV, cli, fresh_python, one_line_error

from allocbench import glibc_heap, glibc_layout
from allocbench.glibc_constants import request2size

pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the program that is inspected")
PAGE = 4096
BIG = 3_000_000  # freed first: glibc raises the threshold to its mmapped chunk

KNOWN_HEAP = r"""
/* holes in the main arena, a risen threshold, three thread arenas mostly freed, a live mmapped block; each
 * line on stdin: "i" prints mallinfo2() and malloc_info(), "t" its RSS around malloc_trim(0), "l" leaves a thread
 * holding the main arena's lock (malloc_stats writing to a full pipe), "u" lets it go; then waits */
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static pthread_barrier_t b;
static void *stats(void *a) { malloc_stats(); return a; }  /* holds each arena's lock while it writes to stderr */
static char rollup[4096];
static long rss_kb(void) {  /* smaps_rollup walks the page tables */
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    size_t n = fread(rollup, 1, sizeof rollup - 1, f);
    fclose(f);
    rollup[n] = 0;
    char *r = strstr(rollup, "\nRss:");
    return r ? atol(r + 5) : -1;
}
static void *worker(void *a) {
    void *p[400];
    for (int i = 0; i < 400; i++) { p[i] = malloc(20000); memset(p[i], 1, 20000); }
    for (int i = 0; i < 400; i++) if (i % 50) free(p[i]);
    pthread_barrier_wait(&b);
    pthread_barrier_wait(&b);
    return a;
}
int main(void) {
    printf("start\n"); fflush(stdout);
    void *big = malloc(BIG); memset(big, 1, BIG); free(big);
    void *live = malloc(40 << 20); memset(live, 2, 40 << 20);
    void *h[2000];
    for (int i = 0; i < 2000; i++) { h[i] = malloc(1000 + (i % 7) * 3000); memset(h[i], 3, 1000 + (i % 7) * 3000); }
    for (int i = 0; i < 2000; i += 3) free(h[i]);
    void *f[20]; for (int i = 0; i < 20; i++) f[i] = malloc(48); for (int i = 0; i < 20; i++) free(f[i]);
    pthread_t t[3];
    pthread_barrier_init(&b, 0, 4);
    for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, worker, 0);
    pthread_barrier_wait(&b);
    long before = rss_kb(); (void)before;  /* the stdio buffers and rss_kb's FILE exist before any reading */
    printf("ready\n"); fflush(stdout);  /* the heap is as it will stay */
    char line[64];
    int full = -1;
    pthread_t locker;
    while (fgets(line, sizeof line, stdin)) {
        if (line[0] == 'l') {
            int fds[2];
            if (pipe(fds)) return 1;
            fcntl(fds[1], F_SETFL, O_NONBLOCK);
            char page[4096] = {0};
            while (write(fds[1], page, sizeof page) > 0) {}
            while (write(fds[1], page, 1) > 0) {}  /* to the last byte: any write now blocks */
            fcntl(fds[1], F_SETFL, 0);
            dup2(fds[1], 2);
            full = fds[0];
            signal(SIGPIPE, SIG_IGN);
            pthread_create(&locker, 0, stats, 0);
            printf("done\n");
        } else if (line[0] == 'u') {
            close(full);  /* its write fails (EPIPE), malloc_stats goes on and lets the lock go */
            pthread_join(locker, 0);
            printf("done\n");
        } else if (line[0] == 't') {
            long before = rss_kb();
            malloc_trim(0);
            printf("trim %ld\ndone\n", (before - rss_kb()) * 1024);
        } else if (line[0] == 'c') {  /* its own heap check: glibc aborts on a heap it finds damaged */
            void *q[1000];
            for (int i = 0; i < 1000; i++) { q[i] = malloc(16 + (i * 7919) % 70000); memset(q[i], 5, 16); }
            for (int i = 0; i < 1000; i++) free(q[i]);
            struct mallinfo2 m = mallinfo2();
            printf("%s\ndone\n", m.uordblks + m.fordblks == m.arena ? "ok" : "inconsistent");
        } else {
            struct mallinfo2 m = mallinfo2();
            printf("mallinfo2 %zu %zu %zu %zu %zu %zu %zu %zu %zu %zu\n", m.arena, m.ordblks, m.smblks, m.hblks,
                   m.hblkhd, m.usmblks, m.fsmblks, m.uordblks, m.fordblks, m.keepcost);
            malloc_info(0, stdout);
            printf("done\n");
        }
        fflush(stdout);
    }
    (void)live; (void)h;
    return 0;
}
""".replace("BIG", str(BIG))


class Target:
    """The program, started and asked about itself over its stdin."""

    def __init__(self, exe: str):
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "start"
        assert self.proc.stdout.readline().strip() == "ready"
        self.pid = self.proc.pid

    def ask(self, what: str) -> list[str]:
        self.proc.stdin.write(what + "\n")
        self.proc.stdin.flush()
        out = []
        while (line := self.proc.stdout.readline()).strip() != "done":
            assert line, "the program ended"
            out.append(line)
        return out

    def own_word(self) -> tuple[dict, list[tuple]]:
        lines = self.ask("i")
        mallinfo2 = dict(zip(glibc_heap.MALLINFO2_FIELDS, map(int, lines[0].split()[1:])))
        heaps = re.findall(r'<heap nr="(\d+)">.*?<total type="fast" count="(\d+)" size="(\d+)"/>\s*'
                           r'<total type="rest" count="(\d+)" size="(\d+)"/>\s*<system type="current" size="(\d+)"/>'
                           r'\s*<system type="max" size="(\d+)"/>\s*<aspace type="total" size="(\d+)"/>\s*'
                           r'<aspace type="mprotect" size="(\d+)"/>', "".join(lines[1:]), re.S)
        return mallinfo2, [tuple(map(int, h)) for h in heaps]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect")
    (folder / "known.c").write_text(KNOWN_HEAP)
    out = str(folder / "known")
    subprocess.run(["gcc", "-O1", "-fno-builtin", "-pthread", "-o", out, str(folder / "known.c")], check=True)
    return out


@pytest.fixture
def target(exe):
    t = Target(exe)
    yield t
    t.close()


def as_malloc_info(a: dict) -> tuple:
    m = a["malloc_info"]
    return (a["index"], m["fast"]["count"], m["fast"]["size"], m["rest"]["count"], m["rest"]["size"],
            m["system_current"], m["system_max"], m["aspace_total"], m["aspace_mprotect"])


def has_debug_file(pid: int) -> bool:
    from allocbench.remote import Process

    p = Process(pid)
    _, path = glibc_layout.find_libc(p)
    return glibc_layout.debug_file(p, glibc_layout.build_id(path)) is not None


def test_the_zero_page_is_the_one_every_process_shares():
    """Residency leaves out the shared zero page by its frame: there is one, so every process reads the
    same frame (a page of a shared mapping, freed and reused, would drop a target's page from its RSS)."""
    from allocbench.remote import zero_page_pfn

    here = zero_page_pfn()
    if here is None:
        pytest.skip("pagemap shows frames to root only")
    ask = "from allocbench.remote import zero_page_pfn; print(zero_page_pfn())"
    there = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, env=ENV, check=True).stdout
    assert int(there) == here


@pytest.mark.parametrize("symbols", ["debuginfo", "scan"])
def test_mallinfo2_and_the_arenas_are_the_processs_own(target, symbols, monkeypatch):
    if symbols == "debuginfo" and not has_debug_file(target.pid):
        pytest.skip("no debug file for this libc (make test installs libc6-dbg)")
    monkeypatch.setenv("ALLOCBENCH_SYMBOLS", symbols)
    own, heaps = target.own_word()
    s = glibc_heap.snapshot(target.pid)
    assert s["symbols"] == symbols
    assert s["mallinfo2"] == own  # field by field
    assert [as_malloc_info(a) for a in s["arenas"]] == heaps and len(heaps) == 4  # main and three threads
    # the threshold is the mmapped chunk the first free gave back: request2size + its size field, in pages
    chunk = -(-(request2size(BIG) + 8) // PAGE) * PAGE
    assert s["mp"]["mmap_threshold"] == chunk and s["mp"]["trim_threshold"] == 2 * chunk
    assert s["mp"]["threshold_risen"] and not s["mp"]["no_dyn_threshold"]
    assert s["mp"]["n_mmaps"] == 1 and s["mp"]["mmapped_mem"] == -(-((40 << 20) + 16) // PAGE) * PAGE
    assert 0 < s["stopped_ns"] < 10**9
    r = s["rss"]
    assert sum(v for k, v in r.items() if k != "total_bytes") == r["total_bytes"]
    assert r["mmapped_chunk_bytes"] == s["mp"]["mmapped_mem"]  # the live 40 MiB, every page written
    assert any("thread arena" in f for f in s["findings"]) and any("risen" in f for f in s["findings"])
    assert target.own_word() == (own, heaps)  # it answers, and nothing was changed


def test_a_prior_walk_never_changes_the_answer(target):
    """The stopped walk checks the walk made while the process ran: whatever that prior walk holds
    (the heap as it was before it changed, chunks in another order, addresses that are not chunks),
    the lists come out as a walk without it reads them."""
    from allocbench._native import walk_arenas

    from allocbench.remote import Process

    p = Process(target.pid)
    w = glibc_heap.Walker(p, glibc_layout.locate(p))
    ms, arenas = w.ms, w.arena_addresses()
    walk = lambda prior=None: walk_arenas(target.pid, arenas, ms["fastbinsY"], ms["bins"], glibc_heap.NFASTBINS,
                                          glibc_heap.NBINS, 1 << 24, prior)[0]
    before = walk()
    assert target.ask("c") == ["ok\n"]  # its free lists change
    now = walk()
    assert sorted(glibc_heap.CHUNK_RECORD.iter_unpack(now)) != sorted(glibc_heap.CHUNK_RECORD.iter_unpack(before))
    records = list(glibc_heap.CHUNK_RECORD.iter_unpack(before))
    pack = lambda rs: b"".join(glibc_heap.CHUNK_RECORD.pack(*r) for r in rs)
    bogus = [(a + 16, s, b, ar) for a, s, b, ar in records[::2]] + [(0x1000, 0, 12, 0), (1 << 47, 0, 3, 0),
                                                                    (0x1000, 0, 5, 99), (0x1000, 0, 10_000, 0)]
    for prior in (before, now, pack(reversed(records)), pack(bogus)):
        assert sorted(glibc_heap.CHUNK_RECORD.iter_unpack(walk(prior))) == \
            sorted(glibc_heap.CHUNK_RECORD.iter_unpack(now))


def test_the_two_paths_agree_and_no_stop_reads_the_same(target, monkeypatch):
    got = {}
    for symbols in ("debuginfo", "scan"):
        if symbols == "debuginfo" and not has_debug_file(target.pid):
            continue
        monkeypatch.setenv("ALLOCBENCH_SYMBOLS", symbols)
        s = glibc_heap.snapshot(target.pid)
        got[symbols] = (s["mallinfo2"], s["mp"], [as_malloc_info(a) for a in s["arenas"]])
    assert len(set(json.dumps(v) for v in got.values())) == 1
    monkeypatch.delenv("ALLOCBENCH_SYMBOLS")
    quiet = glibc_heap.snapshot(target.pid, stop=False)  # it waits on its stdin: both reads agree
    assert quiet["stopped_ns"] is None and quiet["unsettled"] == []
    assert quiet["mallinfo2"] == next(iter(got.values()))[0]


def test_the_trim_prediction_is_what_the_processs_own_trim_returns(target):
    s = glibc_heap.snapshot(target.pid)
    (line,) = target.ask("t")
    returned = int(line.split()[1])
    predicted = s["totals"]["trimmable_bytes"]
    assert returned > 16 << 20  # the thread arenas' freed 20 KB blocks, most of 3 x 7.5 MiB
    assert abs(predicted - returned) <= max(0.03 * returned, 512 << 10), (predicted, returned)


def test_trim_inside_the_process_returns_what_its_own_trim_would(exe, target):
    if not has_debug_file(target.pid):
        pytest.skip("--trim needs the debug file (make test installs libc6-dbg)")
    proc = cli("inspect", target.pid, "--trim", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    t = json.loads(proc.stdout)["trim"]
    assert t["malloc_trim_returned"] == 1 and t["pause_ns"] > 0
    assert abs(t["predicted_bytes"] - t["returned_bytes"]) <= max(0.03 * t["returned_bytes"], 512 << 10), t
    assert target.ask("c") == ["ok\n"]  # it carries on: allocates, frees, and its books add up
    again = glibc_heap.snapshot(target.pid)
    assert again["totals"]["trimmable_bytes"] <= 512 << 10  # little left to give back
    twin = Target(exe)  # the same program, trimmed by itself
    try:
        (line,) = twin.ask("t")
        own = int(line.split()[1])
        assert abs(own - t["returned_bytes"]) <= max(0.03 * own, 512 << 10), (own, t["returned_bytes"])
    finally:
        twin.close()


def test_trim_is_refused_while_a_thread_holds_an_arena_lock(target):
    if not has_debug_file(target.pid):
        pytest.skip("--trim needs the debug file (make test installs libc6-dbg)")
    target.ask("l")
    tasks = f"/proc/{target.pid}/task"
    blocked = lambda: any(open(f"{tasks}/{t}/syscall").read().startswith("1 0x2 ") for t in os.listdir(tasks))
    deadline = time.monotonic() + 60
    while not blocked():  # the thread stays there, the main arena's lock held, until "u"
        assert time.monotonic() < deadline, "malloc_stats never blocked on its full pipe"
        time.sleep(0.01)
    before = glibc_heap.snapshot(target.pid)  # reading takes no lock: it works while one is held
    assert one_line_error(cli("inspect", target.pid, "--trim", timeout=120), "locked")
    assert glibc_heap.snapshot(target.pid)["mallinfo2"] == before["mallinfo2"]  # nothing changed
    target.ask("u")
    assert target.ask("c") == ["ok\n"]


def test_a_glibc_that_neither_path_recognises_is_named_by_its_build_id(target, monkeypatch):
    from allocbench.remote import Process

    monkeypatch.setattr(glibc_layout, "debug_file", lambda process, bid: None)  # no libc6-dbg
    monkeypatch.setattr(glibc_layout, "VERSION_LAYOUTS", {})  # a glibc newer than the scan's table
    _, path = glibc_layout.find_libc(Process(target.pid))
    with pytest.raises(glibc_layout.LayoutError) as e:
        glibc_layout.locate(Process(target.pid))
    assert glibc_layout.build_id(path) in str(e.value) and "libc6-dbg" in str(e.value)


def test_trim_is_refused_without_knowing_where_mallocs_code_is(target, monkeypatch):
    own, heaps = target.own_word()
    proc = cli("inspect", target.pid, "--trim", env={**ENV, "ALLOCBENCH_SYMBOLS": "scan"}, timeout=120)
    assert one_line_error(proc, "libc6-dbg")
    assert target.own_word() == (own, heaps)  # nothing changed


def test_the_command_line_text_json_and_openmetrics(target, tmp_path):
    text = cli("inspect", target.pid, timeout=120)
    assert text.returncode == 0 and "arena" in text.stdout and "malloc_trim(0) would return" in text.stdout
    assert all(len(line) <= 200 for line in text.stdout.splitlines())
    js = cli("inspect", target.pid, "--json", timeout=120)
    rec = json.loads(js.stdout)
    assert set(rec) >= {"mp", "mallinfo2", "arenas", "totals", "rss", "stopped_ns", "symbols", "findings"}
    om = cli("inspect", target.pid, "--format", "openmetrics", timeout=120).stdout.splitlines()
    assert om[-1] == "# EOF" and any(line.startswith("# TYPE allocbench_malloc_trimmable_bytes gauge") for line in om)
    value = next(line for line in om if line.startswith("allocbench_malloc_system_bytes{"))
    assert f'pid="{target.pid}"' in value and int(value.split()[-1]) == rec["mallinfo2"]["arena"]
    out = tmp_path / "w.jsonl"
    watch = cli("inspect", target.pid, "--no-stop", "--watch", "0.1", "--count", "2", "--out", out, timeout=120)
    assert watch.returncode == 0 and len(out.read_text().splitlines()) == 2
    report = cli("report", out, "--out", tmp_path / "R.md", timeout=120)
    text = (tmp_path / "R.md").read_text()
    assert report.returncode == 0 and "## Inside a running process" in text and "| 3 | 1 |" in text
    assert (tmp_path / "inspect_known.png").read_bytes()[:4] == b"\x89PNG"  # two snapshots: arenas over time
    everyone = cli("inspect", "--all", "--json", timeout=300)
    listed = json.loads(everyone.stdout)
    assert any(p["pid"] == target.pid for p in listed["processes"])


def test_bad_targets_are_one_line_and_exit_2(tmp_path, exe):
    assert one_line_error(cli("inspect", "999999999"), "no such process")
    assert one_line_error(cli("inspect", "abc"), "is not a process id")
    assert one_line_error(cli("inspect", "2"), "kernel thread")  # kthreadd
    me = os.getpid()  # options that contradict each other are refused before the process is read
    assert one_line_error(cli("inspect", me, "--json", "--format", "openmetrics"), "ask for two formats")
    assert one_line_error(cli("inspect", me, "--watch", "1", "--count", "0", "--out", tmp_path / "w.jsonl"),
                          "--count must be at least 1")
    assert not (tmp_path / "w.jsonl").exists()
    zombie = subprocess.Popen(["true"])
    while not os.path.exists(f"/proc/{zombie.pid}") or open(f"/proc/{zombie.pid}/stat").read().split()[2] != "Z":
        pass  # exited, not yet reaped: a process that is gone while it is read
    assert one_line_error(cli("inspect", zombie.pid), "exited")
    zombie.wait()
    jemalloc = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
    if os.path.exists(jemalloc):
        t = Target.__new__(Target)
        t.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env={**ENV, "LD_PRELOAD": jemalloc})
        assert t.proc.stdout.readline().strip() == "start"
        assert one_line_error(cli("inspect", t.proc.pid), "jemalloc")
        t.close()
    nobody = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "600"]) \
        if shutil.which("setpriv") and os.geteuid() == 0 else None
    if nobody:  # another user's process, read by root without CAP_SYS_PTRACE
        try:
            while open(f"/proc/{nobody.pid}/status").read().find("Uid:\t65534") < 0:
                time.sleep(0.01)  # setpriv has not yet changed user (or exec'd sleep)
            denied = subprocess.run(["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace",
                                     sys.executable, "-m", "allocbench", "inspect", str(nobody.pid)],
                                    capture_output=True, text=True, env=ENV, timeout=120)
            assert one_line_error(denied, "permission denied") and "CAP_SYS_PTRACE" in denied.stderr
            assert "ptrace_scope" in denied.stderr
            # with CAP_SYS_PTRACE the kernel's own checks pass: a refusal then is not for want of it
            has = "from allocbench.remote import has_cap_sys_ptrace as h; print(h())"
            assert fresh_python(has).stdout.split() == ["True"]
            assert subprocess.run(["setpriv", "--bounding-set", "-sys_ptrace", "--inh-caps", "-sys_ptrace",
                                   sys.executable, "-c", has], capture_output=True, text=True,
                                  env=ENV).stdout.split() == ["False"]
        finally:
            nobody.kill()
            nobody.wait()
    static = tmp_path / "static"
    built = subprocess.run(["gcc", "-static", "-o", str(static), "-x", "c", "-"], input=(
        "#include <stdio.h>\nint main(void){ getchar(); return 0; }\n"), text=True, capture_output=True)
    if built.returncode == 0:
        s = subprocess.Popen([str(static)], stdin=subprocess.PIPE)
        assert one_line_error(cli("inspect", s.pid), "statically linked")
        s.stdin.close()
        s.wait()
