"""Figures from a results file: matplotlib with the agg backend, one function per figure."""
from __future__ import annotations

import os
from collections import defaultdict

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .backends import BACKENDS  # noqa: E402
from .counters import SYSCALLS  # noqa: E402
from .records import series_key  # noqa: E402
from .units import KIB, MIB, size_label  # noqa: E402


DPI = 110
SIZE_FIGURE = (10, 6)      # a metric against allocation size
HEATMAP_FIGURE = (12, 5)   # size x threshold
FOOTPRINT_FIGURE = (15, 5)  # batch footprint, three panels


def _has_threshold(allocator: str) -> bool:
    b = BACKENDS.get(allocator)
    return b is not None and any(s.name == "mmap_threshold" for s in b.settings)


def series_label(key: tuple) -> str:
    """glibc dynamic, glibc @128 KiB, toy toy_policy=dontneed, jemalloc, ..."""
    allocator, settings = key
    rest = dict(settings)
    t = rest.pop("mmap_threshold", None)
    parts = [allocator]
    if t is not None:
        parts.append(f"@{size_label(t)}")
    elif _has_threshold(allocator):
        parts.append("dynamic")
    parts += [f"{k}={size_label(v) if isinstance(v, int) and v >= KIB else v}" for k, v in rest.items()]
    return " ".join(parts)


def series(rec: dict) -> str:
    """The label of a record's series, for legends and tables."""
    return series_label(series_key(rec))


def series_order(key: tuple):
    """The backends' table order; within one, the default first, then by threshold."""
    allocator, settings = key
    names = list(BACKENDS)
    rank = names.index(allocator) if allocator in names else len(names)
    return (rank, len(settings), dict(settings).get("mmap_threshold") or 0, str(settings))


def threshold_of(key: tuple) -> int | None:
    return dict(key[1]).get("mmap_threshold")


def is_glibc(key: tuple) -> bool:
    b = BACKENDS.get(key[0])
    return b is not None and b.glibc


def syscalls_per_op(rec: dict) -> float | None:
    per = rec["syscalls_per_op"]
    return None if None in per.values() else sum(per[s] for s in SYSCALLS)


def caption(recs: list[dict]) -> str:
    ok = [r for r in recs if r["status"] == "ok"]
    env = (ok or recs)[0]["env"]
    methods = ", ".join(sorted({r.get("counter_method") for r in ok if r.get("counter_method")}))
    return (f"glibc {env['glibc']}, Linux {env['kernel']}, {env['cpu']} x{env['cpus']}, THP {env['thp']}; "
            f"{len(ok)} cells ok, {len(recs) - len(ok)} failed; syscall counter: {methods or 'none'}")


def _save(fig, cap, path, top=1.0, svg=False):
    """Every figure ends here: the caption along the bottom, then the file."""
    fig.text(0.01, 0.005, cap, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, top))
    fig.savefig(path, dpi=DPI)
    if svg:  # the headline figures scale for slides and papers too
        fig.savefig(os.path.splitext(path)[0] + ".svg")
    plt.close(fig)


def _finish(fig, ax, title, xlabel, ylabel, cap, path, svg=False):
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    _save(fig, cap, path, svg=svg)


def _size_axis(ax, sizes):
    ax.set_xscale("log", base=2)
    ticks = sorted({s for s in sizes if s & (s - 1) == 0} | {128 * KIB})
    ax.set_xticks(ticks)
    ax.set_xticklabels([size_label(t) for t in ticks], rotation=45, fontsize=8)


def by_series(recs, pattern):
    out = defaultdict(list)
    for r in recs:
        if r["status"] == "ok" and r["pattern"] == pattern and r["size_bytes"] is not None and r["threads"] == 1:
            out[series_key(r)].append(r)
    return {k: sorted(v, key=lambda r: r["size_bytes"]) for k, v in sorted(out.items(), key=lambda kv: series_order(kv[0]))}


def fig_vs_size(recs, pattern, metric, ylabel, title, path, cap, logy=True, band=False):
    groups = by_series(recs, pattern)
    if not groups:
        return False
    fig, ax = plt.subplots(figsize=SIZE_FIGURE)
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(groups))))
    sizes = []
    for (name, rows), color in zip(groups.items(), colors):
        pts = [(r["size_bytes"], metric(r), r) for r in rows if metric(r) is not None]
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        sizes += xs
        style = "-" if is_glibc(name) else "--"
        ax.plot(xs, ys, style, marker="o", ms=3, color=color, label=series_label(name))
        if band:
            ax.fill_between(xs, [p[2]["ns_per_op"]["min"] for p in pts],
                            [p[2]["ns_per_op"]["max"] for p in pts], color=color, alpha=0.15)
        t = threshold_of(name)
        if t:
            ax.axvline(t, color=color, ls=":", lw=1)
    _size_axis(ax, sizes)
    if logy:
        ax.set_yscale("symlog", linthresh=1e-3) if not band else ax.set_yscale("log")
    ax.legend(fontsize=8, ncol=2, title="dotted line: that threshold")
    _finish(fig, ax, title, "allocation size", ylabel, cap, path, svg=True)
    return True


def fig_heatmap(recs, metric, label, title, path, cap):
    groups = {k: v for k, v in by_series(recs, "churn").items() if is_glibc(k)}
    if len(groups) < 2:
        return False
    sizes = sorted({r["size_bytes"] for rows in groups.values() for r in rows})
    names = list(groups)
    grid = np.full((len(names), len(sizes)), np.nan)
    for i, name in enumerate(names):
        for r in groups[name]:
            v = metric(r)
            if v is not None:
                grid[i, sizes.index(r["size_bytes"])] = v
    fig, ax = plt.subplots(figsize=HEATMAP_FIGURE)
    from matplotlib.colors import LogNorm, SymLogNorm
    finite = grid[np.isfinite(grid)]
    norm = LogNorm(vmin=max(finite.min(), 1e-3), vmax=finite.max()) if finite.min() > 0 else \
        SymLogNorm(linthresh=1e-3, vmin=0, vmax=max(finite.max(), 1e-3))
    im = ax.imshow(grid, aspect="auto", cmap="magma", norm=norm)
    ax.set_xticks(range(len(sizes)))
    ax.set_xticklabels([size_label(s) for s in sizes], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels([series_label(n) for n in names], fontsize=8)
    fig.colorbar(im, ax=ax, label=label)
    _finish(fig, ax, title, "allocation size", "mmap threshold", cap, path)
    return True


def fig_footprint(recs, path, cap):
    groups = by_series(recs, "batch")
    if not groups:
        return False
    fig, axes = plt.subplots(1, 3, figsize=FOOTPRINT_FIGURE)
    metrics = [("peak_rss_bytes", "peak RSS (MiB)", 1 / MIB),
               ("fragmentation_peak", "fragmentation at peak (1 - live/footprint)", 1),
               ("retained_after_free_bytes", "RSS retained after free-all (MiB)", 1 / MIB)]
    sizes = []
    for ax, (key, label, scale) in zip(axes, metrics):
        for name, rows in groups.items():
            pts = [(r["size_bytes"], r[key] * scale) for r in rows if r.get(key) is not None]
            if pts:
                sizes += [p[0] for p in pts]
                ax.plot(*zip(*pts), "-" if is_glibc(name) else "--", marker="o", ms=3,
                        label=series_label(name))
        _size_axis(ax, sizes)
        ax.set_ylabel(label)
        ax.set_xlabel("allocation size")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("batch: 64 live blocks allocated, touched, then all freed")
    _save(fig, cap, path)
    return True


def fig_allocators(recs, path, cap, sizes=(64 * KIB, 128 * KIB, 132 * KIB, 256 * KIB)):
    groups = by_series(recs, "churn")
    # every allocator at its defaults, and glibc at a fixed 128 KiB threshold too
    wanted = [k for k in groups if not k[1] or dict(k[1]) == {"mmap_threshold": 128 * KIB}]
    if len(wanted) < 2:
        return False
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
    _finish(fig, ax, "churn (malloc, touch, free) around 128 KiB: median with min-max",
            "allocation size", "ns per operation (log)", cap, path)
    return True


def _probe_caption(res: dict) -> str:
    env = res.get("env") or {}
    return (f"glibc {env.get('glibc')}, Linux {env.get('kernel')}, {env.get('cpu')}; "
            f"allocbench probe {res['probe']}, each point a fresh process")


def fig_probe_boundary(res, path):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels = ["found by search\n(heap must grow)", "predicted\n(chunk rounding)",
              "first malloc of a process\n(top chunk from M_TOP_PAD)"]
    values = [res["found_when_heap_must_grow"], res["predicted"], res.get("found_first_malloc_of_a_process")]
    bars = ax.bar(labels, [v or 0 for v in values], color=["tab:blue", "tab:gray", "tab:orange"])
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:,} B" if v else "n/a", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=9)
    ax.axhline(res["threshold_in_force"], color="k", ls=":", label=f"threshold {res['threshold_in_force']:,} B")
    ax.set_ylim(min(v for v in values if v) * 0.97, max(v for v in values if v) * 1.02)
    ax.legend(fontsize=8)
    _finish(fig, ax, "probe boundary: the smallest request glibc serves with mmap", "",
            "request size (bytes)", _probe_caption(res), path)


def fig_probe_dynamic(res, path):
    rows = res["steps"]
    fig, ax = plt.subplots(figsize=(10, 5))
    labels = ["fresh"] + [size_label(r["freed"]) for r in rows[1:]]
    x = range(len(rows))
    ax.plot(x, [r["threshold_inferred"] for r in rows], "o-", label="mmap threshold (inferred from the boundary)")
    ax.plot(x, [r["trim_threshold_inferred"] for r in rows], "s--",
            label="trim threshold (inferred: top chunk size that first trims)")
    ax.axhline(res["cap_documented"], color="k", ls=":", label="DEFAULT_MMAP_THRESHOLD_MAX (32 MiB)")
    ax.set_yscale("log", base=2)
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=30, fontsize=8)
    ax.legend(fontsize=8)
    _finish(fig, ax, "probe dynamic: glibc's threshold after each free of an mmapped chunk",
            "mmapped chunk freed (in sequence)", "bytes (log)", _probe_caption(res), path)


def fig_probe_trim(res, path):
    p = res["pinned"]
    stages = ["allocated", "freed", "trimmed"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(["allocated", "all but the pin freed", "after malloc_trim(0)"],
           [p[s]["rss_bytes"] / MIB for s in stages], color=["tab:blue", "tab:red", "tab:green"])
    ax.set_ylabel("RSS (MiB)")
    _finish(fig, ax, "probe trim: a pinned heap keeps its pages until malloc_trim", "", "RSS (MiB)",
            _probe_caption(res), path)


def fig_probe_arenas(res, path):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    groups = defaultdict(list)
    for r in res["rows"]:
        groups["default" if r["arena_max"] is None else f"M_ARENA_MAX={r['arena_max']}"].append(r)
    for name, rows in groups.items():
        t = [r["threads"] for r in rows]
        axes[0].plot(t, [r["syscalls"]["mmap"] + r["syscalls"]["mprotect"] for r in rows], "o-", label=name)
        axes[1].plot(t, [r["syscalls"]["brk"] for r in rows], "o-", label=name)
    for ax, label in zip(axes, ("mmap + mprotect calls", "brk calls")):
        ax.set_xlabel("worker threads")
        ax.set_ylabel(label)
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("probe arenas: where threads get memory (each: 256 x 16 KiB live)")
    _save(fig, _probe_caption(res), path)


def fig_cost_model(rows, path, cap):
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
    ax.fill_between([lo, hi], [lo * 0.85, hi * 0.85], [lo * 1.15, hi * 1.15], color="0.8", alpha=0.5,
                    label="within 15%")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    _finish(fig, ax, "cost model: predicted vs measured ns/op (glibc and toy, churn and batch)",
            "measured ns per operation (median)", "predicted ns per operation", cap, path)


def fig_read_vs_mmap(res, path):
    """Throughput against file size, one line per method; warm and cold panels
    (every byte consumed); where the best mmap first beats the best read() is marked."""
    cells = [c for c in res["cells"] if c["consume"] == "all"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, cache in zip(axes, ("warm", "cold")):
        group = [c for c in cells if c["cache"] == cache]
        for method in dict.fromkeys(c["method"] for c in group):
            rows = sorted((c for c in group if c["method"] == method), key=lambda c: c["size_bytes"])
            xs = [c["size_bytes"] for c in rows]
            ax.plot(xs, [c["gbps"]["median"] for c in rows], "-" if method.startswith("read") else "--",
                    marker="o", ms=3, label=method)
            ax.fill_between(xs, [c["gbps"]["min"] for c in rows], [c["gbps"]["max"] for c in rows], alpha=0.1)
        sizes = sorted({c["size_bytes"] for c in group})
        for size in sizes:
            best = lambda pred: max((c["gbps"]["median"] for c in group if c["size_bytes"] == size and pred(c)),
                                    default=0)
            if best(lambda c: not c["method"].startswith("read")) > best(lambda c: c["method"].startswith("read")):
                ax.axvline(size, color="k", ls=":", lw=1)
                ax.text(size, 0.97, " best mmap ahead from here", fontsize=7, rotation=90, va="top",
                        transform=ax.get_xaxis_transform())
                break
        _size_axis(ax, sizes)
        ax.set_title(f"{cache} page cache, every byte summed")
        ax.set_xlabel("file size")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("GB/s (median, band = min-max)")
    axes[1].legend(fontsize=7)
    fig.suptitle("probe read-vs-mmap: read() with 4 KiB, 64 KiB, 1 MiB buffers against mmap variants")
    _save(fig, _probe_caption(res), path, top=0.95)


PROBE_FIGURES = {"boundary": fig_probe_boundary, "dynamic": fig_probe_dynamic,
                 "trim": fig_probe_trim, "arenas": fig_probe_arenas, "read-vs-mmap": fig_read_vs_mmap}


def plot_probes(probes: dict, out_dir: str) -> list[tuple[str, str]]:
    made = []
    for name, draw in PROBE_FIGURES.items():
        res = probes.get(name)
        if res and res.get("allocator", "glibc") == "glibc":  # the mmap probes name no allocator
            draw(res, os.path.join(out_dir, f"probe_{name}.png"))
            made.append((f"probe_{name}.png", name))
    return made


def plot_all(recs: list[dict], out_dir: str) -> list[tuple[str, str]]:
    """Write every figure the records allow; returns [(file name, title)]."""
    os.makedirs(out_dir, exist_ok=True)
    cap = caption(recs)
    made = []

    def add(name, title, ok):
        if ok:
            made.append((name, title))

    p = lambda n: os.path.join(out_dir, n)  # noqa: E731
    t = "churn: ns per malloc+touch+free vs size (median, band = min-max)"
    add("churn_ns_per_op.png", t, fig_vs_size(recs, "churn", lambda r: r["ns_per_op"]["median"],
                                              "ns per operation (log)", t, p("churn_ns_per_op.png"), cap, band=True))
    t = "churn: memory syscalls per operation (brk+mmap+munmap+mremap+madvise+mprotect)"
    add("churn_syscalls_per_op.png", t, fig_vs_size(recs, "churn", syscalls_per_op, "syscalls per operation",
                                                    t, p("churn_syscalls_per_op.png"), cap))
    t = "churn: page faults per operation"
    add("churn_faults_per_op.png", t, fig_vs_size(recs, "churn", lambda r: r["faults_per_op"],
                                                  "faults per operation", t, p("churn_faults_per_op.png"), cap))
    t = "churn ns/op: allocation size x glibc mmap threshold"
    add("heatmap_ns_per_op.png", t, fig_heatmap(recs, lambda r: r["ns_per_op"]["median"], "ns per op",
                                                t, p("heatmap_ns_per_op.png"), cap))
    t = "churn syscalls/op: allocation size x glibc mmap threshold"
    add("heatmap_syscalls_per_op.png", t, fig_heatmap(recs, syscalls_per_op, "syscalls per op",
                                                      t, p("heatmap_syscalls_per_op.png"), cap))
    add("batch_footprint.png", "batch: peak RSS, fragmentation and retained memory vs size",
        fig_footprint(recs, p("batch_footprint.png"), cap))
    add("allocators_128k.png", "allocators compared around 128 KiB (churn)",
        fig_allocators(recs, p("allocators_128k.png"), cap))
    return made + plot_fragmentation(recs, out_dir)


def plot_cost_model(recs: list[dict], calibration: dict, out_dir: str) -> list[tuple[str, str]]:
    from .costmodel import evaluate

    rows = evaluate(recs, calibration["units_ns"])
    if not rows:
        return []
    fig_cost_model(rows, os.path.join(out_dir, "cost_model.png"), caption(recs))
    return [("cost_model.png", "cost model: predicted vs measured")]


def plot_everything(recs: list[dict], out_dir: str, probes: dict | None = None,
                    calibration: dict | None = None) -> list[tuple[str, str]]:
    """Every figure the report shows: the results', the probes' and the cost model's."""
    made = plot_all(recs, out_dir)
    if probes:
        made += plot_probes(probes, out_dir)
    if calibration:
        made += plot_cost_model(recs, calibration, out_dir)
    return made


# ---- fragmentation (memory over time; one definition for every allocator) ----

FRAG_PATTERNS = ("fragment", "grow", "sawtooth", "checkerboard", "handoff")


def size_of(rec: dict) -> int:
    """A cell's place on a size axis: its size, or the top of its band (grow)."""
    return rec["size_bytes"] if rec["size_bytes"] is not None else rec["size_hi"]


def frag_series(recs, pattern):
    out = defaultdict(list)
    for r in recs:
        if r["status"] == "ok" and r["pattern"] == pattern and r.get("timeline"):
            out[series_key(r)].append(r)
    return {k: sorted(v, key=size_of) for k, v in sorted(out.items(), key=lambda kv: series_order(kv[0]))}


def nearest(rows, size):
    return min(rows, key=lambda r: abs(size_of(r) - size)) if rows else None


def fig_timelines(recs, path, cap, pattern="fragment", size=132 * KIB):
    """(a) live against RSS over the run, one panel per allocator or threshold."""
    groups = frag_series(recs, pattern)
    picks = [(k, nearest(rows, size)) for k, rows in groups.items()]
    picks = [(k, r) for k, r in picks if r is not None]
    if not picks:
        return False
    cols = min(5, len(picks))
    rows = -(-len(picks) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False, sharey=True)
    for ax, (key, r) in zip(axes.flat, picks):
        t = r["timeline"]
        ax.plot(t["op"], np.array(t["rss_bytes"]) / MIB, "-", color="C3", label="RSS growth")
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
    _save(fig, cap, path, top=0.97)
    return True


def fig_fragmentation_vs_size(recs, path, cap):
    """(b) fragmentation_peak and retained-after-free against size, per pattern."""
    patterns = [p for p in FRAG_PATTERNS if frag_series(recs, p)]
    if not patterns:
        return False
    fig, axes = plt.subplots(2, len(patterns), figsize=(4 * len(patterns), 7), squeeze=False)
    for j, pattern in enumerate(patterns):
        for key, rows in frag_series(recs, pattern).items():
            style = "-" if is_glibc(key) else "--"
            for i, (field, scale) in enumerate((("fragmentation_peak", 1), ("retained_after_free_bytes", 1 / MIB))):
                pts = [(size_of(r), r[field] * scale) for r in rows if r.get(field) is not None]
                if pts:
                    axes[i][j].plot(*zip(*pts), style, marker="o", ms=2, label=series_label(key))
        axes[0][j].set_title(pattern)
        for i, label in enumerate(("fragmentation at peak RSS", "RSS held after free-all (MiB)")):
            _size_axis(axes[i][j], [size_of(r) for rows in frag_series(recs, pattern).values() for r in rows])
            axes[i][j].set_ylabel(label if j == 0 else "")
            axes[i][j].grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=6, ncol=2)
    _save(fig, cap, path)
    return True


def tradeoff_points(recs, pattern):
    """(series, median ns/op, median RSS/live) over the pattern's sizes."""
    out = []
    for key, rows in frag_series(recs, pattern).items():
        ns = [r["ns_per_op"]["median"] for r in rows]
        over = [r["overhead_mean"] for r in rows if r.get("overhead_mean")]
        if ns and over:
            out.append((key, float(np.median(ns)), float(np.median(over))))
    return out


def fig_tradeoff(recs, path, cap):
    """(c) time against memory, every threshold and allocator a point, per pattern."""
    patterns = [p for p in FRAG_PATTERNS if tradeoff_points(recs, p)]
    if not patterns:
        return False
    fig, axes = plt.subplots(1, len(patterns), figsize=(4 * len(patterns), 4.2), squeeze=False)
    for ax, pattern in zip(axes[0], patterns):
        pts = tradeoff_points(recs, pattern)
        for key, x, y in pts:
            ax.scatter([x], [y], s=22, marker="o" if is_glibc(key) else "s")
            ax.annotate(series_label(key), (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
        front = sorted(pts, key=lambda p: p[1])
        best, frontier = float("inf"), []
        for key, x, y in sorted(pts, key=lambda p: (p[1], p[2])):
            if y < best:
                best = y
                frontier.append((x, y))
        ax.plot(*zip(*sorted(frontier)), "k:", lw=1)
        ax.set_xscale("log")
        ax.set_title(pattern)
        ax.set_xlabel("ns per operation (median over sizes)")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("mean RSS / live bytes (median over sizes)")
    fig.suptitle("the threshold's trade-off: time against memory (dotted: the frontier)")
    _save(fig, cap, path, top=0.95)
    return True


BREAKDOWN = (("live_heap", "live, on the heap"), ("heap_overhead", "heap chunk headers and rounding"),
             ("free_chunks", "free chunks inside the heap"), ("top_chunk", "top chunk"),
             ("live_mmapped", "live, mmapped"), ("mmapped_rounding", "mmapped headers and page rounding"))


def fig_glibc_breakdown(recs, path, cap, pattern="fragment"):
    """(d) where glibc's memory goes at the peak, per size, dynamic and fixed 128 KiB."""
    keys = [("glibc", ()), ("glibc", (("mmap_threshold", 128 * KIB),))]
    groups = frag_series(recs, pattern)
    panels = [(k, [r for r in groups.get(k, []) if 64 * KIB <= size_of(r) <= 512 * KIB
                   and r.get("glibc_breakdown_peak")]) for k in keys]
    panels = [(k, rows) for k, rows in panels if rows]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5), squeeze=False, sharey=True)
    for ax, (key, rows) in zip(axes[0], panels):
        xs = np.arange(len(rows))
        bottom = np.zeros(len(rows))
        for field, label in BREAKDOWN:
            vals = np.array([r["glibc_breakdown_peak"][field] for r in rows]) / MIB
            ax.bar(xs, vals, bottom=bottom, label=label)
            bottom += vals
        ax.plot(xs, [r["glibc_breakdown_peak"]["resident"] / MIB for r in rows], "k_", ms=18, mew=2,
                label="resident (RSS growth)")
        ax.set_xticks(xs)
        ax.set_xticklabels([size_label(size_of(r)) for r in rows], rotation=60, fontsize=7)
        ax.set_title(f"{series_label(key)}: {pattern}, at peak RSS")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].set_ylabel("MiB (virtual: mallinfo2 arena + hblkhd)")
    axes[0][-1].legend(fontsize=7)
    _save(fig, cap, path)
    return True


def plot_fragmentation(recs: list[dict], out_dir: str) -> list[tuple[str, str]]:
    cap = caption(recs)
    made = []
    for name, title, draw in (
            ("frag_timelines.png", "(a) fragment near 132 KiB: live against RSS over the run", fig_timelines),
            ("frag_vs_size.png", "(b) fragmentation at peak and memory held after free-all, by size",
             fig_fragmentation_vs_size),
            ("frag_tradeoff.png", "(c) the trade-off: ns/op against mean RSS over live", fig_tradeoff),
            ("frag_glibc_breakdown.png", "(d) where glibc's memory goes at the peak (fragment)",
             fig_glibc_breakdown)):
        if draw(recs, os.path.join(out_dir, name), cap):
            made.append((name, title))
    return made


# ---- real programs (allocbench exec) ----

def program_name(rec: dict) -> str:
    """A program's short name: the script for an interpreter, else the binary."""
    cmd = rec["command"]
    script = next((os.path.basename(a) for a in cmd[1:] if a.endswith(".py")), None)
    return script or os.path.basename(cmd[0])


def fig_program_rss(recs: list[dict], name: str, path: str) -> bool:
    """RSS over time of one program, one line per setting (its first ok repeat)."""
    runs = {}
    for r in recs:
        if r["status"] == "ok" and program_name(r) == name and r["timeline"]["t_ns"]:
            runs.setdefault(series_key(r), r)
    if not runs:
        return False
    fig, ax = plt.subplots(figsize=SIZE_FIGURE)
    for key in sorted(runs, key=series_order):
        t = runs[key]["timeline"]
        ax.plot(np.array(t["t_ns"]) / 1e9, np.array(t["rss_bytes"]) / MIB, "-" if is_glibc(key) else "--",
                label=series_label(key))
    ax.legend(fontsize=7)
    _finish(fig, ax, f"{name}: RSS over time (allocbench exec, one run per setting)", "seconds",
            "RSS (MiB)", caption(recs), path)
    return True
