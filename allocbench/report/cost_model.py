"""The cost model: this host's unit costs (allocbench calibrate) times each
cell's exact counts, against the measured time.  The share of cells within
the target is given with its spread over the cells' repeats, since which
repeat is "the" measurement moves a cell across the line."""
from __future__ import annotations

from collections import defaultdict

from ..costmodel import TARGET_ERROR, evaluate
from ..records import series_key
from ..series import series, series_label, series_order, syscalls_per_op
from ..units import size_label

WORST = 25  # rows of the table of cells outside the target


def fig_cost_model(rows):
    def draw(path, cap):
        if not rows:
            return False
        from .draw import finish, plt
        fig, ax = plt.subplots(figsize=(8, 7))
        groups = defaultdict(list)
        for row in rows:
            groups[(series_key(row["record"]), row["record"]["pattern"])].append(row)
        for (key, pattern), pts in sorted(groups.items(), key=lambda kv: (series_order(kv[0][0]), kv[0][1])):
            ax.scatter([p["measured"] for p in pts], [p["predicted"] for p in pts], s=14,
                       label=f"{series_label(key)} {pattern}")
        lo = min(min(r["measured"], r["predicted"]) for r in rows) * 0.8
        hi = max(max(r["measured"], r["predicted"]) for r in rows) * 1.2
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="predicted = measured")
        ax.fill_between([lo, hi], [lo * (1 - TARGET_ERROR), hi * (1 - TARGET_ERROR)],
                        [lo * (1 + TARGET_ERROR), hi * (1 + TARGET_ERROR)], color="0.8", alpha=0.5,
                        label=f"within {TARGET_ERROR:.0%}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
        return finish(fig, ax, "cost model: predicted vs measured ns/op (churn and batch)",
                      "measured ns per operation (median)", "predicted ns per operation", cap, path)
    return draw


def share(rows: list[dict]) -> str:
    n = len(rows)
    by_median = sum(abs(r["error"]) <= TARGET_ERROR for r in rows)
    every = sum(r["all_repeats_within"] for r in rows)
    some = sum(r["some_repeat_within"] for r in rows)
    return (f"{by_median} of {n} modelled cells ({by_median / n:.0%}) are within {TARGET_ERROR:.0%} of the "
            f"measured median; counted by repeat, between {every / n:.0%} (every repeat within) and "
            f"{some / n:.0%} (some repeat within)")


def render(inputs, canvas) -> list[str]:
    calibration = inputs.calibration
    if not calibration:
        return []
    units = calibration["units_ns"]
    rows = evaluate(inputs.cells, units)
    cyc = ", ".join(f"{k} p: {v:,.0f}" for k, v in units["map_cycle"].items())
    touch = ", ".join(f"{size_label(int(k))}: {v:.1f}" for k, v in units["touch_page"].items())
    lines = ["## Cost model", "",
             f"Unit costs measured by `allocbench calibrate` (median of {calibration.get('runs')} fresh processes), "
             "ns:", "", "| unit | ns |", "|---|---:|",
             f"| mmap + munmap pair (a 1-page cycle less its page) | {units['mmap_munmap_pair']:,.0f} |",
             f"| mmap + touch every page + munmap, by pages | {cyc} |",
             f"| brk call | {units['brk_call']:,.0f} |",
             f"| madvise call | {units['madvise_call']:,.0f} |",
             f"| mprotect call | {units['mprotect_call']:,.0f} |",
             f"| touching a resident page, by working set | {touch} |",
             "| glibc malloc + free, untouched, by size | "
             + ", ".join(f"{size_label(int(k))}: {v:.1f}" for k, v in units["malloc_free"].items()) + " |", "",
             "Predicted ns/op = (mmap, munmap, mremap calls x half a pair + brk, madvise, mprotect calls x their "
             "cost + page faults x a page's life (the cycle's slope at the cell's faults per op) + resident pages "
             "touched x a touch at the cell's working set + ops x glibc's malloc+free at the cell's size) / ops, "
             "with each cell's exact counts.", ""]
    if not rows:
        uncounted = any(r["status"] == "ok" and None in (r.get("syscalls") or {}).values() for r in inputs.cells)
        return lines + [("No modelled cell: the cells' syscalls were not counted (syscall counter: none), and the "
                         "model needs each cell's exact counts." if uncounted else
                         "No churn or batch cells from 4 KiB to 64 MiB of the allocators the cell runs itself."), ""]
    lines += [share(rows) + ".", "", *canvas.figure("cost_model.png", "cost model", fig_cost_model(rows))]
    slopes = sorted((s["map_cycle"]["256"] - s["map_cycle"]["64"]) / 192 for s in calibration.get("samples", [])
                    if "256" in s.get("map_cycle", {}))
    if len(slopes) > 1:
        apart = slopes[-1] / slopes[0] - 1
        lines += [f"Across the calibration's {len(slopes)} fresh processes the cost of a faulted page's life (64 to "
                  f"256 page mappings) ranged {slopes[0]:,.0f} to {slopes[-1]:,.0f} ns ({apart:.0%} apart), so "
                  "fault-dominated cells cannot be predicted more closely than that spread.", ""]
    heavy = [r for r in rows if r["record"]["faults_per_op"] >= 1 or (syscalls_per_op(r["record"]) or 0) >= 0.5]
    if heavy:
        lines += [f"Cells whose cost is dominated by syscalls or faults (>= 0.5 syscalls/op or >= 1 fault/op): "
                  f"{share(heavy)}.", ""]
    outside = sorted((r for r in rows if abs(r["error"]) > TARGET_ERROR), key=lambda r: -abs(r["error"]))
    if outside:
        lines += ["Outside the target, worst first (the model knows no cache behaviour beyond the touch table, uses "
                  "glibc's floor for the toy too, and knows no kernel work that is not a counted syscall or fault):",
                  "", "| cell | measured ns/op | min..max | predicted | error | syscalls/op | faults/op |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in outside[:WORST]:
            rec = r["record"]
            ns = rec["ns_per_op"]
            lines.append(f"| {series(rec)} {rec['pattern']} {size_label(rec['size_bytes'])} | {r['measured']:,.0f} | "
                         f"{ns['min']:,.0f}..{ns['max']:,.0f} | {r['predicted']:,.0f} | {r['error']:+.0%} | "
                         f"{syscalls_per_op(rec):.3f} | {rec['faults_per_op']:.2f} |")
        if len(outside) > WORST:
            lines.append(f"| ... and {len(outside) - WORST} more | | | | | | |")
        lines.append("")
    return lines
