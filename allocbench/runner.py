"""One measured cell = one fresh process.  The parent validates a spec, runs the
C program allocbench-cell (with LD_PRELOAD for a preloaded allocator), and turns
its JSON into a record; a crash or hang becomes a failed record.  The cell is C,
not Python, so its heap holds only the workload's blocks: a Python child's heap
already has free chunks and a large top chunk that serve requests above the
mmap threshold with no mmap at all."""
from __future__ import annotations

import json
import os
import signal
import subprocess

from . import machine, records
from ._native import PATTERNS  # the C list, csrc/workloads.c
from .backends import BACKENDS, GLIBC_SETTINGS, TOY_SETTINGS
from .counters import METHODS
from .toy import check_setting as check_toy_setting

DEFAULT_TIMEOUT_S = 300


def make_spec(allocator="glibc", pattern="churn", size=None, size_lo=None, size_hi=None,
              ops=10000, threads=1, live=64, touch=True, seed=1, repeats=5, warmup=1,
              settings=None, counter_method="auto") -> dict:
    """A validated cell description; ValueError names what is wrong."""
    from .glibc import MALLOPT_PARAMS

    if allocator not in BACKENDS:
        raise ValueError(f"unknown allocator {allocator!r}; known: {', '.join(BACKENDS)}")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    if size is not None:
        if size_lo is not None or size_hi is not None:
            raise ValueError("give either a size or a size band (size_lo, size_hi), not both")
        size_lo = size_hi = size
    if size_lo is None or size_hi is None:
        raise ValueError("a size (or size_lo and size_hi) is required")
    if pattern == "band" and size_lo == size_hi:
        raise ValueError("pattern band needs size_lo < size_hi")
    if pattern == "realloc-grow" and size_lo == size_hi:
        raise ValueError("pattern realloc-grow needs size_lo (the step) < size_hi (the target)")
    for name, value, lo, hi in (("size_lo", size_lo, 0, 1 << 40), ("size_hi", size_hi, 0, 1 << 40),
                                ("ops", ops, 1, 10**9), ("threads", threads, 1, 256),
                                ("live", live, 1, 1 << 20), ("repeats", repeats, 1, 1000),
                                ("warmup", warmup, 0, 100), ("seed", seed, 0, 2**63)):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if size_lo > size_hi:
        raise ValueError(f"size_lo {size_lo} exceeds size_hi {size_hi}")
    settings = dict(settings or {})
    for key, value in settings.items():
        if key in TOY_SETTINGS:
            if allocator != "toy":
                raise ValueError(f"{key} is a toy allocator setting; it does not apply to {allocator}")
            check_toy_setting(key.removeprefix("toy_"), value, prefix="toy_")
            continue
        if key not in GLIBC_SETTINGS:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(GLIBC_SETTINGS + TOY_SETTINGS)}")
        if not BACKENDS[allocator].glibc:
            raise ValueError(f"{key} is a glibc mallopt setting; it does not apply to {allocator}")
        p = MALLOPT_PARAMS[key]
        if not isinstance(value, int) or not p.lo <= value <= p.hi:
            raise ValueError(f"{key} must be in [{p.lo}, {p.hi}] ({p.why}), got {value!r}")
    if counter_method != "auto" and counter_method not in METHODS:
        raise ValueError(f"unknown counter method {counter_method!r}; expected auto or one of {METHODS}")
    return {"allocator": allocator, "settings": settings, "pattern": pattern,
            "size_lo": size_lo, "size_hi": size_hi, "ops": ops, "threads": threads,
            "live": live, "touch": bool(touch), "seed": seed, "repeats": repeats,
            "warmup": warmup, "counter_method": counter_method}


def program(name: str, override: str | None = None) -> str:
    """One of allocbench's C programs, built beside this package by `make build`;
    the environment variable `override` may point elsewhere (e.g. a debug build)."""
    path = (override and os.environ.get(override)) or os.path.join(os.path.dirname(__file__), name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{path} is missing or not executable: run `make build`")
    return path


def cell_binary() -> str:
    """The C program that measures one cell."""
    return program("allocbench-cell", "ALLOCBENCH_CELL")


def child_env(preload: str | None = None) -> dict:
    """This environment for a measured child: its malloc is the one asked for,
    never an LD_PRELOAD inherited from whoever started allocbench."""
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def cell_argv(spec: dict) -> list[str]:
    from .glibc import MALLOPT_PARAMS
    from .toy import POLICIES

    backend = BACKENDS[spec["allocator"]]
    kind = backend.in_process or ("glibc" if backend.glibc else "libc")
    argv = [cell_binary(), f"allocator={kind}",
            f"method={spec['counter_method']}", f"touch={int(spec['touch'])}"]
    argv += [f"{k}={spec[k]}" for k in ("pattern", "size_lo", "size_hi", "ops", "threads",
                                        "live", "seed", "repeats", "warmup")]
    for k, v in spec["settings"].items():
        if k == "toy_policy":
            argv.append(f"toy_policy={POLICIES.index(v)}")
        elif k in TOY_SETTINGS:
            argv.append(f"{k}={v}")
        else:
            argv.append(f"mallopt={MALLOPT_PARAMS[k].value}:{v}")
    return argv


def run_cell(spec: dict, timeout: float = DEFAULT_TIMEOUT_S, env_info: dict | None = None) -> dict:
    """Measure one cell in a fresh process; never raises for the child's failures."""
    env_info = env_info or machine.describe()
    why = BACKENDS[spec["allocator"]].unavailable_reason()
    if why:
        return records.failed(spec, env_info, why, status="skipped")
    env = child_env(BACKENDS[spec["allocator"]].library_path())
    try:
        proc = subprocess.run(cell_argv(spec), capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return records.failed(spec, env_info, f"timeout: no result within {timeout:g} s")
    if proc.returncode == -signal.SIGINT:
        raise KeyboardInterrupt  # Ctrl-C reached the cell too: stop, record nothing for it
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        return records.failed(spec, env_info, f"crashed: killed by {name}")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return records.failed(spec, env_info, f"exit status {proc.returncode}: {tail}")
    try:
        raw = json.loads(lines[-1])
    except json.JSONDecodeError:
        return records.failed(spec, env_info, f"unreadable cell output: {lines[-1][:200]!r}")
    if raw.get("error"):
        return records.failed(spec, env_info, raw["error"])
    return records.build(spec, raw, env_info)
