"""allocbench run: one cell in fresh processes."""
from __future__ import annotations

import json
import os

from .common import (
    UsageError,
    add_allocator_flag,
    add_setting_flags,
    count_arg,
    percentiles_text,
    records_out,
    seconds_arg,
    settings_given,
    size_arg,
)

NAME, HELP = "run", "measure one cell in a fresh process"


def add_arguments(p) -> None:
    from .. import _native

    defaults = _native.CELL_DEFAULTS
    add_allocator_flag(p)
    p.add_argument("--pattern", choices=_native.PATTERNS, default="churn",
                   help="; ".join(f"{k}: {v}" for k, v in _native.PATTERN_DOCS.items()))
    p.add_argument("--size", type=size_arg, help="block size (135168, 128K, 1MiB)")
    p.add_argument("--size-lo", type=size_arg, help="band low end (realloc-grow: the step)")
    p.add_argument("--size-hi", type=size_arg, help="band high end (realloc-grow: the target)")
    p.add_argument("--ops", type=count_arg, default=defaults["ops"], help=f"allocations per thread ({defaults['ops']})")
    for name, what in (("repeats", "measured repeats"), ("warmup", "unmeasured repeats first"),
                       ("threads", "worker threads"), ("live", "live blocks K for batch/windows/fragment"),
                       ("seed", "the workload's seed")):
        p.add_argument(f"--{name}", type=count_arg, default=defaults[name], help=f"{what} ({defaults[name]})")
    p.add_argument("--processes", type=count_arg, default=1,
                   help="fresh processes that measure the cell, their repeats pooled (1); "
                        "more smooths out one process's memory layout on a noisy machine")
    p.add_argument("--no-touch", action="store_true", help="do not write the blocks' pages (--touch none)")
    p.add_argument("--touch", choices=("all", "first", "none"), default="all",
                   help="write every page of each block (all), its first page, or nothing")
    p.add_argument("--trace", help="pattern trace: the trace file to replay (from allocbench record)")
    p.add_argument("--replay-threads", choices=("one", "recorded"),
                   help="pattern trace: every call on one thread in the recorded order (one, the default), or "
                        "each recorded thread's calls on a thread of its own, so glibc attaches arenas as the "
                        "program did (recorded)")
    p.add_argument("--replay-window", type=count_arg,
                   help="pattern trace, recorded threads: events a thread may run ahead of the slowest, which "
                        "bounds how far the replay's live bytes can drift from the trace's (1024)")
    add_setting_flags(p)
    p.add_argument("--latency", action="store_true",
                   help="two more untimed repeats: time every call into histograms (p50..p99.9, max), then name "
                        "the slowest calls' syscalls, faults and trims")
    p.add_argument("--counter-method", choices=("auto",) + _native.METHODS, default="auto")
    p.add_argument("--timeout", type=seconds_arg, default=300, help="seconds before the cell is failed (300)")
    p.add_argument("--json", action="store_true", help="print the record as one JSON line")
    p.add_argument("--out", type=records_out, help="also append the record to this JSON Lines file")


def latency_rows(rec: dict) -> list[tuple[str, str]]:
    """--latency: each call kind's percentiles, and what the slow calls' tail is made of."""
    from ..report.latency import causes_words
    from ..units import human_ns

    if rec.get("latency_error"):
        return [("latency", f"FAILED: {rec['latency_error']}")]
    if not isinstance(rec.get("latency"), dict):
        return []
    rows = [("latency", f"{rec['latency_clock']}; a reading costs {rec['latency_clock_overhead_ns']:.0f} ns, "
                        "included in every figure")]
    for kind, h in rec["latency"].items():
        rows.append((f"  {kind}", f"{h['count']:>8} calls  {percentiles_text(h)}"))
    causes, att = rec.get("latency_causes"), rec["latency_attribution"]
    if causes:
        rows.append(("slow calls", f"top 64 and all at or above p99.9 ({human_ns(rec['latency_threshold_ns'])}); "
                     + causes_words(causes, rec["env"].get("hardware_counters"))))
        if causes["outside_calls"]:
            for kind, w in (rec.get("latency_without_outside") or {}).items():
                if w["removed"]:
                    rows.append((f"  {kind} own", f"without the {w['removed']} slowed from outside: p99 "
                                                  f"{human_ns(w['p99_ns'])}, p99.9 {human_ns(w['p999_ns'])}, "
                                                  f"max {human_ns(w['max_ns'])}"))
    else:
        rows.append(("slow calls", f"not named: {att['why']}"))
    if (att.get("off_cpu") or {}).get("why"):
        rows.append(("", f"preemption not seen: {att['off_cpu']['why']}"))
    return rows


def print_record(rec: dict) -> None:
    """A short aligned table of one record."""
    from ..counters import SYSCALLS
    from ..units import human_bytes

    size = (os.path.basename(rec["trace"]) if rec.get("trace") else human_bytes(rec["size_bytes"])
            if rec.get("size_bytes") is not None else f"{human_bytes(rec['size_lo'])}..{human_bytes(rec['size_hi'])}")
    settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "defaults"
    live = f", {rec['live']} live" if rec["pattern"] not in ("churn", "realloc-grow") else ""
    rows = [("allocator", f"{rec['allocator']} [{settings}]"),
            ("workload", f"{rec['pattern']} {size} x {rec['ops']} ops, {rec['threads']} thread(s)"
                         f"{live}, touch={'yes' if rec['touch'] else 'no'}")]
    if rec["status"] != "ok":
        rows.append(("status", f"{rec['status'].upper()}: {rec['error']}"))
    else:
        ns = rec["ns_per_op"]
        rows.append(("ns/op", f"{ns['median']:.1f} median  ({ns['min']:.1f}..{ns['max']:.1f}, "
                              f"{rec['repeats']} repeats"
                              + (f" x {rec['processes']} processes" if rec.get("processes", 1) > 1 else "") + ")"))
        for name in SYSCALLS:
            count = rec["syscalls"][name]
            per = rec["syscalls_per_op"][name]
            rows.append((name, "not measured" if count is None else f"{count:>8}  ({per:.4f}/op)"))
        rows.append(("faults", f"{rec['minor_faults']} minor, {rec['major_faults']} major "
                               f"({rec['faults_per_op']:.2f}/op)"))
        rows.append(("peak RSS", human_bytes(rec["peak_rss_bytes"])))
        if rec.get("live_at_end_bytes") is not None:
            rows.append(("at the end", f"{human_bytes(rec['live_at_end_bytes'])} still held by the program, "
                                       f"anonymous RSS growth {human_bytes(rec['rss_at_end_bytes'])}"))
        rows.append(("retained", f"{human_bytes(rec['retained_after_free_bytes'])} anonymous after free"))
        frag = rec["fragmentation_peak"]
        res = rec.get("fragmentation_resolution")
        rows.append(("fragmentation", "-" if frag is None else f"{frag:.3f} at peak"
                     + (f" (±{res:.3f})" if res is not None else "")))
        mf = rec["mmapped_fraction"]
        rows.append(("mmapped", "-" if mf is None else f"{mf:.1%} of blocks"))
        note = f" ({rec['counter_note']})" if rec.get("counter_note") else ""
        rows.append(("counters", rec["counter_method"] + note))
        rows += latency_rows(rec)
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def run(args) -> int:
    from .. import runner

    try:
        touch = {"all": True, "first": "first", "none": False}["none" if args.no_touch else args.touch]
        if args.pattern == "trace" and args.size is None and args.size_lo is None:
            args.size = 0  # a trace brings its own sizes
        spec = runner.make_spec(
            allocator=args.allocator, pattern=args.pattern, size=args.size, size_lo=args.size_lo,
            size_hi=args.size_hi, ops=args.ops, threads=args.threads, live=args.live, touch=touch, seed=args.seed,
            repeats=args.repeats, warmup=args.warmup, settings=settings_given(args),
            counter_method=args.counter_method, trace=args.trace, processes=args.processes,
            replay_threads=args.replay_threads, replay_window=args.replay_window, latency=args.latency)
        runner.cell_binary()  # missing: say so now, not as a failed cell
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    rec = runner.run_cell(spec, timeout=args.timeout)
    if args.out:
        from ..results import append_record
        append_record(args.out, rec)
    if args.json:
        print(json.dumps(rec))
    else:
        print_record(rec)
    return 0 if rec["status"] == "ok" else 1
