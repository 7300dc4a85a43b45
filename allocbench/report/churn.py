"""Churn (malloc, touch, free) by size: the table, time, syscalls and faults
against size, the size x threshold heat maps, and the allocators around 128 KiB."""
from __future__ import annotations

from ..glibc_constants import DEFAULT_MMAP_THRESHOLD
from ..records import series_key
from ..series import (
    by_series,
    glibc_at,
    glibc_fixed,
    is_glibc,
    measured_best,
    series,
    series_label,
    series_order,
    syscalls_per_op,
    threshold_of,
)
from ..units import KIB, size_label

TABLE_SIZES = (4 * KIB, 64 * KIB, DEFAULT_MMAP_THRESHOLD, 132 * KIB, 256 * KIB, 1024 * KIB, 4096 * KIB)


def table_series(r: dict) -> bool:
    """glibc's default and the folklore 128 KiB line, and every other allocator at its defaults."""
    key = series_key(r)
    return key in (glibc_at(None), glibc_fixed()) or (not is_glibc(key) and not r["settings"])


def table(recs: list[dict]) -> list[str]:
    rows = [r for r in measured_best(recs) if r["status"] == "ok" and r["pattern"] == "churn" and r["threads"] == 1
            and r["size_bytes"] in TABLE_SIZES and table_series(r)]
    rows.sort(key=lambda r: (r["size_bytes"], series_order(series_key(r))))
    lines = ["| size | allocator | ops | processes | ns/op (median) | min..max | syscalls/op | faults/op |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ns, sc = r["ns_per_op"], syscalls_per_op(r)
        lines.append(f"| {size_label(r['size_bytes'])} | {series(r)} | {r['ops']} | {r.get('processes', 1)} | "
                     f"{ns['median']:,.0f} | "
                     f"{ns['min']:,.0f}..{ns['max']:,.0f} | {'n/a' if sc is None else f'{sc:.4f}'} | "
                     f"{r['faults_per_op']:.2f} |")
    return lines if rows else []


def fig_vs_size(recs, metric, ylabel, title, logy=True, band=False):
    def draw(path, cap):
        groups = by_series(recs, "churn")
        if not groups:
            return False
        import numpy as np

        from .draw import SIZE_FIGURE, finish, plt, size_axis
        fig, ax = plt.subplots(figsize=SIZE_FIGURE)
        colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(groups))))
        sizes = []
        for (name, rows), color in zip(groups.items(), colors):
            pts = [(r["size_bytes"], metric(r), r) for r in rows if metric(r) is not None]
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            sizes += xs
            ax.plot(xs, ys, "-" if is_glibc(name) else "--", marker="o", ms=3, color=color, label=series_label(name))
            if band:
                ax.fill_between(xs, [p[2]["ns_per_op"]["min"] for p in pts],
                                [p[2]["ns_per_op"]["max"] for p in pts], color=color, alpha=0.15)
            t = threshold_of(name)
            if t:
                ax.axvline(t, color=color, ls=":", lw=1)
        size_axis(ax, sizes)
        if logy:
            ax.set_yscale("symlog", linthresh=1e-3) if not band else ax.set_yscale("log")
        ax.legend(fontsize=8, ncol=2, title="dotted line: that threshold")
        return finish(fig, ax, title, "allocation size", ylabel, cap, path, svg=True)
    return draw


def fig_heatmap(recs, metric, label, title):
    def draw(path, cap):
        groups = {k: v for k, v in by_series(recs, "churn").items() if is_glibc(k)}
        if len(groups) < 2:
            return False
        import numpy as np
        from matplotlib.colors import LogNorm, SymLogNorm

        from .draw import HEATMAP_FIGURE, finish, plt
        sizes = sorted({r["size_bytes"] for rows in groups.values() for r in rows})
        names = list(groups)
        grid = np.full((len(names), len(sizes)), np.nan)
        for i, name in enumerate(names):
            for r in groups[name]:
                v = metric(r)
                if v is not None:
                    grid[i, sizes.index(r["size_bytes"])] = v
        finite = grid[np.isfinite(grid)]
        if not len(finite):
            return False
        fig, ax = plt.subplots(figsize=HEATMAP_FIGURE)
        norm = LogNorm(vmin=max(finite.min(), 1e-3), vmax=finite.max()) if finite.min() > 0 else \
            SymLogNorm(linthresh=1e-3, vmin=0, vmax=max(finite.max(), 1e-3))
        im = ax.imshow(grid, aspect="auto", cmap="magma", norm=norm)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([size_label(s) for s in sizes], rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels([series_label(n) for n in names], fontsize=8)
        fig.colorbar(im, ax=ax, label=label)
        return finish(fig, ax, title, "allocation size", "mmap threshold", cap, path)
    return draw


def fig_allocators(recs, sizes=(64 * KIB, DEFAULT_MMAP_THRESHOLD, 132 * KIB, 256 * KIB)):
    def draw(path, cap):
        groups = by_series(recs, "churn")
        # every allocator at its defaults, and glibc at a fixed 128 KiB threshold too
        wanted = [k for k in groups if not k[1] or k == glibc_fixed()]
        if len(wanted) < 2:
            return False
        from .draw import finish, plt
        fig, ax = plt.subplots(figsize=(10, 6))
        width = 0.8 / len(wanted)
        for i, name in enumerate(wanted):
            vals = {r["size_bytes"]: r["ns_per_op"] for r in groups[name]}
            xs = [j + i * width for j, s in enumerate(sizes) if s in vals]
            med = [vals[s]["median"] for s in sizes if s in vals]
            err = [[vals[s]["median"] - vals[s]["min"] for s in sizes if s in vals],
                   [vals[s]["max"] - vals[s]["median"] for s in sizes if s in vals]]
            ax.bar(xs, med, width, yerr=err, label=series_label(name), capsize=2)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))])
        ax.set_xticklabels([size_label(s) for s in sizes])
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        return finish(fig, ax, "churn (malloc, touch, free) around 128 KiB: median with min-max",
                      "allocation size", "ns per operation (log)", cap, path)
    return draw


def render(inputs, canvas) -> list[str]:
    recs = inputs.cells
    rows = table(recs)
    if not rows:
        return []
    lines = ["## Churn (malloc, touch, free) by size", "", *rows, ""]
    ns = lambda r: r["ns_per_op"]["median"]
    for name, title, draw in (
            ("churn_ns_per_op.png", "churn: ns per malloc+touch+free vs size (median, band = min-max)",
             fig_vs_size(recs, ns, "ns per operation (log)",
                         "churn: ns per malloc+touch+free vs size (median, band = min-max)", band=True)),
            ("churn_syscalls_per_op.png", "churn: memory syscalls per operation",
             fig_vs_size(recs, syscalls_per_op, "syscalls per operation",
                         "churn: memory syscalls per operation (brk+mmap+munmap+mremap+madvise+mprotect)")),
            ("churn_faults_per_op.png", "churn: page faults per operation",
             fig_vs_size(recs, lambda r: r["faults_per_op"], "faults per operation",
                         "churn: page faults per operation")),
            ("heatmap_ns_per_op.png", "churn ns/op: allocation size x glibc mmap threshold",
             fig_heatmap(recs, ns, "ns per op", "churn ns/op: allocation size x glibc mmap threshold")),
            ("heatmap_syscalls_per_op.png", "churn syscalls/op: allocation size x glibc mmap threshold",
             fig_heatmap(recs, syscalls_per_op, "syscalls per op",
                         "churn syscalls/op: allocation size x glibc mmap threshold")),
            ("allocators_128k.png", "allocators compared around 128 KiB (churn)", fig_allocators(recs))):
        figure = canvas.figure(name, title, draw)
        if figure:
            lines += [f"### {title}", "", *figure]
    return lines
