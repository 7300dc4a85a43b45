"""The command line, one module per verb (NAME, HELP, add_arguments, run):
COMMANDS lists them, so a new verb is one new module and one line here.
Bad input is a one-line error with exit status 2.  Importing this loads
neither numpy nor matplotlib: each verb imports what it needs when it runs."""
from __future__ import annotations

import sys

from .. import __version__
from . import advise, calibrate, compare, execute, info, plot, probe, record, report, run, sweep, trace
from .common import Parser, UsageError

COMMANDS = (info, run, sweep, probe, calibrate, plot, execute, record, trace, compare, report, advise)


def build_parser() -> Parser:
    p = Parser(prog="allocbench", description="Measure glibc malloc's brk and mmap paths.")
    p.add_argument("--version", action="version", version=f"allocbench {__version__}")
    sub = p.add_subparsers(dest="command_name", required=True, parser_class=Parser)
    for command in COMMANDS:
        verb = sub.add_parser(command.NAME, help=command.HELP, description=command.HELP)
        command.add_arguments(verb)
        verb.set_defaults(func=command.run)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a results or plots path that cannot be written, a full disk
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("allocbench: interrupted", file=sys.stderr)
        return 130
