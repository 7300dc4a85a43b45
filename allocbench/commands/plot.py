"""allocbench plot: the report's figures alone (PNG, SVG for the headline ones)."""
from __future__ import annotations

from .report import add_inputs, run_plot

NAME, HELP = "plot", "the report's figures (PNG) from a results file, without the report"


def add_arguments(p) -> None:
    p.add_argument("results", help="a JSON Lines results file (cells)")
    p.add_argument("--out", default="plots", help="folder for the figures (plots/)")
    add_inputs(p)


run = run_plot
