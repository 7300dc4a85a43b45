"""Batch (K blocks live, then free-all): peak RSS, what stays after free-all,
and fragmentation at the peak with its resolution; the footprint figure."""
from __future__ import annotations

from ..records import series_key
from ..series import by_series, is_glibc, series, series_label, series_order
from ..units import MIB, size_label
from .churn import TABLE_SIZES, table_series


def _frag(value, resolution) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ±{resolution:.3f}" if resolution is not None else "")


def table(recs: list[dict]) -> list[str]:
    rows = [r for r in recs if r["status"] == "ok" and r["pattern"] == "batch" and r["threads"] == 1
            and r["size_bytes"] in TABLE_SIZES and table_series(r)]
    rows.sort(key=lambda r: (r["size_bytes"], r["live"], series_order(series_key(r))))
    mib = lambda n: "-" if n is None else f"{n / MIB:.1f}"
    lines = ["| blocks | allocator | ns/op | peak RSS MiB | retained after free-all MiB | fragmentation at peak "
             "| at the live peak |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        res = r.get("fragmentation_resolution")
        lines.append(f"| {min(r['live'], r['ops'])} x {size_label(r['size_bytes'])} | {series(r)} | "
                     f"{r['ns_per_op']['median']:,.0f} | {mib(r['peak_rss_bytes'])} | "
                     f"{mib(r['retained_after_free_bytes'])} | {_frag(r['fragmentation_peak'], res)} | "
                     f"{_frag(r.get('fragmentation_at_live_peak'), res)} |")
    return lines if rows else []


def fig_footprint(recs):
    def draw(path, cap):
        groups = by_series(recs, "batch")
        if not groups:
            return False
        from .draw import FOOTPRINT_FIGURE, plt, save, size_axis
        fig, axes = plt.subplots(1, 3, figsize=FOOTPRINT_FIGURE)
        metrics = [("peak_rss_bytes", "peak RSS (MiB)", 1 / MIB),
                   ("fragmentation_peak", "fragmentation at peak (1 - live peak / RSS growth peak)", 1),
                   ("retained_after_free_bytes", "anonymous RSS retained after free-all (MiB)", 1 / MIB)]
        sizes = []
        for ax, (key, label, scale) in zip(axes, metrics):
            for name, rows in groups.items():
                pts = [(r["size_bytes"], r[key] * scale) for r in rows if r.get(key) is not None]
                if pts:
                    sizes += [p[0] for p in pts]
                    ax.plot(*zip(*pts), "-" if is_glibc(name) else "--", marker="o", ms=3,
                            label=series_label(name))
            size_axis(ax, sizes)
            ax.set_ylabel(label)
            ax.set_xlabel("allocation size")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle("batch: 64 live blocks allocated, touched, then all freed")
        return save(fig, cap, path)
    return draw


def render(inputs, canvas) -> list[str]:
    rows = table(inputs.cells)
    if not rows:
        return []
    title = "batch: peak RSS, fragmentation and retained memory vs size"
    figure = canvas.figure("batch_footprint.png", title, fig_footprint(inputs.cells))
    return ["## Batch (K blocks live, then free-all): memory", "",
            "Fragmentation at the peak is 1 - highest live bytes / highest anonymous RSS growth, the worst moment "
            "of each; \"at the live peak\" takes both at the first sample of the highest live bytes. ± is the "
            "resolution, from the growth seen before the first allocation (records.py); \"-\" where that noise is "
            "more than a tenth of the live bytes.", "", *rows, "",
            *([f"### {title}", "", *figure] if figure else [])]
