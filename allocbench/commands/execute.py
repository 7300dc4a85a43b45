"""allocbench exec: an unmodified program under any allocator and glibc setting."""
from __future__ import annotations

import json
import sys

from .common import (
    UsageError,
    add_allocator_flag,
    add_program_io,
    add_setting_flags,
    command_after_dashes,
    count_arg,
    out_path,
    percentiles_text,
    seconds_arg,
    settings_given,
)

NAME, HELP = "exec", "run an unmodified program under any allocator and glibc setting"


def add_arguments(p) -> None:
    from ..programs import GRIDS, MAX_HZ

    add_allocator_flag(p)
    add_setting_flags(p)
    p.add_argument("--grid", help=f"{', '.join(GRIDS)}, or a JSON file: [{{\"allocator\": ..., \"settings\": "
                                  "{...}}, ...]; the settings run in turns")
    p.add_argument("--repeats", type=count_arg, default=3, help="runs per setting, each a fresh process (3)")
    p.add_argument("--hz", type=count_arg, default=100, help=f"RSS samples per second, 1 to {MAX_HZ} (100)")
    p.add_argument("--timeout", type=seconds_arg, default=600, help="seconds per run before it is killed (600)")
    p.add_argument("--explain-threshold", action="store_true",
                   help="log who raised glibc's dynamic mmap threshold, and what it moved to the heap")
    p.add_argument("--latency", action="store_true",
                   help="time every allocation call and malloc_trim (a preload shim: histograms by call kind, the "
                        "slowest calls with their call sites); its cost is in the wall time")
    p.add_argument("--out", type=out_path, help="append the records to this JSON Lines file (resumed: a run "
                                                 "already in it is skipped; a file with runs of another build is "
                                                 "moved aside to OUT.stale first); the programs' output goes to "
                                                 "OUT.logs/")
    p.add_argument("--json", action="store_true", help="print each record as one JSON line")
    add_program_io(p, "the program")
    p.add_argument("command", nargs="...", help="-- CMD ARGS...")



def summary(rec: dict) -> list[str]:
    from ..programs import frame_text
    from ..units import human_bytes

    settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "defaults"
    head = f"{rec['allocator']} [{settings}] repeat {rec['repeat'] + 1}"
    if rec["status"] != "ok":
        return [f"{head}: {rec['status'].upper()}: {rec['error']}"]
    sc = rec["syscalls"] or {}
    loader = rec["loader"]["syscalls"] or {}
    calls = (", ".join(f"{k} {v}" for k, v in sc.items() if v) if sc and None not in sc.values()
             else f"syscalls not counted (counter {rec.get('counter_method') or 'none'})")
    lines = [f"{head}: {rec['wall_ns'] / 1e9:.3f} s, {calls}"
             + " (loader alone: " + (", ".join(f"{k} {v}" for k, v in loader.items() if v) or "-")
             + f"), {rec['minor_faults']} minor faults, peak RSS {human_bytes(rec['peak_rss_bytes'])}, "
             f"final {human_bytes(rec['final_rss_bytes'])}"]
    explain = rec.get("explain") or {}
    for rise in explain.get("rises", []):
        lines.append(f"  threshold rose {rise['old_threshold']} -> {rise['new_threshold']} at "
                     f"{rise['t_ns'] / 1e6:.1f} ms, freed at: "
                     + " <- ".join(frame_text(f) for f in rise["backtrace"][:4]))
    if explain:
        lines.append(f"  {explain.get('moved_blocks', 0)} later blocks ({human_bytes(explain.get('moved_bytes', 0))}) "
                     "went to the heap because of the rises")
    return lines + latency_lines(rec)


def _which_process(procs: list[dict]) -> str:
    """Of a command's several processes, which one the latency is of (the one that made the most calls),
    and the next: a wrapper that execs (pyenv's shim) runs shells that can outdo a short program."""
    from ..programs import process_calls as calls

    if len(procs) < 2:
        return ""
    first, second = sorted(procs, key=calls, reverse=True)[:2]
    return (f", pid {first['pid']}: of the command's {len(procs)} processes, the one that made the most allocation "
            f"calls, {calls(first):,}; next {second['program']}, pid {second['pid']}, {calls(second):,}; each "
            f"process in --json's latency_processes")


def latency_lines(rec: dict, slowest: int = 5) -> list[str]:
    """--latency: each call kind's percentiles, and the slowest calls with where they were called from."""
    from ..programs import frame_text
    from ..units import human_bytes, human_ns

    if rec.get("latency_error"):
        return [f"  latency: {rec['latency_error']}"]
    if not isinstance(rec.get("latency"), dict):
        return []
    lines = [f"  latency of {rec['latency_program']}{_which_process(rec.get('latency_processes') or [])} "
             f"({rec['latency_clock']}; a reading costs {rec['latency_clock_overhead_ns']:.0f} ns, included):"]
    for kind, h in rec["latency"].items():
        lines.append(f"    {kind:<12} {h['count']:>10} calls  {percentiles_text(h)}")
    for c in rec["slow_calls"][:slowest]:
        call = c["op"] if c["size"] is None else f"{c['op']}({human_bytes(c['size'])})"
        lines.append(f"    slow: {call} {human_ns(c['ns'])}, called from "
                     + " <- ".join(frame_text(f) for f in c["backtrace"][:3]))
    return lines


def run(args) -> int:
    from .. import programs
    from ..results import ResultsError

    command = command_after_dashes(args)
    settings = settings_given(args)
    try:
        if args.grid:
            if settings or args.allocator != next(iter(programs.BACKENDS)):
                raise ValueError("--grid chooses the allocators and settings; drop --allocator and setting flags")
            grid = programs.load_grid(args.grid)
        else:
            grid = [{"allocator": args.allocator, "settings": settings}]
        programs.check_runs(command, grid, args.repeats, args.hz, args.input, args.out)
    except (ValueError, FileNotFoundError, ResultsError) as e:
        raise UsageError(str(e)) from None
    recs = programs.run_grid(command, grid, args.repeats, args.out, hz=args.hz, timeout=args.timeout,
                             explain=args.explain_threshold, stdin=args.input, show_output=args.show_output,
                             latency=args.latency)
    ours = sys.stderr if args.show_output else sys.stdout  # stdout carries the program's own bytes
    for rec in recs:
        print(json.dumps(rec) if args.json else "\n".join(summary(rec)), file=ours)
    timed_out = [r for r in recs if (r.get("error") or "").startswith("timeout")]
    if timed_out:
        print(f"allocbench: {len(timed_out)} run(s) timed out after {args.timeout:g} s (raise --timeout)",
              file=sys.stderr)
    return 0 if all(r["status"] in ("ok", "skipped") for r in recs) else 1
