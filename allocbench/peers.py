"""The peer programs (benchmarks/peers/*.c, each with the shape of a public allocator suite's program,
named in its header): the table's names for them, their arguments, and their build.  Both `make
toy-speed` (scripts/toy-peers) and the A/B of two toy builds (scripts/toy-ab) run these, from a clone."""
from __future__ import annotations

import os
import subprocess

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
