"""allocbench compare A B: two results files, row by row, in pyperf's manner."""
from __future__ import annotations

from .common import UsageError, load_results

NAME, HELP = "compare", "two results files row by row: each ratio with its 95% interval, or 'same'"


def add_arguments(p) -> None:
    p.add_argument("a", help="results file A (the baseline)")
    p.add_argument("b", help="results file B")


def run(args) -> int:
    from ..compare import compare

    lines = compare(load_results(args.a, strict=True), load_results(args.b, strict=True))
    if lines is None:
        raise UsageError(f"no cell or program is in both {args.a} and {args.b}, even setting against setting")
    print("\n".join(lines))
    return 0
