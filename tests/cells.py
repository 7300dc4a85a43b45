"""Helpers to run the C cell program directly and to read an external strace log."""
import json
import os
import subprocess

from allocbench import _native
from allocbench.counters import SYSCALLS
from allocbench.runner import cell_binary

# counters.h's marker paths; the parsing below is independent of counters.c's
MARK_BEGIN, MARK_END, MARK_ATTACHED = (_native.MARKS[k] for k in ("begin", "end", "attached"))
STRACE_SET = "trace=" + ",".join(SYSCALLS) + ",faccessat"


def run_cell_raw(*args, env=None, prefix=(), timeout=300):
    proc = subprocess.run([*prefix, cell_binary(), *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=timeout)
    return proc


def cell_json(*args, **kw):
    proc = run_cell_raw(*args, **kw)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def strace_windows(log_path):
    """Per window (between the markers), the count of each traced syscall's entries:
    an implementation independent of csrc/lib/counters.c."""
    windows, current = [], None
    with open(log_path) as f:
        for line in f:
            if MARK_BEGIN in line:
                current = dict.fromkeys(SYSCALLS, 0)
                continue
            if MARK_END in line:
                windows.append(current)
                current = None
                continue
            if current is None:
                continue
            body = line.split(None, 1)[1] if line[0].isdigit() else line
            if body.startswith(("<...", "---", "+++")):
                continue
            name = body.split("(", 1)[0].strip()
            if name in current:
                current[name] += 1
    return windows
