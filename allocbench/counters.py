"""Exact counters over a window: memory syscalls, page faults, time, footprint.

    with allocbench.measure() as m:
        ...
    m.syscalls["mmap"], m.minor_faults, m.wall_ns, m.before, m.after, m.to_dict()

Methods, best first: "perf" (tracepoints syscalls:sys_enter_*, needs tracefs),
"strace" (strace attached to this process, exact but slow per syscall), and
"none" (syscall counts are None, with the reason; faults and time still work).
Counters count the thread that opened them and every thread it starts later.
ALLOCBENCH_COUNTER_METHOD picks the default method, ALLOCBENCH_TRACEFS the
tracefs mount and ALLOCBENCH_STRACE the strace binary.
"""
from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import _native

SYSCALLS = _native.SYSCALLS
METHODS = ("perf", "strace", "none")
_CODES = {"perf": _native.METHOD_PERF, "strace": _native.METHOD_STRACE, "none": _native.METHOD_NONE}
TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


def _tracefs() -> str:
    if os.environ.get("ALLOCBENCH_TRACEFS"):
        return os.environ["ALLOCBENCH_TRACEFS"]
    for path in TRACEFS_CANDIDATES:
        if os.path.exists(os.path.join(path, "events", "syscalls")):
            return path
    return TRACEFS_CANDIDATES[0]


def _strace() -> str:
    return os.environ.get("ALLOCBENCH_STRACE") or shutil.which("strace") or "/usr/bin/strace"


def default_method() -> str:
    method = os.environ.get("ALLOCBENCH_COUNTER_METHOD", "auto")
    if method != "auto" and method not in METHODS:
        raise ValueError(f"ALLOCBENCH_COUNTER_METHOD={method!r}: expected auto or one of {METHODS}")
    return method


class CounterUnavailable(RuntimeError):
    pass


_cache: dict[tuple[str, int], "_native.Counter"] = {}


def open_counter(method: str = "auto") -> tuple[str, "_native.Counter", str | None]:
    """Open (once per thread) counters by method name.  Returns (method used,
    counter, why better methods were not used).  "auto" falls back perf ->
    strace -> none; a named method that cannot work raises CounterUnavailable."""
    if method == "auto":
        method = default_method()
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown counter method {method!r}; expected auto or one of {METHODS}")
    tried = METHODS if method == "auto" else (method,)
    reasons = []
    for name in tried:
        key = (name, threading.get_ident())
        if key not in _cache:
            counter = _native.Counter(_CODES[name], _tracefs(), _strace())
            if counter.open_error:
                reasons.append(f"{name}: {counter.open_error}")
                continue
            _cache[key] = counter
        return name, _cache[key], "; ".join(reasons) or None
    raise CounterUnavailable("; ".join(reasons))


def probe_methods() -> dict[str, str | None]:
    """Each method -> None when it works here, else why not (tries a real window)."""
    out = {}
    for name in METHODS:
        counter = _native.Counter(_CODES[name], _tracefs(), _strace())
        if counter.open_error:
            out[name] = counter.open_error
            continue
        try:
            counter.begin()
            out[name] = counter.end()["error"]
        except OSError as e:
            out[name] = str(e)
    return out


@dataclass
class Measurement:
    method: str
    method_note: str | None = None  # why a better method was not used
    syscalls: dict = field(default_factory=dict)  # name -> count, or None when not measured
    minor_faults: int | None = None
    major_faults: int | None = None
    wall_ns: int | None = None
    cpu_ns: int | None = None
    thread_cpu_ns: int | None = None
    before: dict | None = None
    after: dict | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fill(m: Measurement, counts: dict) -> None:
    m.syscalls = counts["syscalls"]
    for key in ("minor_faults", "major_faults", "wall_ns", "cpu_ns", "thread_cpu_ns"):
        setattr(m, key, counts[key])
    m.error = counts.get("error")
    if m.method == "none" and not m.error:
        m.error = "syscalls not measured: " + (m.method_note or "counter method 'none' chosen")


@contextmanager
def measure(method: str = "auto"):
    """Count what the body does.  Footprints are read just outside the window."""
    name, counter, note = open_counter(method)
    m = Measurement(method=name, method_note=note)
    m.before = _native.footprint()
    counter.begin()
    try:
        yield m
    finally:
        fill(m, counter.end())
        m.after = _native.footprint()
