"""allocbench advise -- CMD: the malloc settings for this program, with the
measured trade-off.  Screen cheaply, verify on the real thing:

1. baseline: one run of glibc's dynamic default, with the threshold explainer
   (who raised the threshold, from which call site) and the allocation trace;
2. candidates, from the program itself, each with why it is in the list: the
   threshold frozen at the 128 KiB default, at each level it rose to, and just
   above the size the trace reuses most among those the rise moved; the trim
   threshold and top pad where the heap grew and shrank; arena_max 1, 2, 4 and
   tcache_count 0 when it runs threads; hugetlb where transparent huge pages
   are on request; every other allocator by LD_PRELOAD;
3. screen: each candidate replayed from the trace (a threaded program's on
   its recorded threads, arenas and all: csrc/lib/replay.c), or one short
   exec run where no trace could be recorded; the record says which and why;
4. verify: the survivors and the default on the real program, in fresh
   processes taken in turns (default, A, B, default, A, B, ...) until each
   decision is made or the budget is spent; a run past k times the default's
   wall time is stopped and the candidate recorded as slower than that;
5. answer: each measure a ratio to the default with its 95% interval
   (stats.paired), and the recommendation: the best candidate that is better
   at 95% and inside the constraint at 95%, the least invasive of those the
   runs cannot tell apart (a tunable before another allocator), or "keep the
   default" with the smallest effect the runs could have seen.

The budget is the wall time spent running the program and its replays."""
from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import machine, programs, runner, stats, traces
from ._native import GLIBC_DEFAULT_BOUNDARY
from .backends import BACKENDS, glibc_backend, others
from .children import ChildFailed, check_command
from .glibc_constants import DEFAULT_MMAP_THRESHOLD, request2size
from .records import cell_key, series_key
from .results import append_record, load_records, write_json_atomically
from .series import series_label
from .units import MIB, human_bytes, size_label

STOP_FACTOR = 3.0          # a run past this many times the default's wall time is stopped
MAX_SURVIVORS = 6          # verified at most: the budget (rounds_room) usually decides first
SCREEN_CLOSE = 1.02        # a screen within 2% of the default cannot tell it from better: verified if affordable
MAX_ROUNDS = 30
SCREEN_SLACK = 1.5         # screening is one noisy run: keep what it puts within 1.5x the constraint
MIN_SAMPLES = 40           # RSS samples a run should get (sets --hz for short programs)
ROUND_MARGIN = 1.2         # a round is planned at 1.2x the default's wall time per run


class AdviceError(ValueError):
    """Bad input, or a budget too small: one line, exit status 2."""


class OtherBuildRuns(AdviceError):
    """--out holds runs another build made (the program or an allocator changed since): make bench's
    scripts/bench-programs moves such a folder aside and starts over; the CLI refuses it."""


class FailedBaseline(RuntimeError):
    """The program fails under glibc's default: nothing to advise."""


# ---- the objective: what is minimised, what must stay within a limit, and how to say it ----

@dataclass(frozen=True)
class Objective:
    name: str        # "memory" or "time"
    measure: str     # what it minimises: mean_rss or wall
    constraint: str  # what must stay within `limit` of the default: wall or peak_rss
    kind: str        # stats' kind of the measure: "memory" or "time"
    max_slowdown: float = 1.10
    max_growth: float = 1.25

    @property
    def limit(self) -> float:
        return self.max_slowdown if self.name == "memory" else self.max_growth

    @property
    def better(self) -> str:
        return stats.BETTER[self.kind]

    def constraint_words(self) -> str:
        if self.name == "memory":
            return f"in mean RSS within {self.limit:g}x the default's wall time"
        return f"in wall time within {self.limit:g}x the default's peak RSS"


def objective(name: str, max_slowdown: float = 1.10, max_growth: float = 1.25) -> Objective:
    if name == "memory":
        return Objective("memory", "mean_rss", "wall", "memory", max_slowdown, max_growth)
    if name == "time":
        return Objective("time", "wall", "peak_rss", "time", max_slowdown, max_growth)
    raise AdviceError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")


OBJECTIVES = ("memory", "time")


@dataclass
class Candidate:
    allocator: str
    settings: dict
    why: str
    stage: str = "candidate"        # screened, verified, stopped
    screen: dict | None = None      # method, and each measure's ratio to the default's screen
    runs: list = field(default_factory=list)
    measures: dict = field(default_factory=dict)  # name -> stats.Comparison (verified)
    stopped: str | None = None

    @property
    def label(self) -> str:
        return series_label(series_key({"allocator": self.allocator, "settings": self.settings}))

    @property
    def invasive(self) -> int:
        """0: a tunable of the same glibc; 1: another allocator."""
        return 0 if BACKENDS[self.allocator].glibc else 1

    def env(self) -> dict:
        """The variables to set, as a person pastes them."""
        return programs.program_env(self.allocator, self.settings)


# the measures of a verified candidate: name, value of one run, kind
MEASURES = (("wall", lambda r: r["wall_ns"], "time"), ("cpu", lambda r: r["cpu_ns"], "time"),
            ("peak_rss", lambda r: r["peak_rss_bytes"], "memory"),
            ("mean_rss", lambda r: r["mean_rss_bytes"], "memory"),
            ("final_rss", lambda r: r["final_rss_bytes"], "memory"),
            ("faults", lambda r: r["minor_faults"] + r["major_faults"], "count"))
VALUE = {name: f for name, f, _ in MEASURES}


# ---- 2. candidates, from the program itself (pure) ----

def propose(baseline: dict, trace_info: dict | None, moved: tuple[int, int] | None, env_info: dict,
            obj: Objective) -> list[Candidate]:
    """The candidates for this program, each with why it is in the list: the
    threshold frozen (at the default, at each level it rose to, just above the
    size the trace reuses most among those a rise moved), the trim threshold
    and top pad where the heap moved, arenas and the thread cache where it runs
    threads, huge pages where they are on request, and every other allocator
    that is installed.  `moved`: moved_size()'s answer."""
    glibc = glibc_backend().name
    explain = baseline.get("explain") or {}
    rises = explain.get("rises", [])
    threads = (trace_info or {}).get("threads", 1)
    sc = baseline.get("syscalls") or {}
    top = max((r["new_threshold"] for r in rises), default=None)
    hi = BACKENDS[glibc].setting("mmap_threshold").hi
    out = [Candidate(glibc, {"mmap_threshold": DEFAULT_MMAP_THRESHOLD}, (
        f"the threshold rose to {size_label(top)} at {site(rises[-1])}"
        + (f" ({len(rises)} rises, the first at {site(rises[0])})" if len(rises) > 1 else "")
        + "; frozen at 128 KiB, blocks above it go back to the system when freed") if rises else
        "the 128 KiB default, frozen: the threshold can no longer rise")]
    for level in sorted({r["new_threshold"] for r in rises}):
        if level <= hi:
            where = next(r for r in rises if r["new_threshold"] == level)
            out.append(Candidate(glibc, {"mmap_threshold": level},
                                 f"the level the threshold rose to at {site(where)}, frozen there"))
    if moved:
        size, count = moved
        level = min(hi, request2size(size) + 16)
        if level not in {c.settings.get("mmap_threshold") for c in out}:
            out.append(Candidate(glibc, {"mmap_threshold": level}, (
                f"the trace reuses {size_label(size)} blocks most ({count:,} of them) among those the rise moved "
                f"onto the heap; a threshold just above keeps them there and still maps anything larger")))
    if (sc.get("brk") or 0) >= 8:
        base = {"mmap_threshold": min(hi, top or DEFAULT_MMAP_THRESHOLD)}
        out.append(Candidate(glibc, {**base, "trim_threshold": 64 * MIB}, (
            f"the heap moved {sc['brk']} times (brk): a 64 MiB trim threshold keeps the top chunk instead of "
            "giving it back and faulting it in again")))
        out.append(Candidate(glibc, {**base, "top_pad": 16 * MIB}, (
            f"the heap moved {sc['brk']} times (brk): a 16 MiB top pad grows it in fewer, larger steps")))
    if threads > 1:
        for n in (1, 2, 4):
            out.append(Candidate(glibc, {"arena_max": n}, (
                f"the program runs {threads} threads, each of which can get an arena that keeps its own peak; "
                f"arena_max={n} makes them share {n}")))
        if obj.name == "memory":
            out.append(Candidate(glibc, {"tcache_count": 0}, (
                f"each of the {threads} threads caches up to 7 chunks of every small size; tcache_count=0 "
                "keeps none")))
    if obj.name == "time" and env_info.get("thp") == "madvise" and baseline["peak_rss_bytes"] >= 64 * MIB:
        out.append(Candidate(glibc, {"hugetlb": 1}, (
            f"transparent huge pages are on request here (THP madvise) and the program peaks at "
            f"{human_bytes(baseline['peak_rss_bytes'])}: hugetlb=1 asks for them for the heap")))
    for name in others():
        if not BACKENDS[name].unavailable_reason():
            out.append(Candidate(name, {}, f"{BACKENDS[name].about}, instead of glibc's malloc"))
    return out


def moved_size(trace: str | None, top: int | None) -> tuple[int, int] | None:
    """The size the trace allocates most often among those the rise moved (from the glibc boundary up
    to the risen threshold), and how many; None when none is allocated more than once."""
    if not top or not trace:
        return None
    import numpy as np

    _, ev = traces.read(trace)
    sizes = ev["size"][np.isin(ev["op"], list(traces.ALLOCATING)) & (ev["ptr"] != 0)]
    moved = sizes[(sizes >= GLIBC_DEFAULT_BOUNDARY) & (sizes < top)]
    if not len(moved):
        return None
    values, counts = np.unique(moved, return_counts=True)
    i = int(np.argmax(counts))
    return (int(values[i]), int(counts[i])) if counts[i] > 1 else None  # reused: allocated more than once


# ---- the runs: kept in --out for resume, all within the budget ----

class Budget:
    def __init__(self, seconds: float):
        self.seconds, self.spent = seconds, 0.0

    def left(self) -> float:
        return self.seconds - self.spent

    def run(self, fn, *args, **kw):
        start = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            self.spent += time.monotonic() - start


class RunStore:
    """Every run advise makes, each bounded by what the budget has left: exec runs
    (runs.jsonl) and replays (replays.jsonl) in --out, every record kept, failed and
    stopped ones too, so a rerun into the same folder runs nothing twice."""

    def __init__(self, command: list[str], budget: Budget, out_dir: str | None, env_info: dict):
        self.command, self.budget, self.out_dir, self.env_info = command, budget, out_dir, env_info
        self.hz = 100
        other = next((r["command"] for r in self._load("runs.jsonl", lambda r: "advise_stage" in r,
                                                       self._run_key_of).values() if r.get("command") != command),
                     None)
        if other:  # its trace and replays are that program's: resuming them would answer for the wrong one
            raise ValueError(f"--out {out_dir} holds the advice runs of another command ({' '.join(other)[:80]}): "
                             "give a new folder (rerunning that command there resumes it)")
        self.runs = self._load("runs.jsonl", lambda r: r.get("command") == command and "advise_stage" in r,
                               self._run_key_of)
        self.replays = self._load("replays.jsonl", lambda r: True, cell_key)
        if not all(self._current(r, programs.program_build(command, r["allocator"])) for r in self.runs.values()) \
                or not all(self._current(r, runner.cell_build(r["allocator"])) for r in self.replays.values()):
            # a program, the toy or a preloaded library changed since: resuming would mix two builds' numbers
            raise OtherBuildRuns(f"--out {out_dir} holds advice runs of another build (the program or an "
                                 "allocator changed since, or they predate records naming their build): give a "
                                 "new folder")

    @staticmethod
    def _current(rec: dict, build: str | None) -> bool:
        return rec.get("allocator") in BACKENDS and rec.get("build") == build

    def path(self, name: str) -> str | None:
        return os.path.join(self.out_dir, name) if self.out_dir else None

    def _load(self, name: str, mine, key) -> dict:
        path = self.path(name)
        if not path or not os.path.exists(path):
            return {}
        return {key(r): r for r in load_records(path) if mine(r)}

    @staticmethod
    def _run_key(stage: str, allocator: str, settings: dict, repeat: int) -> tuple:
        return stage, allocator, json.dumps(settings, sort_keys=True), repeat

    @classmethod
    def _run_key_of(cls, r: dict) -> tuple:
        return cls._run_key(r["advise_stage"], r["allocator"], r["settings"], r["repeat"])

    def run(self, stage: str, allocator: str, settings: dict, repeat: int, explain: bool = False,
            timeout: float | None = None, keep: float | None = None) -> dict | None:
        """One exec run, or its record from an earlier call into the same --out.
        Its timeout: `timeout`, and never past the budget (then the record says so: cut_by_budget),
        except the baseline's, which has a second at least: it says how long one run takes, and a
        budget too small for the rest is refused after it.  Given `keep`, the seconds the budget must
        keep for later stages: None when less than a second is left besides."""
        key = self._run_key(stage, allocator, settings, repeat)
        if key in self.runs:
            return self.runs[key]
        if keep is not None and self.budget.left() - keep < 1:
            return None
        left = self.budget.left() - (keep or 0.0)
        left = max(1.0, left) if stage == "baseline" else max(0.01, left)
        limit = min(timeout or left, left)
        log = self.out_dir and programs.log_path(self.path("runs.jsonl"), self.command, allocator, settings, repeat)
        rec = self.budget.run(programs.run_program, self.command, allocator, settings, repeat, hz=self.hz,
                              timeout=limit, explain=explain, env_info=self.env_info, output=log)
        rec["advise_stage"] = stage
        budget_cut(rec, limit, timeout or math.inf)
        self.runs[key] = rec
        if self.out_dir:
            append_record(self.path("runs.jsonl"), rec)
        return rec

    def replay(self, spec: dict, timeout: float, keep: float = 0.0) -> dict | None:
        """One replay cell, or its record from before; None when the budget, less the `keep`
        seconds later stages need, has run out."""
        key = cell_key(spec)
        if key in self.replays:
            return self.replays[key]
        left = self.budget.left() - keep
        if left < 1:
            return None
        started = time.monotonic()
        (rec,) = self.budget.run(runner.run_cells, [spec], timeout=min(timeout, left), env_info=self.env_info)
        rec["advise_elapsed_s"] = round(time.monotonic() - started, 3)  # what screening by it costs
        budget_cut(rec, min(timeout, left), timeout)
        self.replays[key] = rec
        if self.out_dir:
            append_record(self.path("replays.jsonl"), rec)
        return rec


BUDGET_RAN_OUT = "the budget ran out"  # in every reason a candidate was left unseen for want of budget
BUDGET_TIMEOUT = f"timeout: {BUDGET_RAN_OUT}"  # a run cut by the budget: not a verdict on the candidate


def left_unseen(stage: str, stopped: str | None) -> bool:
    """A candidate the budget left without a verdict: not screened, or not verified in full."""
    return stage != "verified" and BUDGET_RAN_OUT in (stopped or "")


def budget_cut(rec: dict, limit: float, asked: float) -> None:
    """A run that timed out at a limit the budget set (below the one asked for) says so: its timeout is
    no verdict on the candidate."""
    if rec["status"] != "ok" and (rec.get("error") or "").startswith("timeout") and limit < asked:
        rec["error"] = f"{BUDGET_TIMEOUT} ({limit:.1f} s were left)"


def cut_by_budget(rec: dict) -> bool:
    """A run that timed out at the budget's limit (budget_cut): the budget's end, not the candidate's."""
    return rec["status"] != "ok" and (rec.get("error") or "").startswith(BUDGET_TIMEOUT)


def stopped_because(rec: dict, limit: str, failed: str) -> str:
    """Why a run stopped its candidate: past STOP_FACTOR times the default's wall time, or a failure
    (a run the budget cut short is one: it says nothing of the candidate's speed)."""
    if rec["error"].startswith("timeout") and not cut_by_budget(rec):
        return f"slower than {STOP_FACTOR:g}x the default ({limit})"
    return f"{failed}: {rec['error']}"


# ---- 3. screen: each candidate once, cheaply ----

def choose_screen(trace: str | None, trace_info: dict | None) -> tuple[str, str, str]:
    """(method, why, replay_threads): replay where a trace was recorded, else one exec run each."""
    threads = (trace_info or {}).get("threads", 0)
    if trace and threads == 1:
        return "replay", ("the program's calls come from one thread, so a replay makes the same calls in the same "
                          "order on the allocator under test, in a fraction of the program's time"), "one"
    if trace and threads > 1:
        return "replay", (f"the program's calls come from {threads} threads: a replay on its recorded threads "
                          "makes each thread's calls on a thread of its own, so glibc gives them arenas as in the "
                          "program, in a fraction of the program's time"), "recorded"
    return "exec", "no trace could be recorded: one short run of the program each", "one"


def screen_by_replay(store: RunStore, candidates: list[Candidate], baseline: dict, trace: str,
                     replay_threads: str, keep=lambda: 0.0) -> str | None:
    """Each candidate screened by a replay, while the budget keeps keep() seconds for verifying; or,
    when the default's replay took longer than the program itself (a replay is meant to be the cheap
    screen), nothing screened and why, for screen_by_exec."""
    glibc = glibc_backend().name
    spec = lambda a, s: runner.make_spec(allocator=a, pattern="trace", trace=trace, size=0, repeats=1,
                                         settings=s, replay_threads=replay_threads)
    # a replay makes the program's calls without its work: past 10x the program's time (10 s at least) it
    # is stopped, so one replay cannot spend the budget the others and the verification need
    limit = max(10.0, 10 * baseline["wall_ns"] / 1e9)
    default = store.replay(spec(glibc, {}), limit)
    if default is None:  # a budget too small for the program, as the first run's check finds
        raise AdviceError(f"{BUDGET_RAN_OUT} before the trace's replay under glibc's default: the program's run "
                          f"and its recording took {store.budget.spent:.1f} s of {store.budget.seconds:g} s; "
                          "raise --budget")
    if default["status"] != "ok":
        raise FailedBaseline(f"the trace's replay fails under glibc's default: {default['error']}")
    took, wall = default.get("advise_elapsed_s", 0.0), baseline["wall_ns"] / 1e9
    if took > wall:
        return (f"a replay took {took:.1f} s, longer than the program's own {wall:.2f} s: "
                "one short run of the program each")
    t_ns = traces.read(trace)[1]["t_ns"]
    base = replay_measures(default, t_ns)
    program = {"wall": baseline["wall_ns"], "mean_rss": baseline["mean_rss_bytes"],
               "peak_rss": baseline["peak_rss_bytes"]}
    for c in candidates:
        rec = store.replay(spec(c.allocator, c.settings), limit, keep())
        if rec is None:
            c.stopped = f"{BUDGET_RAN_OUT} before it was screened"
            continue
        if rec["status"] != "ok":
            c.stage, c.stopped = "stopped", stopped_because(rec, "replay", "its replay failed")
            continue
        c.stage = "screened"
        # what the replay changes, added to the program's own measure: the program is more than its mallocs
        got = replay_measures(rec, t_ns)
        c.screen = {"method": "replay", **{k: ratio(program[k] + got[k] - base[k], program[k]) for k in got
                                            if got[k] is not None and base[k] is not None}}


def screen_by_exec(store: RunStore, candidates: list[Candidate], baseline: dict, keep=lambda: 0.0) -> None:
    """Each candidate screened by one run of the program, while the budget keeps keep() seconds for verifying."""
    for c in candidates:
        rec = store.run("screen", c.allocator, c.settings, 0, timeout=STOP_FACTOR * baseline["wall_ns"] / 1e9,
                        keep=keep())
        if rec is None:
            c.stopped = f"{BUDGET_RAN_OUT} before it was screened"
            continue
        if rec["status"] != "ok":
            c.stage, c.stopped = "stopped", stopped_because(rec, "stopped", "its run failed")
            continue
        c.stage = "screened"
        c.screen = {"method": "exec", **{name: ratio(f(rec), f(baseline)) for name, f, _ in MEASURES}}


# ---- 4. verify: the best few against the default, in turns, a fixed number of rounds ----

def survivors(candidates: list[Candidate], obj: Objective, rounds_room: int) -> list[Candidate]:
    """The screened candidates inside the constraint (with slack: a screen is one noisy run) and better
    than the default by the screen or close to it (SCREEN_CLOSE: a screen cannot tell 1% apart), best
    first, as many as `rounds_room` rounds of MIN_PAIRS can verify: a budget left over verifies the close
    ones rather than stopping early.  Each one left out says why."""
    fit = []
    for c in candidates:
        if c.stage != "screened":
            continue
        failed = screen_failed(c, obj)
        if failed:
            c.stopped = failed
        else:
            fit.append(c)
    fit.sort(key=lambda c: (c.screen[obj.measure], c.invasive))
    keep = fit[:max(1, min(MAX_SURVIVORS, rounds_room))] if fit else []
    for rank, c in enumerate(fit[len(keep):], len(keep) + 1):
        c.stopped = f"ranked {ordinal(rank)} by the screen; the budget verified the best {len(keep)}"
    return keep


def screen_failed(c: Candidate, obj: Objective) -> str | None:
    """Why a screened candidate is not worth verifying, or None: better than the default by the
    screen, or within its noise, and inside the constraint with slack (a screen is one noisy run)."""
    con, got = c.screen.get(obj.constraint, math.inf), c.screen.get(obj.measure, math.inf)
    unmeasured = [name for name, v in ((obj.constraint, con), (obj.measure, got)) if v is None]
    if unmeasured:  # a mean RSS with no sample: a run too short for the sampler
        return f"screen: no {unmeasured[0].replace('_', ' ')} measured"
    if con > obj.limit * SCREEN_SLACK:
        return f"screen: outside the constraint ({con:.2f}x {obj.constraint.replace('_', ' ')})"
    if not got < SCREEN_CLOSE:
        return f"screen: not {obj.better} ({got:.2f}x {obj.measure.replace('_', ' ')})"
    return None


def plan_rounds(left_s: float, wall_s: float, n: int) -> int:
    """Rounds of the default and n candidates the budget affords, at most MAX_ROUNDS: fixed before the
    first run, so the 95% of each interval is not spent on looking again and again."""
    return min(MAX_ROUNDS, int(left_s / ((n + 1) * wall_s * ROUND_MARGIN)))


def verify(store: RunStore, chosen: list[Candidate], baseline: dict) -> list[dict]:
    """Runs the default and the chosen candidates in turns for as many rounds as the budget affords
    (at least MIN_PAIRS); returns the default's runs.  A candidate past STOP_FACTOR times the default's
    wall time is stopped."""
    glibc = glibc_backend().name
    wall = baseline["wall_ns"] / 1e9
    rounds = max(stats.MIN_PAIRS, plan_rounds(store.budget.left(), wall, len(chosen)))
    default_runs = []
    for rnd in range(rounds):
        live = [c for c in chosen if c.stage != "stopped"]
        if not live or store.budget.left() < wall * ROUND_MARGIN:  # not even the default's run fits
            break
        default = store.run("verify", glibc, {}, rnd)
        if cut_by_budget(default):
            break  # the round is cut short: its pairs are the ones with both runs
        if default["status"] != "ok":
            raise FailedBaseline(f"the default failed in verification: {default['error']}")
        default_runs.append(default)
        stop_at = STOP_FACTOR * statistics.median(r["wall_ns"] for r in default_runs) / 1e9
        for c in live:
            if store.budget.left() < wall * ROUND_MARGIN:  # the round is cut short, as above
                break
            rec = store.run("verify", c.allocator, c.settings, rnd, timeout=stop_at)
            if cut_by_budget(rec):
                break
            if rec["status"] != "ok":
                c.stage, c.stopped = "stopped", stopped_because(rec, f"stopped at {stop_at:.1f} s", "a run failed")
                continue
            c.runs.append(rec)
            c.stage = "verified"
    for c in chosen:
        if c.stage == "verified" and len(c.runs) < stats.MIN_PAIRS:  # too few pairs to test: no verdict
            c.stage, c.stopped = "stopped", f"{BUDGET_RAN_OUT} after {len(c.runs)} of {stats.MIN_PAIRS} pairs"
        measure(c, default_runs, baseline.get("syscalls") or {})
    return default_runs


def measure(c: Candidate, default_runs: list[dict], syscalls: dict) -> None:
    if c.stage != "verified":
        return
    for name, f, kind in MEASURES:
        c.measures[name] = stats.runs(default_runs, c.runs, f, kind)
    c.measures["syscalls"] = {k: stats.runs(default_runs, c.runs, lambda r, k=k: (r["syscalls"] or {}).get(k),
                                            "count") for k in syscalls}


# ---- 5. answer (pure) ----

def eligible(c: Candidate, obj: Objective) -> bool:
    """Better at 95% in the objective's measure, and inside the constraint at 95%."""
    if c.stage != "verified" or not c.measures:
        return False
    got, con = c.measures[obj.measure], c.measures[obj.constraint]
    return got.verdict == obj.better and con.high is not None and con.high <= obj.limit


def recommend(candidates: list[Candidate], obj: Objective, default_runs: list[dict]) -> tuple[Candidate | None, str]:
    """The best eligible candidate, or the least invasive of those the runs cannot tell from it;
    else why the default stays."""
    ok = [c for c in candidates if eligible(c, obj)]
    cut = [c for c in candidates if left_unseen(c.stage, c.stopped)]
    if not ok and cut and not any(c.stage == "verified" for c in candidates):
        return None, (f"no answer within the budget: it ran out before {len(cut)} of {len(candidates)} "
                      "candidates were screened or verified, and none was verified; give a larger --budget")
    if not ok:
        verified = [c for c in candidates if c.stage == "verified" and c.measures]
        seen = [c.measures[obj.measure].detectable for c in verified
                if c.measures[obj.measure].detectable is not None]
        could = f"; these runs could have seen a difference of {min(seen):.0%}" if seen else ""
        return None, (f"keep the default: no candidate was {obj.better} at 95% {obj.constraint_words()}{could}"
                      + unseen(cut, candidates))
    ok.sort(key=lambda c: c.measures[obj.measure].estimate)
    best = ok[0]
    for c in ok[1:]:  # the least invasive among those the runs cannot tell from the best
        if c.invasive < best.invasive and not stats.runs(best.runs, c.runs, VALUE[obj.measure], obj.kind).significant:
            return c, (reason(c, default_runs) + f" (as good as {best.label} by the test, and a smaller change)"
                       + unseen(cut, candidates))
    return best, reason(best, default_runs) + unseen(cut, candidates)


def unseen(cut: list[Candidate], candidates: list[Candidate]) -> str:
    """What an answer did not look at: the candidates the budget left unscreened or unverified."""
    return (f"; the budget ran out before {len(cut)} of {len(candidates)} candidates were screened or verified "
            "(a larger --budget sees them)") if cut else ""


def reason(c: Candidate, default_runs: list[dict]) -> str:
    m = c.measures
    mean_b, mean_c = (stats.median_present(r.get("mean_rss_bytes") for r in runs) for runs in (default_runs, c.runs))
    if mean_b is None or mean_c is None:
        change = "was not sampled for a mean RSS (too short a run)"
    else:
        change = (f"returns {human_bytes(mean_b - mean_c)} of RSS on average" if mean_c < mean_b else
                  f"holds {human_bytes(mean_c - mean_b)} more RSS on average")
        change += f" (mean RSS {human_bytes(mean_b)} -> {human_bytes(mean_c)}, {m['mean_rss'].words()})"
    return (f"{c.why}: it {change}, peak RSS {m['peak_rss'].words()}, {m['wall'].words()} the wall time")


def screening_accuracy(candidates: list[Candidate], method: str | None) -> dict:
    """How well the screen ranked the verified candidates (Spearman's rho over the candidates
    themselves: the default is not a point of its own) and its error per measure (median
    |screened / verified - 1|)."""
    verified = [c for c in candidates if c.stage == "verified" and c.screen and c.measures]
    out = {"method": method, "verified": len(verified)}
    for name in ("wall", "mean_rss", "peak_rss"):
        pairs = [(c.screen.get(name), c.measures[name].estimate) for c in verified
                 if c.screen.get(name) is not None and c.measures[name].estimate is not None]
        out[name] = {"rank_correlation": spearman(pairs) if len(pairs) >= 3 else None,
                     "median_error": statistics.median(abs(s / v - 1) for s, v in pairs) if pairs else None}
    return out


def verdict_words(c: Candidate) -> str:
    if c.stage == "verified":
        return "; ".join(f"{name.replace('_', ' ')} {c.measures[name].words()}"
                         for name in ("wall", "mean_rss", "peak_rss"))
    return c.stopped or f"screened ({(c.screen or {}).get('method')}), not verified"


def rss_text(n: float | None) -> str:
    return f"{n / MIB:.1f} MiB" if n is not None else "unsampled (the program ended before the first sample)"


def answer(command: list[str], obj: Objective, budget: Budget, screen: dict, baseline: dict,
           default_runs: list[dict], trace_info: dict | None, candidates: list[Candidate], env_info: dict) -> dict:
    best, why = recommend(candidates, obj, default_runs)
    ranked = sorted(candidates, key=lambda c: (
        0 if eligible(c, obj) else 1 if c.stage == "verified" else 2 if c.stage == "screened" else 3,
        (c.measures[obj.measure].estimate if c.measures else (c.screen or {}).get(obj.measure)) or math.inf))
    cmp_dict = lambda x: None if x is None else x.to_dict()  # estimate, low, high, verdict, n, ...
    base_runs = default_runs or [baseline]
    median = lambda name: stats.median_present(r.get(name) for r in base_runs)
    if best is None and obj.measure == "mean_rss" and median("mean_rss_bytes") is None:
        why = ("no answer: the program ended before its RSS was sampled, so there is no mean RSS to compare; "
               "--objective time compares wall time")
    glibc = glibc_backend().name
    return {
        "objective": obj.name, "command": command,
        "max_slowdown": obj.max_slowdown, "max_growth": obj.max_growth,
        "budget_s": budget.seconds, "spent_s": round(budget.spent, 1), "screen": screen,
        "baseline": {"allocator": glibc, "settings": {}, "runs": len(default_runs) or 1,
                     "wall_s": median("wall_ns") / 1e9, "mean_rss_bytes": median("mean_rss_bytes"),
                     "peak_rss_bytes": median("peak_rss_bytes"),
                     "threshold_rises": (baseline.get("explain") or {}).get("rises", []),
                     "trace": trace_info and {k: trace_info[k] for k in ("events", "threads", "peak_live_bytes")}},
        "candidates": [{
            "allocator": c.allocator, "settings": c.settings, "label": c.label, "env": c.env(), "why": c.why,
            "stage": c.stage, "runs": len(c.runs), "screen": c.screen, "stopped": c.stopped,
            **{f"{name}_ratio": cmp_dict(c.measures.get(name)) for name, _, _ in MEASURES},
            "syscalls_ratio": {k: cmp_dict(v) for k, v in c.measures.get("syscalls", {}).items()},
            "verdict": verdict_words(c), "eligible": eligible(c, obj)} for c in ranked],
        "recommendation": None if best is None else {
            "allocator": best.allocator, "settings": best.settings, "env": best.env(), "why": why,
            "line": paste_line(best.env())},
        "keep_default_why": why if best is None else None,
        "screening_accuracy": screening_accuracy(candidates, screen["method"]),
        "env": env_info}


# ---- the whole ----

class Advisor:
    def __init__(self, command: list[str], objective_name: str = "memory", max_slowdown: float = 1.10,
                 max_growth: float = 1.25, budget: float = 180, out_dir: str | None = None, progress=None):
        check_command(command)
        if not max_slowdown >= 1:
            raise AdviceError(f"--max-slowdown must be at least 1 (the default's own time), got {max_slowdown:g}")
        if not max_growth >= 1:
            raise AdviceError(f"--max-growth must be at least 1 (the default's own peak RSS), got {max_growth:g}")
        if not budget > 0:
            raise AdviceError(f"--budget must be more than 0 seconds, got {budget:g}")
        if out_dir and os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise AdviceError(f"--out {out_dir}: not a folder")
        self.command, self.objective = command, objective(objective_name, max_slowdown, max_growth)
        self.budget, self.out_dir = Budget(budget), out_dir
        # progress on stderr when it is a terminal (stage, candidate, runs, time left)
        self.progress = progress or ((lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty()
                                     else (lambda line: None))
        self.env_info = machine.describe()
        self.store = RunStore(command, self.budget, out_dir, self.env_info)
        self.scratch: str | None = None  # without --out, a private folder for the trace, removed by close()

    def close(self) -> None:
        """Remove what advise kept only for itself (the trace, without --out)."""
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> Advisor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def say(self, stage: str, what: str) -> None:
        self.progress(f"[advise {self.budget.spent:5.1f} s of {self.budget.seconds:g}] {stage}: {what}")

    def run_baseline(self) -> dict:
        """1. glibc's dynamic default, with the threshold explainer; sets the sampling rate for what follows."""
        self.say("baseline", f"{' '.join(self.command)} under glibc's dynamic default, with the threshold explainer")
        rec = self.store.run("baseline", glibc_backend().name, {}, 0, explain=True)
        if rec["status"] != "ok":
            tail = rec.get("output_tail") or []
            raise FailedBaseline(f"the program fails under glibc's default: {rec['error']}"
                                 + (f" ({' | '.join(tail[-2:])})" if tail else ""))
        wall = rec["wall_ns"] / 1e9
        self.store.hz = int(min(programs.MAX_HZ // 10, max(100, math.ceil(MIN_SAMPLES / max(wall, 1e-3)))))
        need = (2 * stats.MIN_PAIRS + 1) * wall  # the recording, and 6 pairs of the default and one candidate
        if self.budget.left() < need:
            raise AdviceError(f"a budget of {self.budget.seconds:g} s cannot verify anything: one run takes "
                              f"{wall:.2f} s, and verifying one setting against the default takes {stats.MIN_PAIRS} "
                              f"pairs of runs and a recording, about {need + self.budget.spent:.0f} s; raise --budget")
        return rec

    def record_trace(self) -> tuple[str | None, dict | None]:
        """The allocation trace (in --out, kept for a rerun), and what it holds; (None, None) without one."""
        path = self.store.path("program.trace")
        if not path:
            self.scratch = self.scratch or tempfile.mkdtemp(prefix="allocbench-advise-")
            path = os.path.join(self.scratch, "program.trace")
        if not (os.path.exists(path) and self.out_dir):
            self.say("record", f"the allocation trace -> {path}")
            try:
                self.budget.run(traces.record, self.command, path, timeout=max(0.01, self.budget.left()),
                                output=self.store.path("record.log"))
            except (ChildFailed, ValueError) as e:
                self.say("record", f"no trace ({e}); screening runs the program instead")
                return None, None
        try:
            return path, traces.info(path)
        except traces.TraceError as e:
            self.say("record", f"the trace is unreadable ({e}); screening runs the program instead")
            return None, None

    def advise(self) -> dict:
        with self:
            return self._advise()

    def _advise(self) -> dict:
        baseline = self.run_baseline()
        trace, trace_info = self.record_trace()
        top = max((r["new_threshold"] for r in (baseline.get("explain") or {}).get("rises", [])), default=None)
        candidates = propose(baseline, trace_info, moved_size(trace, top), self.env_info, self.objective)
        for c in candidates:
            self.say("candidates", f"{c.label}: {c.why}")
        method, why, replay_threads = choose_screen(trace, trace_info)
        self.say("screen", f"by {method}: {why}")
        wall = baseline["wall_ns"] / 1e9
        round_cost = stats.MIN_PAIRS * wall * ROUND_MARGIN  # MIN_PAIRS runs of the default or of one candidate
        # once a candidate has passed the screen, the screen leaves room to verify it against the default
        keep = lambda: 2 * round_cost if any(c.stage == "screened" and not screen_failed(c, self.objective)
                                             for c in candidates) else 0.0
        if method == "replay":
            slow = screen_by_replay(self.store, candidates, baseline, trace, replay_threads, keep)
            if slow:
                method, why = "exec", slow
                self.say("screen", f"by exec instead: {why}")
        if method == "exec":
            screen_by_exec(self.store, candidates, baseline, keep)
        # candidates verifiable in MIN_PAIRS rounds of the default and each of them
        room = int(self.budget.left() / round_cost) - 1
        chosen = survivors(candidates, self.objective, room)
        if chosen:
            self.say("verify", f"{', '.join(c.label for c in chosen)} against the default, in turns")
        default_runs = verify(self.store, chosen, baseline) if chosen else []
        result = answer(self.command, self.objective, self.budget,
                        {"method": method, "why": why, "replay_threads": replay_threads}, baseline, default_runs,
                        trace_info, candidates, self.env_info)
        if self.out_dir:
            write_json_atomically(self.store.path("advice.json"), result)
        return result


# ---- helpers ----

def site(rise: dict) -> str:
    """Where a threshold rise happened, as a person can find it: the first frame
    with a function or a file, named with its object ("array_dealloc
    (arrayobject.c) in _multiarray_umath.so"), else the first object+offset."""
    frames = rise.get("backtrace") or []
    f = next((f for f in frames if f.get("function") or f.get("source")), None)
    if f:
        function = f.get("function") and programs.short_function(f["function"])
        name = " ".join(x for x in (function, f"({f['source']})" if f.get("source") else None) if x)
        return f"{name} in {os.path.basename(f['object'])}"
    if frames:
        return f"{frames[0]['object']}+{frames[0]['offset']}"
    return "an unknown call site"


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def ratio(a, b):
    return None if a is None or not b else a / b


def replay_measures(rec: dict, t_ns) -> dict:
    """What a replay screen compares: the allocator's time over all the trace's
    events, and its anonymous RSS growth at its peak and over the program's own
    time (each sample held until the next, on the trace's clock: a program that
    sleeps holding memory holds it that long)."""
    t = rec.get("timeline") or {}
    anon, ops = t.get("anon_bytes") or [], t.get("op") or []
    mean = None
    if len(anon) > 1:
        at = [int(t_ns[min(op, len(t_ns) - 1)]) for op in ops]
        span = at[-1] - at[0]
        mean = (sum((at[i + 1] - at[i]) * anon[i] for i in range(len(at) - 1)) / span) if span > 0 else None
    return {"wall": rec["ns_per_op"]["median"] * rec["ops"], "mean_rss": mean,
            "peak_rss": max(anon) if anon else None}


def spearman(pairs: list[tuple[float, float]]) -> float | None:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(xs):
        order = sorted(range(len(xs)), key=lambda i: xs[i])
        r = [0.0] * len(xs)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    a, b = ranks([p[0] for p in pairs]), ranks([p[1] for p in pairs])
    ma, mb = statistics.mean(a), statistics.mean(b)
    num = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    den = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return num / den if den else None


def paste_line(env: dict) -> str:
    """The environment to set, as one line a person pastes before the command."""
    return " ".join(f"{k}={v}" for k, v in env.items())
