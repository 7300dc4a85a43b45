"""allocbench record: a program's allocation calls into a trace."""
from __future__ import annotations

import sys

from .common import UsageError, add_program_io, command_after_dashes, seconds_arg

NAME, HELP = "record", "record a program's allocation calls into a trace (LD_PRELOAD)"


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, help="the trace file (a forked child's goes to OUT.PID; the program's "
                                                "output to OUT.log)")
    p.add_argument("--timeout", type=seconds_arg, default=3600, help="seconds before the program is killed (3600)")
    add_program_io(p, "the program")
    p.add_argument("command", nargs="...", help="-- CMD ARGS...")


def run(args) -> int:
    from .. import traces
    from ..children import SHOW, ChildFailed
    from ..units import human_bytes

    command = command_after_dashes(args)
    try:
        files, status = traces.record(command, args.out, timeout=args.timeout, stdin=args.input,
                                      output=SHOW if args.show_output else args.out + ".log")
    except (ValueError, FileNotFoundError, ChildFailed) as e:
        raise UsageError(str(e)) from None
    ours = sys.stderr if args.show_output else sys.stdout
    for f in files:
        i = traces.info(f)
        print(f"{f}: {i['events']:,} events, {i['threads']} thread(s), peak live {human_bytes(i['peak_live_bytes'])}",
              file=ours)
    if status != 0:
        print(f"allocbench: warning: the program exited with status {status}", file=sys.stderr)
    return 0
