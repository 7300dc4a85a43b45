"""Recorded programs replayed under every threshold and allocator: what each
trace holds (from the records' trace_summary, so no trace file is read here),
then each setting's time and memory against glibc's dynamic default, tested
over processes taken in turns.  A threaded program's trace is replayed on its
recorded threads (arenas and all) and, under glibc's default, on one thread:
its tables are apart.  A replay ends as a cell ends: the blocks the program
still held at exit are freed after the window, so "retained after free"
means the same as for cells, and what the program held at exit is a column
of its own.  Where `trace info --fidelity` records are given, each trace's
replay is held against the program it recorded, and a replay that is not
faithful says so."""
from __future__ import annotations

import os
from collections import defaultdict

from .. import stats
from ..fidelity import syscalls_text
from ..records import series_key
from ..series import glibc_at, program_name, series, series_order, syscalls_per_op
from ..units import MIB

MEASURES = (("time", "ns_per_op_by_process", "time"),
            ("peak RSS", "peak_rss_bytes_by_process", "memory"),
            ("memory held after everything is freed", "retained_after_free_bytes_by_process", "memory"))
MODE_WORDS = {"one": "on one thread", "recorded": "on its recorded threads"}


def _mib(n) -> str:
    return "-" if n is None else f"{n / MIB:.1f}"


def by_trace(replays: list[dict]) -> dict:
    """(trace file name, replay mode) -> its records, in the backends' order."""
    out = defaultdict(list)
    for r in replays:
        if r["status"] == "ok" and r.get("trace"):
            out[(os.path.basename(r["trace"]), r.get("replay_threads") or "one")].append(r)
    return {k: sorted(v, key=lambda r: series_order(series_key(r))) for k, v in sorted(out.items())}


def summary_table(traces: dict) -> list[str]:
    lines = ["| trace | events | threads | peak live MiB | live at exit MiB | allocations at or above 128 KiB "
             "| bytes there MiB |", "|---|---:|---:|---:|---:|---:|---:|"]
    seen = set()
    for (name, _), rows in traces.items():
        t = rows[0].get("trace_summary")
        if not t or name in seen:
            continue
        seen.add(name)
        share = t["allocations_at_or_above_boundary"] / t["allocations"] if t["allocations"] else 0
        lines.append(f"| {name} | {t['events']:,} | {t['threads']} | {_mib(t['peak_live_bytes'])} | "
                     f"{_mib(t['live_at_end_bytes'])} | {share:.2%} | {_mib(t['bytes_at_or_above_boundary'])} |")
    return lines


def _versus(base, r, field, kind) -> str:
    return "-" if base is None or r is base else stats.by_process(base, r, field, kind).words()


def trace_table(rows: list[dict]) -> list[str]:
    """Two tables a screen wide: time, then memory.  Each ratio sits beside the measure it tests: the
    whole process's peak RSS (VmHWM of the timed processes) is not the replay's own peak growth (the
    warm-up's anonymous memory over its start), so they get a column each, named so."""
    base = next((r for r in rows if series_key(r) == glibc_at(None)), None)
    lines = ["| setting | ns/op | time vs default | syscalls/op | faults/op |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        sp = syscalls_per_op(r)
        lines.append(f"| {series(r)} | {r['ns_per_op']['median']:,.0f} | "
                     f"{_versus(base, r, MEASURES[0][1], 'time')} | {'-' if sp is None else f'{sp:.4f}'} | "
                     f"{r['faults_per_op']:.3f} |")
    lines += ["", "| setting | process peak RSS vs default | replay's peak growth MiB | arena heaps | fragmentation "
                  "at peak | held at exit MiB | RSS then MiB | retained after free MiB | vs default |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        frag = "-" if r["fragmentation_peak"] is None else f"{r['fragmentation_peak']:.2f}"
        lines.append(f"| {series(r)} | {_versus(base, r, MEASURES[1][1], 'memory')} | "
                     f"{_mib(r.get('footprint_bytes_peak'))} | {r.get('arena_heaps', '-')} | {frag} | "
                     f"{_mib(r.get('live_at_end_bytes'))} | {_mib(r.get('rss_at_end_bytes'))} | "
                     f"{_mib(r['retained_after_free_bytes'])} | {_versus(base, r, MEASURES[2][1], 'memory')} |")
    return lines


def one_against_threads(one: list[dict], threads: list[dict]) -> list[str]:
    """What a replay on one thread misses of a threaded program: glibc's default both ways."""
    a = next((r for r in one if series_key(r) == glibc_at(None)), None)
    b = next((r for r in threads if series_key(r) == glibc_at(None)), None)
    if not a or not b:
        return []
    def spread(r):  # not a paired test: the two modes ran in different sweep groups, not in turns
        v = sorted(r.get("peak_rss_bytes_by_process") or [])
        return f"{_mib(v[0])}..{_mib(v[-1])} MiB over {len(v)} processes" if v else "-"
    return [f"Under glibc's default, the replay on its recorded threads peaks at {_mib(b.get('footprint_bytes_peak'))} "
            f"MiB of anonymous growth with {b.get('arena_heaps')} arena heaps (peak RSS {spread(b)}), and on one "
            f"thread at {_mib(a.get('footprint_bytes_peak'))} MiB with {a.get('arena_heaps')} (peak RSS "
            f"{spread(a)}): a replay on one thread cannot show the arenas."]


def fidelity_table(records: list[dict]) -> list[str]:
    """Each trace's replay against the program it recorded (trace info --fidelity)."""
    lines = ["| program (recorded again) | setting | replay | peak growth: program, replay (error) | at the end: "
             "program, replay (error) | arena heaps: program, replay | malloc's syscalls | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for rec in sorted(records, key=lambda r: os.path.basename(r["trace"])):
        p = rec["program_run"]
        setting = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "default"
        for r in rec["replays"]:
            e = r["errors"]

            def cell(prog, rep, err):
                rel = "" if err["relative"] is None else f" ({err['relative']:+.0%})"
                return f"{_mib(prog)}, {_mib(rep)}{rel}"
            sys_err = syscalls_text(r)
            verdict = ("faithful" if r["faithful"] else "**not faithful** (" + ", ".join(r["not_faithful_because"])
                       + ")" if r["faithful"] is False else "not judged")
            peak = cell(p["peak_malloc_growth_bytes"], r["peak_anon_growth_bytes"], e["peak_anon_growth"])
            end = cell(p["final_malloc_growth_bytes"], r["final_anon_growth_bytes"], e["final_anon_growth"])
            # the replay is of the fresh recording fidelity makes, not of the stored trace: name the program
            lines.append(f"| {program_name({'command': rec['argv']})} (stored: {os.path.basename(rec['trace'])}) | "
                         f"{rec['allocator']} {setting} | "
                         f"{MODE_WORDS.get(r['mode'], r['mode'])} | {peak} | {end} | "
                         f"{p['arena_heaps']}, {r['arena_heaps']} | {sys_err} | {verdict} |")
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
             "(`allocbench run --pattern trace`): a single-threaded program's on one thread in its recorded global "
             "order, under every threshold and allocator; a threaded program's on its recorded threads "
             "(`--replay-threads recorded`: each thread's calls on a thread of its own, so glibc gives them arenas "
             "as in the program) under every allocator and arena count, and on one thread under glibc's default. "
             f"Each cell ran in {'/'.join(map(str, procs))} fresh processes taken in turns. \"held at exit\" is "
             "what the program still held after its last event, and \"RSS then\" the anonymous RSS growth at that "
             "moment; those blocks are then freed outside the timed window, so \"retained after free\" is what "
             "the allocator keeps once everything is freed, as for cells.", "",
             *summary_table(traces), ""]
    if inputs.fidelity:
        lines += ["### How far each replay is from its program", "",
                  "`allocbench trace info --fidelity`: the program run again under `exec` and under the recorder "
                  "(counting the syscalls made inside its allocation calls), its fresh trace replayed in each mode. "
                  "Growth is of anonymous memory, the program's less its own mappings and its libraries' written "
                  "pages (which no replay has; at the peak an estimate); faithful means peak and end within 25% "
                  "(or 1 MiB) and arena heaps within 25% or one.", "", *fidelity_table(inputs.fidelity), ""]
    for (name, mode), rows in traces.items():
        lines += [f"### {name}, {MODE_WORDS.get(mode, mode)}", "", *trace_table(rows), ""]
        lines += [f"- {f}" for f in findings(rows)]
        if mode == "recorded" and (name, "one") in traces:
            lines += [f"- {f}" for f in one_against_threads(traces[(name, "one")], rows)]
        lines += [""]
    return lines
