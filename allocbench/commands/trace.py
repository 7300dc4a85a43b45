"""allocbench trace info: what a trace holds, and with --fidelity how far its
replay is from the program it recorded."""
from __future__ import annotations

import json
import sys

from .common import (
    Parser,
    UsageError,
    add_allocator_flag,
    add_setting_flags,
    count_arg,
    records_out,
    seconds_arg,
    settings_given,
)

NAME, HELP = "trace", "traces: info (--fidelity: the replay against the program)"


def add_arguments(p) -> None:

    sub = p.add_subparsers(dest="trace_command", required=True, parser_class=Parser)
    info = sub.add_parser("info", help="what a trace holds: operations, sizes, peak live bytes, lifetimes, threads")
    info.add_argument("file")
    info.add_argument("--json", action="store_true")
    info.add_argument("--fidelity", action="store_true",
                      help="run the program again (the header's argv, in its cwd) under exec and under the recorder, "
                           "replay it on one thread and on its recorded threads, and print each error")
    add_allocator_flag(info, "--fidelity: the allocator of the program and of the replays; ")
    add_setting_flags(info)
    info.add_argument("--replay-window", type=count_arg, help="--fidelity: the recorded threads' window, in events")
    info.add_argument("--input", metavar="FILE", help="--fidelity: the program's stdin (default: /dev/null)")
    info.add_argument("--timeout", type=seconds_arg, default=600, help="--fidelity: seconds per run (600)")
    info.add_argument("--out", type=records_out, help="--fidelity: also append the record to this JSON Lines file")


def run(args) -> int:
    from .. import traces

    settings = settings_given(args)
    if not args.fidelity:
        if settings or args.out or args.input or args.replay_window is not None:
            raise UsageError("settings, --replay-window, --input and --out go with --fidelity")
        try:
            i = traces.info(args.file)
        except traces.TraceError as e:
            raise UsageError(str(e)) from None
        print(json.dumps(i) if args.json else "\n".join(traces.summary_lines(i)))
        return 0
    from .. import fidelity
    from ..results import append_record

    if args.replay_window == 0:
        raise UsageError("--replay-window must be at least 1 event")
    say = (lambda line: print(f"fidelity: {line}", file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    try:
        rec = fidelity.measure(args.file, args.allocator, settings, window=args.replay_window, stdin=args.input,
                               timeout=args.timeout, say=say)
    except (fidelity.FidelityError, traces.TraceError) as e:
        raise UsageError(str(e)) from None
    except fidelity.FidelityFailed as e:
        print(f"allocbench: fidelity failed: {e}", file=sys.stderr)
        return 1
    if args.out:
        append_record(args.out, rec)
    print(json.dumps(rec) if args.json else "\n".join(fidelity.summary_lines(rec)))
    return 0
