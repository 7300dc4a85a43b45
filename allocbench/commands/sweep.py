"""allocbench sweep: a grid of cells into a JSON Lines file, resumable."""
from __future__ import annotations

import sys

from .common import UsageError, out_path, seconds_arg

NAME, HELP = "sweep", "run a grid of cells into a JSON Lines file (resumable)"


def add_arguments(p) -> None:
    from .. import _native
    from ..backends import BACKENDS
    from ..sweep import PRESETS

    p.add_argument("--preset", choices=list(PRESETS), default="quick")
    p.add_argument("--config", help="a JSON grid file instead of a preset (same shape as the presets)")
    p.add_argument("--allocators", nargs="+", choices=list(BACKENDS), help="only these allocators")
    p.add_argument("--patterns", nargs="+", choices=_native.PATTERNS, help="only these patterns")
    p.add_argument("--out", required=True, type=out_path,
                   help="results file (JSON Lines); appended to and resumed (a file with cells of another build is "
                        "moved aside to FILE.stale first)")
    p.add_argument("--timeout", type=seconds_arg, default=300, help="seconds per cell (300)")


def run(args) -> int:
    from .. import sweep
    from ..children import program
    from ..results import ResultsError, check_resumable

    try:
        grid = sweep.load_grid(args.preset, args.config)
        specs = sweep.expand(grid, allocators=args.allocators, patterns=args.patterns)
        program("allocbench-cell", "ALLOCBENCH_CELL")  # fail now, not after the first cell
        check_resumable(args.out)  # a results file that cannot be resumed is refused before any cell runs
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    except ResultsError as e:
        raise UsageError(f"cannot resume: {e}") from None
    if not specs:
        raise UsageError("the grid selects no cells")
    print(f"sweep: {len(specs)} cells -> {args.out}", file=sys.stderr)
    try:
        stats = sweep.run_sweep(specs, args.out, timeout=args.timeout)
    except KeyboardInterrupt:
        print(f"allocbench: interrupted; measured cells are in {args.out}, rerun to resume", file=sys.stderr)
        return 130
    print(f"sweep: {stats['ok']} measured, {stats['failed']} failed, {stats['skipped']} skipped, "
          f"{stats['done_before']} already in {args.out} ({stats['seconds']:.0f} s)", file=sys.stderr)
    return 1 if stats["failed"] else 0  # a failed cell is recorded with its reason; the others are measured
