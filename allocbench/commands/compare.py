"""allocbench compare A B: two results files, row by row, in pyperf's manner."""
from __future__ import annotations

from .common import UsageError, load_results, record_kind

NAME, HELP = "compare", "two results files row by row: each ratio with its 95% interval, or 'same'"


def add_arguments(p) -> None:
    p.add_argument("a", help="results file A (the baseline)")
    p.add_argument("b", help="results file B")


def run(args) -> int:
    from ..compare import compare

    files = {path: load_results(path, strict=True) for path in (args.a, args.b)}
    for path, recs in files.items():  # rows pair cells or program runs; other records have no time to compare
        other = next((record_kind(r) for r in recs if record_kind(r) not in ("cell", "program", "peer")), None)
        if other:
            raise UsageError(f"{path}: compare takes cells or program runs, not {other} records")
    lines = compare(files[args.a], files[args.b])
    if lines is None:
        raise UsageError(f"no cell or program is in both {args.a} and {args.b}, even setting against setting")
    print("\n".join(lines))
    return 0
