"""allocbench inspect PID: a running process's glibc heap, read from outside."""
from __future__ import annotations

import json
import sys
import time

from .common import UsageError, count_arg, records_out, seconds_arg

NAME, HELP = "inspect", "a running process's glibc heap, read from outside: arenas, free memory, thresholds, trim"
FORMATS = ("text", "json", "openmetrics")


def pid_arg(text: str) -> int:
    import argparse

    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id")
    return int(text)


def add_arguments(p) -> None:
    p.add_argument("pid", type=pid_arg, nargs="?", help="the process (omit with --all)")
    p.add_argument("--all", action="store_true",
                   help="every process on the host whose malloc is glibc's, read without stopping, sorted by free "
                        "resident bytes (those that cannot be read are listed with the reason)")
    p.add_argument("--no-stop", action="store_true",
                   help="read while it runs: two reads, and only what both agree on (default: every thread stopped "
                        "for the snapshot, a few milliseconds)")
    p.add_argument("--json", action="store_true", help="one JSON object (same as --format json)")
    p.add_argument("--format", choices=FORMATS,
                   help="text (a table of arenas and the findings; the default), json, or openmetrics (for "
                        "node_exporter's textfile collector: pid and comm labels, bytes)")
    p.add_argument("--watch", type=seconds_arg, metavar="SECONDS", help="a snapshot every SECONDS, one JSON line "
                                                                        "each to --out")
    p.add_argument("--count", type=count_arg, help="--watch: this many snapshots (default: until interrupted)")
    p.add_argument("--trim", action="store_true",
                   help="call malloc_trim(0) inside the process (every thread stopped, as a debugger's inferior "
                        "call; refused while a malloc lock is held or a thread is inside malloc) and report the RSS "
                        "it returned beside the prediction; the only option that changes the process")
    p.add_argument("--out", type=records_out, help="also append the snapshot (JSON Lines) to this file")


def arenas_table(s: dict) -> list[str]:
    from ..units import human_bytes as hb

    rows = [f"{'arena':>5} {'address':>14} {'thr':>4} {'system':>10} {'in use':>10} {'free':>10} {'resident':>10} "
            f"{'trim gives':>10} {'top':>9} {'largest':>9} {'heaps':>5}"]
    for a in s["arenas"]:
        free = sum(a["free_bytes"].values())
        val = lambda v: "?" if v is None else hb(v)
        rows.append(f"{a['index']:>5} {a['address']:>#14x} {a['attached_threads']:>4} {val(a['system_bytes']):>10} "
                    f"{val(a['in_use_bytes']):>10} {hb(free):>10} {val(a['free_resident_bytes']):>10} "
                    f"{val(a['trimmable_bytes']):>10} {val(a['top_bytes']):>9} {val(a['largest_free_bytes']):>9} "
                    f"{len(a['heaps']) if not a['main'] else 'brk':>5}")
    return rows


def threshold_state(mp: dict) -> str:
    if mp["threshold_risen"]:
        return "risen from 128 KiB"
    return "fixed by a setting" if mp["no_dyn_threshold"] else "the default, still dynamic"


def text(s: dict) -> list[str]:
    from ..units import human_bytes as hb

    mp, t, r = s["mp"], s["totals"], s["rss"]
    stopped = f"stopped {s['stopped_ns'] / 1e6:.1f} ms" if s["stopped_ns"] is not None else "read twice, not stopped"
    lines = [f"pid {s['pid']} ({s['comm']}): glibc {s['glibc']}, layout by {s['symbols']}, {stopped}",
             f"RSS {hb(r['total_bytes'])}: brk heap {hb(r['brk_heap_bytes'])}, thread-arena heaps "
             f"{hb(r['arena_heap_bytes'])}, mmapped chunks {hb(r['mmapped_chunk_bytes'])}, other anonymous "
             f"{hb(r['other_anon_bytes'])}, files {hb(r['file_bytes'])}",
             f"mmap threshold {mp['mmap_threshold']} ({threshold_state(mp)}), "
             f"trim threshold {mp['trim_threshold']}, {mp['n_mmaps']} mmapped chunks ({hb(mp['mmapped_mem'])})",
             ""] + arenas_table(s) + [
             "", f"free {hb(t['free_bytes'])} of {hb(t['system_bytes'])}; {hb(t['free_resident_bytes'])} of it in RAM; "
             f"malloc_trim(0) would return {hb(t['trimmable_bytes'])} ({s['tcache']})"]
    if s.get("unsettled"):
        lines.append(f"changed between the two reads, not shown: {', '.join(s['unsettled'][:8])}")
    lines += [f"- {f}" for f in s["findings"]] or ["- nothing stands out"]
    return lines


def openmetrics(snaps: list[dict]) -> str:
    """OpenMetrics text: # HELP and # TYPE once per metric, base units, pid and comm labels."""
    metrics = {  # name: (help, value of a snapshot)
        "allocbench_malloc_system_bytes": ("bytes malloc holds from the system (mallinfo2 arena)",
                                           lambda s: s["mallinfo2"]["arena"]),
        "allocbench_malloc_in_use_bytes": ("bytes malloc has handed out (mallinfo2 uordblks)",
                                           lambda s: s["mallinfo2"]["uordblks"]),
        "allocbench_malloc_free_bytes": ("bytes malloc holds free (mallinfo2 fordblks)",
                                         lambda s: s["mallinfo2"]["fordblks"]),
        "allocbench_malloc_free_resident_bytes": ("free bytes in RAM", lambda s: s["totals"]["free_resident_bytes"]),
        "allocbench_malloc_trimmable_bytes": ("what malloc_trim(0) would return now",
                                              lambda s: s["totals"]["trimmable_bytes"]),
        "allocbench_malloc_mmapped_bytes": ("bytes in mmapped chunks", lambda s: s["totals"]["mmapped_bytes"]),
        "allocbench_malloc_mmap_threshold_bytes": ("the live mmap threshold", lambda s: s["mp"]["mmap_threshold"]),
        "allocbench_malloc_arenas": ("arenas in the ring", lambda s: len(s["arenas"])),
        "allocbench_process_rss_bytes": ("the process's resident set (smaps)", lambda s: s["rss"]["total_bytes"]),
    }
    out = []
    for name, (what, get) in metrics.items():
        out += [f"# HELP {name} {what}", f"# TYPE {name} gauge"]
        for s in snaps:
            value = get(s)
            if value is not None:
                comm = s["comm"].replace("\\", "\\\\").replace('"', '\\"')
                out.append(f'{name}{{pid="{s["pid"]}",comm="{comm}"}} {value}')
    return "\n".join(out + ["# EOF"]) + "\n"


def inspect_all() -> tuple[list[dict], list[tuple[int, str, str]]]:
    """Every process whose malloc is glibc's, read without stopping; and those that could not be read."""
    import os

    from elftools.common.exceptions import ELFError

    from ..glibc_heap import snapshot
    from ..remote import TargetError

    snaps, skipped = [], []
    for entry in sorted(os.listdir("/proc"), key=lambda e: int(e) if e.isdigit() else 0):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            snaps.append(snapshot(int(entry), stop=False))
        except (TargetError, OSError, ELFError) as e:  # each process that cannot be read is listed, with why
            comm = _comm(entry)
            if comm is not None:
                why = str(e).replace(f"process {entry} ({comm}) ", "").replace(f"process {entry}: ", "")
                skipped.append((int(entry), comm, why))
    snaps.sort(key=lambda s: -(s["totals"]["free_resident_bytes"] or 0))
    return snaps, skipped


def _comm(pid: str) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def run_trim(args, fmt: str) -> int:
    from ..glibc_heap import TrimFailed, as_record, trim
    from ..remote import TargetError
    from ..results import append_record
    from ..units import human_bytes as hb

    try:
        snap = trim(args.pid)
    except TrimFailed as e:
        print(f"allocbench: inspect --trim failed: {e}", file=sys.stderr)
        return 1
    except TargetError as e:  # refused, or a bad target: nothing was changed
        raise UsageError(str(e)) from None
    if args.out:
        append_record(args.out, as_record(snap))
    t = snap["trim"]
    if fmt == "json":
        print(json.dumps(snap))
        return 0
    print(f"pid {snap['pid']} ({snap['comm']}): malloc_trim(0) returned {hb(t['returned_bytes'])} of RSS "
          f"({hb(t['rss_before_bytes'])} -> {hb(t['rss_after_bytes'])}) in {t['pause_ns'] / 1e6:.1f} ms on thread "
          f"{t['thread']}; predicted {hb(t['predicted_bytes'])}; the process was stopped "
          f"{snap['stopped_ns'] / 1e6:.1f} ms in all")
    return 0


def run(args) -> int:
    from ..glibc_heap import as_record, snapshot
    from ..remote import TargetError
    from ..results import append_record

    if args.json and args.format not in (None, "json"):
        raise UsageError(f"--json and --format {args.format} ask for two formats: give one")
    fmt = "json" if args.json else args.format or "text"
    if args.count == 0:
        raise UsageError("--count must be at least 1 (without it, --watch runs until interrupted)")
    if args.all == (args.pid is not None):
        raise UsageError("give a PID, or --all")
    if args.count is not None and not args.watch:
        raise UsageError("--count goes with --watch")
    if args.watch and (args.all or not args.out):
        raise UsageError("--watch inspects one PID and appends each snapshot to --out")
    if args.trim and (args.all or args.watch or args.no_stop):
        raise UsageError("--trim goes with one PID, stopped, once")
    if args.trim:
        return run_trim(args, fmt)
    if args.all:
        from ..units import human_bytes as hb

        snaps, skipped = inspect_all()
        if fmt == "openmetrics":
            sys.stdout.write(openmetrics(snaps))
        elif fmt == "json":
            print(json.dumps({"processes": snaps, "unreadable": [{"pid": p, "comm": c, "why": w}
                                                                 for p, c, w in skipped]}))
        else:
            print(f"{'pid':>8} {'comm':<16} {'RSS':>10} {'malloc free':>12} {'in RAM':>10} {'trim gives':>10} "
                  f"{'arenas':>6} threshold")
            for s in snaps:
                t = s["totals"]
                free_ram = t["free_resident_bytes"]
                print(f"{s['pid']:>8} {s['comm'][:16]:<16} {hb(s['rss']['total_bytes']):>10} "
                      f"{hb(t['free_bytes']) if t['free_bytes'] is not None else '?':>12} "
                      f"{hb(free_ram) if free_ram is not None else '?':>10} "
                      f"{hb(t['trimmable_bytes']) if t['trimmable_bytes'] is not None else '?':>10} "
                      f"{len(s['arenas']):>6} {s['mp']['mmap_threshold']}")
            kernel = [s for s in skipped if "kernel thread" in s[2]]
            for pid, comm, why in skipped:
                if "kernel thread" not in why:
                    print(f"{pid:>8} {comm[:16]:<16} not read: {why}")
            if kernel:
                print(f"({len(kernel)} kernel threads: no malloc to read)")
        return 0
    count = 0
    while True:
        try:
            snap = snapshot(args.pid, stop=not args.no_stop)
        except TargetError as e:
            if count:  # a watched process that ended: what was written stays
                print(f"allocbench: inspect: {e} (after {count} snapshot(s))", file=sys.stderr)
                return 0
            raise UsageError(str(e)) from None
        snap["t"] = time.time()
        count += 1
        if args.out:
            append_record(args.out, as_record(snap))
        if not args.watch:
            break
        if args.count and count >= args.count:
            return 0
        time.sleep(args.watch)
    if fmt == "json":
        print(json.dumps(snap))
    elif fmt == "openmetrics":
        sys.stdout.write(openmetrics([snap]))
    else:
        print("\n".join(text(snap)))
    return 0
