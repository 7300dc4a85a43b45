"""allocbench compare A.jsonl B.jsonl: cell by cell, or program by program, the
ratios of time, syscalls and RSS, in the manner of pyperf's compare_to.  A
difference is marked when the two min-max ranges of the repeats do not overlap;
differences between the two machines (glibc, kernel, CPU, THP) are listed first."""
from __future__ import annotations

import json
import statistics
from collections import defaultdict

from .records import cell_key
from .units import human_bytes

ENV_KEYS = ("glibc", "kernel", "cpu", "cpus", "thp", "page_size")


def _key(r: dict) -> str:
    if r.get("kind") == "program":
        return json.dumps({"command": r["command"], "allocator": r["allocator"], "settings": r["settings"]},
                          sort_keys=True)
    return cell_key(r)


def _label(r: dict) -> str:
    settings = " ".join(f"{k}={v}" for k, v in r["settings"].items())
    if r.get("kind") == "program":
        return f"{' '.join(r['command'])[:40]} | {r['allocator']} {settings}".strip()
    size = r["size_bytes"] if r.get("size_bytes") is not None else f"{r['size_lo']}..{r['size_hi']}"
    return f"{r['pattern']} {size} | {r['allocator']} {settings}".strip()


def _summary(recs: list[dict]) -> dict:
    """time (ns per op for a cell, wall ns for a program) as median/min/max, syscalls, RSS."""
    if recs[0].get("kind") == "program":
        times = [r["wall_ns"] for r in recs]
        lo, med, hi = min(times), statistics.median(times), max(times)
        sys = statistics.median(sum(r["syscalls"].values()) for r in recs if r.get("syscalls"))
        rss = statistics.median(r["peak_rss_bytes"] for r in recs)
    else:
        r = recs[-1]
        lo, med, hi = r["ns_per_op"]["min"], r["ns_per_op"]["median"], r["ns_per_op"]["max"]
        per = r["syscalls_per_op"]
        sys = None if None in per.values() else sum(per.values())
        rss = r.get("peak_rss_bytes")
    return {"min": lo, "median": med, "max": hi, "syscalls": sys, "rss": rss}


def compare(a: list[dict], b: list[dict]) -> list[str]:
    ga, gb = defaultdict(list), defaultdict(list)
    for recs, groups in ((a, ga), (b, gb)):
        for r in recs:
            if r.get("status") == "ok":
                groups[_key(r)].append(r)
    lines = []
    ea, eb = (next((r["env"] for r in recs if r.get("env")), {}) for recs in (a, b))
    diffs = [f"{k}: {ea.get(k)} vs {eb.get(k)}" for k in ENV_KEYS if ea.get(k) != eb.get(k)]
    lines.append("environments differ: " + "; ".join(diffs) if diffs else "same environment (glibc, kernel, CPU, THP)")
    common = [k for k in ga if k in gb]
    if not common:
        return lines + ["no cell or program is in both files"]
    lines.append(f"{'':<58} {'time B/A':>9} {'syscalls B/A':>13} {'RSS B/A':>9}")
    for k in sorted(common, key=lambda k: _label(ga[k][0])):
        sa, sb = _summary(ga[k]), _summary(gb[k])
        apart = sa["max"] < sb["min"] or sb["max"] < sa["min"]
        ratio = lambda x, y: "-" if x in (None, 0) or y is None else f"{y / x:.2f}x"
        lines.append(f"{_label(ga[k][0])[:56]:<56} {'*' if apart else ' '} {ratio(sa['median'], sb['median']):>9} "
                     f"{ratio(sa['syscalls'], sb['syscalls']):>13} {ratio(sa['rss'], sb['rss']):>9}")
    lines.append("* the two min-max ranges of the repeats do not overlap")
    only = len(ga) - len(common), len(gb) - len(common)
    if any(only):
        lines.append(f"only in A: {only[0]}, only in B: {only[1]}")
    return lines
