"""Which records make a line of a figure or a row of a table, in what order,
and what they are called: the selection and labels that the report's sections
and their figures share.  No matplotlib and no numpy here."""
from __future__ import annotations

import os
import statistics
from collections import defaultdict

from .backends import BACKENDS, glibc_backend
from .counters import SYSCALLS
from .glibc_constants import DEFAULT_MMAP_THRESHOLD
from .records import series_key
from .units import KIB, size_label

# the patterns that fragment (workloads.h), each run over every allocator and threshold by make bench
FRAG_PATTERNS = ("fragment", "grow", "sawtooth", "checkerboard", "handoff")


def glibc_at(threshold: int | None) -> tuple:
    """The series key of glibc at a fixed mmap threshold (None: the dynamic default)."""
    return (glibc_backend().name, () if threshold is None else (("mmap_threshold", threshold),))


def glibc_fixed() -> tuple:
    """glibc with its threshold frozen at the 128 KiB default (no dynamic rise)."""
    return glibc_at(DEFAULT_MMAP_THRESHOLD)


def at_defaults(allocator: str) -> tuple:
    return (allocator, ())


def other_defaults() -> list[tuple]:
    """Every allocator but glibc, at its defaults, in table order."""
    return [at_defaults(name) for name, b in BACKENDS.items() if not b.glibc]


def _has_threshold(allocator: str) -> bool:
    b = BACKENDS.get(allocator)
    return b is not None and any(s.name == "mmap_threshold" for s in b.settings)


def series_label(key: tuple) -> str:
    """glibc dynamic, glibc @128 KiB, toy toy_policy=dontneed, jemalloc, ..."""
    allocator, settings = key
    rest = dict(settings)
    t = rest.pop("mmap_threshold", None)
    parts = [allocator]
    if t is not None:
        parts.append(f"@{size_label(t)}")
    elif _has_threshold(allocator):
        parts.append("dynamic")
    parts += [f"{k}={size_label(v) if isinstance(v, int) and v >= KIB else v}" for k, v in rest.items()]
    return " ".join(parts)


def series(rec: dict) -> str:
    """The label of a record's series, for legends and tables."""
    return series_label(series_key(rec))


def series_order(key: tuple):
    """The backends' table order; within one, the default first, then by threshold."""
    allocator, settings = key
    names = list(BACKENDS)
    rank = names.index(allocator) if allocator in names else len(names)
    return (rank, len(settings), dict(settings).get("mmap_threshold") or 0, str(settings))


def threshold_of(key: tuple) -> int | None:
    return dict(key[1]).get("mmap_threshold")


def is_glibc(key: tuple) -> bool:
    b = BACKENDS.get(key[0])
    return b is not None and b.glibc


def syscalls_per_op(rec: dict) -> float | None:
    per = rec["syscalls_per_op"]
    return None if None in per.values() else sum(per[s] for s in SYSCALLS)


def caption(recs: list[dict]) -> str:
    ok = [r for r in recs if r["status"] == "ok"]
    env = (ok or recs)[0]["env"]
    methods = ", ".join(sorted({r.get("counter_method") for r in ok if r.get("counter_method")}))
    return (f"glibc {env['glibc']}, Linux {env['kernel']}, {env['cpu']} x{env['cpus']}, THP {env['thp']}; "
            f"{len(ok)} cells ok, {len(recs) - len(ok)} failed; syscall counter: {methods or 'none'}")


def probe_caption(res: dict) -> str:
    """A probe figure's caption: the machine it ran on."""
    env = res.get("env") or {}
    return (f"glibc {env.get('glibc')}, Linux {env.get('kernel')}, {env.get('cpu')}; "
            f"allocbench probe {res['probe']}, each point a fresh process")


def size_of(rec: dict) -> int:
    """A cell's place on a size axis: its size, or the top of its band (grow)."""
    return rec["size_bytes"] if rec["size_bytes"] is not None else rec["size_hi"]


def measured_best(recs: list[dict]) -> list[dict]:
    """One record per measured thing (pattern, sizes, threads, live, touch, series): where a grid measured
    it twice, the one with the most processes (then repeats), whose comparisons are paired."""
    best = {}
    for r in recs:
        k = (r["pattern"], r["size_lo"], r["size_hi"], r["threads"], r["live"], r.get("touch"), r.get("trace"),
             series_key(r))
        if k not in best or (r.get("processes", 1), r["repeats"]) > (best[k].get("processes", 1), best[k]["repeats"]):
            best[k] = r
    return list(best.values())


def find(recs: list[dict], pattern: str, key: tuple, size: int, threads: int = 1) -> dict | None:
    """The ok cell of one series, pattern and size (the best measured, when there are two)."""
    found = [r for r in recs if r["status"] == "ok" and r["pattern"] == pattern and r["threads"] == threads
             and r["size_bytes"] == size and series_key(r) == key]
    return max(found, key=lambda r: (r.get("processes", 1), r["repeats"]), default=None)


def by_series(recs: list[dict], pattern: str) -> dict:
    """One thread's cells of a pattern at fixed sizes, by series in table order, each by size."""
    out = defaultdict(list)
    for r in measured_best(recs):
        if r["status"] == "ok" and r["pattern"] == pattern and r["size_bytes"] is not None and r["threads"] == 1:
            out[series_key(r)].append(r)
    return {k: sorted(v, key=lambda r: r["size_bytes"])
            for k, v in sorted(out.items(), key=lambda kv: series_order(kv[0]))}


def frag_series(recs: list[dict], pattern: str) -> dict:
    """A pattern's cells that carry a timeline, by series in table order, each by size."""
    out = defaultdict(list)
    for r in recs:
        if r["status"] == "ok" and r["pattern"] == pattern and r.get("timeline"):
            out[series_key(r)].append(r)
    return {k: sorted(v, key=size_of) for k, v in sorted(out.items(), key=lambda kv: series_order(kv[0]))}


def nearest(rows: list[dict], size: int) -> dict | None:
    return min(rows, key=lambda r: abs(size_of(r) - size)) if rows else None


def tradeoff_points(recs: list[dict], pattern: str) -> list[tuple]:
    """(series, median ns/op, median mean-RSS/live) over the pattern's sizes."""
    out = []
    for key, rows in frag_series(recs, pattern).items():
        ns = [r["ns_per_op"]["median"] for r in rows]
        over = [r["overhead_mean"] for r in rows if r.get("overhead_mean")]
        if ns and over:
            out.append((key, statistics.median(ns), statistics.median(over)))
    return out


def program_name(rec: dict) -> str:
    """A program's short name: the script for an interpreter, else the binary."""
    cmd = rec["command"]
    script = next((os.path.basename(a) for a in cmd[1:] if a.endswith((".py", ".rb", ".lua"))), None)
    return script or os.path.basename(cmd[0])
