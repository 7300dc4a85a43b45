"""The mmap claims the project grew from (`allocbench probe read-vs-mmap |
lazy | unmappable | shared | private | shm`): each claim, its evidence and
the verdict computed from it by the probe (allocbench/mmap_probes.py)."""
from __future__ import annotations

from ..series import probe_caption


def fig_read_vs_mmap(res: dict):
    """Throughput against file size, one line per method; warm and cold panels
    (every byte consumed); where the best mmap first beats the best read() by
    the probe's test is marked."""
    def draw(path, cap):
        from .draw import plt, save, size_axis
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
            from ..units import size_label
            wins = set((res.get("wins") or {}).get("mmap", []))
            first = next((s for s in sizes if f"{cache} all {size_label(s)}" in wins), None)
            if first:
                ax.axvline(first, color="k", ls=":", lw=1)
                ax.text(first, 0.97, " mmap ahead at 95% from here", fontsize=7, rotation=90, va="top",
                        transform=ax.get_xaxis_transform())
            size_axis(ax, sizes)
            ax.set_title(f"{cache} page cache, every byte summed")
            ax.set_xlabel("file size")
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("GB/s (median, band = min-max)")
        axes[1].legend(fontsize=7)
        fig.suptitle("probe read-vs-mmap: read() with 4 KiB, 64 KiB, 1 MiB buffers against mmap variants")
        return save(fig, probe_caption(res), path, top=0.95)
    return draw


FIGURES = {"read-vs-mmap": fig_read_vs_mmap}


def render(inputs, canvas) -> list[str]:
    claims = {k: v for k, v in (inputs.probes or {}).items() if isinstance(v, dict) and "claim" in v}
    if not claims:
        return []
    lines = ["## The mmap claims", "",
             "From `allocbench probe read-vs-mmap | lazy | unmappable | shared | private | shm`: each observation is "
             "a fresh process; each verdict is computed from the evidence listed under it.", ""]
    for probe, res in claims.items():
        lines += [f"### {probe}", "", f"*Claim:* {res['claim']}", "", "*Evidence:*", ""]
        lines += [f"- {e}" for e in res["evidence"]]
        lines += ["", f"*Verdict:* {res['verdict']}.", ""]
        if probe in FIGURES:
            lines += canvas.figure(f"probe_{probe}.png", f"probe {probe}", FIGURES[probe](res))
    return lines
