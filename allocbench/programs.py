"""Unmodified programs under any knob: each run is one fresh process started by
the C launcher (allocbench-launch), with glibc's settings as GLIBC_TUNABLES and
other allocators by LD_PRELOAD, counted exactly (perf on the child's pid, its
threads and children included) and sampled for RSS over time.  One record per
run, appended to a JSON Lines file and resumed like a sweep.

Record fields use the cell record's names where they mean the same thing
(allocator, settings, syscalls, minor_faults, major_faults, peak_rss_bytes,
status, error, env, counter_method); besides them: kind ("program"), command,
repeat, wall_ns, user_ns, sys_ns, exit_status, signal, final_rss_bytes,
timeline (t_ns, rss_bytes, anon_bytes, anon_huge_bytes of the launched
process), loader (the dynamic loader's own syscalls, measured once per binary
and allocator, never subtracted) and explain (threshold rises, with
--explain-threshold)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile

from . import machine
from .backends import BACKENDS, toy_library
from .records import cell_key
from .results import append_record, measured_keys
from .runner import ChildFailed, child_env, program, run_child
from .units import KIB, MIB

LOADER_METHOD = ("the same binary with LD_TRACE_LOADED_OBJECTS=1: the dynamic loader maps every library "
                 "(and the preloaded one), prints the list and exits before main")
# glibc's tunables that mallopt has no number for (programs only)
EXTRA_TUNABLES = {"tcache_count": (0, 65535), "hugetlb": (0, 2)}

GRIDS = {
    "quick": [{"allocator": "glibc", "settings": {}},
              {"allocator": "glibc", "settings": {"mmap_threshold": 128 * KIB}}],
    "default": [{"allocator": "glibc", "settings": {}},
                {"allocator": "glibc", "settings": {"mmap_threshold": 128 * KIB}},
                {"allocator": "glibc", "settings": {"mmap_threshold": 128 * KIB, "trim_threshold": 64 * MIB}},
                {"allocator": "glibc", "settings": {"arena_max": 2}},
                {"allocator": "jemalloc", "settings": {}}, {"allocator": "tcmalloc", "settings": {}},
                {"allocator": "mimalloc", "settings": {}}, {"allocator": "toy", "settings": {}}],
}


def check_setting(allocator: str, name: str, value) -> None:
    if allocator == "glibc" and name in EXTRA_TUNABLES:
        lo, hi = EXTRA_TUNABLES[name]
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
        return
    BACKENDS[allocator].setting(name).check(value)


def program_env(allocator: str, settings: dict, explain_log: str | None = None) -> tuple[dict, list[str]]:
    """The environment entries a program gets for an allocator and its settings:
    (extra environment, the preload list)."""
    backend = BACKENDS[allocator]
    env, preload = {}, []
    tunables = []
    for name, value in settings.items():
        if name in EXTRA_TUNABLES:
            tunables.append(f"glibc.malloc.{name}={value}")
            continue
        s = backend.setting(name)
        if s.tunable:
            tunables.append(f"{s.tunable}={value}")
        elif s.env:
            env[s.env] = str(value)
    if tunables:
        env["GLIBC_TUNABLES"] = ":".join(tunables)
    lib = toy_library() if allocator == "toy" else backend.library_path()
    if lib:
        preload.append(lib)
    if explain_log:
        preload.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "libexplain.so"))
        env["ALLOCBENCH_EXPLAIN_LOG"] = explain_log
    if preload:
        env["LD_PRELOAD"] = ":".join(preload)
    return env, preload


def launch(command: list[str], env: dict, hz: int, timeout: float) -> dict:
    """One run through the launcher; the program's own output is kept apart."""
    fd, out = tempfile.mkstemp(prefix="allocbench-launch-", suffix=".json")
    os.close(fd)
    argv = [program("allocbench-launch"), f"hz={hz}", f"out={out}", f"timeout={int(timeout)}"]
    argv += [f"env={k}={v}" for k, v in env.items()] + ["--", *command]
    try:
        import subprocess
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30, env=child_env())
        if proc.returncode != 0:
            raise ChildFailed(f"launcher exit {proc.returncode}: {proc.stderr.strip()[-300:]}")
        with open(out) as f:
            raw = json.load(f)
        raw["output_tail"] = (proc.stdout + proc.stderr).strip().splitlines()[-5:]
        return raw
    except (OSError, json.JSONDecodeError) as e:
        raise ChildFailed(f"launcher: {e}") from None
    finally:
        os.unlink(out)


EXPLAIN_RISE = re.compile(r"explain: rise t_ns (\d+) old (\d+) new (\d+) trim (\d+)")
EXPLAIN_SUMMARY = re.compile(r"explain: summary rises (\d+) final_threshold (\d+) moved_blocks (\d+) moved_bytes (\d+)")


def parse_explain(text: str) -> dict:
    """The shim's log: each rise with its backtrace, and the moved blocks."""
    rises, summary, frames = [], None, None
    for line in text.splitlines():
        m = EXPLAIN_RISE.match(line)
        if m:
            t, old, new, trim = map(int, m.groups())
            frames = []
            rises.append({"t_ns": t, "old_threshold": old, "new_threshold": new, "trim_threshold": trim,
                          "backtrace": frames})
        elif line.startswith("explain: end of backtrace"):
            frames = None
        elif (m := EXPLAIN_SUMMARY.match(line)):
            n, final, blocks, nbytes = map(int, m.groups())
            summary = {"rise_count": n, "final_threshold": final, "moved_blocks": blocks, "moved_bytes": nbytes}
        elif frames is not None:
            frames.append(line.strip())
    return {"rises": rises, **(summary or {"rise_count": len(rises)})}


def run_program(command: list[str], allocator: str, settings: dict, repeat: int, hz: int = 100,
                timeout: float = 600, explain: bool = False, env_info: dict | None = None,
                loader_cache: dict | None = None) -> dict:
    env_info = env_info or machine.describe()
    rec = {"kind": "program", "command": command, "program": os.path.basename(command[0]),
           "allocator": allocator, "settings": settings, "repeat": repeat, "env": env_info}
    why = BACKENDS[allocator].unavailable_reason() if allocator != "toy" else (
        None if os.path.exists(toy_library()) else f"{toy_library()} not built (`make build`)")
    if why:
        return {**rec, "status": "skipped", "error": why}
    log = tempfile.mkstemp(prefix="allocbench-explain-")[1] if explain else None
    env, _ = program_env(allocator, settings, log)
    try:
        raw = launch(command, env, hz, timeout)
        key = (command[0], allocator)
        if loader_cache is not None and key not in loader_cache:
            loader_env = {k: v for k, v in env.items() if k != "ALLOCBENCH_EXPLAIN_LOG"}
            loader_env["LD_TRACE_LOADED_OBJECTS"] = "1"
            loader_cache[key] = launch(command[:1], loader_env, hz, 60)["syscalls"]
        explained = None
        if log:
            with open(log) as f:
                explained = parse_explain(f.read())
    except ChildFailed as e:
        return {**rec, "status": "failed", "error": str(e)}
    finally:
        if log:
            os.unlink(log)
    rss = raw["timeline"]["rss_bytes"]
    rec.update({
        "syscalls": raw["syscalls"], "minor_faults": raw["minor_faults"], "major_faults": raw["major_faults"],
        "peak_rss_bytes": raw["max_rss_bytes"], "final_rss_bytes": rss[-1] if rss else None,
        "wall_ns": raw["wall_ns"], "user_ns": raw["user_ns"], "sys_ns": raw["sys_ns"],
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
        rec.update(status="failed", error=f"exit status {raw['exit_status']}: "
                                          + " | ".join(raw["output_tail"][-2:]))
    else:
        rec.update(status="ok", error=None)
    return rec


def load_grid(name_or_file: str) -> list[dict]:
    if name_or_file in GRIDS:
        return GRIDS[name_or_file]
    try:
        with open(name_or_file) as f:
            grid = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"grid {name_or_file}: {e} (or one of: {', '.join(GRIDS)})") from None
    if not isinstance(grid, list) or not all(isinstance(g, dict) and "allocator" in g for g in grid):
        raise ValueError(f"grid {name_or_file}: want a list of {{\"allocator\": ..., \"settings\": {{...}}}}")
    return grid


def check_command(command: list[str]) -> None:
    if not command:
        raise ValueError("no command: give it after --, e.g. allocbench exec -- python3 script.py")
    if not shutil.which(command[0]):
        raise ValueError(f"command not found: {command[0]}")


def run_grid(command: list[str], grid: list[dict], repeats: int, out: str | None, hz: int = 100,
             timeout: float = 600, explain: bool = False) -> list[dict]:
    """Every (allocator, settings) x repeat not already in `out`; returns the new records."""
    check_command(command)
    for entry in grid:
        if entry["allocator"] not in BACKENDS:
            raise ValueError(f"unknown allocator {entry['allocator']!r}; known: {', '.join(BACKENDS)}")
        for k, v in entry.get("settings", {}).items():
            check_setting(entry["allocator"], k, v)
    done = measured_keys(out) if out else set()
    env_info, loader_cache, new = machine.describe(), {}, []
    todo = [(e, r) for e in grid for r in range(repeats)]
    for i, (entry, r) in enumerate(todo, 1):
        settings = entry.get("settings", {})
        probe = {"kind": "program", "command": command, "allocator": entry["allocator"], "settings": settings,
                 "repeat": r}
        if cell_key(probe) in done:
            continue
        rec = run_program(command, entry["allocator"], settings, r, hz, timeout, explain, env_info, loader_cache)
        if out:
            append_record(out, rec)
        new.append(rec)
        label = " ".join([entry["allocator"]] + [f"{k}={v}" for k, v in settings.items()])
        print(f"[{i}/{len(todo)}] {label} repeat {r + 1}: {rec['status']}"
              + (f" ({rec['error']})" if rec.get("error") else f", {rec['wall_ns'] / 1e9:.2f} s"),
              file=sys.stderr, flush=True)
    return new
