"""Memory over time: the pinning finding, each pattern's extremes, the
time/memory frontier, and figures (a)-(d).  One definition of fragmentation
for every allocator (records.memory_over_time).  Extremes are named only when
they stand apart by more than their resolutions; frontier membership is
tested: one series dominates another when, paired size by size (the two ran
back to back at each size), it is faster or the same and leaner or the same,
and strictly one of the two at 95%."""
from __future__ import annotations

import statistics

from .. import stats
from ..series import (
    FRAG_PATTERNS,
    frag_series,
    glibc_at,
    glibc_fixed,
    is_glibc,
    nearest,
    series_label,
    size_of,
    tradeoff_points,
)
from ..units import KIB, MIB, size_label

AT = 132 * KIB  # the size of each pattern's extremes line


def pinning(recs) -> list[str]:
    dyn = {size_of(r): r for r in frag_series(recs, "fragment").get(glibc_at(None), [])}
    fixed = {size_of(r): r for r in frag_series(recs, "fragment").get(glibc_fixed(), [])}
    pinned = []
    for size in sorted(set(dyn) & set(fixed)):
        a, b = dyn[size], fixed[size]
        if a["retained_after_free_bytes"] is None or b["retained_after_free_bytes"] is None:
            continue
        held = a["retained_after_free_bytes"] - b["retained_after_free_bytes"]
        if held > 0.5 * a["live"] * size:  # at least half a round's large blocks
            pinned.append((size, held, stats.cells(a, b), a["mmapped_fraction"], b["mmapped_fraction"]))
    if not pinned:
        return []
    held = [p[1] for p in pinned]
    span = f"from {size_label(pinned[0][0])} to {size_label(pinned[-1][0])}"
    moved = all(d is not None and f is not None and d < f / 2 for *_, d, f in pinned)
    how = ("the dynamic default keeps the large blocks on the heap, between the pins (" if moved else "(")
    how += (f"mmapped: {min(p[3] for p in pinned):.0%}-{max(p[3] for p in pinned):.0%} of blocks at the "
            f"dynamic default, {min(p[4] for p in pinned):.0%}-{max(p[4] for p in pinned):.0%} at 128 KiB"
            + ("; its threshold had risen before the measured repeats, at the warm-up's first free of an "
               "mmapped block, so these cells show where the blocks went, not the rise)" if moved else ")"))
    line = (f"The dynamic threshold pins memory: in `fragment` (long-lived 64-byte blocks between large "
            f"short-lived ones), {span} {how}; after free-all the dynamic default still holds "
            f"{min(held) / MIB:.1f} to {max(held) / MIB:.1f} MiB more than a fixed 128 KiB threshold.")
    times = [p[2] for p in pinned]
    if all(c.verdict == "slower" for c in times):
        line += (f" The fixed threshold pays for it in time: {min(c.estimate for c in times):.1f}x to "
                 f"{max(c.estimate for c in times):.1f}x the dynamic default's ns/op on the same cells, each slower "
                 f"at 95% ({', '.join(c.interval() for c in times)}).")
    else:
        line += " In time, the fixed threshold against the dynamic default: " + "; ".join(
            f"{size_label(p[0])} {p[2].words()}" for p in pinned) + "."
    return [line]


def extremes(recs, pattern: str) -> list[str]:
    """Lowest and highest fragmentation at the peak near 132 KiB, each named only
    when it stands apart from every other by more than both resolutions."""
    at = [(k, r) for k, rows in frag_series(recs, pattern).items()
          if (r := next((x for x in rows if size_of(x) == AT), None)) and r["fragmentation_peak"] is not None]
    if len(at) < 3:
        return []
    at.sort(key=lambda kr: kr[1]["fragmentation_peak"])
    res = lambda r: r.get("fragmentation_resolution") or 0
    val = lambda r: r["fragmentation_peak"]
    lo_k, lo = at[0]
    hi_k, hi = at[-1]
    lo_apart = all(val(lo) + res(lo) < val(r) - res(r) for _, r in at[1:])
    hi_apart = all(val(hi) - res(hi) > val(r) + res(r) for _, r in at[:-1])
    fmt = lambda k, r: f"{series_label(k)} {val(r):.3f} ±{res(r):.3f}"
    parts = [f"lowest {fmt(lo_k, lo)}" if lo_apart else
             f"lowest: no series stands apart ({fmt(lo_k, lo)} and {fmt(*at[1])} overlap)",
             f"highest {fmt(hi_k, hi)}" if hi_apart else
             f"highest: no series stands apart ({fmt(hi_k, hi)} and {fmt(*at[-2])} overlap)"]
    return [f"`{pattern}` at {size_label(AT)}, fragmentation at the peak (± its resolution): " + "; ".join(parts) + "."]


def _by_size(rows: list[dict], field) -> dict:
    return {size_of(r): field(r) for r in rows if field(r)}


NEVER_WORSE = 1.10  # a dominating series is within 10% of the other at every size, in time and in memory


def dominance(recs, pattern: str) -> tuple[list[tuple], dict]:
    """The tested frontier: [(series, median ns/op, median mean RSS/live)] of the
    series no other dominates, and who dominates each of the rest."""
    groups = frag_series(recs, pattern)
    ns = {k: _by_size(rows, lambda r: r["ns_per_op"]["median"]) for k, rows in groups.items()}
    mem = {k: _by_size(rows, lambda r: r.get("overhead_mean")) for k, rows in groups.items()}
    keys = [k for k in groups if ns[k] and mem[k]]

    def beats(a, b) -> bool:
        """a dominates b: faster or leaner at 95% across the sizes (sign test), and at no size more than
        NEVER_WORSE slower or heavier (a test across sizes alone lets 3x heavier at 8 of 12 sizes pass)."""
        common_t, common_m = sorted(set(ns[a]) & set(ns[b])), sorted(set(mem[a]) & set(mem[b]))
        rt, rm = [ns[a][s] / ns[b][s] for s in common_t], [mem[a][s] / mem[b][s] for s in common_m]
        t, m = stats.paired_ratios(rt, "time"), stats.paired_ratios(rm, "memory")
        if "untested" in (t.verdict, m.verdict) or max(rt + rm) > NEVER_WORSE:
            return False
        return t.verdict != "slower" and m.verdict != "heavier" and (t.verdict == "faster" or m.verdict == "leaner")

    beaten = {b: [a for a in keys if a != b and beats(a, b)] for b in keys}
    front = [(k, statistics.median(ns[k].values()), statistics.median(mem[k].values()))
             for k in keys if not beaten[k]]
    return sorted(front, key=lambda p: p[1]), beaten


def frontier(recs, pattern: str) -> list[str]:
    front, beaten = dominance(recs, pattern)
    if len(beaten) < 3:
        return []
    sizes = len({size_of(r) for rows in frag_series(recs, pattern).values() for r in rows})
    members = "; ".join(f"{series_label(k)} ({x:,.0f} ns/op, {y:.2f}x live)" for k, x, y in front)
    return [f"`{pattern}` time/memory frontier, tested size by size over {sizes} sizes (no other series is faster "
            f"or leaner at 95% across the sizes while within {NEVER_WORSE - 1:.0%} of it at every size): {members}; "
            f"{sum(1 for v in beaten.values() if v)} of {len(beaten)} series are dominated."]


def findings(recs: list[dict]) -> list[str]:
    out = pinning(recs)
    for pattern in FRAG_PATTERNS:
        out += extremes(recs, pattern)
    for pattern in FRAG_PATTERNS:
        out += frontier(recs, pattern)
    return out


# ---- figures ----

def fig_timelines(recs, pattern="fragment", size=AT):
    """(a) live against RSS over the run, one panel per allocator or threshold."""
    def draw(path, cap):
        picks = [(k, nearest(rows, size)) for k, rows in frag_series(recs, pattern).items()]
        picks = [(k, r) for k, r in picks if r is not None]
        if not picks:
            return False
        import numpy as np

        from .draw import plt, save
        cols = min(5, len(picks))
        nrows = -(-len(picks) // cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False, sharey=True)
        for ax, (key, r) in zip(axes.flat, picks):
            t = r["timeline"]
            ax.plot(t["op"], np.array(t["anon_bytes"]) / MIB, "-", color="C3", label="RSS growth (anonymous)")
            ax.plot(t["op"], np.array(t["live_bytes"]) / MIB, "-", color="C0", label="live (requested)")
            if is_glibc(key) and t["arena"][0] is not None:
                ax.plot(t["op"], np.array(t["heap_bytes"]) / MIB, ":", color="C2", label="brk heap")
                ax.plot(t["op"], np.array(t["mapped_bytes"]) / MIB, "--", color="C4", label="mmapped")
            ax.set_title(f"{series_label(key)} ({size_label(size_of(r))})", fontsize=8)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=7)
        for ax in axes.flat[len(picks):]:
            ax.axis("off")
        axes[0][0].set_ylabel("MiB")
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"{pattern}: memory over one run from a fresh process (x: allocations)")
        return save(fig, cap, path, top=0.97)
    return draw


def fig_vs_size(recs):
    """(b) fragmentation at the peak and retained-after-free against size, per pattern."""
    def draw(path, cap):
        patterns = [p for p in FRAG_PATTERNS if frag_series(recs, p)]
        if not patterns:
            return False
        from .draw import plt, save, size_axis
        fig, axes = plt.subplots(2, len(patterns), figsize=(4 * len(patterns), 7), squeeze=False)
        for j, pattern in enumerate(patterns):
            groups = frag_series(recs, pattern)
            for key, rows in groups.items():
                for i, (field, scale) in enumerate((("fragmentation_peak", 1), ("retained_after_free_bytes", 1 / MIB))):
                    pts = [(size_of(r), r[field] * scale) for r in rows if r.get(field) is not None]
                    if pts:
                        axes[i][j].plot(*zip(*pts), "-" if is_glibc(key) else "--", marker="o", ms=2,
                                        label=series_label(key))
            axes[0][j].set_title(pattern)
            for i, label in enumerate(("fragmentation at the peak", "anonymous RSS held after free-all (MiB)")):
                size_axis(axes[i][j], [size_of(r) for rows in groups.values() for r in rows])
                axes[i][j].set_ylabel(label if j == 0 else "")
                axes[i][j].grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=6, ncol=2)
        return save(fig, cap, path)
    return draw


def fig_tradeoff(recs):
    """(c) time against memory, every threshold and allocator a point, per pattern; the tested frontier dotted."""
    def draw(path, cap):
        patterns = [p for p in FRAG_PATTERNS if tradeoff_points(recs, p)]
        if not patterns:
            return False
        from .draw import plt, save
        fig, axes = plt.subplots(1, len(patterns), figsize=(4 * len(patterns), 4.2), squeeze=False)
        for ax, pattern in zip(axes[0], patterns):
            for key, x, y in tradeoff_points(recs, pattern):
                ax.scatter([x], [y], s=22, marker="o" if is_glibc(key) else "s")
                ax.annotate(series_label(key), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
            front, _ = dominance(recs, pattern)
            if front:
                ax.plot([p[1] for p in front], [p[2] for p in front], "k:", lw=1)
            ax.set_xscale("log")
            ax.set_title(pattern)
            ax.set_xlabel("ns per operation (median over sizes)")
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("mean RSS / live bytes (median over sizes)")
        fig.suptitle("the threshold's trade-off: time against memory (dotted: the frontier, tested size by size)")
        return save(fig, cap, path, top=0.95)
    return draw


BREAKDOWN = (("live_heap", "live, on the heap"), ("heap_overhead", "heap chunk headers and rounding"),
             ("free_chunks", "free chunks inside the heap"), ("top_chunk", "top chunk"),
             ("live_mmapped", "live, mmapped"), ("mmapped_rounding", "mmapped headers and page rounding"))


def fig_glibc_breakdown(recs, pattern="fragment"):
    """(d) where glibc's memory goes at the peak, per size, dynamic and fixed 128 KiB."""
    def draw(path, cap):
        groups = frag_series(recs, pattern)
        panels = [(k, [r for r in groups.get(k, []) if 64 * KIB <= size_of(r) <= 512 * KIB
                       and r.get("glibc_breakdown_peak")]) for k in (glibc_at(None), glibc_fixed())]
        panels = [(k, rows) for k, rows in panels if rows]
        if not panels:
            return False
        import numpy as np

        from .draw import plt, save
        fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False, sharey=True)
        for ax, (key, rows) in zip(axes[0], panels):
            xs = np.arange(len(rows))
            bottom = np.zeros(len(rows))
            for field, label in BREAKDOWN:
                vals = np.array([r["glibc_breakdown_peak"][field] for r in rows]) / MIB
                ax.bar(xs, vals, bottom=bottom, label=label)
                bottom += vals
            ax.plot(xs, [r["glibc_breakdown_peak"]["resident"] / MIB for r in rows], "k_", ms=18, mew=2,
                    label="resident (anonymous RSS growth)")
            ax.set_xticks(xs)
            ax.set_xticklabels([size_label(size_of(r)) for r in rows], rotation=60, fontsize=7)
            ax.set_title(f"{series_label(key)}: {pattern}, at peak RSS")
            ax.grid(True, axis="y", alpha=0.3)
        axes[0][0].set_ylabel("MiB (virtual: mallinfo2 arena + hblkhd)")
        axes[0][-1].legend(fontsize=7)
        return save(fig, cap, path)
    return draw


FIGURES = (("frag_timelines.png", "(a) fragment near 132 KiB: live against RSS over the run", fig_timelines),
           ("frag_vs_size.png", "(b) fragmentation at the peak and memory held after free-all, by size", fig_vs_size),
           ("frag_tradeoff.png", "(c) the trade-off: ns/op against mean RSS over live", fig_tradeoff),
           ("frag_glibc_breakdown.png", "(d) where glibc's memory goes at the peak (fragment)", fig_glibc_breakdown))


def render(inputs, canvas) -> list[str]:
    recs = inputs.cells
    if not any(frag_series(recs, p) for p in FRAG_PATTERNS):
        return []
    lines = ["## Fragmentation over time", "",
             "One definition for every allocator, from one untimed repeat per cell (the first warm-up, in a fresh "
             "process): fragmentation at the peak = 1 - highest live bytes / highest anonymous RSS growth (the worst "
             "moment of each); the mean is over the run's samples; what is held after free-all is its own column, "
             "never part of a peak figure. glibc's virtual view (mallinfo2 arena + hblkhd) is shown apart, in "
             "figure (d).", ""]
    lines += [f"- {f}" for f in findings(recs)] + [""]
    for name, title, fig in FIGURES:
        figure = canvas.figure(name, title, fig(recs))
        if figure:
            lines += [f"### {title}", "", *figure]
    return lines
