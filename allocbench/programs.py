"""Unmodified programs under any knob: each run is one fresh process started by
the C launcher (allocbench-launch), with glibc's settings as GLIBC_TUNABLES and
other allocators by LD_PRELOAD (backends.py says which), counted exactly (perf
on the child's pid, its threads and children included) and sampled for RSS
over time.  One record per run, appended to a JSON Lines file and resumed like
a sweep, only with runs of the same build (program_build).  The settings of a
grid run in turns (each repeat of every setting, then the next repeat), so runs
compared with each other share the machine's moods, and the i-th runs of two
settings form a pair.

The program's input and output are the user's: stdin from --input (else
/dev/null), stdout and stderr to a log file beside the results
(OUT.logs/...), to the terminal with --show-output, or discarded.

Record fields use the cell record's names where they mean the same thing
(allocator, settings, syscalls, minor_faults, major_faults, peak_rss_bytes,
status, error, env, counter_method); besides them: kind ("program"), command,
program, repeat, wall_ns (the program: from releasing it to exec to its exit,
as a plain fork/exec/wait4 timer sees it), launcher_ns (the launcher's whole
life, its setup and wrap-up around that span: what the tool costs, kept apart
from the program's time), user_ns, sys_ns, cpu_ns (user + sys), exit_status,
signal, final_rss_bytes, mean_rss_bytes (the RSS-seconds integral over the
wall time, from the samples), timeline (t_ns, rss_bytes, anon_bytes, anon_huge_bytes of the
launched process; anon_huge_bytes only where smaps_rollup was read, at most
once a second), loader (the dynamic loader's own syscalls, measured once per
binary and allocator, never subtracted), explain (threshold rises, each with
its backtrace: object file, offset, function, and file:line where debug
information exists, resolved with addr2line after the run; with
--explain-threshold), log (the run's output, when kept) and output_tail (a
failed run's last lines).  With --latency (the preloaded shim): latency,
latency_clock, latency_clock_overhead_ns and slow_calls as in a cell record
(each slow call with its backtrace instead of counts, and a free's size null:
free is given none) of the process that made the most calls (latency_program),
and every process's in latency_processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from . import machine
from ._native import LAUNCH_MAX_HZ
from .backends import BACKENDS, glibc_backend, others
from .children import SHOW, ChildFailed, check_command, child_env, library, program, run_user, tail
from .counters import hold_tracepoints
from .glibc_constants import DEFAULT_MMAP_THRESHOLD
from .records import cell_key
from .results import append_record, build_hash, check_resumable, measured_keys, read_json, set_aside_other_builds
from .shimlog import parse_explain, parse_latency
from .units import MIB

LOADER_METHOD = ("the same binary with LD_TRACE_LOADED_OBJECTS=1: the dynamic loader maps every library "
                 "(and the preloaded one), prints the list and exits before main")
MAX_HZ = LAUNCH_MAX_HZ  # csrc/lib/counters.h: the launcher refuses more


def _grid_default() -> list[dict]:
    glibc = glibc_backend().name
    return ([{"allocator": glibc, "settings": s} for s in (
        {}, {"mmap_threshold": DEFAULT_MMAP_THRESHOLD},
        {"mmap_threshold": DEFAULT_MMAP_THRESHOLD, "trim_threshold": 64 * MIB})]
            + [{"allocator": name, "settings": {}} for name in others()])


def _grid_threads() -> list[dict]:
    """The default grid and the arena counts a threaded program is tuned with (MALLOC_ARENA_MAX 1, 2, 4):
    arena_max only changes a program with threads, so only this grid has it."""
    glibc = glibc_backend().name
    return _grid_default() + [{"allocator": glibc, "settings": {"arena_max": n}} for n in (1, 2, 4)]


GRIDS = {
    "quick": lambda: [{"allocator": glibc_backend().name, "settings": {}},
                      {"allocator": glibc_backend().name, "settings": {"mmap_threshold": DEFAULT_MMAP_THRESHOLD}}],
    "default": _grid_default,
    "threads": _grid_threads,
}


def program_env(allocator: str, settings: dict, explain_log: str | None = None,
                latency_log: str | None = None) -> dict:
    """The environment entries a program gets for an allocator and its settings
    (and the shims asked for: the latency shim first, so it times the
    allocator's calls whichever library they go to)."""
    env, preload = BACKENDS[allocator].program_env(settings)
    if explain_log:
        preload.append(library("libexplain.so"))
        env["ALLOCBENCH_EXPLAIN_LOG"] = explain_log
    if latency_log:
        preload.insert(0, library("liblatency.so"))
        env["ALLOCBENCH_LATENCY_LOG"] = latency_log
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return env


def launch(command: list[str], env: dict, hz: int, timeout: float, stdin: str | None = None,
           output: str | None = None, cwd: str | None = None) -> dict:
    """One run through the launcher: its JSON.  The program's output goes to
    `output` (a log file, SHOW, or None), its input comes from `stdin`; it
    runs in `cwd` (default: here)."""
    hold_tracepoints()
    fd, out = tempfile.mkstemp(prefix="allocbench-launch-", suffix=".json")
    os.close(fd)
    argv = [program("allocbench-launch"), f"hz={hz}", f"out={out}", f"timeout_ms={max(1, round(timeout * 1000))}"]
    argv += [f"env={k}={v}" for k, v in env.items()] + ["--", *command]
    try:
        start = time.monotonic_ns()
        status = run_user(argv, child_env(), timeout + 30, stdin=stdin, output=output, cwd=cwd)
        launcher_ns = time.monotonic_ns() - start
        with open(out) as f:
            text = f.read()
        raw = json.loads(text) if text.strip() else {}
        raw["launcher_ns"] = launcher_ns
        if status != 0 or "error" in raw:
            raise ChildFailed(f"launcher exit {status}: {raw.get('error') or 'no result'}")
        return raw
    except (OSError, json.JSONDecodeError) as e:
        raise ChildFailed(f"launcher: {e}") from None
    finally:
        os.unlink(out)


def process_calls(proc: dict) -> int:
    """The allocation calls one process of a --latency run made, over every kind."""
    return sum(k["count"] for k in proc["kinds"].values())


def latency_fields(procs: list[dict]) -> dict:
    """An exec record's latency fields: its processes' (latency_processes), and
    those of the process that made the most calls as the record's own
    (latency, latency_clock, latency_clock_overhead_ns, slow_calls with their
    call sites)."""
    if not procs:
        return {"latency": None, "latency_error": "the latency shim wrote nothing (a static or setuid binary "
                                                  "ignores LD_PRELOAD)"}
    symbolize([f for p in procs for c in p["slow_calls"] for f in c["backtrace"]])
    main = max(procs, key=process_calls)
    return {"latency": main["kinds"], "latency_clock": main.get("clock"),
            "latency_clock_overhead_ns": main.get("clock_overhead_ns"), "slow_calls": main["slow_calls"],
            "latency_program": main["program"], "latency_processes": procs}


def symbolize(frames: list[dict]) -> None:
    """Add "source" (file:line) to each backtrace frame whose object has debug
    information, and its function where dladdr found none (a symbol only the
    debug information names), with one addr2line call per object, after the
    run: nothing of this happens inside the program."""
    tool = shutil.which("addr2line")
    frames = [f for f in frames if os.path.isfile(f["object"])]
    if not tool or not frames:
        return
    by_object = {}
    for f in frames:
        by_object.setdefault(f["object"], []).append(f)
    for obj, fs in by_object.items():
        try:
            out = subprocess.run([tool, "-f", "-C", "-e", obj, *[f["offset"] for f in fs]], capture_output=True,
                                 text=True, timeout=30).stdout.splitlines()
        except (OSError, subprocess.TimeoutExpired):
            continue
        for f, function, line in zip(fs, out[0::2], out[1::2]):  # two lines an address: function, file:line
            line = line.split(" (discriminator")[0].removesuffix(":?").removesuffix(":0")
            if line and not line.startswith("??"):
                f["source"] = line  # file:line, or the file alone where the line is unknown
            if not f.get("function") and function and function != "??":
                f["function"] = function
    demangle(frames)


def demangle(frames: list[dict]) -> None:
    """C++ names as a person reads them, by binutils' c++filt (one call for all): "function"
    demangled in full, the symbol as it was in "function_mangled"."""
    tool = shutil.which("c++filt")
    mangled = [f for f in frames if (f.get("function") or "").startswith("_Z")]
    if not tool or not mangled:
        return
    try:
        out = subprocess.run([tool], input="\n".join(f["function"] for f in mangled), capture_output=True, text=True,
                             timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return
    for f, name in zip(mangled, out):
        f["function_mangled"], f["function"] = f["function"], name


def short_function(name: str, width: int = 60) -> str:
    """A function's name for a line of text: its argument list and template arguments left out
    ("rocksdb::BuildTable(...)" for a 1,000-character signature), at most `width` characters."""
    out, depth = [], 0
    for ch in name:
        if ch in "<(":
            if depth == 0 and ch == "<":
                out.append("<…>")
            depth += 1
        elif ch in ">)" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    text = "".join(out).strip()
    return text if len(text) <= width else text[:width - 1] + "…"


def frame_text(frame: dict) -> str:
    """A frame in a line: its function, shortened, and where: file:line, else object+offset."""
    where = frame.get("source") or f"{os.path.basename(frame['object'])}+{frame['offset']}"
    return f"{short_function(frame['function'])} ({where})" if frame.get("function") else where


def mean_rss(timeline: dict) -> float | None:
    """The time-weighted mean RSS of a run: the RSS-seconds integral (trapezoids
    between samples) over the sampled time."""
    t, rss = timeline["t_ns"], timeline["rss_bytes"]
    if len(t) < 2 or t[-1] <= t[0]:
        return rss[-1] if rss else None
    return sum((t[i + 1] - t[i]) * (rss[i] + rss[i + 1]) / 2 for i in range(len(t) - 1)) / (t[-1] - t[0])


def log_path(out: str | None, command: list[str], allocator: str, settings: dict, repeat: int) -> str | None:
    """Where a run's output is kept: OUT.logs/PROGRAM.ALLOCATOR[.SETTINGS].rN.log (None: no --out)."""
    if not out:
        return None
    label = ".".join([os.path.basename(command[0]), allocator] + [f"{k}={v}" for k, v in settings.items()])
    return os.path.join(os.path.splitext(out)[0] + ".logs", f"{label}.r{repeat + 1}.log")


def program_build(command: list[str], allocator: str) -> str:
    """What a program run was measured with, by content (results.build_hash): the launcher, the
    program's executable and arguments, and the library the allocator preloads.  A script or data file
    the program reads is not among them."""
    exe = command[0] if os.sep in command[0] else shutil.which(command[0])
    return build_hash([program("allocbench-launch"), exe if exe and os.path.isfile(exe) else None,
                       BACKENDS[allocator].library_path()], json.dumps(command[1:]))


def run_program(command: list[str], allocator: str, settings: dict, repeat: int, hz: int = 100,
                timeout: float = 600, explain: bool = False, env_info: dict | None = None,
                loader_cache: dict | None = None, stdin: str | None = None, output: str | None = None,
                cwd: str | None = None, latency: bool = False) -> dict:
    env_info = env_info or machine.describe()
    rec = {"kind": "program", "command": command, "program": os.path.basename(command[0]),
           "allocator": allocator, "settings": settings, "repeat": repeat, "env": env_info,
           "log": output if output != SHOW else None, "build": program_build(command, allocator)}
    why = BACKENDS[allocator].unavailable_reason()
    if why:
        return {**rec, "status": "skipped", "error": why}
    log = tempfile.mkstemp(prefix="allocbench-explain-")[1] if explain else None
    lat_log = tempfile.mkstemp(prefix="allocbench-latency-")[1] if latency else None
    env = program_env(allocator, settings, log, lat_log)
    try:
        raw = launch(command, env, hz, timeout, stdin=stdin, output=output, cwd=cwd)
        key = (command[0], allocator)
        if loader_cache is not None and key not in loader_cache:
            loader_env = {k: v for k, v in env.items() if k not in ("ALLOCBENCH_EXPLAIN_LOG", "ALLOCBENCH_LATENCY_LOG")}
            loader_env["LD_TRACE_LOADED_OBJECTS"] = "1"
            loader_cache[key] = launch(command[:1], loader_env, hz, 60, cwd=cwd)["syscalls"]
        explained = None
        if log:
            with open(log) as f:
                explained = parse_explain(f.read())
            symbolize([f for r in explained["rises"] for f in r["backtrace"]])
        if lat_log:
            with open(lat_log) as f:
                rec.update(latency_fields(parse_latency(f.read())))
    except ChildFailed as e:
        return {**rec, "status": "failed", "error": str(e)}
    finally:
        for path in (log, lat_log):
            if path:
                os.unlink(path)
    rss = raw["timeline"]["rss_bytes"]
    rec.update({
        "syscalls": raw["syscalls"], "minor_faults": raw["minor_faults"], "major_faults": raw["major_faults"],
        "peak_rss_bytes": raw["max_rss_bytes"], "final_rss_bytes": rss[-1] if rss else None,
        "wall_ns": raw["wall_ns"], "launcher_ns": raw["launcher_ns"], "user_ns": raw["user_ns"],
        "sys_ns": raw["sys_ns"],
        "cpu_ns": raw["user_ns"] + raw["sys_ns"], "mean_rss_bytes": mean_rss(raw["timeline"]),
        "exit_status": raw["exit_status"], "signal": raw["signal"], "timeline": raw["timeline"],
        "counter_method": raw["counter_method"], "counter_note": raw["counter_note"],
        "loader": {"syscalls": (loader_cache or {}).get((command[0], allocator)), "method": LOADER_METHOD},
        "explain": explained})
    if raw["exec_error"]:
        rec.update(status="failed", error=f"cannot run {command[0]}: {raw['exec_error']}")
    elif raw["timed_out"]:
        rec.update(status="failed", error=f"timeout: killed after {timeout:g} s")
    elif raw["signal"]:
        rec.update(status="failed", error=f"crashed: killed by SIG{raw['signal']}")
    elif raw["exit_status"] != 0:
        rec.update(status="failed", error=f"exit status {raw['exit_status']}")
    else:
        rec.update(status="ok", error=None)
    if rec["status"] == "failed":
        rec["output_tail"] = tail(output)
    return rec


def load_grid(name_or_file: str) -> list[dict]:
    if name_or_file in GRIDS:
        return GRIDS[name_or_file]()
    try:
        grid = read_json(name_or_file)
    except ValueError as e:
        raise ValueError(f"grid {name_or_file}: {e} (or one of: {', '.join(GRIDS)})") from None
    if not isinstance(grid, list) or not all(isinstance(g, dict) and "allocator" in g for g in grid):
        raise ValueError(f"grid {name_or_file}: want a list of {{\"allocator\": ..., \"settings\": {{...}}}}")
    return grid


def check_grid(grid: list[dict]) -> None:
    for entry in grid:
        if entry["allocator"] not in BACKENDS:
            raise ValueError(f"unknown allocator {entry['allocator']!r}; known: {', '.join(BACKENDS)}")
        BACKENDS[entry["allocator"]].check_settings(entry.get("settings", {}))


def check_run_options(repeats: int, hz: int, stdin: str | None) -> None:
    """The options' one-line errors, before anything runs."""
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    if not 1 <= hz <= MAX_HZ:
        raise ValueError(f"--hz must be from 1 to {MAX_HZ} samples per second, got {hz}")
    if stdin and not os.path.isfile(stdin):
        raise ValueError(f"--input {stdin}: no such file")


def _run_key(command: list[str], entry: dict, repeat: int, latency: bool) -> dict:
    """What identifies a program run in a results file (records.cell_key reads it)."""
    return {"kind": "program", "command": command, "allocator": entry["allocator"],
            "settings": entry.get("settings", {}), "repeat": repeat, "latency": latency}


def check_runs(command: list[str], grid: list[dict], repeats: int, hz: int, stdin: str | None,
               out: str | None) -> None:
    """Everything run_grid would refuse, refused before anything runs (ValueError,
    FileNotFoundError, or ResultsError for an --out that cannot be resumed)."""
    check_command(command)
    check_grid(grid)
    check_run_options(repeats, hz, stdin)
    program("allocbench-launch")
    if out:
        check_resumable(out)


def run_grid(command: list[str], grid: list[dict], repeats: int, out: str | None, hz: int = 100,
             timeout: float = 600, explain: bool = False, stdin: str | None = None,
             show_output: bool = False, progress: bool | None = None, latency: bool = False) -> list[dict]:
    """Every (allocator, settings) x repeat not already in `out`, in turns;
    returns the new records.  `out` is resumed only with runs of the same build
    (program_build): a file holding another build's is moved aside whole first
    (results.set_aside_other_builds).  A line per run on stderr when it is a
    terminal (progress=None), or as `progress` says."""
    progress = sys.stderr.isatty() if progress is None else progress
    check_runs(command, grid, repeats, hz, stdin, out)
    if out:  # runs of another build (the toy rebuilt, a library upgraded) are not resumed: moved aside
        moved = set_aside_other_builds(out, lambda r: r.get("kind") != "program" or (
            r.get("allocator") in BACKENDS and r.get("build") == program_build(r["command"], r["allocator"])))
        if moved:
            print(f"exec: {moved}", file=sys.stderr)
    done = measured_keys(out) if out else set()
    env_info, loader_cache, new = machine.describe(), {}, []
    todo = [(e, r) for r in range(repeats) for e in grid]
    skipped = sum(cell_key(_run_key(command, e, r, latency)) in done for e, r in todo)
    if skipped:  # resuming is right, but a loop of --repeats 1 into one file would measure once, silently
        print(f"exec: {skipped} of {len(todo)} run(s) already measured in {out}: skipped (--repeats N adds runs)",
              file=sys.stderr)
    for i, (entry, r) in enumerate(todo, 1):
        settings = entry.get("settings", {})
        if cell_key(_run_key(command, entry, r, latency)) in done:
            continue
        output = SHOW if show_output else log_path(out, command, entry["allocator"], settings, r)
        rec = run_program(command, entry["allocator"], settings, r, hz, timeout, explain, env_info, loader_cache,
                          stdin=stdin, output=output, latency=latency)
        if out:
            append_record(out, rec)
        new.append(rec)
        if progress:
            label = " ".join([entry["allocator"]] + [f"{k}={v}" for k, v in settings.items()])
            print(f"[{i}/{len(todo)}] {label} repeat {r + 1}: {rec['status']}"
                  + (f" ({rec['error']})" if rec.get("error") else f", {rec['wall_ns'] / 1e9:.2f} s"),
                  file=sys.stderr, flush=True)
    return new
