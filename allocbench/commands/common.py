"""What the verbs share: the parser with one-line errors, the usage error,
argument types, the settings flags from the backends' tables, loading files."""
from __future__ import annotations

import argparse

from ..units import GIB, KIB, MIB


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors, help texts taken as plain prose (a "95%" is
    not a format code), and long choice lists named once in the help rather
    than spelled out in every usage line, so help fits 100 columns."""

    def error(self, message):  # one line instead of usage + error
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def add_argument(self, *args, **kwargs):
        if isinstance(kwargs.get("help"), str):
            kwargs["help"] = kwargs["help"].replace("%", "%%")
        choices = kwargs.get("choices")
        if choices is not None and "metavar" not in kwargs and len(",".join(map(str, choices))) > 30:
            name = kwargs.get("dest") or next((a for a in args if a.startswith("--")), args[0])
            kwargs["metavar"] = name.lstrip("-").replace("-", "_").upper()
            kwargs["help"] = (kwargs.get("help") or "").rstrip() + " (one of: " + ", ".join(map(str, choices)) + ")"
        return super().add_argument(*args, **kwargs)


class UsageError(Exception):
    """Bad input found after parsing: printed on one line, exit 2."""


UNITS = {"": 1, "B": 1, "K": KIB, "KIB": KIB, "M": MIB, "MIB": MIB, "G": GIB, "GIB": GIB}


def size_arg(text: str) -> int:
    """Bytes from "135168", "128K", "128KiB", "1M", "1MiB"."""
    t = text.strip().upper()
    digits = t.rstrip("KMGIB")
    unit = t[len(digits):]
    if not digits.isdigit() or unit not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 135168, 128K, 1MiB)")
    return int(digits) * UNITS[unit]


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def add_setting_flags(parser) -> None:
    """--mmap-threshold, --toy-policy, ...: one flag per row of every backend's settings table."""
    from ..backends import BACKENDS

    seen = set()
    for backend in BACKENDS.values():
        for s in backend.settings:
            if s.name in seen:
                continue
            seen.add(s.name)
            flag = "--" + s.name.replace("_", "-")
            if s.choices is not None:
                parser.add_argument(flag, choices=s.choices, help=s.help())
            else:
                parser.add_argument(flag, type=size_arg if s.in_bytes else count_arg, help=s.help())


def add_allocator_flag(parser, what: str = "") -> None:
    """--allocator NAME, one of the backends' table (glibc first: the default)."""
    from ..backends import BACKENDS

    parser.add_argument("--allocator", choices=list(BACKENDS), default=next(iter(BACKENDS)),
                        help=what + "; ".join(f"{n}: {b.about}" for n, b in BACKENDS.items()))


def settings_given(args) -> dict:
    """The settings flags given on the command line."""
    from ..backends import ALL_SETTINGS

    return {k: getattr(args, k) for k in ALL_SETTINGS if getattr(args, k, None) is not None}


def _writable(text: str, where: str) -> None:
    """ArgumentTypeError unless something can be made where `where` (a folder, perhaps not there
    yet) would be: the nearest existing ancestor gets a folder made and removed (access() says
    yes to root even in /proc)."""
    import os
    import tempfile

    folder = os.path.abspath(where)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".allocbench-"))
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot write {text}: no folder can be made in {folder} "
                                         f"({e.strerror})") from None


def out_path(text: str) -> str:
    """--out FILE: checked before any work, so a long measurement is never lost
    to a folder that cannot be written (it is created when missing)."""
    import os

    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a folder")
    _writable(text, os.path.dirname(os.path.abspath(text)))
    return text


def records_out(text: str) -> str:
    """--out FILE that records are appended to: as out_path, and a file already there must hold
    allocbench records, so that a trace or any other file given by mistake is not appended to."""
    from ..results import ResultsError, check_resumable

    path = out_path(text)
    try:
        check_resumable(path)
    except ResultsError as e:
        raise argparse.ArgumentTypeError(f"{e}: records are appended only to a file of records") from None
    return path


def out_dir(text: str) -> str:
    """--out FOLDER: tried before any work, as out_path tries a file (it is created when missing)."""
    import os

    if os.path.exists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    _writable(text, text)
    return text


def percentiles_text(h: dict) -> str:
    """One call kind's latency histogram in a line: "p50 38 ns  p90 …  p99 …  p99.9 …  max …"."""
    from ..units import human_ns

    return "  ".join(f"{label} {human_ns(h[key])}" for label, key in (
        ("p50", "p50_ns"), ("p90", "p90_ns"), ("p99", "p99_ns"), ("p99.9", "p999_ns"), ("max", "max_ns")))


def add_program_io(parser, what: str) -> None:
    """The measured program's input and output, as hyperfine offers them."""
    parser.add_argument("--input", metavar="FILE", help=f"feed FILE to {what}'s stdin (default: /dev/null, so no "
                        "run waits on the terminal)")
    parser.add_argument("--show-output", action="store_true",
                        help=f"pass {what}'s stdout and stderr through unchanged (allocbench's own lines go to "
                             "stderr); by default they go to a log file beside --out, or are discarded")


EXAMPLES = {"exec": "allocbench exec -- python3 script.py", "record": "allocbench record --out app.trace -- ./app",
            "advise": "allocbench advise -- ./app --its-args"}


def command_after_dashes(args) -> list[str]:
    """The program to run, given after --; refused, with an example of this verb, when there is none."""
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UsageError(f"no command: give it after --, e.g. {EXAMPLES[args.command_name]}")
    return command


def load_results(path: str, strict: bool = False) -> list[dict]:
    from ..results import ResultsError, latest_per_cell, load_records

    try:
        return latest_per_cell(load_records(path, strict))
    except ResultsError as e:
        raise UsageError(str(e)) from None


def record_kind(r: dict) -> str:
    """cell, program, peer (a program run scripts/toy-peers tagged), fidelity or inspect."""
    return "peer" if r.get("peer") else r.get("kind") or "cell"


def load_json(path: str | None, what: str):
    if not path:
        return None
    from ..results import read_json

    try:
        return read_json(path)
    except ValueError as e:
        raise UsageError(f"{what} file {path}: {e}") from None


def not_probes(probes) -> str | None:
    """Why a loaded probes file is not `allocbench probe`'s output ({name: result}), or None."""
    from ..probes import PROBES

    if not isinstance(probes, dict):
        return "not an object"
    if not probes:
        return "no probe results"
    unknown = sorted(k for k in probes if k not in PROBES)
    if unknown:
        return "unknown: " + ", ".join(unknown)
    return None if all(isinstance(v, dict) for v in probes.values()) else "entries that are not objects"


def load_probes_and_calibration(args):
    probes = load_json(args.probes, "probes")
    if isinstance(probes, dict) and "probe" in probes:  # one probe's output
        probes = {probes["probe"]: probes}
    why = None if probes is None else not_probes(probes)
    if why:  # a file of something else would leave every probe section out, silently
        raise UsageError(f"probes file {args.probes}: not the output of allocbench probe ({why})")
    calibration = load_json(args.calibration, "calibration")
    if calibration is not None and not isinstance((calibration or {}).get("units_ns"), dict):
        raise UsageError(f"calibration file {args.calibration}: no units_ns (write it with allocbench calibrate)")
    return probes, calibration
