"""How far a replay is from the program it recorded: `allocbench trace info
--fidelity FILE`.  The trace's header names the command and the folder it ran
in; the program runs again, under the allocator and settings asked for:

- once under `exec` (the launcher, sampling /proc/PID/statm at `hz`): its
  anonymous RSS growth at the peak (over the smallest sample, the process
  just after exec; a peak shorter than a sampling period can be missed);
- once under the recorder with ALLOCBENCH_TRACE_SYSCALLS=1: the memory
  syscalls made inside its allocation calls (per-thread counters read around
  each call, so thread stacks, file mappings, the loader's and the program's
  own mmaps are not among them) and glibc's arena heaps mapped at exit (the
  64 MiB-aligned anonymous mappings of /proc/self/maps), and its own
  anonymous mappings (mmap called outside an allocation call: pymalloc's
  arenas, GCC's GC pages, a BLAS buffer), resident at exit by mincore, and
  the written pages of its file mappings (libraries' data and relocations,
  anonymous to the kernel: /proc/self/smaps), and its anonymous memory
  (smaps_rollup) when recording starts and at exit: its growth at the end,
  read rather than sampled (the trace's buffer is a shared file mapping, not
  anonymous memory);

and that fresh trace is replayed in each mode (one thread; the recorded
threads when it has more than one), twice: a cold replay counts the window's
syscalls, its arena heaps and its anonymous growth at the end, and a second
cell's warm-up, cold too, gives the timeline whose highest anonymous growth is
the replay's peak.  The program's own mappings and written library pages
are not malloc's and no replay has them: the replay is held against the
program's growth less what they held (at exit; at the peak, all they held at
exit: an estimate, printed as such).
Each error is the replay's value minus that.

A replay is faithful when its peak and final growth are each within
TOLERANCE of the program's (or within FLOOR_BYTES, what sampling a small
program's RSS can resolve) and, under glibc, its arena heaps are as many as
the program's, within TOLERANCE or one heap (a program whose threads start
and stop by the clock makes more or fewer from run to run).
Syscall counts are printed with their differences: a single-threaded
program's must match exactly.

The fresh trace is the one replayed (its syscalls were counted in the same
run); FILE's own events are compared with it, so a deterministic program
says its FILE replays the same calls."""
from __future__ import annotations

import os
import tempfile

from . import programs, runner, traces
from .backends import BACKENDS
from .children import ChildFailed
from .counters import SYSCALLS
from .units import MIB, human_bytes

TOLERANCE = 0.25
FLOOR_BYTES = MIB
HZ = 1000
METHOD = {
    "program": "allocbench exec of the header's argv in its cwd, statm sampled at hz: anonymous RSS (resident - "
               "shared) over its smallest sample",
    "malloc_syscalls": "the program under the recorder with ALLOCBENCH_TRACE_SYSCALLS=1: per-thread perf counters "
                       "read around each allocation call, so only the syscalls malloc made",
    "arena_heaps": "64 MiB-aligned anonymous mappings in /proc/self/maps at the program's exit and after the replay",
    "own_mappings": "the recorder's mmap/munmap/mremap interposition outside allocation calls; their resident bytes "
                    "at exit (mincore) and the written pages of file mappings (smaps) are taken from the program's "
                    "growth, at the end and (an estimate) at the peak",
    "replay": "the fresh trace in a cell per mode: cold counts (warmup 0), and the cold warm-up's timeline for the "
              "peak (anonymous growth over the cell's baseline)",
}


class FidelityError(ValueError):
    """Input a fidelity measurement refuses before it runs anything, in one line."""


class FidelityFailed(RuntimeError):
    """A run the measurement needs failed (the program, its recording, a replay), in one line."""


def _within(replay: int | None, program: int | None) -> bool | None:
    if replay is None or program is None:
        return None
    return abs(replay - program) <= max(TOLERANCE * program, FLOOR_BYTES)


def _error(replay: int | None, program: int | None) -> dict:
    if replay is None or program is None:
        return {"bytes": None, "relative": None}
    return {"bytes": replay - program, "relative": (replay - program) / program if program else None}


def _program_run(argv, cwd, allocator, settings, hz, timeout, stdin) -> dict:
    rec = programs.run_program(argv, allocator, settings, 0, hz=hz, timeout=timeout, stdin=stdin, cwd=cwd)
    if rec["status"] != "ok":
        raise FidelityFailed(f"the program under exec: {rec['error']}")
    anon = rec["timeline"]["anon_bytes"]
    if len(anon) < 2:
        raise FidelityFailed(f"the program ran {rec['wall_ns'] / 1e6:.1f} ms: too short for {hz} samples a second "
                            "to see its memory")
    base = min(anon)
    return {"peak_anon_growth_bytes": max(anon) - base, "wall_ns": rec["wall_ns"], "samples": len(anon),
            "syscalls_all": rec["syscalls"]}


def _fresh_recording(argv, cwd, allocator, settings, folder, timeout, stdin, program_name) -> tuple[str, dict, bool]:
    """(the fresh trace of the same program, its header, whether it is the launched process)."""
    env = {**programs.program_env(allocator, settings), "ALLOCBENCH_TRACE_SYSCALLS": "1"}
    files, status = traces.record(argv, os.path.join(folder, "fresh.trace"), timeout=timeout, stdin=stdin,
                                  env=env, cwd=cwd)
    heads = [(f, traces.read(f)[0]) for f in files]
    same = [(f, h) for f, h in heads if h.get("program") == program_name] or heads
    path, head = max(same, key=lambda fh: fh[1]["events"])
    at_exit = head.get("at_exit") or {}
    if at_exit.get("malloc_syscalls") is None:
        why = at_exit.get("malloc_syscalls_error") or "the program ended without running the recorder's destructor"
        raise FidelityFailed(f"the recorder could not count malloc's syscalls: {why}")
    return path, head, path == files[0]


def _replay(trace, mode, allocator, settings, window, timeout) -> dict:
    common = dict(allocator=allocator, pattern="trace", trace=trace, settings=settings, replay_threads=mode,
                  replay_window=window, repeats=1)
    cold, first = runner.run_cells([runner.make_spec(warmup=0, **common), runner.make_spec(warmup=1, **common)],
                                   timeout=timeout)
    for rec in (cold, first):
        if rec["status"] != "ok":
            raise FidelityFailed(f"the replay ({mode}): {rec['error']}")
    anon = [a for a in (first.get("timeline") or {}).get("anon_bytes") or [] if a is not None]
    final = cold["rss_at_end_bytes"]
    # the peak is at least the end (they come from two processes, a few pages apart)
    peak = max(anon + ([final] if final is not None else [])) if anon else None
    return {"mode": mode, "replay_window": cold["replay_window"], "replay_thread_count": cold["replay_thread_count"],
            "peak_anon_growth_bytes": peak, "final_anon_growth_bytes": final, "malloc_syscalls": cold["syscalls"],
            "arena_heaps": cold["arena_heaps"], "replay_peak_live_bytes": first["replay_peak_live_bytes"],
            "replay_allocs": cold["replay_allocs"], "replay_frees": cold["replay_frees"],
            "replay_failed": cold["replay_failed"]}


def measure(path: str, allocator: str = "glibc", settings: dict | None = None, window: int | None = None,
            hz: int = HZ, timeout: float = 600, stdin: str | None = None, say=None) -> dict:
    """The fidelity record of the trace at `path` under an allocator and its
    settings.  FidelityError (one line) for input it refuses before any run, FidelityFailed for a run
    that failed; say(line) reports progress."""
    say = say or (lambda line: None)
    settings = dict(settings or {})
    if allocator not in BACKENDS:
        raise FidelityError(f"unknown allocator {allocator!r}; known: {', '.join(BACKENDS)}")
    try:
        BACKENDS[allocator].check_settings(settings)
    except ValueError as e:
        raise FidelityError(str(e)) from None
    given = traces.info(path)  # the header's command and folder, and what the file holds
    argv, cwd = given["argv"], given["cwd"] or None
    if not argv:
        raise FidelityError(f"{path}: its header has no argv (recorded by an older allocbench): record it again")
    why = BACKENDS[allocator].unavailable_reason()
    if why:
        raise FidelityError(f"allocator {allocator}: {why}")
    rec = {"kind": "fidelity", "status": "ok", "trace": os.path.abspath(path), "program": given["program"],
           "argv": argv, "cwd": cwd, "allocator": allocator, "settings": settings, "tolerance": TOLERANCE,
           "floor_bytes": FLOOR_BYTES, "hz": hz, "method": METHOD}
    try:
        with tempfile.TemporaryDirectory(prefix="allocbench-fidelity-") as folder:
            say(f"running {os.path.basename(argv[0])} under exec")
            prog = _program_run(argv, cwd, allocator, settings, hz, timeout, stdin)
            say("recording it again, counting malloc's syscalls")
            fresh, head, launched = _fresh_recording(argv, cwd, allocator, settings, folder, timeout, stdin,
                                                     given["program"])
            info = traces.info(fresh)
            at_exit = head["at_exit"]
            own, anon, files = (at_exit.get(k) or {} for k in ("own_anon_mmaps", "anon_bytes",
                                                                 "file_backed_anon_bytes"))
            prog.update(malloc_syscalls=at_exit["malloc_syscalls"], arena_heaps=at_exit.get("arena_heaps"),
                        threads=info["threads"], events=info["events"], peak_live_bytes=info["peak_live_bytes"],
                        own_anon_mmaps=own, file_backed_anon_bytes=files.get("at_exit"),
                        final_anon_growth_bytes=(anon["at_exit"] - anon["at_start"]
                                                 if min(anon.get("at_exit", -1), anon.get("at_start", -1)) >= 0
                                                 else None))
            if not launched:  # exec sampled the launched process, not the traced one
                prog.update(peak_anon_growth_bytes=None,
                            rss_note=f"the trace is of {given['program']}, a child of the launched "
                                     f"{argv[0]}: exec samples the launched process only")
            # no replay has the program's own mappings, nor its libraries' written pages
            mine = own.get("resident_at_exit_bytes") or 0
            grown_files = max(0, (files.get("at_exit") or 0) - max(0, files.get("at_start") or 0))
            peak, final = prog["peak_anon_growth_bytes"], prog["final_anon_growth_bytes"]
            peak = None if peak is None else max(0, peak - mine - max(0, files.get("at_exit") or 0))
            final = None if final is None else max(0, final - mine - grown_files)
            if peak is not None and final is not None and final > peak:
                # the end was read in the recorded run, the peak sampled in another: a run peaks at least at its end
                prog["peak_note"] = "the exec run peaked below the recorded run's end: the end is the peak"
                peak = final
            prog["peak_malloc_growth_bytes"], prog["final_malloc_growth_bytes"] = peak, final
            modes = ["one", "recorded"] if info["threads"] > 1 else ["one"]
            replays = []
            for mode in modes:
                say(f"replaying on {'its recorded threads' if mode == 'recorded' else 'one thread'}")
                replays.append(_replay(fresh, mode, allocator, settings, window, timeout))
    except ChildFailed as e:
        raise FidelityFailed(str(e)) from None
    glibc = BACKENDS[allocator].glibc
    for r in replays:
        r["errors"] = {
            "peak_anon_growth": _error(r["peak_anon_growth_bytes"], prog["peak_malloc_growth_bytes"]),
            "final_anon_growth": _error(r["final_anon_growth_bytes"], prog["final_malloc_growth_bytes"]),
            "malloc_syscalls": {k: r["malloc_syscalls"][k] - prog["malloc_syscalls"][k] for k in SYSCALLS},
            "arena_heaps": (r["arena_heaps"] - prog["arena_heaps"]
                            if glibc and r["arena_heaps"] is not None and prog["arena_heaps"] is not None else None)}
        checks = {"peak": _within(r["peak_anon_growth_bytes"], prog["peak_malloc_growth_bytes"]),
                  "final": _within(r["final_anon_growth_bytes"], prog["final_malloc_growth_bytes"]),
                  "arena_heaps": (None if r["errors"]["arena_heaps"] is None else
                                  abs(r["errors"]["arena_heaps"]) <= max(1.0, TOLERANCE * prog["arena_heaps"]))}
        r["syscalls_exact"] = not any(r["errors"]["malloc_syscalls"].values())
        known = [v for v in checks.values() if v is not None]
        r["faithful"] = all(known) if known else None
        r["not_faithful_because"] = [k for k, v in checks.items() if v is False]
    rec.update(program_run=prog, replays=replays,
               given_trace={"events": given["events"], "threads": given["threads"],
                            "peak_live_bytes": given["peak_live_bytes"]},
               same_calls_as_given=(given["events"] == prog["events"]
                                    and given["peak_live_bytes"] == prog["peak_live_bytes"]))
    return rec


def _rel(e: dict) -> str:
    if e["bytes"] is None:
        return ""
    if e["relative"] is None:
        return f" ({'+' if e['bytes'] >= 0 else '-'}{human_bytes(abs(e['bytes']))})"
    return f" ({e['relative']:+.0%})"


def syscalls_text(replay: dict) -> str:
    """A replay's malloc syscalls against the program's: "exact", or each difference."""
    if replay["syscalls_exact"]:
        return "exact"
    return ", ".join(f"{k} {v:+d}" for k, v in replay["errors"]["malloc_syscalls"].items() if v)


def summary_lines(rec: dict) -> list[str]:
    p = rec["program_run"]
    settings = ", ".join(f"{k}={v}" for k, v in rec["settings"].items()) or "defaults"
    lines = [f"fidelity of {rec['trace']}: {' '.join(rec['argv'])} under {rec['allocator']} ({settings})",
             f"the program: peak anonymous growth {human_bytes(p['peak_anon_growth_bytes'])}, at the end "
             f"{human_bytes(p['final_anon_growth_bytes'])}, {p['threads']} thread(s), arena heaps {p['arena_heaps']}, "
             "malloc's syscalls " + (", ".join(f"{k} {v}" for k, v in p["malloc_syscalls"].items() if v) or "none")]
    if p.get("rss_note"):
        lines.append(f"  ({p['rss_note']})")
    own = p.get("own_anon_mmaps") or {}
    if own.get("calls") or p.get("file_backed_anon_bytes"):
        lines.append(f"  not malloc's, not replayed: its own anonymous mappings ({own.get('calls', 0)} calls, "
                     f"{human_bytes(own.get('peak_bytes'))} mapped at most, "
                     f"{human_bytes(own.get('resident_at_exit_bytes'))} resident at exit) and its libraries' written "
                     f"pages ({human_bytes(p.get('file_backed_anon_bytes'))}); malloc's share of its growth: peak "
                     f"{human_bytes(p['peak_malloc_growth_bytes'])} (an estimate), end "
                     f"{human_bytes(p['final_malloc_growth_bytes'])}")
    if not rec["same_calls_as_given"]:
        g = rec["given_trace"]
        lines.append(f"  the program made other calls this time ({p['events']:,} events, peak live "
                     f"{p['peak_live_bytes']:,} B; the file: {g['events']:,}, {g['peak_live_bytes']:,} B): the "
                     "fresh recording is the one replayed")
    for r in rec["replays"]:
        e = r["errors"]
        verdict = {True: "faithful", False: "NOT faithful (" + ", ".join(r["not_faithful_because"]) + ")",
                   None: "not judged"}[r["faithful"]]
        sys_err = syscalls_text(r)
        lines.append(f"replay on {'its recorded threads' if r['mode'] == 'recorded' else 'one thread'} "
                     f"({r['mode']}): {verdict}")
        lines.append(f"  peak {human_bytes(r['peak_anon_growth_bytes'])}{_rel(e['peak_anon_growth'])}, end "
                     f"{human_bytes(r['final_anon_growth_bytes'])}{_rel(e['final_anon_growth'])}, arena heaps "
                     f"{r['arena_heaps']}"
                     + ("" if e["arena_heaps"] is None else f" ({e['arena_heaps']:+d})")
                     + f", malloc's syscalls {sys_err}"
                     + ("" if r["mode"] != "recorded" else
                        f", live peak {human_bytes(r['replay_peak_live_bytes'])} against the trace's "
                        f"{human_bytes(p['peak_live_bytes'])} (window {r['replay_window']} events)"))
    lines.append(f"faithful: peak and end within {TOLERANCE:.0%} (or {human_bytes(FLOOR_BYTES)}) of malloc's share of "
                 f"the program's, and its arena heaps within {TOLERANCE:.0%} or one (glibc)")
    return lines
