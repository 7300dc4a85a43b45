"""allocbench info: this machine, glibc, the counter methods, and the tables."""
from __future__ import annotations

import json
import os
from importlib import import_module

NAME, HELP = "info", "machine, glibc, counter methods and allocbench's tables (allocators, toy policies)"


def _module(name: str):
    return import_module(f"..{name}", __package__)


# What --field can print without probing the machine: allocbench's own lists, by name (--field's
# choices too).  Each module is imported only when its list is asked for, not when the parser is built.
FIELDS = {
    "allocators": lambda: list(_module("backends").BACKENDS),
    "debian_packages": lambda: _module("backends").debian_packages(),
    "toy_policies": lambda: list(_module("toy").POLICIES),
    "toy_knob_edges": lambda: _module("backends").toy_knob_edges(),
}


def fields() -> dict:
    """Every list --field can print."""
    return {name: get() for name, get in FIELDS.items()}


def helpers() -> dict[str, str]:
    """Every native helper of helpers.HELPERS: its path, or why it cannot be used."""
    from ..children import library, program
    from ..helpers import HELPERS

    out = {}
    for name in HELPERS:
        try:
            out[name] = library(name) if name.endswith(".so") else program(name)
        except FileNotFoundError as e:
            out[name] = f"missing: {e}"
    return out


def add_arguments(p) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--field", choices=tuple(FIELDS),
                   help="print one list, space-separated, for scripts and the Makefile")


def run(args) -> int:
    from .. import __version__, counters, machine, toy

    if args.field:
        print(" ".join(fields()[args.field]))
        return 0
    info = machine.describe()
    info["allocbench"] = __version__
    methods = counters.probe_methods()
    info["counter_methods"] = {name: ("always (counts no syscalls)" if name == "none" else
                                      "available" if why is None else f"unavailable: {why}")
                               for name, why in methods.items()}
    info["counter_method_default"] = counters.chosen_method()[0]  # what the cells will use
    info["fault_counter"] = "getrusage(RUSAGE_SELF) deltas"
    info["toy_library"] = toy.library_path()
    info["package"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    info["helpers"] = helpers()
    info.update(fields())
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max([*map(len, info), *(len(k) + 2 for v in info.values() if isinstance(v, dict) for k in v)])
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key:<{width}}")
            for k, v in value.items():
                print(f"  {k:<{width - 2}}  {v}")
        else:
            print(f"{key:<{width}}  {' '.join(value) if isinstance(value, list) else value}")
    return 0
