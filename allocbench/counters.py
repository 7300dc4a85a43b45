"""Exact counters over a window: memory syscalls, page faults, time, footprint.

    with allocbench.measure() as m:
        ...
    m.syscalls["mmap"], m.minor_faults, m.wall_ns, m.before, m.after, m.to_dict()

Methods, best first: "perf" (tracepoints syscalls:sys_enter_*, needs tracefs),
"strace" (strace attached to this process, exact but slow per syscall), and
"none" (syscall counts are None, with the reason; faults and time still work).
The choice is made once, in C (csrc/lib/counters.c ab_counter_open_named), for the
cells, the probes and this module alike: ALLOCBENCH_COUNTER_METHOD picks the
default, ALLOCBENCH_TRACEFS the tracefs mount, ALLOCBENCH_STRACE the strace binary.
Counters count the thread that opened them and every thread it starts later.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from . import _native

SYSCALLS = _native.SYSCALLS
METHODS = _native.METHODS  # best first


class CounterUnavailable(RuntimeError):
    pass


_cache: dict[tuple[str, int], _native.Counter] = {}


def open_counter(method: str = "auto") -> tuple[str, _native.Counter, str | None]:
    """Open (once per thread) the counters C chooses for `method`.  Returns
    (method used, counter, why better methods were not used); a named method
    that cannot work, or an unknown name, raises CounterUnavailable."""
    if method != "auto" and method not in METHODS:
        raise ValueError(f"unknown counter method {method!r}; expected auto or one of {METHODS}")
    key = (method, threading.get_ident())
    if key not in _cache:
        counter = _native.Counter(method)
        if counter.open_error:
            raise CounterUnavailable(counter.open_error)
        _cache[key] = counter
    counter = _cache[key]
    return counter.method_name, counter, counter.note


def hold_tracepoints() -> None:
    """Before starting counted children (cells, probes, programs): keep the
    syscall tracepoints registered, so each child's perf counters open in
    microseconds instead of 0.25 s.  Once per process; where perf cannot work
    nothing is held, and the children say why themselves."""
    _native.hold_tracepoints()


def chosen_method() -> tuple[str | None, str | None]:
    """What "auto" picks here, as the cells will: (method, why better ones were passed over)."""
    counter = _native.Counter("auto")
    return counter.method_name, counter.note


def probe_methods() -> dict[str, str | None]:
    """Each method -> None when it works here, else why not (tries a real window)."""
    out = {}
    for name in METHODS:
        counter = _native.Counter(name)
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
