"""allocbench advise: candidates taken from the program, screening, verification
in turns, the answer's shape, resuming, bad input.  The programs are built here;
what is asserted comes from their own calls (glibc's chunk rounding, thread
counts), never from timings: a recommendation is asserted only where the
constraint cannot bind (a slowdown allowed of 100x)."""
import json
import os
import shutil
import subprocess

import pytest
from conftest import ENV, ZSTD_TRACE, cli, one_line_error

from allocbench import advise, runner, stats
from allocbench.glibc_constants import request2size
from allocbench.records import cell_key

pytestmark = pytest.mark.skipif(not shutil.which("gcc"), reason="gcc builds the test programs")
KIB, MIB, PAGE = 1024, 1 << 20, 4096

PIN = r"""
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {  /* the first free raises the threshold; 64 x 1 MiB then land on the heap between pins */
    char *first = malloc(1 << 20); memset(first, 1, 1 << 20); free(first);
    char *big[64]; void *pin[64];
    for (int i = 0; i < 64; i++) { big[i] = malloc(1 << 20); memset(big[i], 2, 1 << 20); pin[i] = malloc(64); }
    for (int i = 0; i < 64; i++) free(big[i]);
    for (int r = 0; r < 20; r++) { usleep(5000); char *p = malloc(4096); memset(p, 3, 4096); free(p); }
    (void)pin; return 0;
}
"""
THREADS = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
static void *work(void *a) { for (int i = 0; i < 200; i++) { char *p = malloc(16384); memset(p, 1, 16384); free(p); }
  return a; }
int main(void) { pthread_t t[3]; for (int i = 0; i < 3; i++) pthread_create(&t[i], 0, work, 0);
  for (int i = 0; i < 3; i++) pthread_join(t[i], 0); return 0; }
"""


def build(tmp_path, name, source):
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run(["gcc", "-O0", "-g", "-fno-builtin", "-pthread", "-o", str(exe), str(src)], check=True)
    return str(exe)


def mmapped_chunk(request: int) -> int:
    nb = request2size(request)
    return -(-(nb + 8) // PAGE) * PAGE


@pytest.mark.slow
def test_a_pinned_threshold_is_frozen_and_the_answer_has_its_shape(tmp_path):
    exe = build(tmp_path, "pin", PIN)
    out = tmp_path / "adv"
    proc = cli("advise", "--json", "--max-slowdown", "100", "--budget", "120", "--out", out, "--", exe)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    labels = {json.dumps(c["settings"], sort_keys=True): c for c in result["candidates"]}
    rise = mmapped_chunk(MIB)  # the threshold rises to the freed mmapped chunk's size
    assert result["baseline"]["threshold_rises"][0]["new_threshold"] == rise
    assert json.dumps({"mmap_threshold": rise}) in labels            # each level it rose to
    assert json.dumps({"mmap_threshold": 128 * KIB}) in labels       # the default, frozen
    moved = request2size(MIB) + 16                                   # just above the most reused moved size
    assert json.dumps({"mmap_threshold": moved}) in labels
    assert not any("arena_max" in c["settings"] for c in result["candidates"])  # one thread
    for c in result["candidates"]:
        assert set(c) >= {"allocator", "settings", "env", "why", "stage", "runs", "wall_ratio", "peak_rss_ratio",
                          "mean_rss_ratio", "verdict"} and c["why"]
        assert c["stage"] in ("screened", "verified", "stopped")
        if c["stage"] == "verified":
            assert c["runs"] >= stats.MIN_PAIRS
            for key in ("wall_ratio", "peak_rss_ratio", "mean_rss_ratio"):
                r = c[key]
                assert r["low"] <= r["estimate"] <= r["high"]
    rec = result["recommendation"]  # with 100x allowed, only memory decides: the freeze returns the pinned MiB
    assert rec is not None and rec["settings"] == {"mmap_threshold": 128 * KIB}
    assert rec["env"] == {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}
    assert "pin.c:" in rec["why"]  # the call site, by file and line
    assert (out / "advice.json").exists() and (out / "advice.png").read_bytes()[:4] == b"\x89PNG"
    runs = (out / "runs.jsonl").read_text()
    again = cli("advise", "--json", "--max-slowdown", "100", "--budget", "120", "--out", out, "--", exe)
    assert again.returncode == 0 and (out / "runs.jsonl").read_text() == runs  # resumed: nothing ran again


def test_threads_bring_arena_candidates_and_a_screen_on_their_threads(tmp_path):
    exe = build(tmp_path, "threads", THREADS)
    with advise.Advisor([exe], budget=60, progress=lambda line: None) as a:
        baseline = a.run_baseline()
        trace, info = a.record_trace()
        assert os.path.dirname(trace) == a.scratch  # no --out: the trace in a private folder
        method, why, replay_threads = advise.choose_screen(trace, info)
    assert not os.path.exists(trace)  # and gone with it
    candidates = advise.propose(baseline, info, None, a.env_info, advise.objective("memory"))
    arenas = sorted(c.settings["arena_max"] for c in candidates if "arena_max" in c.settings)
    assert arenas == [1, 2, 4] and info["threads"] == 4  # main and 3 workers
    assert method == "replay" and replay_threads == "recorded" and "4 threads" in why


def test_without_out_nothing_is_left_behind(tmp_path):
    """advise without --out keeps its trace in a private folder (not a name other users can guess in
    /tmp) and removes it at the end."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = cli("advise", "--budget", "20", "--", "true", env={**ENV, "TMPDIR": str(scratch)})
    assert proc.returncode == 0, proc.stderr
    assert list(scratch.iterdir()) == []


def test_propose_takes_its_candidates_from_the_program():
    """Pure: a baseline whose threshold rose twice, a heap that moved, one thread."""
    rises = [{"new_threshold": 200704, "old_threshold": 131072, "backtrace": []},
             {"new_threshold": 1052672, "old_threshold": 200704, "backtrace": []}]
    baseline = {"explain": {"rises": rises}, "syscalls": {"brk": 9}, "peak_rss_bytes": MIB}
    got = advise.propose(baseline, {"threads": 1}, (300000, 5), {"thp": "never"}, advise.objective("memory"))
    glibc = [c.settings for c in got if c.allocator == "glibc"]
    moved = request2size(300000) + 16  # just above the chunk of the most reused moved size
    assert glibc[:4] == [{"mmap_threshold": 128 * KIB}, {"mmap_threshold": 200704}, {"mmap_threshold": 1052672},
                         {"mmap_threshold": moved}]
    assert {"mmap_threshold": 1052672, "trim_threshold": 64 * MIB} in glibc  # 9 brk calls: the heap moved
    assert not any("arena_max" in s or "tcache_count" in s for s in glibc)  # one thread
    assert all(c.why for c in got)


def test_survivors_say_why_each_other_candidate_was_not_verified():
    obj = advise.objective("memory", max_slowdown=1.10)
    cands = [advise.Candidate("glibc", {"arena_max": n}, "w", stage="screened",
                              screen={"mean_rss": m, "wall": w}) for n, m, w in
             ((1, 0.5, 1.0), (2, 0.6, 1.0), (4, 0.7, 1.0), (8, 0.8, 1.0), (16, 1.02, 1.0), (32, 0.5, 1.9))]
    keep = advise.survivors(cands, obj, rounds_room=2)
    assert [c.settings["arena_max"] for c in keep] == [1, 2]
    assert cands[2].stopped == "ranked 3rd by the screen; the budget verified the best 2"
    assert cands[4].stopped.startswith("screen: not leaner (1.02x")
    assert cands[5].stopped.startswith("screen: outside the constraint (1.90x")
    assert advise.plan_rounds(60, 1.0, 2) == 16 and advise.plan_rounds(1000, 1.0, 2) == advise.MAX_ROUNDS
    # with room, the ones the screen cannot tell from the default (within 2%) are verified too, best first
    close = advise.Candidate("glibc", {"arena_max": 64}, "w", stage="screened", screen={"mean_rss": 1.01, "wall": 1.0})
    for c in cands:
        c.stopped = None
    keep = advise.survivors(cands + [close], obj, rounds_room=10)
    assert [c.settings["arena_max"] for c in keep] == [1, 2, 4, 8, 64]


def test_the_recommendation_is_better_at_95_percent_and_inside_the_constraint():
    """From fabricated paired runs: B is 0.5x the default's mean RSS in every pair
    and the same time; C is leaner still but 1.5x slower, outside 1.10."""
    def runs(mean, wall):
        return [{"repeat": i, "wall_ns": wall * (1 + 0.01 * (i % 3)), "cpu_ns": wall, "peak_rss_bytes": mean,
                 "mean_rss_bytes": mean * (1 + 0.01 * (i % 2)), "final_rss_bytes": mean, "minor_faults": 1,
                 "major_faults": 0, "syscalls": {}} for i in range(8)]
    default_runs = runs(100, 1000)
    b = advise.Candidate("glibc", {"mmap_threshold": 131072}, "why b", stage="verified", runs=runs(50, 1000))
    c = advise.Candidate("glibc", {"arena_max": 1}, "why c", stage="verified", runs=runs(20, 1500))
    for x in (b, c):
        advise.measure(x, default_runs, {})
    obj = advise.objective("memory", max_slowdown=1.10)
    assert not advise.eligible(c, obj) and advise.eligible(b, obj)
    best, why = advise.recommend([b, c], obj, default_runs)
    assert best is b and "why b" in why
    assert advise.recommend([b, c], advise.objective("memory", max_slowdown=2.0), default_runs)[0] is c
    assert advise.recommend([], obj, default_runs)[0] is None
    # a budget that ran out before anything was verified gives no answer, not "keep the default"
    cut = [advise.Candidate("glibc", {"arena_max": 1}, "w", stopped="the budget ran out before it was screened"),
           advise.Candidate("glibc", {"arena_max": 2}, "w", stage="screened", screen={"mean_rss": 1.3})]
    best, why = advise.recommend(cut, obj, default_runs)
    assert best is None and why.startswith("no answer within the budget: it ran out before 1 of 2 candidates")
    cut[0].stopped = "screen: not leaner (1.02x mean rss)"  # every candidate seen and none better: keep
    assert advise.recommend(cut, obj, default_runs)[1].startswith("keep the default")
    # an answer says what the budget left unseen
    unseen = advise.Candidate("glibc", {"arena_max": 4}, "w", stopped="the budget ran out before it was screened")
    best, why = advise.recommend([b, c, unseen], obj, default_runs)
    assert best is b and why.endswith("; the budget ran out before 1 of 3 candidates were screened or verified "
                                      "(a larger --budget sees them)")
    acc = advise.screening_accuracy([b, c], "replay")  # neither was screened: nothing to rank
    assert acc["verified"] == 0 and acc["mean_rss"]["rank_correlation"] is None


@pytest.mark.parametrize("args,message", [
    ([], "e.g. allocbench advise -- "), (["--", "no-such-command-here"], "command not found"),
    (["--max-slowdown", "0.5", "--", "true"], "--max-slowdown must be at least 1"),
    (["--max-growth", "0.9", "--", "true"], "--max-growth must be at least 1"),
    (["--budget", "0.2", "--", "sleep", "0.5"], "cannot verify anything"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    out = tmp_path / "adv"
    proc = cli("advise", "--out", out, *args)
    assert one_line_error(proc, message), proc.stderr


def test_a_program_that_fails_is_a_failed_baseline_and_its_run_is_kept(tmp_path):
    out = tmp_path / "adv"
    proc = cli("advise", "--out", out, "--", "sh", "-c", "exit 3")
    assert proc.returncode == 1 and "failed baseline" in proc.stderr and "exit status 3" in proc.stderr
    rec = json.loads((out / "runs.jsonl").read_text())
    assert rec["status"] == "failed" and rec["advise_stage"] == "baseline"


def test_a_folder_of_another_commands_runs_is_refused_before_any_run(tmp_path):
    out = tmp_path / "adv"
    cli("advise", "--out", out, "--", "sh", "-c", "exit 3")  # a failed baseline: its run is kept in out
    kept = (out / "runs.jsonl").read_text()
    proc = cli("advise", "--out", out, "--", "sh", "-c", "exit 4")
    assert one_line_error(proc, "another command (sh -c exit 3)"), proc.stderr
    assert (out / "runs.jsonl").read_text() == kept  # nothing ran


def test_a_folder_of_another_builds_runs_is_refused_before_any_run(tmp_path):
    """A rerun into the same folder resumes only the same build's runs: once a record names another build
    (here one from before records named theirs), the folder is refused, whole, before anything runs."""
    out = tmp_path / "adv"
    cli("advise", "--out", out, "--", "sh", "-c", "exit 3")
    rec = json.loads((out / "runs.jsonl").read_text())
    assert rec["build"]
    del rec["build"]
    (out / "runs.jsonl").write_text(json.dumps(rec) + "\n")
    proc = cli("advise", "--out", out, "--", "sh", "-c", "exit 3")
    assert one_line_error(proc, "holds advice runs of another build"), proc.stderr
    assert (out / "runs.jsonl").read_text() == json.dumps(rec) + "\n"  # nothing ran


def test_screening_accuracy_ranks_the_verified_candidates_alone():
    """The audit found the default added as a fixed point (1, 1), which inflates the correlation.
    Screened mean RSS 0.5, 0.7, 0.9 against verified 0.6, 0.5, 0.95: ranks (1, 2, 3) against
    (2, 1, 3), so Spearman's rho = 1 - 6 x 2 / (3 x 8) = 0.5 (with the default it would be 0.8);
    the median error is the middle of |0.5/0.6 - 1|, |0.7/0.5 - 1|, |0.9/0.95 - 1|."""
    def runs(mean):
        return [{"repeat": i, "wall_ns": 1000.0, "cpu_ns": 1000.0, "peak_rss_bytes": mean, "mean_rss_bytes": mean,
                 "final_rss_bytes": mean, "minor_faults": 1, "major_faults": 0, "syscalls": {}} for i in range(6)]
    default_runs = runs(100.0)
    cands = []
    for screened, verified in ((0.5, 60.0), (0.7, 50.0), (0.9, 95.0)):
        c = advise.Candidate("glibc", {"arena_max": len(cands) + 1}, "w", stage="verified",
                             screen={"mean_rss": screened}, runs=runs(verified))
        advise.measure(c, default_runs, {})
        cands.append(c)
    acc = advise.screening_accuracy(cands, "replay")
    assert acc["verified"] == 3 and acc["mean_rss"]["rank_correlation"] == pytest.approx(0.5)
    assert acc["mean_rss"]["median_error"] == pytest.approx(abs(0.5 / 0.6 - 1))  # 0.167 of 0.167, 0.4, 0.053
    two = advise.Candidate("glibc", {"arena_max": 9}, "w", stage="verified", runs=runs(50.0)[:2])
    advise.measure(two, default_runs[:2], {})  # 2 runs: a ratio with no interval would mislead
    assert advise.verdict_words(two).count("untested") == 3 and "0.50x" not in advise.verdict_words(two)


def test_a_budget_spent_before_the_defaults_replay_asks_for_more_not_a_failure():
    """A program whose run and recording took the whole budget (pyenv's shim, before unfinished traces
    were read a chunk at a time: 26 s) said "failed baseline: the trace's replay fails under glibc's
    default: the budget ran out", exit 1, of a replay that never ran.  It is a budget too small for
    the program, as the first run's check finds: say what took it, and ask for more (exit 2)."""
    store = advise.RunStore(["true"], advise.Budget(20), None, {})
    store.budget.spent = 19.5
    with pytest.raises(advise.AdviceError, match=r"^the budget ran out before the trace's replay under glibc's "
                       r"default: the program's run and its recording took 19\.5 s of 20 s; raise --budget$"):
        advise.screen_by_replay(store, [], {"wall_ns": 1e8}, ZSTD_TRACE, "recorded")
    assert store.budget.spent == 19.5  # nothing ran


def test_the_screen_keeps_room_to_verify_and_a_cut_verification_is_no_verdict():
    """numpy's advice spent its whole budget screening and verified nothing.  A store asked to keep
    seconds for verifying runs nothing past them (a recorded run is still returned: it costs nothing);
    a verification the budget cut below MIN_PAIRS pairs is no verdict, so no answer, not "keep"."""
    spec = runner.make_spec(allocator="glibc", pattern="trace", trace=ZSTD_TRACE, size=0, repeats=1, settings={},
                            replay_threads="recorded")
    store = advise.RunStore(["true"], advise.Budget(10), None, {})
    store.budget.spent = 6.5
    assert store.replay(spec, 10, keep=3) is None and store.run("screen", "glibc", {}, 0, keep=3) is None
    assert store.budget.spent == 6.5  # nothing ran
    store.budget.spent = 9.5  # nor with nothing to keep, once the budget is spent
    assert store.replay(spec, 10) is None and store.run("screen", "glibc", {}, 0, keep=0.0) is None
    store.replays[cell_key(spec)] = {"status": "ok"}
    assert store.replay(spec, 10, keep=3) == {"status": "ok"}

    class Store:  # each run takes a second of a 5 s budget
        budget = advise.Budget(5)

        def run(self, stage, allocator, settings, repeat, timeout=None):
            self.budget.spent += 1
            return {"status": "ok", "wall_ns": 1e8, "cpu_ns": 1e8, "peak_rss_bytes": 1, "mean_rss_bytes": 1,
                    "final_rss_bytes": 1, "minor_faults": 1, "major_faults": 0, "syscalls": {}}

    c = advise.Candidate("glibc", {"arena_max": 1}, "w", stage="screened", screen={"mean_rss": 0.5, "wall": 1.0})
    default_runs = advise.verify(Store(), [c], {"wall_ns": 1e8})
    assert len(default_runs) == 3 and len(c.runs) == 2  # the third round's default took the last second
    assert c.stage == "stopped" and c.stopped == f"the budget ran out after 2 of {stats.MIN_PAIRS} pairs"
    best, why = advise.recommend([c], advise.objective("memory"), default_runs)
    assert best is None and why.startswith("no answer within the budget: it ran out before 1 of 1 candidates")


def test_verification_runs_nothing_past_the_budget(monkeypatch):
    """make bench's Ruby advice read "22 s of a 21 s budget": a verifying run took a second at least,
    whatever was left, and a round began with any time left at all.  Now a run past the baseline is
    given what is left and no more, a round that the default's run cannot fit in is not begun, and a
    default cut by the budget ends the verification (its pairs stand) instead of failing it."""
    asked = []
    monkeypatch.setattr(advise.programs, "run_program", lambda *a, timeout, **kw: asked.append(timeout) or
                        {"status": "failed", "error": f"timeout: no result within {timeout:.1f} s"})
    store = advise.RunStore(["true"], advise.Budget(10), None, {})
    store.budget.spent = 9.6
    rec = store.run("verify", "glibc", {}, 0)
    assert asked == [pytest.approx(0.4, abs=0.01)] and advise.cut_by_budget(rec)
    store.budget.spent = 9.6  # the baseline's run still has a second: it says how long one run takes
    store.run("baseline", "glibc", {}, 1)
    assert asked[-1] == 1.0

    class Store:  # a run takes 1 s (planned at 1.2 s) of a 5.5 s budget; the fifth is cut by the budget
        budget = advise.Budget(5.5)

        def run(self, stage, allocator, settings, repeat, timeout=None):
            self.budget.spent += 1
            if self.budget.spent > 4:
                return {"status": "failed", "error": f"{advise.BUDGET_TIMEOUT} (0.5 s were left)"}
            return {"status": "ok", "wall_ns": 1e9, "cpu_ns": 1e9, "peak_rss_bytes": 1, "mean_rss_bytes": 1,
                    "final_rss_bytes": 1, "minor_faults": 1, "major_faults": 0, "syscalls": {}}

    c = advise.Candidate("glibc", {"arena_max": 1}, "w", stage="screened", screen={"mean_rss": 0.5, "wall": 1.0})
    default_runs = advise.verify(Store(), [c], {"wall_ns": 1e9})
    assert len(default_runs) == 2 and len(c.runs) == 2  # two whole rounds; the third's default was cut
    assert c.stage == "stopped" and c.stopped == f"the budget ran out after 2 of {stats.MIN_PAIRS} pairs"


def test_a_program_too_short_for_an_rss_sample_gets_an_answer_that_says_so(tmp_path):
    """`advise -- true` under load: no run took an RSS sample, so no mean RSS (it exited 70 on the
    median of Nones).  The answer says why it has none, and every rendering of it works."""
    from allocbench.commands.advise import render
    from allocbench.report import Inputs, write_report

    def run(i):
        return {"repeat": i, "wall_ns": 1e6, "cpu_ns": 1e6, "peak_rss_bytes": 1 << 20, "mean_rss_bytes": None,
                "final_rss_bytes": None, "minor_faults": 70, "major_faults": 0, "syscalls": {}}
    default_runs = [run(i) for i in range(6)]
    c, d = (advise.Candidate("glibc", {"arena_max": n}, "w", stage="verified", runs=[run(i) for i in range(6)])
            for n in (1, 2))
    for x in (c, d):
        advise.measure(x, default_runs, {})
    e = advise.Candidate("glibc", {"arena_max": 4}, "w", stage="screened",
                         screen={"method": "exec", "wall": 1.0, "mean_rss": None})
    obj = advise.objective("memory")
    assert advise.survivors([e], obj, 2) == [] and e.stopped == "screen: no mean rss measured"
    result = advise.answer(["true"], obj, advise.Budget(20), {"method": "exec", "why": "w"},
                           run(0), default_runs, None, [c, d, e], {})
    assert result["baseline"]["mean_rss_bytes"] is None and result["recommendation"] is None
    assert result["keep_default_why"].startswith("no answer: the program ended before its RSS was sampled")
    assert "mean RSS unsampled (the program ended before the first sample)" in "\n".join(render(result))
    write_report(Inputs(cells=[], results_path="", advice=[result]), str(tmp_path / "R.md"))
    report = (tmp_path / "R.md").read_text()
    assert "mean RSS of unsampled" in report and "true: no answer (2 verified" in report
    # the time objective can still answer, and its reason says what it could not measure
    fast = advise.Candidate("glibc", {"tcache_count": 0}, "w", stage="verified",
                            runs=[{**run(i), "wall_ns": 5e5} for i in range(6)])
    advise.measure(fast, default_runs, {})
    best, why = advise.recommend([fast], advise.objective("time"), default_runs)
    assert best is fast and why.startswith("w: it was not sampled for a mean RSS (too short a run), peak RSS")


def test_a_replay_slower_than_the_program_hands_the_screen_to_exec():
    """numpy's 2-thread replays took longer than the program (0.5 s): the screen ran out of budget
    before it verified anything. When the default's replay took longer than the program, nothing
    more is replayed and the reason says both times."""
    class Store:
        def __init__(self, elapsed):
            self.elapsed, self.replayed = elapsed, 0

        def replay(self, spec, timeout, keep=0.0):
            self.replayed += 1
            return {"status": "ok", "advise_elapsed_s": self.elapsed}

    cands = [advise.Candidate("glibc", {"arena_max": 1}, "w")]
    slow = Store(1.5)
    why = advise.screen_by_replay(slow, cands, {"wall_ns": 0.5e9}, ZSTD_TRACE, "recorded")
    assert why == "a replay took 1.5 s, longer than the program's own 0.50 s: one short run of the program each"
    assert slow.replayed == 1 and cands[0].stage == "candidate"  # only the default's replay was made
