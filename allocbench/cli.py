"""The allocbench command line: argparse subcommands, one-line errors, exit 2 on bad input."""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class UsageError(Exception):
    """Bad input found after parsing: printed on one line, exit 2."""


def toy_library_path() -> str | None:
    path = os.path.join(os.path.dirname(__file__), "libtoyalloc.so")
    return path if os.path.exists(path) else None


def cmd_info(args) -> int:
    from . import counters, machine

    info = machine.describe()
    info["allocbench"] = __version__
    methods = counters.probe_methods()
    info["counter_methods"] = {name: ("available" if why is None else f"unavailable: {why}")
                               for name, why in methods.items()}
    info["counter_method_default"] = next((n for n in counters.METHODS if methods[n] is None), "none")
    info["fault_counter"] = "getrusage(RUSAGE_SELF) deltas"
    info["toy_library"] = toy_library_path()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key:<{width}}")
            for k, v in value.items():
                print(f"  {k:<{width - 2}}  {v}")
        else:
            print(f"{key:<{width}}  {value}")
    return 0


def build_parser() -> Parser:
    p = Parser(prog="allocbench", description="Measure glibc malloc's brk and mmap paths.")
    p.add_argument("--version", action="version", version=f"allocbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    info = sub.add_parser("info", help="machine, glibc and counter methods available here")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        print(f"allocbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allocbench: interrupted", file=sys.stderr)
        return 130
