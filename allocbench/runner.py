"""One measured cell = one fresh process.  The parent validates a spec, runs the
C program allocbench-cell (with LD_PRELOAD for a preloaded allocator), and turns
its JSON into a record; a crash or hang becomes a failed record.  The cell is C,
not Python, so its heap holds only the workload's blocks: a Python child's heap
already has free chunks and a large top chunk that serve requests above the
mmap threshold with no mmap at all.  Children start through children.py."""
from __future__ import annotations

import os

from . import _native, machine, records
from ._native import CELL_DEFAULTS  # the C defaults and list, csrc/lib/workloads.c
from .backends import BACKENDS
from .children import DEFAULT_TIMEOUT_S, ChildFailed, child_env, program, run_json
from .counters import METHODS, hold_tracepoints
from .results import build_hash

MAX_PROCESSES = 20


REPLAY_THREADS = _native.REPLAY_MODES  # one, recorded (csrc/lib/replay.h)
REPLAY_WINDOW_DEFAULT = _native.REPLAY_WINDOW_DEFAULT


def _flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


_CHECKED: set = set()


def _check_trace(path: str, mode: str, window: int) -> None:
    """The cell's preparation of a trace, once per file version (a sweep makes many specs of one trace)."""
    st = os.stat(path)
    key = (path, st.st_mtime_ns, st.st_size, mode, window)
    if key not in _CHECKED:
        _native.check_trace(path, mode, window)
        _CHECKED.add(key)


def make_spec(allocator="glibc", pattern="churn", size=None, size_lo=None, size_hi=None,
              ops=None, threads=None, live=None, touch=None, seed=None, repeats=None, warmup=None,
              settings=None, counter_method="auto", trace=None, processes=None, replay_threads=None,
              replay_window=None, latency=False) -> dict:
    """A validated cell description; ValueError names what is wrong.  Omitted
    values take the C defaults; the ranges are checked by the C validator.
    processes: how many fresh processes measure the cell (1..MAX_PROCESSES);
    their repeats are pooled.
    touch: True (every page), "first" (each block's first page) or False.
    pattern "trace" replays the trace file `trace`; its events are the ops,
    on one thread or on its recorded threads (replay_threads, replay_window).
    latency: two more untimed repeats (in the first process) time every call
    and name the slowest (csrc/lib/calltime.h)."""
    if allocator not in BACKENDS:
        raise ValueError(f"unknown allocator {allocator!r}; known: {', '.join(BACKENDS)}")
    if (pattern == "trace") != (trace is not None):
        raise ValueError("pattern trace needs a trace file (--trace FILE), and only it takes one")
    if trace is None and (replay_threads is not None or replay_window is not None):
        raise ValueError("replay_threads and replay_window apply to pattern trace only")
    if trace is not None:
        from .traces import read
        trace = os.path.abspath(trace)
        ops = read(trace)[0]["events"]  # TraceError (a ValueError) names what is wrong
        if not ops:
            raise ValueError(f"{trace}: an empty trace")
        size = size_lo = size_hi = None
        size_lo = size_hi = 0
        threads = 1  # ns per event; the cell runs the trace on as many threads as its mode needs
        replay_threads = REPLAY_THREADS[0] if replay_threads is None else replay_threads
        replay_window = REPLAY_WINDOW_DEFAULT if replay_window is None else replay_window
        if replay_threads not in REPLAY_THREADS:
            raise ValueError(f"replay_threads must be one of {', '.join(REPLAY_THREADS)}, got {replay_threads!r}")
        if not isinstance(replay_window, int) or isinstance(replay_window, bool) or not 1 <= replay_window < 2**31:
            raise ValueError(f"replay_window must be a whole number of events, at least 1, got {replay_window!r}")
        _check_trace(trace, replay_threads, replay_window)  # what the cell would refuse, refused here
    processes = 1 if processes is None else processes
    if not isinstance(processes, int) or isinstance(processes, bool) or not 1 <= processes <= MAX_PROCESSES:
        raise ValueError(f"processes must be a whole number from 1 to {MAX_PROCESSES}, got {processes!r}")
    if touch not in (None, True, False, "first"):
        raise ValueError(f"touch must be true, false or \"first\", got {touch!r}")
    if size is not None:
        if size_lo is not None or size_hi is not None:
            raise ValueError("give either a size or a size band (size_lo, size_hi), not both")
        size_lo = size_hi = size
    if size_lo is None or size_hi is None:
        raise ValueError("a size (or size_lo and size_hi) is required")
    given = {"ops": ops, "threads": threads, "live": live, "touch": touch, "seed": seed,
             "repeats": repeats, "warmup": warmup}
    v = {k: CELL_DEFAULTS[k] if x is None else x for k, x in given.items()}
    _native.check_cell(pattern, size_lo, size_hi, v["ops"], v["threads"], v["live"], v["seed"],
                       v["repeats"], v["warmup"])
    settings = dict(settings or {})
    BACKENDS[allocator].check_settings(settings)
    if counter_method != "auto" and counter_method not in METHODS:
        raise ValueError(f"unknown counter method {counter_method!r}; expected auto or one of {METHODS}")
    return {"allocator": allocator, "settings": settings, "pattern": pattern,
            "size_lo": size_lo, "size_hi": size_hi, "ops": v["ops"], "threads": v["threads"],
            "live": v["live"], "touch": v["touch"] if v["touch"] == "first" else bool(v["touch"]),
            "seed": v["seed"], "repeats": v["repeats"], "warmup": v["warmup"], "processes": processes,
            "counter_method": counter_method, "latency": _flag(latency, "latency"),
            **({"trace": trace, "replay_threads": replay_threads, "replay_window": replay_window} if trace else {})}


def cell_binary() -> str:
    """The C program that measures one cell."""
    return program("allocbench-cell", "ALLOCBENCH_CELL")


def cell_build(allocator: str) -> str | None:
    """What an allocator's cells are measured with, by content (results.build_hash): the cell program
    (the workloads, the counters and the toy compiled in) and the library preloaded, if any; None for
    an allocator allocbench does not know."""
    backend = BACKENDS.get(allocator)
    return build_hash([cell_binary(), backend.library_path()]) if backend else None


def cell_command(spec: dict, extra: tuple = ()) -> tuple[list[str], dict]:
    """(argv, environment) of the process that measures a cell."""
    backend = BACKENDS[spec["allocator"]]
    touch = {True: 1, False: 0, "first": 2}[spec["touch"]]
    argv = [cell_binary(), f"allocator={backend.cell}", f"method={spec['counter_method']}", f"touch={touch}"]
    if spec.get("trace"):
        argv += [f"trace={spec['trace']}", f"replay_threads={spec['replay_threads']}",
                 f"replay_window={spec['replay_window']}"]
    argv += [f"{k}={spec[k]}" for k in ("pattern", "size_lo", "size_hi", "ops", "threads",
                                        "live", "seed", "repeats", "warmup")]
    args, env = backend.cell_run(spec["settings"])
    return argv + args + list(extra), child_env(backend.cell_preload(), env)


def run_cell(spec: dict, timeout: float = DEFAULT_TIMEOUT_S, env_info: dict | None = None) -> dict:
    """Measure one cell in fresh processes (spec["processes"], 1 unless given);
    never raises for the children's failures.  Several processes pool their
    repeats: a process's timings share its memory layout (which physical
    pages, which cache sets), and on a shared machine that alone can move a
    cell's median by a third; the first process gives the timeline and the
    footprint."""
    return run_cells([spec], timeout, env_info)[0]


def run_cells(specs: list[dict], timeout: float = DEFAULT_TIMEOUT_S, env_info: dict | None = None) -> list[dict]:
    """Measure cells that are compared with each other (run_cell for each),
    their processes taken in turns: the first process of every cell, then the
    second of every cell, and so on.  A shared machine's speed moves over
    seconds (a neighbour's load can halve it), so cells measured one after the
    other can land in different moods; taken in turns, they share them.
    Returns one record per spec, in order."""
    env_info = env_info or machine.describe()
    hold_tracepoints()
    done: list[dict | None] = [None] * len(specs)
    raws: list[dict | None] = [None] * len(specs)
    for i, spec in enumerate(specs):
        why = BACKENDS[spec["allocator"]].unavailable_reason()
        if why:
            done[i] = records.failed(spec, env_info, why, status="skipped")
    for turn in range(max(s.get("processes", 1) for s in specs)):
        for i, spec in enumerate(specs):
            if done[i] is not None or turn >= spec.get("processes", 1):
                continue
            extra = ("latency=1",) if spec.get("latency") and turn == 0 else ()  # the first process's
            try:
                one = run_json(*cell_command(spec, extra), timeout=timeout)
            except ChildFailed as e:
                done[i] = records.failed(spec, env_info, str(e))
                continue
            for r in one.get("repeats", []):
                r["process"] = turn
            if one.get("error"):
                done[i] = records.failed(spec, env_info, one["error"])
            elif raws[i] is None:
                raws[i] = {**one, "baselines": [one["baseline"]]}
            else:
                raws[i]["repeats"] = raws[i]["repeats"] + one["repeats"]
                raws[i]["baselines"].append(one["baseline"])
    out = [d or records.build(spec, raw, env_info) for d, spec, raw in zip(done, specs, raws)]
    for rec, spec in zip(out, specs):
        rec["build"] = cell_build(spec["allocator"])  # a resumed sweep takes only cells of its own build
    return out
