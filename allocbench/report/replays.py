"""Recorded programs replayed under every threshold and allocator: what each
trace holds (from the records' trace_summary, so no trace file is read here),
then each setting's time and memory against glibc's dynamic default, tested
over processes taken in turns.  A replay ends as a cell ends: the blocks the
program still held at exit are freed after the window, so "retained after
free" means the same as for cells, and what the program held at exit is a
column of its own."""
from __future__ import annotations

import os
from collections import defaultdict

from .. import stats
from ..records import series_key
from ..series import glibc_at, series, series_order, syscalls_per_op
from ..units import MIB

MEASURES = (("time", "ns_per_op_by_process", "time"),
            ("memory held after everything is freed", "retained_after_free_bytes_by_process", "memory"))


def _mib(n) -> str:
    return "-" if n is None else f"{n / MIB:.1f}"


def by_trace(replays: list[dict]) -> dict:
    out = defaultdict(list)
    for r in replays:
        if r["status"] == "ok" and r.get("trace"):
            out[os.path.basename(r["trace"])].append(r)
    return {k: sorted(v, key=lambda r: series_order(series_key(r))) for k, v in out.items()}


def summary_table(traces: dict) -> list[str]:
    lines = ["| trace | events | threads | peak live MiB | live at exit MiB | allocations at or above 128 KiB "
             "| bytes there MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in traces.items():
        t = rows[0].get("trace_summary")
        if not t:
            continue
        share = t["allocations_at_or_above_boundary"] / t["allocations"] if t["allocations"] else 0
        lines.append(f"| {name} | {t['events']:,} | {t['threads']} | {_mib(t['peak_live_bytes'])} | "
                     f"{_mib(t['live_at_end_bytes'])} | {share:.2%} | {_mib(t['bytes_at_or_above_boundary'])} |")
    return lines


def _versus(base, r, field, kind) -> str:
    return "-" if base is None or r is base else stats.by_process(base, r, field, kind).words()


def trace_table(rows: list[dict]) -> list[str]:
    base = next((r for r in rows if series_key(r) == glibc_at(None)), None)
    lines = ["| setting | ns/op | time vs default | syscalls/op | faults/op | fragmentation at peak | "
             "held at exit MiB | RSS then MiB | retained after free MiB | vs default |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        frag = "-" if r["fragmentation_peak"] is None else f"{r['fragmentation_peak']:.2f}"
        sp = syscalls_per_op(r)
        lines.append(f"| {series(r)} | {r['ns_per_op']['median']:,.0f} | "
                     f"{_versus(base, r, MEASURES[0][1], 'time')} | {'-' if sp is None else f'{sp:.4f}'} | "
                     f"{r['faults_per_op']:.3f} | {frag} | {_mib(r.get('live_at_end_bytes'))} | "
                     f"{_mib(r.get('rss_at_end_bytes'))} | {_mib(r['retained_after_free_bytes'])} | "
                     f"{_versus(base, r, MEASURES[1][1], 'memory')} |")
    return lines


def findings(rows: list[dict]) -> list[str]:
    out = []
    for what, field, kind in MEASURES:
        runs = {series(r): r.get(field) or [] for r in rows}
        runs = {k: v for k, v in runs.items() if v and None not in v}
        if len(runs) < 2:
            continue
        pairs = len({len(v) for v in runs.values()}) == 1  # one sweep group: processes in turns
        top, against = stats.best_of(runs, kind, pairs=pairs)
        if top:
            out.append(f"Best {what}: {top}, {stats.BETTER[kind]} than every other setting at 95%.")
        else:
            same = [k for k, c in against.items() if not c.significant]
            lowest = min(runs, key=lambda k: sorted(runs[k])[len(runs[k]) // 2])
            out.append(f"Best {what}: none by the test; {lowest} has the lowest median and "
                       f"{', '.join(same)} cannot be told from it.")
    return out


def render(inputs, canvas) -> list[str]:
    traces = by_trace(inputs.replays or [])
    if not traces:
        return []
    procs = sorted({r.get("processes", 1) for rows in traces.values() for r in rows})
    lines = ["## Replayed programs", "",
             "Traces recorded with `allocbench record` from the real programs, replayed in a cell "
             "(`allocbench run --pattern trace`) on one thread in their recorded global order, under every "
             f"threshold and allocator, each cell in {'/'.join(map(str, procs))} fresh processes taken in turns. "
             "\"held at exit\" is what the program still held after its last event, and \"RSS then\" the anonymous "
             "RSS growth at that moment; those blocks are then freed outside the timed window, so \"retained after "
             "free\" is what the allocator keeps once everything is freed, as for cells.", "",
             *summary_table(traces), ""]
    for name, rows in traces.items():
        lines += [f"### {name}", "", *trace_table(rows), ""]
        lines += [f"- {f}" for f in findings(rows)] + [""]
    return lines
