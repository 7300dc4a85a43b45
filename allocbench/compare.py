"""allocbench compare A.jsonl B.jsonl, in the manner of pyperf's compare_to:
row by row, B's time against A's as "1.23x slower [1.15, 1.31]" or "not
significant", with a geometric mean at the end.  Rows pair by what was
measured: the same cell or program under the same setting; when the two files
share no such row but differ only in their settings (a run before tuning and
one after), setting against setting, and the header says so.  The two files
are separate runs, so every test is unpaired (stats.unpaired) over their
processes or repeats; records without per-run data fall back to min-max
overlap, and the row says so."""
from __future__ import annotations

import json
import os
from collections import defaultdict

from . import stats
from .records import cell_key, series_key
from .series import series_label
from .units import size_label

ENV_KEYS = ("glibc", "kernel", "cpu", "cpus", "thp", "page_size")


_setting = series_key  # a row: the allocator and its settings


def _measured(r: dict) -> str:
    """What was measured, whatever the setting: the record's key (records.cell_key, which reads a cell's
    latency histograms as "with latency passes") without its allocator, settings and a program's repeat.
    A program's argv[0] counts by its name: two clones' interpreters, /a/.venv/bin/python and
    /b/.venv/bin/python, run the same script."""
    if r.get("kind") == "program":
        r = {**r, "command": [os.path.basename(r["command"][0]), *r["command"][1:]]}
    key = json.loads(cell_key(r))
    for k in ("allocator", "settings", "repeat"):
        key.pop(k, None)
    return json.dumps(key, sort_keys=True)


def _label(r: dict) -> str:
    if r.get("kind") == "program":
        return " ".join(r["command"])[:48]
    if r.get("trace"):
        return f"trace {r['trace'].rsplit('/', 1)[-1]}"
    size = size_label(r["size_bytes"]) if r.get("size_bytes") is not None else \
        f"{size_label(r['size_lo'])}..{size_label(r['size_hi'])}"
    return f"{r['pattern']} {size}" + (f" x{r['threads']} threads" if r["threads"] > 1 else "")


def _times(recs: list[dict]) -> tuple[list[float] | None, tuple | None, str]:
    """(samples, (min, median, max), what they are) of a row's time."""
    if recs[0].get("kind") == "program":
        return [r["wall_ns"] for r in recs], None, "runs"
    r = recs[-1]
    by_process = r.get("ns_per_op_by_process") or []
    if len(by_process) > 1:
        return by_process, None, "processes"
    if r.get("ns_per_op_repeats"):
        return r["ns_per_op_repeats"], None, "repeats of one process"
    ns = r["ns_per_op"]
    return None, (ns["min"], ns["median"], ns["max"]), "min-max only"


def _syscalls(recs: list[dict]) -> float | None:
    if recs[0].get("kind") == "program":
        counts = [sum(r["syscalls"].values()) for r in recs if r.get("syscalls")]
        return sorted(counts)[len(counts) // 2] if counts else None
    per = recs[-1]["syscalls_per_op"]
    return None if None in per.values() else sum(per.values())


def _rss(recs: list[dict]) -> list[float]:
    if recs[0].get("kind") == "program":
        return [r["peak_rss_bytes"] for r in recs if r.get("peak_rss_bytes")]
    return [v for v in (recs[-1].get("peak_rss_bytes_by_process") or [recs[-1].get("peak_rss_bytes")]) if v]


def _own_verdict(c: stats.Comparison) -> bool:
    """Whether a comparison is told by its own verdict (faster, slower, untested), not "not significant":
    too few runs for an interval are untested, never "not significant"."""
    return c.significant or c.verdict == "untested"


def row(a: list[dict], b: list[dict]) -> tuple[str, stats.Comparison]:
    """B's row against A's: the words, and the time comparison."""
    ta, ma, what_a = _times(a)
    tb, mb, what_b = _times(b)
    if ta is None or tb is None:
        na, nb = ma or (min(ta), sorted(ta)[len(ta) // 2], max(ta)), mb or (min(tb), sorted(tb)[len(tb) // 2], max(tb))
        c = stats.min_max(na, nb)
    else:
        c = stats.unpaired(ta, tb)
    time = c.words() if _own_verdict(c) else f"not significant ({c.words()})"
    if c.method == "min-max overlap":
        time += " [min-max overlap: these records keep no per-run times]"
    parts = [f"time {time}"]
    sa, sb = _syscalls(a), _syscalls(b)
    if sa is not None and sb is not None:
        unit = "" if a[0].get("kind") == "program" else "/op"
        parts.append(f"syscalls {sb:,.4g}{unit} vs {sa:,.4g}{unit}")
    ra, rb = _rss(a), _rss(b)
    if ra and rb:
        m = stats.unpaired(ra, rb, "memory")
        parts.append(f"peak RSS {m.words()}" if _own_verdict(m) else f"peak RSS not significant ({m.words()})")
    return "; ".join(parts), c


def _groups(recs: list[dict]) -> dict:
    out = defaultdict(list)
    for r in recs:
        if r.get("status") == "ok":
            out[(_measured(r), _setting(r))].append(r)
    return out


def compare(a: list[dict], b: list[dict]) -> list[str] | None:
    """The comparison's lines; None when no row pairs up."""
    ga, gb = _groups(a), _groups(b)
    ea, eb = (next((r["env"] for r in recs if r.get("env")), {}) for recs in (a, b))
    diffs = [f"{k}: {ea.get(k)} vs {eb.get(k)}" for k in ENV_KEYS if ea.get(k) != eb.get(k)]
    ma, mb = ({r.get("counter_method") for r in recs if r.get("status") == "ok"} for recs in (a, b))
    if ma != mb:  # strace stops the program at each of its syscalls: those times are partly strace's
        diffs.append(f"counted by {'/'.join(sorted(map(str, ma)))} vs {'/'.join(sorted(map(str, mb)))} "
                     "(a run under strace is slowed by it)")
    lines = ["environments differ: " + "; ".join(diffs) if diffs else
             "same environment (glibc, kernel, CPU, THP, page size)"]
    pairs = [(k, k) for k in ga if k in gb]
    if pairs:
        lines.append("rows pair by the same measurement under the same setting; B against A")
    else:  # before and after tuning: the same measurements, other settings
        sa, sb = defaultdict(list), defaultdict(list)
        for k in ga:
            sa[k[0]].append(k)
        for k in gb:
            sb[k[0]].append(k)
        pairs = [(x, y) for m in sa if m in sb for x in sa[m] for y in sb[m]]
        if not pairs:
            return None
        lines.append("the files share no setting: each measurement in A against the same measurement in B, "
                     "setting against setting")
    lines.append("tests: unpaired (two separate runs), 95%; \"not significant\": the interval holds 1")
    verdicts, ratios = defaultdict(int), []
    for ka, kb in sorted(pairs, key=lambda p: (_label(ga[p[0]][0]), p[0][1], p[1][1])):
        ra, rb = ga[ka], gb[kb]
        words, c = row(ra, rb)
        setting = series_label(ka[1]) if ka[1] == kb[1] else f"{series_label(ka[1])} -> {series_label(kb[1])}"
        lines.append(f"{_label(ra[0])} | {setting}: {words}")
        verdicts[c.verdict if _own_verdict(c) else "not significant"] += 1
        ratios.append(c.estimate)
    mean = stats.geometric_mean(ratios)
    lines.append(f"geometric mean of the time ratios: {'-' if mean is None else f'{mean:.3f}x'} over {len(pairs)} "
                 "rows (" + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items())) + ")")
    only = len(ga) - len({p[0] for p in pairs}), len(gb) - len({p[1] for p in pairs})
    if any(only):
        lines.append(f"only in A: {only[0]}, only in B: {only[1]}")
    return lines
