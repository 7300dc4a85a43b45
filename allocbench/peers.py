"""The peer programs (benchmarks/peers/*.c, each with the shape of a public allocator suite's program,
named in its header): the table's names for them, their arguments, and their build.  Both `make
toy-speed` (scripts/toy-peers) and the A/B of two toy builds (scripts/toy-ab) run these, from a clone.
Also the list of make bench's real programs (benchmarks/programs/programs.json), which
scripts/bench-programs runs and toy-ab can run too."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from .children import HERE

ROOT = os.path.dirname(HERE)
SOURCES = os.path.join(ROOT, "benchmarks", "peers")
BUILD = os.path.join(ROOT, "build", "peers")  # the programs, and builds of the toy measured beside them
# (name, source, arguments): two threads where the program is about threads (this machine has 2 cores);
# alloc-test also over 50,000 blocks, a working set far beyond the caches (see its header)
PROGRAMS = [("large", "large", ()), ("larson", "larson", ("2",)), ("xmalloc", "xmalloc", ("2",)),
            ("rptest", "rptest", ("2",)), ("cache-scratch", "cache_scratch", ("2",)),
            ("alloc-test", "alloc_test", ("1",)), ("alloc-test x2", "alloc_test", ("2",)),
            ("alloc-test 50k", "alloc_test", ("1", "50000")), ("glibc-thread", "glibc_thread", ("2",))]
NAMES = [name for name, _, _ in PROGRAMS]
BENCH_PROGRAMS = os.path.join(ROOT, "benchmarks", "programs", "programs.json")


def bench_programs() -> list[dict]:
    """make bench's real programs, as benchmarks/programs/programs.json lists them."""
    with open(BENCH_PROGRAMS) as f:
        return json.load(f)["programs"]


def bench_command(entry: dict, out: str) -> list[str]:
    """A real program's command line: {python} is this interpreter, {out} the folder its files go to, and
    the program found on PATH.  Relative paths are the clone's: run it from ROOT."""
    subst = {"{python}": sys.executable, "{out}": out}
    cmd = [subst.get(a, a.replace("{out}", out)) for a in entry["command"]]
    cmd[0] = shutil.which(cmd[0]) or cmd[0]
    return cmd


def in_turns(sides: list, n: int) -> list:
    """The order of round n: the sides rotated by n, so no side always runs first."""
    return sides[n % len(sides):] + sides[:n % len(sides)]


def build(out_dir: str = BUILD) -> dict:
    """Compile each peer program into out_dir: {name: its command}."""
    os.makedirs(out_dir, exist_ok=True)
    exes: dict = {}
    built: set = set()
    for name, src, argv in PROGRAMS:
        exe = os.path.join(out_dir, src)
        if exe not in built:
            built.add(exe)
            subprocess.run(["gcc", "-O2", "-pthread", "-fno-builtin-malloc", "-o", exe,
                            os.path.join(SOURCES, src + ".c")], check=True)
        exes[name] = [exe, *argv]
    return exes
