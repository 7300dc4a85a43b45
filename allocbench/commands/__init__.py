"""The command line, one module per verb (NAME, HELP, add_arguments, run):
COMMANDS lists them, so a new verb is one new module and one line here.
Importing this loads neither numpy nor matplotlib: each verb imports what it
needs when it runs.

Exit status, the same in every verb (README, "Exit status"):
  0  done;
  1  what was measured failed: a cell crashed, a program exited non-zero or
     timed out (the record says which), or writing the results failed;
  2  bad input, one line, refused before any work and before anything is
     written (every --out is tried first);
  70 a bug in allocbench: its traceback and a request to report it, never
     dressed as the user's mistake (EX_SOFTWARE in sysexits.h);
  130, 141, 143 interrupted (Ctrl-C), the reader of stdout went away, or
     terminated (SIGTERM, every child killed first): a shell's status for a
     program SIGINT, SIGPIPE or SIGTERM ends."""
from __future__ import annotations

import os
import signal
import sys

from .. import __version__
from ..children import exit_on_sigterm
from . import advise, calibrate, compare, execute, info, inspect, plot, probe, record, report, run, sweep, trace
from .common import Parser, UsageError

COMMANDS = (info, run, sweep, probe, calibrate, plot, execute, record, trace, compare, report, advise, inspect)


def build_parser() -> Parser:
    p = Parser(prog="allocbench", description="Measure glibc malloc's brk and mmap paths.")
    p.add_argument("--version", action="version", version=f"allocbench {__version__}")
    sub = p.add_subparsers(dest="command_name", required=True, parser_class=Parser, metavar="VERB")
    for command in COMMANDS:
        verb = sub.add_parser(command.NAME, help=command.HELP.replace("%", "%%"), description=command.HELP)
        command.add_arguments(verb)
        verb.set_defaults(func=command.run)
    return p


EXIT_DONE, EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 70
EXIT_SIGPIPE = 128 + signal.SIGPIPE


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (poll says POLLERR on its write end)."""
    import select

    try:
        p = select.poll()
        p.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in p.poll(0))
    except (OSError, ValueError):
        return False


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)  # argparse's own errors: one line, exit 2 (Parser.error)
    exit_on_sigterm()  # exit 143, with every child gone
    try:
        status = args.func(args)
        sys.stdout.flush()  # here, not at exit: a reader gone is then seen below
        return status
    except UsageError as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise
        # the reader of our output went away (| head): stop quietly with the status cat would die with
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_SIGPIPE
    except OSError as e:  # a full disk, a results file removed under us: the measurement's, not the input's
        print(f"allocbench: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("allocbench: interrupted", file=sys.stderr)
        return 130
    except Exception:  # anything else is allocbench's own bug: say so, never blame the input
        import traceback

        traceback.print_exc()
        print(f"allocbench {__version__}: this is a bug in allocbench, not a problem with your input; please "
              "report it with the traceback above and the command line", file=sys.stderr)
        return EXIT_BUG
