"""What every figure shares: matplotlib with the agg backend, sizes, the
caption along the bottom, a size axis.  Imported only when a figure is drawn."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..glibc_constants import DEFAULT_MMAP_THRESHOLD
from ..units import size_label  # noqa: E402

DPI = 90  # 110 cost make bench 7 s of drawing; the figures read as well
SIZE_FIGURE = (10, 6)      # a metric against allocation size
HEATMAP_FIGURE = (12, 5)   # size x threshold
FOOTPRINT_FIGURE = (15, 5)  # batch footprint, three panels


def save(fig, cap: str, path: str, top: float = 1.0, svg: bool = False) -> bool:
    """Every figure ends here: the caption along the bottom, then the file."""
    fig.text(0.01, 0.005, cap, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.03, 1, top))
    fig.savefig(path, dpi=DPI)
    if svg:  # the headline figures scale for slides and papers too
        fig.savefig(os.path.splitext(path)[0] + ".svg")
    plt.close(fig)
    return True


def finish(fig, ax, title, xlabel, ylabel, cap, path, svg=False) -> bool:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    return save(fig, cap, path, svg=svg)


def size_axis(ax, sizes) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted({s for s in sizes if s & (s - 1) == 0} | {DEFAULT_MMAP_THRESHOLD})
    ax.set_xticks(ticks)
    ax.set_xticklabels([size_label(t) for t in ticks], rotation=45, fontsize=8)

