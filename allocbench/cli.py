"""The allocbench command line: argparse subcommands, one-line errors, exit 2 on bad input."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__, _native
from .units import GIB, KIB, MIB, human_bytes


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(Exception):
    """Bad input found after parsing: printed on one line, exit 2."""


UNITS = {"": 1, "B": 1, "K": KIB, "KIB": KIB, "M": MIB, "MIB": MIB, "G": GIB, "GIB": GIB}


def size_arg(text: str) -> int:
    """Bytes from "135168", "128K", "128KiB", "1M", "1MiB"."""
    t = text.strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits):]
    if not digits.isdigit() or unit not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 135168, 128K, 1MiB)")
    return int(digits) * UNITS[unit]


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def print_record(rec: dict) -> None:
    """A short aligned table of one record."""
    from .counters import SYSCALLS

    size = (os.path.basename(rec["trace"]) if rec.get("trace") else human_bytes(rec["size_bytes"])
            if rec.get("size_bytes") is not None else f"{human_bytes(rec['size_lo'])}..{human_bytes(rec['size_hi'])}")
    settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "default (dynamic)"
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
        rows.append(("retained", f"{human_bytes(rec['retained_after_free_bytes'])} after free"))
        frag = rec["fragmentation_peak"]
        rows.append(("fragmentation", "-" if frag is None else f"{frag:.3f} at peak"))
        mf = rec["mmapped_fraction"]
        rows.append(("mmapped", "-" if mf is None else f"{mf:.1%} of blocks"))
        note = f" ({rec['counter_note']})" if rec.get("counter_note") else ""
        rows.append(("counters", rec["counter_method"] + note))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def cmd_run(args) -> int:
    from . import runner

    from .backends import ALL_SETTINGS

    settings = {k: getattr(args, k) for k in ALL_SETTINGS if getattr(args, k) is not None}
    try:
        touch = {"all": True, "first": "first", "none": False}["none" if args.no_touch else args.touch]
        if args.pattern == "trace" and args.size is None and args.size_lo is None:
            args.size = 0  # a trace brings its own sizes
        spec = runner.make_spec(
            allocator=args.allocator, pattern=args.pattern, size=args.size,
            size_lo=args.size_lo, size_hi=args.size_hi, ops=args.ops, threads=args.threads,
            live=args.live, touch=touch, seed=args.seed, repeats=args.repeats,
            warmup=args.warmup, settings=settings, counter_method=args.counter_method, trace=args.trace,
            processes=args.processes)
        rec = runner.run_cell(spec, timeout=args.timeout)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if args.out:
        from .results import append_record
        append_record(args.out, rec)
    if args.json:
        print(json.dumps(rec))
    else:
        print_record(rec)
    return 0 if rec["status"] == "ok" else 1


def cmd_sweep(args) -> int:
    from . import sweep
    from .results import ResultsError

    try:
        grid = sweep.load_grid(args.preset, args.config)
        specs = sweep.expand(grid, allocators=args.allocators, patterns=args.patterns)
        sweep.runner.cell_binary()  # fail now, not after the first cell
    except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
        raise UsageError(str(e)) from None
    if not specs:
        raise UsageError("the grid selects no cells")
    print(f"sweep: {len(specs)} cells -> {args.out}", file=sys.stderr)
    try:
        stats = sweep.run_sweep(specs, args.out, timeout=args.timeout)
    except ResultsError as e:
        raise UsageError(f"cannot resume: {e}") from None
    except KeyboardInterrupt:
        print(f"allocbench: interrupted; measured cells are in {args.out}, rerun to resume",
              file=sys.stderr)
        return 130
    print(f"sweep: {stats['ok']} measured, {stats['failed']} failed, {stats['skipped']} skipped, "
          f"{stats['done_before']} already in {args.out} ({stats['seconds']:.0f} s)", file=sys.stderr)
    return 0


def _load_results(path: str) -> list[dict]:
    from .results import ResultsError, latest_per_cell, load_records

    try:
        return latest_per_cell(load_records(path))
    except ResultsError as e:
        raise UsageError(str(e)) from None


def cmd_exec(args) -> int:
    from . import programs
    from .backends import ALL_SETTINGS

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    settings = {k: getattr(args, k) for k in ALL_SETTINGS + tuple(programs.EXTRA_TUNABLES)
                if getattr(args, k, None) is not None}
    try:
        if args.grid:
            if settings or args.allocator != "glibc":
                raise ValueError("--grid chooses the allocators and settings; drop --allocator and setting flags")
            grid = programs.load_grid(args.grid)
        else:
            grid = [{"allocator": args.allocator, "settings": settings}]
        recs = programs.run_grid(command, grid, args.repeats, args.out, hz=args.hz, timeout=args.timeout,
                                 explain=args.explain_threshold)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    for rec in recs:
        if args.json:
            print(json.dumps(rec))
            continue
        settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "defaults"
        if rec["status"] != "ok":
            print(f"{rec['allocator']} [{settings}] repeat {rec['repeat'] + 1}: {rec['status'].upper()}: {rec['error']}")
            continue
        sc = rec["syscalls"] or {}
        loader = rec["loader"]["syscalls"] or {}
        print(f"{rec['allocator']} [{settings}] repeat {rec['repeat'] + 1}: {rec['wall_ns'] / 1e9:.3f} s, "
              + ", ".join(f"{k} {v}" for k, v in sc.items() if v) + f" (loader alone: "
              + (", ".join(f"{k} {v}" for k, v in loader.items() if v) or "-") + f"), {rec['minor_faults']} minor "
              f"faults, peak RSS {human_bytes(rec['peak_rss_bytes'])}, final {human_bytes(rec['final_rss_bytes'])}")
        for rise in (rec.get("explain") or {}).get("rises", []):
            print(f"  threshold rose {rise['old_threshold']} -> {rise['new_threshold']} at {rise['t_ns'] / 1e6:.1f} ms, "
                  f"freed at: {' <- '.join(f.split('(')[-1].split(')')[0] or f for f in rise['backtrace'][:4])}")
        if rec.get("explain"):
            e = rec["explain"]
            print(f"  {e.get('moved_blocks', 0)} later blocks ({human_bytes(e.get('moved_bytes', 0))}) went to the "
                  "heap because of the rises")
    return 0 if all(r["status"] in ("ok", "skipped") for r in recs) else 1


def cmd_record(args) -> int:
    from . import traces

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    try:
        files = traces.record(command, args.out)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    for f in files:
        i = traces.info(f)
        print(f"{f}: {i['events']:,} events, peak live {human_bytes(i['peak_live_bytes'])}")
    return 0


def cmd_trace_info(args) -> int:
    from . import traces

    try:
        i = traces.info(args.file)
    except traces.TraceError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(i) if args.json else "\n".join(traces.summary_lines(i)))
    return 0


def cmd_compare(args) -> int:
    from .compare import compare

    print("\n".join(compare(_load_results(args.a), _load_results(args.b))))
    return 0


def _load_probes_and_calibration(args):
    probes = _load_json_option(args.probes, "probes")
    if isinstance(probes, dict) and "probe" in probes:  # one probe's output
        probes = {probes["probe"]: probes}
    calibration = _load_json_option(args.calibration, "calibration")
    if calibration is not None and not isinstance((calibration or {}).get("units_ns"), dict):
        raise UsageError(f"calibration file {args.calibration}: no units_ns (write it with allocbench calibrate)")
    return probes, calibration


def cmd_plot(args) -> int:
    from .plots import plot_everything

    recs = _load_results(args.results)
    probes, calibration = _load_probes_and_calibration(args)
    made = plot_everything(recs, args.out, probes=probes, calibration=calibration)
    if not made:
        raise UsageError(f"{args.results}: no records of a kind the figures use (churn, batch)")
    for name, _ in made:
        print(os.path.join(args.out, name))
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    recs = _load_results(args.results)
    probes, calibration = _load_probes_and_calibration(args)
    programs = _load_results(args.programs) if args.programs else None
    replays = _load_results(args.replays) if args.replays else None
    toy_speed = tuple(_load_results(f) for f in args.toy_speed) if args.toy_speed else None
    write_report(recs, args.out, args.results, probes=probes, calibration=calibration, programs=programs,
                 replays=replays, toy_speed=toy_speed)
    print(args.out)
    return 0


def cmd_probe(args) -> int:
    from . import probes

    names = probes.PROBES if args.name == "all" else (args.name,)
    if args.name == "all" and (args.allocator != "glibc" or args.mmap_threshold is not None):
        raise UsageError("probe all runs the glibc probes with their defaults; name one probe for options")
    results = {}
    try:
        for name in names:
            work_dir = os.path.dirname(os.path.abspath(args.out)) if args.out else "results"
            results[name] = probes.run_probe(name, args.allocator, args.mmap_threshold, work_dir=work_dir)
            if not args.json:
                print("\n".join(([f"== probe {name}"] if len(names) > 1 else []) + results[name]["summary"]),
                      flush=True)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    except probes.ProbeError as e:
        print(f"allocbench: probe failed: {e}", file=sys.stderr)
        return 1
    out = results if args.name == "all" else results[args.name]
    if args.out:
        from .results import write_json_atomically
        write_json_atomically(args.out, out)
    if args.json:
        print(json.dumps(out))
    return 0


def cmd_calibrate(args) -> int:
    from . import costmodel

    try:
        cal = costmodel.calibrate(args.runs)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    if args.out:
        from .results import write_json_atomically
        write_json_atomically(args.out, cal)
    if args.json:
        print(json.dumps(cal))
    else:
        for key, value in cal["units_ns"].items():
            if isinstance(value, dict):
                value = ", ".join(f"{k}: {v:,.1f}" for k, v in value.items())
                print(f"{key:<18} {value} ns")
            else:
                print(f"{key:<18} {value:>10.1f} ns")
        print(f"(median of {cal['runs']} fresh processes)")
    return 0


def _load_json_option(path: str | None, what: str):
    if not path:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"{what} file {path}: {e}") from None


def cmd_info(args) -> int:
    from . import counters, machine, toy

    info = machine.describe()
    info["allocbench"] = __version__
    methods = counters.probe_methods()
    info["counter_methods"] = {name: ("always (counts no syscalls)" if name == "none" else
                                      "available" if why is None else f"unavailable: {why}")
                               for name, why in methods.items()}
    info["counter_method_default"] = counters.chosen_method()[0]  # what the cells will use
    info["fault_counter"] = "getrusage(RUSAGE_SELF) deltas"
    info["toy_library"] = toy.library_path()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key:<{width}}")
            for k, v in value.items():
                print(f"  {k:<{width - 2}}  {v}")
        else:
            print(f"{key:<{width}}  {value}")
    return 0


def add_setting_flags(parser) -> None:
    """--mmap-threshold, --toy-policy, ...: one flag per row of every backend's settings table."""
    from .backends import BACKENDS

    seen = set()
    for backend in BACKENDS.values():
        for s in backend.settings:
            if s.name in seen:
                continue
            seen.add(s.name)
            flag = "--" + s.name.replace("_", "-")
            if s.choices is not None:
                parser.add_argument(flag, choices=s.choices, help=s.help)
            else:
                parser.add_argument(flag, type=size_arg if s.in_bytes else count_arg, help=s.help)


def build_parser() -> Parser:
    p = Parser(prog="allocbench", description="Measure glibc malloc's brk and mmap paths.")
    p.add_argument("--version", action="version", version=f"allocbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    info = sub.add_parser("info", help="machine, glibc and counter methods available here")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)

    from .backends import BACKENDS
    from .runner import PATTERNS
    defaults = _native.CELL_DEFAULTS
    run = sub.add_parser("run", help="measure one cell in a fresh process")
    run.add_argument("--allocator", choices=list(BACKENDS), default="glibc")
    run.add_argument("--pattern", choices=PATTERNS, default="churn",
                     help="; ".join(f"{k}: {v}" for k, v in _native.PATTERN_DOCS.items()))
    run.add_argument("--size", type=size_arg, help="block size (135168, 128K, 1MiB)")
    run.add_argument("--size-lo", type=size_arg, help="band low end (realloc-grow: the step)")
    run.add_argument("--size-hi", type=size_arg, help="band high end (realloc-grow: the target)")
    run.add_argument("--ops", type=count_arg, default=defaults["ops"],
                     help=f"allocations per thread ({defaults['ops']})")
    for name, what in (("repeats", "measured repeats"), ("warmup", "unmeasured repeats first"),
                       ("threads", "worker threads"), ("live", "live blocks K for batch/windows/fragment"),
                       ("seed", "the workload's seed")):
        run.add_argument(f"--{name}", type=count_arg, default=defaults[name], help=f"{what} ({defaults[name]})")
    run.add_argument("--processes", type=count_arg, default=1,
                     help="fresh processes that measure the cell, their repeats pooled (1); "
                          "more smooths out one process's memory layout on a noisy machine")
    run.add_argument("--no-touch", action="store_true", help="do not write the blocks' pages (--touch none)")
    run.add_argument("--touch", choices=("all", "first", "none"), default="all",
                     help="write every page of each block (all), its first page, or nothing")
    run.add_argument("--trace", help="pattern trace: the trace file to replay (from allocbench record)")
    add_setting_flags(run)
    run.add_argument("--counter-method", choices=("auto",) + _native.METHODS, default="auto")
    run.add_argument("--timeout", type=seconds_arg, default=300, help="seconds before the cell is failed (300)")
    run.add_argument("--json", action="store_true", help="print the record as one JSON line")
    run.add_argument("--out", help="also append the record to this JSON Lines file")
    run.set_defaults(func=cmd_run)

    from .sweep import PRESETS
    sw = sub.add_parser("sweep", help="run a grid of cells into a JSON Lines file (resumable)")
    sw.add_argument("--preset", choices=list(PRESETS), default="quick")
    sw.add_argument("--config", help="a JSON grid file instead of a preset (same shape as the presets)")
    sw.add_argument("--allocators", nargs="+", choices=list(BACKENDS), help="only these allocators")
    sw.add_argument("--patterns", nargs="+", choices=PATTERNS, help="only these patterns")
    sw.add_argument("--out", required=True, help="results file (JSON Lines); appended to and resumed")
    sw.add_argument("--timeout", type=seconds_arg, default=300, help="seconds per cell (300)")
    sw.set_defaults(func=cmd_sweep)

    from .probes import PROBES
    pr = sub.add_parser("probe", help="what glibc really does (boundary, dynamic, trim, arenas) and the mmap "
                        "claims (read-vs-mmap, lazy, unmappable, shared, private, shm)")
    pr.add_argument("name", choices=PROBES + ("all",))
    pr.add_argument("--mmap-threshold", type=size_arg, help="boundary: fix M_MMAP_THRESHOLD first")
    pr.add_argument("--allocator", choices=["glibc", "toy"], default="glibc",
                    help="boundary and dynamic also run on the toy")
    pr.add_argument("--json", action="store_true", help="print JSON instead of the summary")
    pr.add_argument("--out", help="also write the JSON to this file (the report reads it)")
    pr.set_defaults(func=cmd_probe)

    ca = sub.add_parser("calibrate", help="this host's unit costs (syscalls, faults, touches) for the cost model")
    ca.add_argument("--runs", type=count_arg, default=5, help="fresh processes to take the median of (5)")
    ca.add_argument("--json", action="store_true")
    ca.add_argument("--out", help="also write the JSON to this file (the report reads it)")
    ca.set_defaults(func=cmd_calibrate)

    pl = sub.add_parser("plot", help="figures (PNG) from a results file")
    pl.add_argument("results", help="a JSON Lines results file")
    pl.add_argument("--out", default="plots", help="folder for the figures (plots/)")
    pl.add_argument("--probes", help="JSON from `allocbench probe all --out FILE`: the probes' figures too")
    pl.add_argument("--calibration", help="JSON from `allocbench calibrate --out FILE`: the cost-model figure too")
    pl.set_defaults(func=cmd_plot)

    ex = sub.add_parser("exec", help="run an unmodified program under any allocator and glibc setting")
    ex.add_argument("--allocator", choices=list(BACKENDS), default="glibc")
    add_setting_flags(ex)
    ex.add_argument("--tcache-count", type=count_arg, help="glibc tunable glibc.malloc.tcache_count")
    ex.add_argument("--hugetlb", type=count_arg, help="glibc tunable glibc.malloc.hugetlb (0, 1, 2)")
    ex.add_argument("--grid", help="quick, default, or a JSON file: [{\"allocator\": ..., \"settings\": {...}}, ...]")
    ex.add_argument("--repeats", type=count_arg, default=3, help="runs per setting, each a fresh process (3)")
    ex.add_argument("--hz", type=count_arg, default=100, help="RSS samples per second (100)")
    ex.add_argument("--timeout", type=seconds_arg, default=600, help="seconds per run before it is killed (600)")
    ex.add_argument("--explain-threshold", action="store_true",
                    help="log who raised glibc's dynamic mmap threshold, and what it moved to the heap")
    ex.add_argument("--out", help="append the records to this JSON Lines file (resumed)")
    ex.add_argument("--json", action="store_true", help="print each record as one JSON line")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    ex.set_defaults(func=cmd_exec)

    rc = sub.add_parser("record", help="record a program's allocation calls into a trace (LD_PRELOAD)")
    rc.add_argument("--out", required=True, help="the trace file (a forked child's goes to OUT.PID)")
    rc.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    rc.set_defaults(func=cmd_record)

    tr = sub.add_parser("trace", help="traces: info")
    trs = tr.add_subparsers(dest="trace_command", required=True, parser_class=Parser)
    ti = trs.add_parser("info", help="what a trace holds: operations, sizes, peak live bytes, lifetimes, threads")
    ti.add_argument("file")
    ti.add_argument("--json", action="store_true")
    ti.set_defaults(func=cmd_trace_info)

    cm = sub.add_parser("compare", help="two results files side by side: ratios of time, syscalls and RSS")
    cm.add_argument("a")
    cm.add_argument("b")
    cm.set_defaults(func=cmd_compare)

    rp = sub.add_parser("report", help="REPORT.md with findings and figures from a results file")
    rp.add_argument("results", help="a JSON Lines results file")
    rp.add_argument("--out", default="plots/REPORT.md", help="report path; figures go beside it")
    rp.add_argument("--probes", help="JSON from `allocbench probe all --out FILE`, for the probes' section")
    rp.add_argument("--calibration", help="JSON from `allocbench calibrate --out FILE`, for the cost model")
    rp.add_argument("--programs", help="JSON Lines from `allocbench exec --out FILE`, for the real programs")
    rp.add_argument("--replays", help="JSON Lines of trace cells (sweep of pattern trace), for the replayed programs")
    rp.add_argument("--toy-speed", nargs=2, metavar=("BEFORE", "AFTER"),
                    help="two runs of benchmarks/toy_speed.json (make toy-speed): the toy against glibc, before and after")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a results or plots path that cannot be written, a full disk
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("allocbench: interrupted", file=sys.stderr)
        return 130
