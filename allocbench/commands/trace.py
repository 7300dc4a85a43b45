"""allocbench trace info: what a trace holds."""
from __future__ import annotations

import json

from .common import Parser, UsageError

NAME, HELP = "trace", "traces: info"


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="trace_command", required=True, parser_class=Parser)
    info = sub.add_parser("info", help="what a trace holds: operations, sizes, peak live bytes, lifetimes, threads")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")


def run(args) -> int:
    from .. import traces

    try:
        i = traces.info(args.file)
    except traces.TraceError as e:
        raise UsageError(str(e)) from None
    print(json.dumps(i) if args.json else "\n".join(traces.summary_lines(i)))
    return 0
