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
from .records import series_key
from .results import append_record, load_records, write_json_atomically
from .series import series_label
from .units import MIB, human_bytes, size_label

OBJECTIVES = ("memory", "time")
STOP_FACTOR = 3.0          # a run past this many times the default's wall time is stopped
MAX_SURVIVORS = 3
MAX_ROUNDS = 30
SCREEN_SLACK = 1.5         # screening is one noisy run: keep what it puts within 1.5x the constraint
MIN_SAMPLES = 40           # RSS samples a run should get (sets --hz for short programs)


class AdviceError(ValueError):
    """Bad input, or a budget too small: one line, exit status 2."""


class FailedBaseline(RuntimeError):
    """The program fails under glibc's default: nothing to advise."""


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
OBJECTIVE_MEASURE = {"memory": "mean_rss", "time": "wall"}
CONSTRAINT_MEASURE = {"memory": "wall", "time": "peak_rss"}


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


class Advisor:
    def __init__(self, command: list[str], objective: str = "memory", max_slowdown: float = 1.10,
                 max_growth: float = 1.25, budget: float = 180, out_dir: str | None = None, progress=None):
        check_command(command)
        if objective not in OBJECTIVES:
            raise AdviceError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if not max_slowdown >= 1:
            raise AdviceError(f"--max-slowdown must be at least 1 (the default's own time), got {max_slowdown:g}")
        if not max_growth >= 1:
            raise AdviceError(f"--max-growth must be at least 1 (the default's own peak RSS), got {max_growth:g}")
        if not budget > 0:
            raise AdviceError(f"--budget must be more than 0 seconds, got {budget:g}")
        if out_dir and os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise AdviceError(f"--out {out_dir}: not a folder")
        self.command, self.objective = command, objective
        self.max_slowdown, self.max_growth = max_slowdown, max_growth
        self.budget = Budget(budget)
        self.out_dir = out_dir
        # progress on stderr when it is a terminal (stage, candidate, runs, time left)
        self.progress = progress or ((lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty()
                                     else (lambda line: None))
        self.env_info = machine.describe()
        self.glibc = glibc_backend().name
        self.done = self._resume()
        self.hz = 100
        self.baseline: dict | None = None
        self.trace: str | None = None
        self.trace_info: dict | None = None
        self.screen_method = self.screen_why = None
        self.replay_threads = "one"
        self.candidates: list[Candidate] = []
        self.default_runs: list[dict] = []

    # ---- records kept in --out, resumed ----

    def _path(self, name: str) -> str | None:
        return os.path.join(self.out_dir, name) if self.out_dir else None

    def _resume(self) -> dict:
        path = self._path("runs.jsonl")
        if not path or not os.path.exists(path):
            return {}
        done = {}
        for r in load_records(path):
            if r.get("status") == "ok" and r.get("command") == self.command:
                done[(r["advise_stage"], r["allocator"], json.dumps(r["settings"], sort_keys=True), r["repeat"])] = r
        return done

    def say(self, stage: str, what: str) -> None:
        self.progress(f"[advise {self.budget.spent:5.1f} s of {self.budget.seconds:g}] {stage}: {what}")

    def run(self, stage: str, allocator: str, settings: dict, repeat: int, explain: bool = False,
            timeout: float | None = None) -> dict:
        """One exec run, or its record from an earlier call into the same --out."""
        key = (stage, allocator, json.dumps(settings, sort_keys=True), repeat)
        if key in self.done:
            return self.done[key]
        timeout = max(1.0, min(timeout or self.budget.left(), self.budget.left()))
        log = None if not self.out_dir else programs.log_path(self._path("runs.jsonl"), self.command, allocator,
                                                               settings, repeat)
        rec = self.budget.run(programs.run_program, self.command, allocator, settings, repeat, hz=self.hz,
                              timeout=timeout, explain=explain, env_info=self.env_info, output=log)
        rec["advise_stage"] = stage
        if self.out_dir:
            append_record(self._path("runs.jsonl"), rec)
        if rec["status"] == "ok":
            self.done[key] = rec
        return rec

    # ---- 1. baseline ----

    def run_baseline(self) -> None:
        self.say("baseline", f"{' '.join(self.command)} under glibc's dynamic default, with the threshold explainer")
        rec = self.run("baseline", self.glibc, {}, 0, explain=True)
        if rec["status"] != "ok":
            raise FailedBaseline(f"the program fails under glibc's default: {rec['error']}"
                                 + (f" ({' | '.join(rec.get('output_tail', [])[-2:])})" if rec.get("output_tail")
                                    else ""))
        self.baseline = rec
        wall = rec["wall_ns"] / 1e9
        self.hz = int(min(programs.MAX_HZ // 10, max(100, math.ceil(MIN_SAMPLES / max(wall, 1e-3)))))
        need = (2 * stats.MIN_PAIRS + 1) * wall  # the recording, and 6 pairs of the default and one candidate
        if self.budget.left() < need:
            raise AdviceError(f"a budget of {self.budget.seconds:g} s cannot verify anything: one run takes "
                              f"{wall:.2f} s, and verifying one setting against the default takes {stats.MIN_PAIRS} "
                              f"pairs of runs and a recording, about {need + self.budget.spent:.0f} s; raise --budget")

    def record_trace(self) -> None:
        path = self._path("program.trace") or os.path.join(tempfile.gettempdir(), f"advise-{os.getpid()}.trace")
        if not (os.path.exists(path) and self.out_dir):
            self.say("record", f"the allocation trace -> {path}")
            try:
                self.budget.run(traces.record, self.command, path, timeout=max(1.0, self.budget.left()),
                                output=self._path("record.log"))
            except (ChildFailed, ValueError) as e:
                self.say("record", f"no trace ({e}); screening runs the program instead")
                return
        try:
            self.trace_info = traces.info(path)
            self.trace = path
        except traces.TraceError as e:
            self.say("record", f"the trace is unreadable ({e}); screening runs the program instead")

    # ---- 2. candidates ----

    def make_candidates(self) -> None:
        out = []
        explain = self.baseline.get("explain") or {}
        rises = explain.get("rises", [])
        threads = (self.trace_info or {}).get("threads", 1)
        sc = self.baseline.get("syscalls") or {}
        top = max((r["new_threshold"] for r in rises), default=None)
        hi = BACKENDS[self.glibc].setting("mmap_threshold").hi
        out.append(Candidate(self.glibc, {"mmap_threshold": DEFAULT_MMAP_THRESHOLD}, (
            f"the threshold rose to {size_label(top)} at {site(rises[-1])}"
            + (f" ({len(rises)} rises, the first at {site(rises[0])})" if len(rises) > 1 else "")
            + "; frozen at 128 KiB, blocks above it go back to the system when freed") if rises else
            "the 128 KiB default, frozen: the threshold can no longer rise"))
        for level in sorted({r["new_threshold"] for r in rises}):
            if level <= hi:
                where = next(r for r in rises if r["new_threshold"] == level)
                out.append(Candidate(self.glibc, {"mmap_threshold": level},
                                     f"the level the threshold rose to at {site(where)}, frozen there"))
        moved = self._moved_size(top)
        if moved:
            size, count = moved
            level = min(hi, request2size(size) + 16)
            if level not in {c.settings.get("mmap_threshold") for c in out}:
                out.append(Candidate(self.glibc, {"mmap_threshold": level}, (
                    f"the trace reuses {size_label(size)} blocks most ({count:,} of them) among those the rise moved "
                    f"onto the heap; a threshold just above keeps them there and still maps anything larger")))
        if (sc.get("brk") or 0) >= 8:
            base = {"mmap_threshold": min(hi, top or DEFAULT_MMAP_THRESHOLD)}
            out.append(Candidate(self.glibc, {**base, "trim_threshold": 64 * MIB}, (
                f"the heap moved {sc['brk']} times (brk): a 64 MiB trim threshold keeps the top chunk instead of "
                "giving it back and faulting it in again")))
            out.append(Candidate(self.glibc, {**base, "top_pad": 16 * MIB}, (
                f"the heap moved {sc['brk']} times (brk): a 16 MiB top pad grows it in fewer, larger steps")))
        if threads > 1:
            for n in (1, 2, 4):
                out.append(Candidate(self.glibc, {"arena_max": n}, (
                    f"the program runs {threads} threads, each of which can get an arena that keeps its own peak; "
                    f"arena_max={n} makes them share {n}")))
            if self.objective == "memory":
                out.append(Candidate(self.glibc, {"tcache_count": 0}, (
                    f"each of the {threads} threads caches up to 7 chunks of every small size; tcache_count=0 "
                    "keeps none")))
        if (self.objective == "time" and self.env_info.get("thp") == "madvise"
                and self.baseline["peak_rss_bytes"] >= 64 * MIB):
            out.append(Candidate(self.glibc, {"hugetlb": 1}, (
                f"transparent huge pages are on request here (THP madvise) and the program peaks at "
                f"{human_bytes(self.baseline['peak_rss_bytes'])}: hugetlb=1 asks for them for the heap")))
        for name in others():
            why = BACKENDS[name].unavailable_reason()
            if why:
                self.say("candidates", f"{name} left out: {why}")
                continue
            out.append(Candidate(name, {}, f"{BACKENDS[name].about}, instead of glibc's malloc"))
        self.candidates = out
        for c in out:
            self.say("candidates", f"{c.label}: {c.why}")

    def _moved_size(self, top: int | None) -> tuple[int, int] | None:
        """The size the trace allocates most often among those the rise moved (from the glibc boundary up
        to the risen threshold), and how many."""
        if not top or not self.trace:
            return None
        import numpy as np

        _, ev = traces.read(self.trace)
        sizes = ev["size"][np.isin(ev["op"], list(traces.ALLOCATING)) & (ev["ptr"] != 0)]
        moved = sizes[(sizes >= GLIBC_DEFAULT_BOUNDARY) & (sizes < top)]
        if not len(moved):
            return None
        values, counts = np.unique(moved, return_counts=True)
        i = int(np.argmax(counts))
        return (int(values[i]), int(counts[i])) if counts[i] > 1 else None  # reused: allocated more than once

    # ---- 3. screen ----

    def choose_screen(self) -> None:
        threads = (self.trace_info or {}).get("threads", 0)
        self.replay_threads = "one" if threads == 1 else "recorded"
        if self.trace and threads == 1:
            self.screen_method = "replay"
            self.screen_why = ("the program's calls come from one thread, so a replay makes the same calls in "
                               "the same order on the allocator under test, in a fraction of the program's time")
        elif self.trace and threads > 1:
            self.screen_method = "replay"
            self.screen_why = (f"the program's calls come from {threads} threads: a replay on its recorded threads "
                               "makes each thread's calls on a thread of its own, so glibc gives them arenas as "
                               "in the program, in a fraction of the program's time")
        else:
            self.screen_method = "exec"
            self.screen_why = "no trace could be recorded: one short run of the program each"

    def screen(self) -> None:
        self.choose_screen()
        self.say("screen", f"by {self.screen_method}: {self.screen_why}")
        if self.screen_method == "replay":
            self._screen_by_replay()
        else:
            self._screen_by_exec()

    def _screen_by_replay(self) -> None:
        chosen = [(self.glibc, {})] + [(c.allocator, c.settings) for c in self.candidates]
        specs = [runner.make_spec(allocator=a, pattern="trace", trace=self.trace, size=0, repeats=1, settings=s,
                                  replay_threads=self.replay_threads) for a, s in chosen]
        path = self._path("replays.jsonl")
        done = {records_key(r): r for r in load_records(path)} if path and os.path.exists(path) else {}
        todo = [s for s in specs if records_key(s) not in done]
        if todo:
            self.say("screen", f"replaying the trace under {len(todo)} setting(s)")
            for rec in self.budget.run(runner.run_cells, todo, env_info=self.env_info):
                done[records_key(rec)] = rec
                if path:
                    append_record(path, rec)
        _, events = traces.read(self.trace)
        t_ns = events["t_ns"]
        default = done[records_key(specs[0])]
        if default["status"] != "ok":
            raise FailedBaseline(f"the trace's replay fails under glibc's default: {default['error']}")
        base = replay_measures(default, t_ns)
        program = {"wall": self.baseline["wall_ns"], "mean_rss": self.baseline["mean_rss_bytes"],
                   "peak_rss": self.baseline["peak_rss_bytes"]}
        for c, spec in zip(self.candidates, specs[1:]):
            rec = done[records_key(spec)]
            if rec["status"] != "ok":
                c.stage, c.stopped = "stopped", f"its replay failed: {rec['error']}"
                continue
            c.stage = "screened"
            # what the replay changes, added to the program's own measure: the program is more than its mallocs
            got = replay_measures(rec, t_ns)
            c.screen = {"method": "replay", **{k: ratio(program[k] + got[k] - base[k], program[k]) for k in got
                                                if got[k] is not None and base[k] is not None}}

    def _screen_by_exec(self) -> None:
        base = self.baseline
        for c in self.candidates:
            if self.budget.left() <= 0:
                c.stopped = "the budget ran out before it was screened"
                continue
            self.say("screen", f"{c.label}: one run")
            rec = self.run("screen", c.allocator, c.settings, 0, timeout=STOP_FACTOR * base["wall_ns"] / 1e9)
            if rec["status"] != "ok":
                c.stage = "stopped"
                c.stopped = (f"slower than {STOP_FACTOR:g}x the default (stopped)" if rec["error"].startswith("timeout")
                             else f"its run failed: {rec['error']}")
                continue
            c.stage = "screened"
            c.screen = {"method": "exec", **{name: ratio(f(rec), f(base)) for name, f, _ in MEASURES}}

    # ---- 4. verify ----

    def survivors(self) -> list[Candidate]:
        """The screened candidates inside the constraint (with slack: a screen is one noisy run), best first
        by the objective, as many as the budget can verify."""
        obj, con = OBJECTIVE_MEASURE[self.objective], CONSTRAINT_MEASURE[self.objective]
        limit = (self.max_slowdown if self.objective == "memory" else self.max_growth) * SCREEN_SLACK
        fit = [c for c in self.candidates if c.stage == "screened" and c.screen.get(con, math.inf) <= limit
               and c.screen.get(obj, math.inf) < 1]
        fit.sort(key=lambda c: (c.screen[obj], c.invasive))
        wall = self.baseline["wall_ns"] / 1e9
        room = int(self.budget.left() / (stats.MIN_PAIRS * wall * 1.2)) - 1  # rounds of 6, default included
        keep = fit[:max(1, min(MAX_SURVIVORS, room))]
        for c in fit[len(keep):]:
            c.stopped = "not verified: the budget verifies the best few"
        return keep

    def verify(self) -> None:
        chosen = self.survivors()
        if not chosen:
            self.say("verify", "no candidate screened better than the default inside the constraint")
            return
        self.say("verify", f"{', '.join(c.label for c in chosen)} against the default, in turns")
        wall = self.baseline["wall_ns"] / 1e9
        for rnd in range(MAX_ROUNDS):
            live = [c for c in chosen if c.stage != "stopped" and not (rnd >= stats.MIN_PAIRS and self.decided(c))]
            if not live or self.budget.left() < (len(live) + 1) * wall * 1.2:
                break
            default = self.run("verify", self.glibc, {}, rnd)
            if default["status"] != "ok":
                raise FailedBaseline(f"the default failed in verification: {default['error']}")
            self.default_runs.append(default)
            stop_at = STOP_FACTOR * statistics.median(r["wall_ns"] for r in self.default_runs) / 1e9
            for c in live:
                self.say("verify", f"{c.label}: run {rnd + 1}, {self.budget.left():.0f} s left")
                rec = self.run("verify", c.allocator, c.settings, rnd, timeout=stop_at)
                if rec["status"] != "ok":
                    c.stage = "stopped"
                    c.stopped = (f"slower than {STOP_FACTOR:g}x the default (stopped at {stop_at:.1f} s)"
                                 if rec["error"].startswith("timeout") else f"a run failed: {rec['error']}")
                    continue
                c.runs.append(rec)
                c.stage = "verified"
            for c in chosen:
                self.measure(c)
        for c in chosen:
            self.measure(c)

    def measure(self, c: Candidate) -> None:
        if c.stage != "verified":
            return
        for name, f, kind in MEASURES:
            c.measures[name] = stats.runs(self.default_runs, c.runs, f, kind)
        c.measures["syscalls"] = {
            k: stats.runs(self.default_runs, c.runs, lambda r, k=k: (r["syscalls"] or {}).get(k), "count")
            for k in (self.baseline.get("syscalls") or {})}

    def decided(self, c: Candidate) -> bool:
        """Both the objective and the constraint are settled at 95%."""
        if c.stage != "verified" or not c.measures:
            return False
        obj = c.measures[OBJECTIVE_MEASURE[self.objective]]
        con = c.measures[CONSTRAINT_MEASURE[self.objective]]
        limit = self.max_slowdown if self.objective == "memory" else self.max_growth
        return obj.verdict != "untested" and obj.significant and con.low is not None and (
            con.high <= limit or con.low > limit)

    # ---- 5. answer ----

    def eligible(self, c: Candidate) -> bool:
        if c.stage != "verified" or not c.measures:
            return False
        obj = c.measures[OBJECTIVE_MEASURE[self.objective]]
        con = c.measures[CONSTRAINT_MEASURE[self.objective]]
        limit = self.max_slowdown if self.objective == "memory" else self.max_growth
        return obj.verdict == stats.BETTER[obj_kind(self.objective)] and con.high is not None and con.high <= limit

    def recommend(self) -> tuple[Candidate | None, str]:
        obj = OBJECTIVE_MEASURE[self.objective]
        ok = [c for c in self.candidates if self.eligible(c)]
        if not ok:
            verified = [c for c in self.candidates if c.stage == "verified" and c.measures]
            seen = [c.measures[obj].detectable for c in verified if c.measures[obj].detectable is not None]
            could = (f"; these runs could have seen a difference of {min(seen):.0%}" if seen else "")
            return None, (f"keep the default: no candidate was {stats.BETTER[obj_kind(self.objective)]} at 95% "
                          f"{self._constraint_words()}{could}")
        ok.sort(key=lambda c: c.measures[obj].estimate)
        best = ok[0]
        for c in ok[1:]:  # the least invasive among those the runs cannot tell from the best
            if c.invasive < best.invasive and not stats.runs(best.runs, c.runs, dict(
                    (n, f) for n, f, _ in MEASURES)[obj], obj_kind(self.objective)).significant:
                return c, self.reason(c) + f" (as good as {best.label} by the test, and a smaller change)"
        return best, self.reason(best)

    def _constraint_words(self) -> str:
        if self.objective == "memory":
            return f"in mean RSS within {self.max_slowdown:g}x the default's wall time"
        return f"in wall time within {self.max_growth:g}x the default's peak RSS"

    def reason(self, c: Candidate) -> str:
        m = c.measures
        mean_b = statistics.median(r["mean_rss_bytes"] for r in self.default_runs)
        mean_c = statistics.median(r["mean_rss_bytes"] for r in c.runs)
        change = (f"returns {human_bytes(mean_b - mean_c)} of RSS on average" if mean_c < mean_b else
                  f"holds {human_bytes(mean_c - mean_b)} more RSS on average")
        return (f"{c.why}: it {change} (mean RSS {human_bytes(mean_b)} -> {human_bytes(mean_c)}, "
                f"{m['mean_rss'].words()}), peak RSS {m['peak_rss'].words()}, {m['wall'].words()} the wall time")

    def screening_accuracy(self) -> dict:
        """How well the screen ranked the verified candidates (Spearman's rho, the default included at 1)
        and its error per measure (median |screened / verified - 1|)."""
        verified = [c for c in self.candidates if c.stage == "verified" and c.screen and c.measures]
        out = {"method": self.screen_method, "verified": len(verified)}
        for name in ("wall", "mean_rss", "peak_rss"):
            pairs = [(c.screen.get(name), c.measures[name].estimate) for c in verified
                     if c.screen.get(name) is not None and c.measures[name].estimate is not None]
            pairs.append((1.0, 1.0))
            out[name] = {"rank_correlation": spearman(pairs) if len(pairs) >= 3 else None,
                         "median_error": statistics.median(abs(s / v - 1) for s, v in pairs[:-1]) if len(pairs) > 1
                         else None}
        return out

    def answer(self) -> dict:
        best, why = self.recommend()
        obj = OBJECTIVE_MEASURE[self.objective]
        ranked = sorted(self.candidates, key=lambda c: (
            0 if self.eligible(c) else 1 if c.stage == "verified" else 2 if c.stage == "screened" else 3,
            c.measures[obj].estimate if c.measures else (c.screen or {}).get(obj, math.inf)))
        cmp_dict = lambda x: None if x is None else {"estimate": x.estimate, "low": x.low, "high": x.high}
        base_runs = self.default_runs or [self.baseline]
        median = lambda field: statistics.median(r[field] for r in base_runs)
        return {
            "objective": self.objective, "command": self.command, "max_slowdown": self.max_slowdown,
            "max_growth": self.max_growth, "budget_s": self.budget.seconds, "spent_s": round(self.budget.spent, 1),
            "screen": {"method": self.screen_method, "why": self.screen_why, "replay_threads": self.replay_threads},
            "baseline": {"allocator": self.glibc, "settings": {}, "runs": len(self.default_runs) or 1,
                         "wall_s": median("wall_ns") / 1e9, "mean_rss_bytes": median("mean_rss_bytes"),
                         "peak_rss_bytes": median("peak_rss_bytes"),
                         "threshold_rises": (self.baseline.get("explain") or {}).get("rises", []),
                         "trace": self.trace_info and {k: self.trace_info[k] for k in
                                                       ("events", "threads", "peak_live_bytes")}},
            "candidates": [{
                "allocator": c.allocator, "settings": c.settings, "label": c.label, "env": c.env(), "why": c.why,
                "stage": c.stage, "runs": len(c.runs), "screen": c.screen, "stopped": c.stopped,
                "wall_ratio": cmp_dict(c.measures.get("wall")), "cpu_ratio": cmp_dict(c.measures.get("cpu")),
                "peak_rss_ratio": cmp_dict(c.measures.get("peak_rss")),
                "mean_rss_ratio": cmp_dict(c.measures.get("mean_rss")),
                "final_rss_ratio": cmp_dict(c.measures.get("final_rss")),
                "faults_ratio": cmp_dict(c.measures.get("faults")),
                "syscalls_ratio": {k: cmp_dict(v) for k, v in c.measures.get("syscalls", {}).items()},
                "verdict": verdict_words(c, self.objective),
                "eligible": self.eligible(c)} for c in ranked],
            "recommendation": None if best is None else {
                "allocator": best.allocator, "settings": best.settings, "env": best.env(), "why": why,
                "line": paste_line(best.env())},
            "keep_default_why": why if best is None else None,
            "screening_accuracy": self.screening_accuracy(),
            "env": self.env_info}

    def advise(self) -> dict:
        self.run_baseline()
        self.record_trace()
        self.make_candidates()
        self.screen()
        self.verify()
        result = self.answer()
        if self.out_dir:
            write_json_atomically(self._path("advice.json"), result)
        return result


# ---- helpers ----

def obj_kind(objective: str) -> str:
    return "memory" if objective == "memory" else "time"


def site(rise: dict) -> str:
    """Where a threshold rise happened, as a person can find it: the first frame
    with a function or a file, named with its object ("array_dealloc
    (arrayobject.c) in _multiarray_umath.so"), else the first object+offset."""
    frames = rise.get("backtrace") or []
    f = next((f for f in frames if f.get("function") or f.get("source")), None)
    if f:
        name = " ".join(x for x in (f.get("function"), f"({f['source']})" if f.get("source") else None) if x)
        return f"{name} in {os.path.basename(f['object'])}"
    if frames:
        return f"{frames[0]['object']}+{frames[0]['offset']}"
    return "an unknown call site"


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


def records_key(rec: dict) -> str:
    from .records import cell_key
    return cell_key(rec)


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


def verdict_words(c: Candidate, objective: str) -> str:
    if c.stage == "stopped":
        return c.stopped or "stopped"
    if c.stage != "verified":
        return c.stopped or f"screened ({(c.screen or {}).get('method')}), not verified"
    return "; ".join(f"{name.replace('_', ' ')} {c.measures[name].words()}"
                     for name in ("wall", "mean_rss", "peak_rss"))


def paste_line(env: dict) -> str:
    """The environment to set, as one line a person pastes before the command."""
    return " ".join(f"{k}={v}" for k, v in env.items())
