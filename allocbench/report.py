"""REPORT.md from a results file: findings computed from the records, then the figures."""
from __future__ import annotations

import math
import os
import statistics

from .plots import (FRAG_PATTERNS, caption, fig_cost_model, frag_series, is_glibc, plot_all, plot_probes,
                    series, series_label, series_order, size_of, syscalls_per_op, tradeoff_points)
from .records import series_key
from .units import KIB, MIB, size_label


def glibc_at(threshold: int | None) -> tuple:
    """The series key of glibc at a fixed mmap threshold (None: the dynamic default)."""
    return ("glibc", () if threshold is None else (("mmap_threshold", threshold),))


def at_defaults(allocator: str) -> tuple:
    return (allocator, ())


def _find(recs, pattern, key, size):
    for r in recs:
        if (r["status"] == "ok" and r["pattern"] == pattern and r["threads"] == 1
                and r["size_bytes"] == size and series_key(r) == key):
            return r
    return None


def _ns(r):
    return r["ns_per_op"]["median"]


def findings(recs: list[dict]) -> list[str]:
    """Sentences whose every number comes from the records; a finding whose cells
    are missing is left out."""
    out = []
    dyn, fixed = glibc_at(None), glibc_at(128 * KIB)
    for size in (256 * KIB, 1024 * KIB):
        a, b = _find(recs, "churn", fixed, size), _find(recs, "churn", dyn, size)
        if a and b:
            out.append(
                f"At {size_label(size)} churn, a fixed 128 KiB threshold costs {_ns(a) / _ns(b):.0f}x the time "
                f"of glibc's dynamic default ({_ns(a):,.0f} vs {_ns(b):,.0f} ns/op): "
                f"{syscalls_per_op(a):.2f} vs {syscalls_per_op(b):.4f} syscalls/op and "
                f"{a['faults_per_op']:.1f} vs {b['faults_per_op']:.2f} page faults/op.")
    lo, hi = _find(recs, "churn", fixed, 124 * KIB), _find(recs, "churn", fixed, 132 * KIB)
    if lo and hi:
        out.append(
            f"The cliff at a fixed 128 KiB threshold: 124 KiB churn takes {_ns(lo):,.0f} ns/op, "
            f"132 KiB takes {_ns(hi):,.0f} ns/op ({_ns(hi) / _ns(lo):.0f}x), because every 132 KiB block is "
            f"a fresh mmap ({hi['mmapped_fraction']:.0%} of blocks mmapped) whose pages all fault again.")
    rows = sorted((r for r in recs if r["status"] == "ok" and r["pattern"] == "churn" and r["threads"] == 1
                   and series_key(r) == fixed and r["mmapped_fraction"] is not None), key=lambda r: r["size_bytes"])
    first = next((r for r in rows if r["mmapped_fraction"] > 0.5), None)
    if first:
        below = [r for r in rows if r["size_bytes"] < first["size_bytes"]]
        out.append(f"With M_MMAP_THRESHOLD=128 KiB the smallest measured size glibc serves by mmap is "
                   f"{size_label(first['size_bytes'])}"
                   + (f" (the next smaller measured, {size_label(below[-1]['size_bytes'])}, stays on the heap)."
                      if below else "."))
    for size in (256 * KIB,):
        a, b = _find(recs, "batch", dyn, size), _find(recs, "batch", fixed, size)
        if a and b and a["retained_after_free_bytes"] is not None and b["retained_after_free_bytes"] is not None:
            out.append(
                f"After a batch of 64 x {size_label(size)} is freed, the dynamic default keeps "
                f"{a['retained_after_free_bytes'] / 2**20:.1f} MiB resident and the fixed 128 KiB threshold "
                f"{b['retained_after_free_bytes'] / 2**20:.1f} MiB (RSS growth over the cell's start).")
    high, b = _find(recs, "churn", glibc_at(32 * MIB), 256 * KIB), _find(recs, "churn", dyn, 256 * KIB)
    if high and b and high["syscalls"]["brk"] is not None:
        out.append(
            f"Raising M_MMAP_THRESHOLD alone does not make 256 KiB blocks cheap: at 32 MiB, churn takes "
            f"{_ns(high):,.0f} ns/op ({_ns(high) / _ns(b):.0f}x the dynamic default) with "
            f"{high['syscalls_per_op']['brk']:.2f} brk calls and {high['faults_per_op']:.1f} faults per op, "
            "because setting it leaves M_TRIM_THRESHOLD at 128 KiB: every free shrinks the heap and the "
            "next malloc grows it again (the dynamic default raises both thresholds).")
    retained = [r for r in (_find(recs, "batch", n, 1024 * KIB) for n in
                            (dyn, fixed, *(at_defaults(a) for a in ("toy", "jemalloc", "tcmalloc", "mimalloc")))) if r]
    retained = [r for r in retained if r["retained_after_free_bytes"] is not None]
    if len(retained) >= 3:
        out.append(f"After {min(retained[0]['live'], retained[0]['ops'])} x 1 MiB blocks are freed, RSS "
                   "still held: " + ", ".join(f"{series(r)} {r['retained_after_free_bytes'] / 2**20:.1f} MiB"
                                               for r in retained) + ".")
    cands = [r for r in (_find(recs, "churn", n, 132 * KIB) for n in
                         (dyn, fixed, *(at_defaults(a) for a in ("toy", "jemalloc", "tcmalloc", "mimalloc")))) if r]
    if len(cands) >= 3:
        cands.sort(key=_ns)
        out.append("At 132 KiB churn, fastest to slowest: " + ", ".join(
            f"{series(r)} {_ns(r):,.0f} ns/op" for r in cands) + ".")
    failed = [r for r in recs if r["status"] != "ok"]
    if failed:
        reasons = sorted({r["error"] for r in failed})
        out.append(f"{len(failed)} cell(s) failed or were skipped: " + "; ".join(reasons[:5])
                   + (f"; and {len(reasons) - 5} other reasons" if len(reasons) > 5 else "") + ".")
    return out


TABLE_SIZES = (4 * KIB, 64 * KIB, 128 * KIB, 132 * KIB, 256 * KIB, 1024 * KIB, 4096 * KIB)


def _table_series(r) -> bool:
    """glibc's default and the folklore 128 KiB line, and every other allocator."""
    key = series_key(r)
    return key in (glibc_at(None), glibc_at(128 * KIB)) or (not is_glibc(key) and not r["settings"])


def churn_table(recs):
    rows = [r for r in recs if r["status"] == "ok" and r["pattern"] == "churn" and r["threads"] == 1
            and r["size_bytes"] in TABLE_SIZES and _table_series(r)]
    rows.sort(key=lambda r: (r["size_bytes"], series_order(series_key(r))))
    lines = ["| size | allocator | ops | ns/op (median) | min..max | syscalls/op | faults/op |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ns, sc = r["ns_per_op"], syscalls_per_op(r)
        lines.append(f"| {size_label(r['size_bytes'])} | {series(r)} | {r['ops']} | {ns['median']:,.0f} | "
                     f"{ns['min']:,.0f}..{ns['max']:,.0f} | {'n/a' if sc is None else f'{sc:.4f}'} | "
                     f"{r['faults_per_op']:.2f} |")
    return lines


def batch_table(recs):
    rows = [r for r in recs if r["status"] == "ok" and r["pattern"] == "batch" and r["threads"] == 1
            and r["size_bytes"] in TABLE_SIZES and _table_series(r)]
    rows.sort(key=lambda r: (r["size_bytes"], r["live"], series_order(series_key(r))))
    mib = lambda n: "-" if n is None else f"{n / 2**20:.1f}"  # noqa: E731
    lines = ["| blocks | allocator | ns/op | peak RSS MiB | retained after free-all MiB | fragmentation at peak |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        frag = r["fragmentation_peak"]
        lines.append(f"| {min(r['live'], r['ops'])} x {size_label(r['size_bytes'])} | {series(r)} | "
                     f"{r['ns_per_op']['median']:,.0f} | {mib(r['peak_rss_bytes'])} | "
                     f"{mib(r['retained_after_free_bytes'])} | {'-' if frag is None else f'{frag:.3f}'} |")
    return lines


def cost_model_section(recs, calibration, out_dir, cap):
    from .costmodel import TARGET_ERROR, evaluate

    units = calibration["units_ns"]
    rows = evaluate(recs, units)
    cyc = ", ".join(f"{k} p: {v:,.0f}" for k, v in units["map_cycle"].items())
    touch = ", ".join(f"{size_label(int(k))}: {v:.1f}" for k, v in units["touch_page"].items())
    lines = ["## Cost model", "",
             f"Unit costs measured by `allocbench calibrate` (median of {calibration.get('runs')} fresh processes), ns:", "",
             "| unit | ns |", "|---|---:|",
             f"| mmap + munmap pair (a 1-page cycle less its page) | {units['mmap_munmap_pair']:,.0f} |",
             f"| mmap + touch every page + munmap, by pages | {cyc} |",
             f"| brk call | {units['brk_call']:,.0f} |",
             f"| madvise call | {units['madvise_call']:,.0f} |",
             f"| mprotect call | {units['mprotect_call']:,.0f} |",
             f"| touching a resident page, by working set | {touch} |",
             "| glibc malloc + free, untouched, by size | "
             + ", ".join(f"{size_label(int(k))}: {v:.1f}" for k, v in units["malloc_free"].items()) + " |", "",
             "Predicted ns/op = (mmap, munmap, mremap calls x half a pair + brk, madvise, mprotect calls x "
             "their cost + page faults x a page's life (the cycle's slope at the cell's faults per op) + "
             "resident pages touched x a touch at the cell's working set + ops x glibc's malloc+free at the "
             "cell's size) / ops, "
             "with each cell's exact counts.", ""]
    if not rows:
        return lines + ["No glibc or toy churn/batch cells from 4 KiB to 64 MiB in the results.", ""]
    fig_cost_model(rows, os.path.join(out_dir, "cost_model.png"), cap)
    within = [r for r in rows if abs(r["error"]) <= TARGET_ERROR]
    lines += [f"{len(within)} of {len(rows)} modelled cells ({len(within) / len(rows):.0%}) are within "
              f"{TARGET_ERROR:.0%} of the measured median.", "", "![cost model](cost_model.png)", ""]
    slopes = sorted((s["map_cycle"]["256"] - s["map_cycle"]["64"]) / 192 for s in calibration.get("samples", [])
                    if "256" in s.get("map_cycle", {}))
    if len(slopes) > 1:
        lines += [f"How steady is a page fault here? Across the calibration's {len(slopes)} fresh processes the "
                  f"cost of a faulted page's life (64 to 256 page mappings) ranged {slopes[0]:,.0f} to "
                  f"{slopes[-1]:,.0f} ns ({slopes[-1] / slopes[0] - 1:.0%} apart; a likely cause on a VM: whether the host "
                  "already backs a guest page changes what a fault costs), so fault-dominated cells cannot be "
                  "predicted more closely than that spread.", ""]
    heavy = [r for r in rows if r["record"]["faults_per_op"] >= 1 or syscalls_per_op(r["record"]) >= 0.5]
    if heavy:
        ok = [r for r in heavy if abs(r["error"]) <= TARGET_ERROR]
        lines += [f"Cells whose cost is dominated by syscalls or faults (>= 0.5 syscalls/op or >= 1 fault/op): "
                  f"{len(ok)} of {len(heavy)} within {TARGET_ERROR:.0%}.", ""]
    outside = sorted((r for r in rows if abs(r["error"]) > TARGET_ERROR), key=lambda r: -abs(r["error"]))
    if outside:
        lines += ["Outside the target, worst first (the model knows no cache behaviour beyond the touch "
                  "table, uses glibc's floor for the toy too, and knows no kernel work that is not a counted "
                  "syscall or fault):", "",
                  "| cell | measured ns/op | predicted | error | syscalls/op | faults/op |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in outside[:25]:
            rec = r["record"]
            lines.append(f"| {series(rec)} {rec['pattern']} {size_label(rec['size_bytes'])} | {r['measured']:,.0f} | "
                         f"{r['predicted']:,.0f} | {r['error']:+.0%} | {syscalls_per_op(rec):.3f} | "
                         f"{rec['faults_per_op']:.2f} |")
        if len(outside) > 25:
            lines.append(f"| ... and {len(outside) - 25} more | | | | | |")
        lines.append("")
    return lines


def fragmentation_findings(recs: list[dict]) -> list[str]:
    """Findings on memory over time; each number from the records."""
    out = []
    dyn = {size_of(r): r for r in frag_series(recs, "fragment").get(glibc_at(None), [])}
    fixed = {size_of(r): r for r in frag_series(recs, "fragment").get(glibc_at(128 * KIB), [])}
    pinned = []
    for size in sorted(set(dyn) & set(fixed)):
        a, b = dyn[size], fixed[size]
        if a["retained_after_free_bytes"] is None or b["retained_after_free_bytes"] is None:
            continue
        held = a["retained_after_free_bytes"] - b["retained_after_free_bytes"]
        if held > 0.5 * a["live"] * size:  # at least half a round's large blocks
            pinned.append((size, held, b["ns_per_op"]["median"] / a["ns_per_op"]["median"]))
    if pinned:
        held = [h for _, h, _ in pinned]
        cost = [c for _, _, c in pinned]
        out.append(
            f"The dynamic threshold pins memory: in `fragment` (long-lived 64-byte blocks between large "
            f"short-lived ones), from {size_label(pinned[0][0])} to {size_label(pinned[-1][0])} the first free "
            f"of an mmapped block raises the threshold, later large blocks land on the heap between the pins, "
            f"and after free-all the dynamic default still holds {min(held) / MIB:.1f} to {max(held) / MIB:.1f} "
            f"MiB more than a fixed 128 KiB threshold. The fixed threshold pays for it in time: "
            f"{min(cost):.1f}x to {max(cost):.1f}x the dynamic default's ns/op on the same cells.")
    for pattern in FRAG_PATTERNS:
        at = [(k, r) for k, rows in frag_series(recs, pattern).items()
              if (r := next((x for x in rows if size_of(x) == 132 * KIB), None)) and r["fragmentation_mean"] is not None]
        if len(at) >= 3:
            at.sort(key=lambda kr: kr[1]["fragmentation_mean"])
            (lo_k, lo), (hi_k, hi) = at[0], at[-1]
            out.append(f"`{pattern}` at 132 KiB, fragmentation averaged over the run: lowest "
                       f"{series_label(lo_k)} {lo['fragmentation_mean']:.2f}, highest {series_label(hi_k)} "
                       f"{hi['fragmentation_mean']:.2f} (peak {lo['fragmentation_peak']:.2f} and "
                       f"{hi['fragmentation_peak']:.2f}).")
    for pattern in FRAG_PATTERNS:
        pts = tradeoff_points(recs, pattern)
        if len(pts) >= 3:
            front, best = [], float("inf")
            for key, x, y in sorted(pts, key=lambda p: (p[1], p[2])):
                if y < best:
                    best = y
                    front.append(f"{series_label(key)} ({x:,.0f} ns/op, {y:.2f}x live)")
            out.append(f"`{pattern}` time/memory frontier (no point is both faster and leaner): " + "; ".join(front) + ".")
    return out


def programs_section(progs: list[dict], out_dir: str) -> list[str]:
    """Real programs under every setting: a table, an RSS figure and findings per program."""
    import statistics
    from collections import defaultdict

    from .plots import fig_program_rss, program_name

    lines = ["## Real programs", "",
             "From `allocbench exec`: each run an unmodified program in a fresh process, its memory syscalls "
             "counted exactly over the whole process tree; medians over repeats. The loader's own syscalls "
             "(measured once per binary and allocator) are part of every count and shown apart.", ""]
    by_prog = defaultdict(lambda: defaultdict(list))
    failed = [r for r in progs if r["status"] != "ok"]
    for r in progs:
        if r["status"] == "ok":
            by_prog[program_name(r)][series_key(r)].append(r)
    for name, groups in by_prog.items():
        lines += [f"### {name}", "", "| setting | wall s | brk | mmap | munmap | madvise | mprotect | minor faults "
                  "| peak RSS MiB | final RSS MiB | loader mmaps |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        rows = []
        for key in sorted(groups, key=series_order):
            rs = groups[key]
            med = lambda f: statistics.median(f(r) for r in rs)
            sc = lambda k: med(lambda r: r["syscalls"][k]) if all(r["syscalls"] for r in rs) else None
            row = {"key": key, "wall": med(lambda r: r["wall_ns"]) / 1e9, "mmap": sc("mmap"),
                   "peak": med(lambda r: r["peak_rss_bytes"]) / MIB,
                   "final": med(lambda r: r["final_rss_bytes"] or 0) / MIB}
            rows.append(row)
            loader = (rs[0]["loader"]["syscalls"] or {}).get("mmap", "-")
            lines.append(f"| {series_label(key)} | {row['wall']:.2f} | {sc('brk')} | {sc('mmap')} | {sc('munmap')} | "
                         f"{sc('madvise')} | {sc('mprotect')} | {med(lambda r: r['minor_faults']):,.0f} | "
                         f"{row['peak']:.1f} | {row['final']:.1f} | {loader} |")
        lines.append("")
        fig = f"program_{name.replace('.', '_')}_rss.png"
        if fig_program_rss(progs, name, os.path.join(out_dir, fig)):
            lines += [f"![{name} RSS over time]({fig})", ""]
        if len(rows) >= 3:
            fast, slow = min(rows, key=lambda r: r["wall"]), max(rows, key=lambda r: r["wall"])
            lean, fat = min(rows, key=lambda r: r["final"]), max(rows, key=lambda r: r["final"])
            lines.append(f"- Fastest {series_label(fast['key'])} ({fast['wall']:.2f} s), slowest "
                         f"{series_label(slow['key'])} ({slow['wall']:.2f} s); least RSS left at the end "
                         f"{series_label(lean['key'])} ({lean['final']:.1f} MiB), most {series_label(fat['key'])} "
                         f"({fat['final']:.1f} MiB).")
            dyn = next((r for r in rows if r["key"] == glibc_at(None)), None)
            fixed = next((r for r in rows if r["key"] == glibc_at(128 * KIB)), None)
            if dyn and fixed and dyn["mmap"] is not None and fixed["mmap"] is not None:
                lines.append(f"- A fixed 128 KiB threshold: {fixed['mmap']:.0f} mmap calls against {dyn['mmap']:.0f} "
                             f"at the dynamic default, {fixed['wall'] / dyn['wall']:.2f}x the time, final RSS "
                             f"{fixed['final']:.1f} against {dyn['final']:.1f} MiB.")
            lines.append("")
    if failed:
        lines += [f"{len(failed)} run(s) failed or were skipped: "
                  + "; ".join(sorted({r['error'] for r in failed})[:5]) + ".", ""]
    return lines


def replays_section(replays: list[dict]) -> list[str]:
    """Each trace's character (trace info), then how every threshold and allocator
    replays it, and which setting gives the best time and the best memory."""
    from collections import defaultdict

    from .traces import TraceError, info

    lines = ["## Replayed programs", "",
             "Traces recorded with `allocbench record` from the real programs, replayed in a cell "
             "(`allocbench run --pattern trace`) on one thread in their recorded global order, under every "
             "threshold and allocator.", "",
             "| trace | events | threads | peak live MiB | allocations at or above 128 KiB | bytes there MiB |",
             "|---|---:|---:|---:|---:|---:|"]
    by_trace = defaultdict(list)
    for r in replays:
        if r["status"] == "ok" and r.get("trace"):
            by_trace[r["trace"]].append(r)
    for path in by_trace:
        try:
            i = info(path)
        except TraceError:
            continue
        lines.append(f"| {os.path.basename(path)} | {i['events']:,} | {i['threads']} | {i['peak_live_bytes'] / MIB:.1f} | "
                     f"{i['share_at_or_above_128k_boundary']:.2%} | {i['bytes_at_or_above_128k_boundary'] / MIB:.1f} |")
    lines.append("")
    for path, rows in by_trace.items():
        rows.sort(key=lambda r: series_order(series_key(r)))
        lines += [f"### {os.path.basename(path)}", "",
                  "| setting | ns/op | syscalls/op | faults/op | fragmentation at peak | retained after free MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            frag = "-" if r["fragmentation_peak"] is None else f"{r['fragmentation_peak']:.2f}"
            ret = "-" if r["retained_after_free_bytes"] is None else f"{r['retained_after_free_bytes'] / MIB:.1f}"
            sp = syscalls_per_op(r)
            lines.append(f"| {series(r)} | {r['ns_per_op']['median']:,.0f} | {'-' if sp is None else f'{sp:.4f}'} | "
                         f"{r['faults_per_op']:.3f} | {frag} | {ret} |")
        fast = min(rows, key=lambda r: r["ns_per_op"]["median"])
        lean = [r for r in rows if r["retained_after_free_bytes"] is not None]
        lines += ["", f"- Best time: {series(fast)} ({fast['ns_per_op']['median']:,.0f} ns/op)"
                  + (f"; least memory held after the replay: {series(min(lean, key=lambda r: r['retained_after_free_bytes']))} "
                     f"({min(r['retained_after_free_bytes'] for r in lean) / MIB:.1f} MiB)" if lean else "") + ".", ""]
    return lines


def paired_ratios(rec: dict, against: dict) -> list[float] | None:
    """rec's per-process medians over against's, process by process: a sweep
    ran the two cells' processes in turns, so each pair shared the machine's
    mood.  None unless both have the same number (at least 2) of processes."""
    a, b = rec.get("ns_per_op_by_process"), against.get("ns_per_op_by_process")
    if not a or not b or len(a) != len(b) or len(a) < 2:
        return None
    return [x / y for x, y in zip(a, b)]


def ratio_of(rec: dict, against: dict) -> float:
    """rec against `against`: the median of the per-process ratios when the
    processes were paired (robust when a machine's moods split the repeats
    into two clusters, which moves a pooled median by a third), else the
    quotient of the pooled medians."""
    pairs = paired_ratios(rec, against)
    if pairs:
        return statistics.median(pairs)
    return rec["ns_per_op"]["median"] / against["ns_per_op"]["median"]


def sign_test(ratios: list[float], level: float = 0.05) -> str:
    """"slower" or "faster" when that many pairs on one side of 1 would happen
    by chance less often than `level` (one-sided sign test, p = 1/2 per pair),
    else "parity"."""
    n = len(ratios)
    tail = lambda k: sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n
    if tail(sum(r > 1 for r in ratios)) < level:
        return "slower"
    if tail(sum(r < 1 for r in ratios)) < level:
        return "faster"
    return "parity"


def toy_speed_section(before: list[dict], after: list[dict]) -> list[str]:
    """The toy against glibc's dynamic default, cell by cell, from two runs of
    benchmarks/toy_speed.json (`make toy-speed`): an older toy, then this one."""
    def by_cell(recs):
        return {(r["pattern"], r["size_bytes"], r["threads"], r["ops"], r.get("touch", True) is False,
                 r["allocator"]): r
                for r in recs if r.get("status") == "ok" and not r["settings"]}

    b, a = by_cell(before), by_cell(after)
    ns = lambda r: r["ns_per_op"]["median"]
    rows, slower, above_by_chance = [], [], []
    for k in sorted(k for k in a if k[5] == "toy" and k[:5] + ("glibc",) in a):
        g = k[:5] + ("glibc",)
        pattern = k[0] + (" (no touch)" if k[4] else "")
        sys_per_op = sum(v or 0 for v in a[k]["syscalls"].values()) / (k[3] * k[2])
        pairs = paired_ratios(a[k], a[g])
        ratio = ratio_of(a[k], a[g])
        verdict = sign_test(pairs) if pairs else "-"
        spread = (f"{sum(r > 1 for r in pairs)}/{len(pairs)}, {min(pairs):.2f}-{max(pairs):.2f}"
                  if pairs else "-")
        was = f"{ratio_of(b[k], b[g]):.2f}" if k in b and g in b else "-"
        rows.append(f"| {pattern} | {size_label(k[1])} | {k[2]} | {k[3]} | {was} | {ns(a[g]):,.1f} | "
                    f"{ns(a[k]):,.1f} | **{ratio:.2f}** | {spread} | {verdict} | {sys_per_op:.4f} |")
        name = f"{pattern} {size_label(k[1])}" + (f" x{k[2]} threads" if k[2] > 1 else "") + f" ({ratio:.2f})"
        if verdict == "slower" or (not pairs and ratio > 1):
            slower.append(name)
        elif ratio > 1:
            above_by_chance.append(name)
    if not rows:
        return []
    procs = "/".join(str(n) for n in sorted({r.get("processes", 1) for r in a.values()}))
    lines = ["## The toy against glibc, before and after", "",
             "From `make toy-speed`: benchmarks/toy_speed.json run with an older toy's cell, then with this "
             f"one, back to back (ns/op: medians over every repeat of {procs} fresh processes). The toy's and glibc's "
             "processes ran in turns, so each toy process has a glibc partner measured next to it: toy/glibc "
             "is the median of these per-process ratios (or, without them, of the two medians); \"pairs\" "
             "gives how many of them exceed 1 and their range, and the verdict is a "
             "one-sided sign test over them at 5% (parity: no side wins more often than chance allows). "
             "\"(no touch)\": the workload writes nothing into its blocks, so the time is the allocators' own.", "",
             "| pattern | size | threads | ops | toy/glibc before | glibc ns/op | toy ns/op | toy/glibc | "
             "pairs above 1, range | verdict | toy syscalls/op |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|", *rows, ""]
    lines.append("- Toy slower than glibc in: " + (", ".join(slower) if slower else "no cell") + ".")
    if above_by_chance:
        lines.append("- Ratio above 1 but at parity by the sign test: " + ", ".join(above_by_chance) + ".")
    for k in sorted(k for k in a if k[5] == "toy" and k[2] > 1):
        one = a.get((k[0], k[1], 1, k[3], k[4], "toy"))
        if one:  # wall time / total ops: with the work spread well, 2 threads take half of 1 thread's
            lines.append(f"- Toy {k[0]} {size_label(k[1])}, {k[2]} threads: {ns(a[k]):,.1f} ns per op "
                         f"(wall / all threads' ops) against {ns(one):,.1f} with 1 thread "
                         f"({ns(a[k]) / ns(one):.2f}x).")
    return lines + [""]


def write_report(recs: list[dict], out_path: str, results_path: str, probes: dict | None = None,
                 calibration: dict | None = None, programs: list[dict] | None = None,
                 replays: list[dict] | None = None,
                 toy_speed: tuple[list[dict], list[dict]] | None = None) -> list[str]:
    out_dir = os.path.dirname(os.path.abspath(out_path))
    figures = plot_all(recs, out_dir)
    lines = ["# allocbench report", "",
             f"From `{results_path}`. {caption(recs)}.", "",
             "Every number below is computed from that file by `allocbench report`.", "",
             "## Findings", ""]
    lines += [f"- {f}" for f in findings(recs)] or ["- (not enough cells for the standard findings)"]
    lines += ["", "## Churn (malloc, touch, free) by size", ""] + churn_table(recs)
    lines += ["", "## Batch (K blocks live, then free-all): memory", ""] + batch_table(recs)
    if toy_speed:
        lines += [""] + toy_speed_section(*toy_speed)
    frag = fragmentation_findings(recs)
    if frag:
        lines += ["", "## Fragmentation over time", "",
                  "One definition for every allocator, from one untimed repeat per cell (the first warm-up, in a "
                  "fresh process): fragmentation = 1 - live bytes / RSS growth at the sample of highest RSS; "
                  "the mean is over the run's samples; RSS held after free-all is RSS growth after the last "
                  "timed repeat. glibc's virtual view (mallinfo2 arena + hblkhd) is shown apart, in figure (d).", ""]
        lines += [f"- {f}" for f in frag]
    lines += ["", "## Figures", ""]
    for name, title in figures:
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    if programs:
        lines += programs_section(programs, out_dir)
    if replays:
        lines += replays_section(replays)
    if calibration:
        lines += cost_model_section(recs, calibration, out_dir, caption(recs))
    claims = {k: v for k, v in (probes or {}).items() if isinstance(v, dict) and "claim" in v}
    probes = {k: v for k, v in (probes or {}).items() if k not in claims}
    if claims:
        drawn = dict((probe, name) for name, probe in plot_probes(claims, out_dir))
        lines += ["## The mmap claims", "",
                  "From `allocbench probe read-vs-mmap | lazy | unmappable | shared | private | shm`: each "
                  "observation is a fresh process; each verdict is computed from the evidence listed under it.", ""]
        for probe, res in claims.items():
            lines += [f"### {probe}", "", f"*Claim:* {res['claim']}", "", "*Evidence:*", ""]
            lines += [f"- {e}" for e in res["evidence"]]
            lines += ["", f"*Verdict:* {res['verdict']}.", ""]
            if probe in drawn:
                lines += [f"![probe {probe}]({drawn[probe]})", ""]
    if probes:
        lines += ["## Probes of glibc's behaviour", "",
                  "From `allocbench probe all`: each observation is a fresh process; numbers are found by search.", ""]
        figures_by_probe = dict((probe, name) for name, probe in plot_probes(probes, out_dir))
        for probe, res in probes.items():
            if not isinstance(res, dict) or "summary" not in res:
                continue
            lines += [f"### probe {probe}", "", "```", *res["summary"], "```", ""]
            if probe in figures_by_probe:
                lines += [f"![probe {probe}]({figures_by_probe[probe]})", ""]
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return [name for name, _ in figures]
