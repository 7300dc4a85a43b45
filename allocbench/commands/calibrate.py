"""allocbench calibrate: this host's unit costs, for the cost model."""
from __future__ import annotations

import json
import sys

from .common import UsageError, count_arg, out_path

NAME, HELP = "calibrate", "this host's unit costs (syscalls, faults, touches) for the cost model"


def add_arguments(p) -> None:
    p.add_argument("--runs", type=count_arg, default=5, help="fresh processes to take the median of (5)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", type=out_path, help="also write the JSON to this file (the report reads it)")


def run(args) -> int:
    from .. import costmodel
    from ..children import program

    if args.runs < 1:
        raise UsageError("--runs must be at least 1")
    try:
        program("allocbench-calibrate")
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    try:
        cal = costmodel.calibrate(args.runs)
    except RuntimeError as e:  # the calibration program failed: a measurement that failed
        print(f"allocbench: calibration failed: {e}", file=sys.stderr)
        return 1
    if args.out:
        from ..results import write_json_atomically
        write_json_atomically(args.out, cal)
    if args.json:
        print(json.dumps(cal))
        return 0
    for key, value in cal["units_ns"].items():
        if isinstance(value, dict):
            print(f"{key:<18} {', '.join(f'{k}: {v:,.1f}' for k, v in value.items())} ns")
        else:
            print(f"{key:<18} {value:>10.1f} ns")
    print(f"(median of {cal['runs']} fresh processes)")
    return 0
