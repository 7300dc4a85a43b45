"""allocbench record: a program's allocation calls into a trace."""
from __future__ import annotations

import argparse
import os
import sys

from .common import UsageError, add_program_io, command_after_dashes, out_path, seconds_arg

NAME, HELP = "record", "record a program's allocation calls into a trace (LD_PRELOAD)"


def trace_out(text: str) -> str:
    """--out FILE a new trace replaces: a file already there must be a trace (or empty), so that a
    results file or a source named by mistake is not overwritten."""
    from ..traces import MAGIC

    path = out_path(text)
    if os.path.isfile(path) and os.path.getsize(path):
        with open(path, "rb") as f:
            if f.read(len(MAGIC)) != MAGIC:
                raise argparse.ArgumentTypeError(f"{path} exists and is not a trace: a recording would replace it "
                                                 "(remove it, or give another path)")
    return path


def add_arguments(p) -> None:
    p.add_argument("--out", required=True, type=trace_out,
                   help="the trace file (a forked child's goes to OUT.PID; the program's output to OUT.log)")
    p.add_argument("--timeout", type=seconds_arg, default=3600, help="seconds before the program is killed (3600)")
    add_program_io(p, "the program")
    p.add_argument("command", nargs="...", help="-- CMD ARGS...")


def run(args) -> int:
    from .. import traces
    from ..children import SHOW, ChildFailed
    from ..units import human_bytes

    command = command_after_dashes(args)
    try:
        traces.check_record(command, args.input)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    try:
        files, status = traces.record(command, args.out, timeout=args.timeout, stdin=args.input,
                                      output=SHOW if args.show_output else args.out + ".log")
    except ChildFailed as e:  # a timeout, or a program that wrote no trace: the recording failed
        print(f"allocbench: record failed: {e}", file=sys.stderr)
        return 1
    ours = sys.stderr if args.show_output else sys.stdout
    for f in files:  # the program's own trace first, then its children's: each says whose it is (a wrapper
        i = traces.info(f)  # such as pyenv's shim leaves dozens of a shell's)
        print(f"{f}: {i['events']:,} events, {i['threads']} thread(s), peak live {human_bytes(i['peak_live_bytes'])}"
              f" ({os.path.basename(i['program'] or '?')})", file=ours)
    if status != 0:  # its trace is kept, but what was measured did not end well
        print(f"allocbench: the program exited with status {status} (its trace is kept)", file=sys.stderr)
        return 1
    return 0
