"""Record a program's allocations, replay them in a cell.  Expected counts come
from the programs' own calls."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from allocbench import runner, traces
from cells import cell_json
from conftest import ROOT

ENV = dict(os.environ, PYTHONPATH=ROOT)
KIB, MIB = 1024, 1 << 20
pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test programs")


def build(tmp_path, name, source):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run(["gcc", "-O0", "-fno-builtin", "-pthread", "-o", str(exe), str(src)], check=True)
    return str(exe)


MOVER = r"""
#include <stdlib.h>
#include <string.h>
int main(void) {
    char *big = malloc(1 << 20); memset(big, 1, 1 << 20); free(big);
    for (int i = 0; i < 100; i++) { char *p = malloc(512 << 10); memset(p, 1, 512 << 10); free(p); }
    return 0;
}
"""


def replay(trace, **settings):
    rec = runner.run_cell(runner.make_spec(pattern="trace", trace=trace, repeats=1, settings=settings))
    assert rec["status"] == "ok", rec.get("error")
    return rec


def test_record_and_replay_the_threshold_mover(tmp_path):
    exe = build(tmp_path, "mover", MOVER)
    out = str(tmp_path / "m.trace")
    assert traces.record([exe], out) == [out]
    info = traces.info(out)
    assert info["allocations"] >= 101 and info["peak_live_bytes"] >= MIB
    fixed = replay(out, mmap_threshold=128 * KIB)
    assert fixed["syscalls"]["mmap"] == 101 and fixed["syscalls"]["munmap"] == 101
    assert replay(out)["syscalls"]["mmap"] <= 1  # the warm-up may already have raised the threshold
    assert fixed["live_bytes_peak"] == info["peak_live_bytes"]


def test_threads_lose_no_event(tmp_path):
    """4 threads each allocate 1000 blocks of 12345 bytes and free 990: exactly
    40 of them are live at exit, whatever else libc allocates."""
    exe = build(tmp_path, "threads", r"""
#include <pthread.h>
#include <stdlib.h>
static void *work(void *a) { void *p[1000]; for (int i = 0; i < 1000; i++) p[i] = malloc(12345);
  for (int i = 0; i < 990; i++) free(p[i]); return a; }
int main(void) { pthread_t t[4]; for (int i = 0; i < 4; i++) pthread_create(&t[i], 0, work, 0);
  for (int i = 0; i < 4; i++) pthread_join(t[i], 0); return 0; }
""")
    out = str(tmp_path / "t.trace")
    traces.record([exe], out)
    _, ev = traces.read(out)
    mine = ev[(ev["op"] == 1) & (ev["size"] == 12345)]
    assert len(mine) == 4000 and len(np.unique(mine["tid"])) == 4
    freed = np.isin(ev["ptr"][ev["op"] == 2], mine["ptr"])
    # allocations minus frees of those blocks = the blocks live at exit (addresses may be reused, so count events)
    assert len(mine) - int(freed.sum()) == 40


def test_fork_gives_the_child_its_own_trace_and_exit_paths_lose_nothing(tmp_path):
    exe = build(tmp_path, "forker", r"""
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(void) { for (int i = 0; i < 10; i++) malloc(777);
  pid_t pid = fork(); if (pid == 0) { for (int i = 0; i < 5; i++) malloc(555); _exit(0); }
  waitpid(pid, 0, 0); for (int i = 0; i < 3; i++) malloc(333); _exit(0); }
""")
    out = str(tmp_path / "f.trace")
    files = traces.record([exe], out)
    assert len(files) == 2 and files[1].startswith(out + ".")
    _, parent = traces.read(files[0])
    _, child = traces.read(files[1])
    assert (parent["size"] == 777).sum() == 10 and (parent["size"] == 333).sum() == 3  # _exit lost nothing
    assert (child["size"] == 555).sum() == 5 and (child["size"] == 777).sum() == 0


def test_corrupt_truncated_and_empty_traces_are_one_line_errors(tmp_path):
    exe = build(tmp_path, "mover", MOVER)
    out = str(tmp_path / "m.trace")
    traces.record([exe], out)
    data = open(out, "rb").read()
    cases = {"magic": b"NOTATRACE" + data[9:], "cut": data[:4096 + 40 * 3 + 17], "head": data[:100],
             "op": data[:4096 + 40 * 5 + 36] + b"\x63" + data[4096 + 40 * 5 + 37:]}
    want = {"magic": "offset 0", "cut": f"offset {4096 + 40 * 3}", "head": "offset 100",
            "op": f"offset {4096 + 40 * 5}"}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.trace"
        bad.write_bytes(blob)
        proc = subprocess.run([sys.executable, "-m", "allocbench", "trace", "info", str(bad)],
                              capture_output=True, text=True, env=ENV, timeout=60)
        assert proc.returncode == 2 and want[name] in proc.stderr, (name, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    empty = tmp_path / "empty.trace"
    empty.write_bytes(data[:4096].replace(data[24:32], (0).to_bytes(8, "little"), 1))
    proc = subprocess.run([sys.executable, "-m", "allocbench", "run", "--pattern", "trace", "--trace", str(empty)],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 2 and "empty trace" in proc.stderr


@pytest.mark.parametrize("args", [
    ["pattern=churn", "size_lo=135168", "ops=500", "mallopt=-3:131072"],
    ["pattern=fragment", "size_lo=135168", "ops=128", "live=32", "mallopt=-3:131072"],
])
def test_a_recorded_cell_replays_to_its_own_counts(tmp_path, args):
    out = str(tmp_path / "cell.trace")
    cell = runner.cell_binary()
    traces.record([cell, *args, "repeats=1", "warmup=0", "timeline=0"], out)
    recorded = cell_json(*args, "repeats=1", "warmup=0", "timeline=0")["repeats"][0]["counts"]["syscalls"]
    threshold = [a for a in args if a.startswith("mallopt")]
    replayed = cell_json("pattern=trace", f"trace={out}", "repeats=1", "warmup=0", "timeline=0", *threshold)
    assert replayed["repeats"][0]["counts"]["syscalls"] == recorded


def test_the_timed_loop_counts_what_the_full_loop_counts(tmp_path):
    """The untouched, untimelined replay takes its counts from the preparation;
    the loop that touches counts as it goes.  Both replay the same calls, so
    every count and the syscalls must agree (reallocs included: Python grows lists)."""
    out = str(tmp_path / "py.trace")
    traces.record([sys.executable, "-c", "x = [list(range(i)) for i in range(2000)]; s = ''.join(map(str, x))"], out)
    runs = {touch: cell_json("pattern=trace", f"trace={out}", f"touch={touch}", "repeats=1", "warmup=0",
                             "timeline=0", "mallopt=-3:131072")["repeats"][0] for touch in (0, 2)}
    fields = ("allocs", "frees", "reallocs", "failed", "live_bytes_peak")
    assert {k: runs[0][k] for k in fields} == {k: runs[2][k] for k in fields}
    assert runs[0]["counts"]["syscalls"] == runs[2]["counts"]["syscalls"]
    assert runs[0]["reallocs"] > 0 and runs[0]["live_bytes_peak"] == traces.info(out)["peak_live_bytes"]
