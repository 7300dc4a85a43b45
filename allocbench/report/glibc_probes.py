"""Probes of glibc's behaviour (`allocbench probe boundary | dynamic | trim |
arenas`): each summary as the probe wrote it, and its figure."""
from __future__ import annotations

from collections import defaultdict

from ..backends import glibc_backend
from ..series import probe_caption
from ..units import MIB, size_label


def fig_boundary(res):
    def draw(path, cap):
        from .draw import finish, plt
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
        return finish(fig, ax, "probe boundary: the smallest request glibc serves with mmap", "",
                      "request size (bytes)", probe_caption(res), path)
    return draw


def fig_dynamic(res):
    def draw(path, cap):
        if "steps" not in res:
            return False
        from .draw import finish, plt
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
        return finish(fig, ax, "probe dynamic: glibc's threshold after each free of an mmapped chunk",
                      "mmapped chunk freed (in sequence)", "bytes (log)", probe_caption(res), path)
    return draw


def fig_trim(res):
    def draw(path, cap):
        from .draw import finish, plt
        p = res["pinned"]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        ax.bar(["allocated", "all but the pin freed", "after malloc_trim(0)"],
               [p[s]["rss_bytes"] / MIB for s in ("allocated", "freed", "trimmed")],
               color=["tab:blue", "tab:red", "tab:green"])
        return finish(fig, ax, "probe trim: a pinned heap keeps its pages until malloc_trim", "", "RSS (MiB)",
                      probe_caption(res), path)
    return draw


def fig_arenas(res):
    def draw(path, cap):
        from .draw import plt, save
        turns = res.get("turns") or []
        fig, axes = plt.subplots(1, 3 if turns else 2, figsize=(17 if turns else 12, 4.5))
        groups = defaultdict(list)
        for r in res["rows"]:
            groups["default" if r["arena_max"] is None else f"M_ARENA_MAX={r['arena_max']}"].append(r)
        for name, rows in groups.items():
            t = [r["threads"] for r in rows]
            sc = [r["syscalls"] for r in rows]  # None where not counted: matplotlib leaves a gap
            axes[0].plot(t, [None if s["mmap"] is None else s["mmap"] + s["mprotect"] for s in sc], "o-", label=name)
            axes[1].plot(t, [s["brk"] for s in sc], "o-", label=name)
        for ax, label in zip(axes, ("mmap + mprotect calls", "brk calls")):
            ax.set_xlabel("worker threads")
            ax.set_ylabel(label)
            ax.set_xscale("log", base=2)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        if turns:  # threads taking turns: live stays one burst, each arena keeps its peak
            ax = axes[2]
            names = ["default" if r["arena_max"] is None else f"arena_max={r['arena_max']}" for r in turns]
            x = range(len(turns))
            ax.bar([i - 0.2 for i in x], [r["live_peak_bytes"] / 2**20 for r in turns], 0.4, label="live peak")
            ax.bar([i + 0.2 for i in x], [r["rss_growth_peak_bytes"] / 2**20 for r in turns], 0.4,
                   label="anonymous RSS growth at peak")
            for i, r in zip(x, turns):
                ax.annotate(f"{r['arena_heaps']} heaps", (i + 0.2, r["rss_growth_peak_bytes"] / 2**20),
                            ha="center", va="bottom", fontsize=8)
            ax.set_xticks(list(x), names, fontsize=8)
            ax.set_ylabel("MiB")
            ax.set_title(f"{turns[0]['threads']} threads taking turns", fontsize=10)
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("probe arenas: where threads get memory (each: 256 x 16 KiB live)")
        return save(fig, probe_caption(res), path)
    return draw


def fig_trim_pause(res):
    def draw(path, cap):
        from .draw import plt, save
        fig, ax = plt.subplots(figsize=(8, 5))
        page = res.get("page_size", 4096)
        for e in res["cases"]:
            label = f"{e['arena']} arena, {e['layout']}, {e['how']}"
            xs = [rb / page for r in e["rows"] for rb in r["released_bytes"] if rb > 0]
            ys = [ns / 1e6 for r in e["rows"] for rb, ns in zip(r["released_bytes"], r["ns"]) if rb > 0]
            dots = ax.plot(xs, ys, "o", ms=3, alpha=0.6, label=label)
            if e["fit"] and xs:
                lo, hi = min(xs), max(xs)
                grid = [lo * (hi / lo) ** (i / 40) for i in range(41)]
                ax.plot(grid, [(e["fit"]["a"] + e["fit"]["b"] * x) / 1e6 for x in grid], "-", lw=1,
                        color=dots[0].get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pages returned (4 KiB)")
        ax.set_ylabel("pause (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title("probe trim-pause: a trim's pause against what it returns (lines: the fits)")
        return save(fig, probe_caption(res), path)
    return draw


FIGURES = {"boundary": fig_boundary, "dynamic": fig_dynamic, "trim": fig_trim, "arenas": fig_arenas,
           "trim-pause": fig_trim_pause}


def render(inputs, canvas) -> list[str]:
    probes = {k: v for k, v in (inputs.probes or {}).items()
              if isinstance(v, dict) and "claim" not in v and "summary" in v}
    if not probes:
        return []
    lines = ["## Probes of glibc's behaviour", "",
             "From `allocbench probe all`: each observation is a fresh process; numbers are found by search.", ""]
    for probe, res in probes.items():
        lines += [f"### probe {probe}", "", "```", *res["summary"], "```", ""]
        if probe in FIGURES and res.get("allocator", glibc_backend().name) == glibc_backend().name:
            lines += canvas.figure(f"probe_{probe}.png", f"probe {probe}", FIGURES[probe](res))
    return lines
