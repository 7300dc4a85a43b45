"""Record a program's allocations, replay them in a cell.  Expected counts come
from the programs' own calls."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from cells import cell_json
from conftest import cli, needs_counts, needs_perf, one_line_error

from allocbench import runner, traces

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


@needs_counts
def test_record_and_replay_the_threshold_mover(tmp_path):
    exe = build(tmp_path, "mover", MOVER)
    out = str(tmp_path / "m.trace")
    assert traces.record([exe], out) == ([out], 0)
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
    mine = ev[(ev["op"] == traces.OP_CODE["malloc"]) & (ev["size"] == 12345)]
    assert len(mine) == 4000 and len(np.unique(mine["tid"])) == 4
    freed = np.isin(ev["ptr"][ev["op"] == traces.OP_CODE["free"]], mine["ptr"])
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
    files, status = traces.record([exe], out)
    assert status == 0 and len(files) == 2 and files[1].startswith(out + ".")
    _, parent = traces.read(files[0])
    _, child = traces.read(files[1])
    assert (parent["size"] == 777).sum() == 10 and (parent["size"] == 333).sum() == 3  # _exit lost nothing
    assert (child["size"] == 555).sum() == 5 and (child["size"] == 777).sum() == 0


def test_corrupt_truncated_and_empty_traces_are_one_line_errors(tmp_path):
    exe = build(tmp_path, "mover", MOVER)
    out = str(tmp_path / "m.trace")
    traces.record([exe], out)
    data = open(out, "rb").read()
    header = traces.read(out)[0]
    hb, at = header["header_bytes"], lambda i, field=None: traces.event_offset(header, i, field)
    cases = {"magic": b"NOTATRACE" + data[9:], "cut": data[:at(3) + 17], "head": data[:100],
             "op": data[:at(5, "op")] + b"\x63" + data[at(5, "op") + 1:]}
    want = {"magic": "offset 0", "cut": f"offset {at(3)}", "head": "offset 100", "op": f"offset {at(5)}"}
    for name, blob in cases.items():
        bad = tmp_path / f"{name}.trace"
        bad.write_bytes(blob)
        proc = cli("trace", "info", bad, timeout=60)
        assert one_line_error(proc, want[name]), (name, proc.stderr)
    empty = tmp_path / "empty.trace"
    events = traces.head_offset("events")
    empty.write_bytes(data[:events] + (0).to_bytes(8, "little") + data[events + 8:hb])
    assert one_line_error(cli("run", "--pattern", "trace", "--trace", empty, timeout=60), "empty trace")


@pytest.mark.parametrize("args", [
    ["pattern=churn", "size_lo=135168", "ops=500", "mallopt=-3:131072"],
    ["pattern=fragment", "size_lo=135168", "ops=128", "live=32", "mallopt=-3:131072"],
])
@needs_perf  # the recorder counts the syscalls inside each call with perf
def test_a_recorded_cell_replays_to_its_own_counts(tmp_path, args):
    """The recorder counts the syscalls inside the program's allocation calls;
    the replay, which starts from a heap as fresh as the program's, makes
    exactly those.  The recorded cell's own window saw all of them but the
    heap's set-up, which the cell does before its window: glibc's first growth
    of a fresh heap, brk(0) then brk(top)."""
    out = str(tmp_path / "cell.trace")
    cell = runner.cell_binary()
    traces.record([cell, *args, "repeats=1", "warmup=0", "timeline=0"], out, env={"ALLOCBENCH_TRACE_SYSCALLS": "1"})
    malloc_syscalls = traces.read(out)[0]["at_exit"]["malloc_syscalls"]
    recorded = cell_json(*args, "repeats=1", "warmup=0", "timeline=0")["repeats"][0]["counts"]["syscalls"]
    threshold = [a for a in args if a.startswith("mallopt")]
    replayed = cell_json("pattern=trace", f"trace={out}", "repeats=1", "warmup=0", "timeline=0", *threshold)
    assert replayed["repeats"][0]["counts"]["syscalls"] == malloc_syscalls
    assert malloc_syscalls == {**recorded, "brk": recorded["brk"] + 2}


def test_the_timed_loop_counts_what_the_full_loop_counts(tmp_path):
    """The untouched, untimelined replay takes its counts from the preparation;
    the loop that touches counts as it goes.  Both replay the same calls, so
    every count and the syscalls must agree (reallocs included: Python grows lists)."""
    out = str(tmp_path / "py.trace")
    traces.record([sys.executable, "-c", "x = [list(range(i)) for i in range(2000)]; s = ''.join(map(str, x))"], out)
    runs = {touch: cell_json("pattern=trace", f"trace={out}", f"touch={touch}", "repeats=1", "warmup=0",
                             "timeline=0", "mallopt=-3:131072")["repeats"][0] for touch in (0, 2)}
    assert runs[0]["calls"] == runs[2]["calls"] and runs[0]["live_bytes_peak"] == runs[2]["live_bytes_peak"]
    assert runs[0]["at_end"]["live_bytes"] == runs[2]["at_end"]["live_bytes"]
    assert runs[0]["counts"]["syscalls"] == runs[2]["counts"]["syscalls"]
    assert runs[0]["calls"]["reallocs"] > 0 and runs[0]["live_bytes_peak"] == traces.info(out)["peak_live_bytes"]


HOLDER = r"""
#include <stdlib.h>
#include <string.h>
int main(void) {  /* 72 MiB still held at exit, after 8 MiB allocated and freed */
    for (int i = 0; i < 8; i++) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); free(p); }
    for (int i = 0; i < 72; i++) { char *p = malloc(1 << 20); memset(p, 1, 1 << 20); }
    return 0;
}
"""


def test_a_replay_ends_as_a_cell_ends(tmp_path):
    """A program that exits holding 72 MiB: its replay reports what was held at
    the end (72 MiB of the program's own, plus whatever libc held), then frees it
    outside the window, so what is retained after free is what the allocator
    keeps, not the program's leftovers."""
    exe = build(tmp_path, "holder", HOLDER)
    out = str(tmp_path / "h.trace")
    traces.record([exe], out)
    held = traces.info(out)["live_at_end_bytes"]
    assert 72 * MIB <= held < 72 * MIB + 64 * 1024
    for settings in ({}, {"mmap_threshold": 128 * KIB}):
        rec = replay(out, **settings)
        assert rec["live_at_end_bytes"] == held and rec["trace_summary"]["live_at_end_bytes"] == held
        assert rec["rss_at_end_bytes"] >= 72 * MIB  # every block was written, so it is resident
        assert rec["retained_after_free_bytes"] < 1 * MIB  # each 1 MiB block was its own mapping, unmapped
        assert rec["calls"]["frees"] == 8  # the program's own frees; the leftovers' are not calls it made


def test_record_says_whose_each_trace_is(tmp_path):
    """A shell that runs a program leaves two traces, the command's own first: each line names its
    program, since a wrapper such as pyenv's python3 shim leaves dozens of a shell's beside the one
    that matters."""
    out = str(tmp_path / "t.trace")
    proc = cli("record", "--out", out, "--", "/bin/sh", "-c", "/bin/ls / > /dev/null; :")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{out}: ") and lines[1].startswith(f"{out}.")
    shell = os.path.basename(os.path.realpath("/bin/sh"))  # dash on Debian
    assert lines[0].endswith(f" ({shell})") and lines[1].endswith(" (ls)"), lines


def test_recording_refuses_what_it_cannot_write_before_running(tmp_path):
    marker = tmp_path / "ran"
    proc = cli("record", "--out", "/proc/no/such/x.trace", "--", "touch", marker)  # root may write anywhere else
    assert one_line_error(proc, "cannot write /proc/no/such/x.trace") and not marker.exists()
    assert one_line_error(cli("record", "--out", tmp_path / "t.trace", "--input", "/no/file", "--", "true"),
                          "--input /no/file: no such file")
    assert one_line_error(cli("record", "--out", tmp_path / "t.trace", "--"),
                          "no command: give it after --, e.g. allocbench record --out ")
    assert not (tmp_path / "t.trace").exists()
    results = tmp_path / "r.jsonl"  # a file that is not a trace is not replaced by one
    results.write_text('{"allocator": "glibc", "status": "ok"}\n')
    assert one_line_error(cli("record", "--out", results, "--", "touch", marker), "exists and is not a trace")
    assert results.read_text() == '{"allocator": "glibc", "status": "ok"}\n' and not marker.exists()
    timed_out = cli("record", "--out", tmp_path / "t.trace", "--timeout", "1", "--", "sleep", "30")
    assert timed_out.returncode == 1 and "timeout: killed after 1 s" in timed_out.stderr  # failed, not bad input


def test_recording_keeps_the_programs_bytes(tmp_path):
    data = tmp_path / "in.bin"
    data.write_bytes(bytes(range(256)) * 8)
    out = tmp_path / "c.trace"
    proc = cli("record", "--out", out, "--input", data, "--", "cat", text=False)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "c.trace.log").read_bytes() == data.read_bytes()
    shown = cli("record", "--out", out, "--input", data, "--show-output", "--", "cat", text=False)
    assert shown.returncode == 0 and shown.stdout == data.read_bytes()


def test_the_header_names_the_command_and_the_folder_it_ran_in(tmp_path):
    """What trace info --fidelity runs again: the argv as given and the folder, whatever allocbench's own is."""
    exe = build(tmp_path, "mover", MOVER)
    folder = tmp_path / "work"
    folder.mkdir()
    out = str(tmp_path / "m.trace")
    traces.record(["../mover"], out, cwd=str(folder))
    info = traces.info(out)
    assert info["argv"] == ["../mover"] and info["cwd"] == str(folder)
    assert os.path.samefile(os.path.join(info["cwd"], info["argv"][0]), exe)  # what fidelity would run again
