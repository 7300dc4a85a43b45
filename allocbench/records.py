"""The result record: one JSON object per measured cell (JSON Lines in files).

Fields (units in the names; null means "not measured", with the reason in
`notes` or `error`):

  allocator, settings        backend name; mallopt settings applied ({} = glibc's
                             dynamic default)
  pattern, size_bytes        workload; size_bytes is null for a band, which has
  size_lo, size_hi           size_lo..size_hi (for realloc-grow: step..target)
  ops, threads, live         allocations per thread; threads; live blocks K
  touch, seed                true (every page written), "first" (each block's first
                             page), false (none); the workload's seed
  trace                      pattern trace: the replayed trace file (ops: its events)
  replay_threads             pattern trace: "one" (every call on one thread, in the recorded global
                             order) or "recorded" (each recorded thread's calls on a thread of its
                             own, arenas and all); replay_window: the events a thread may run
                             ahead of the slowest (recorded); replay_thread_count: the threads
  replay_peak_live_bytes     recorded: the replay's own peak of live bytes (its timeline repeat),
                             beside the trace's own, live_bytes_peak
  replay_reordered           recorded: calls a thread made after its exit marker (glibc's own thread
                             teardown), replayed before its exit instead: the nearest order kept
  trace_threads              the trace's threads
  replay_allocs, replay_frees, replay_failed   the calls one repeat of the replay made (the
                             program's own frees; the leftovers freed after the window are not)
  repeats, warmup            measured repeats after `warmup` unmeasured ones, in
  processes                  each of `processes` fresh processes (1 unless a grid
                             or --processes asks for more; the repeats are pooled)
  ns_per_op                  {min, median, max} over all repeats of wall time / (ops * threads)
  ns_per_op_repeats          every repeat's ns/op, process by process in launch order
  ns_per_op_by_process       the median of each process's repeats, in launch order; the processes
                             of cells compared in a sweep ran in turns, so their i-th entries
                             were measured side by side
  cpu_ns_per_op              {min, median, max} of CPU time (all threads) / (ops * threads)
  calls                      {allocs, frees, reallocs, failed}: the calls one repeat made
  syscalls                   {brk, mmap, munmap, mremap, madvise, mprotect}: the
                             counts of one repeat's window (the low median over repeats)
  syscalls_per_op            the same divided by ops * threads
  minor_faults, major_faults one repeat's page faults (low median); faults_per_op
  peak_rss_bytes             highest VmHWM seen in a repeat's window (reset before each)
  peak_rss_bytes_by_process  the same for each process, in launch order
  rss_after_free_bytes       RSS after the last repeat's window closed (of the first process,
                             like every footprint field: the one that gave the timeline)
  heap_top_growth_bytes      sbrk(0) after the last repeat - before the warm-up
  mallinfo2_after            glibc's mallinfo2() after the last repeat
  mmapped_fraction           share of blocks glibc served with mmap (glibc, touched
                             blocks only: read from the chunk header's IS_MMAPPED bit)
  live_bytes_peak            bytes the workload asked for and held at its peak (threads:
                             per-thread peaks summed, an upper bound when they peak apart;
                             handoff: per pair, the blocks in flight in its ring)
  live_at_end_bytes          pattern trace: what the program still held after its last event
  rss_at_end_bytes           pattern trace: anonymous RSS growth then, before those blocks
                             were freed (outside the window: a replay ends as a cell ends)
  timeline                   memory over one untimed repeat (the first warm-up, or with no
                             warm-up one after the timed ones), column-wise: kind
                             (periodic, peak, half, freed, end) and op, live_bytes,
                             usable_bytes, rss_bytes, heap_bytes, mapped_bytes, and for
                             glibc arena, hblkhd, uordblks, fordblks, keepcost,
                             live_mmapped_bytes (csrc/lib/workloads.h AB_TIMELINE_COLUMNS)
  The shared measure, from the same samples for every allocator (cells whose blocks are
  written in full), live bytes against the anonymous RSS growth (the timeline's anon_bytes:
  the allocator's pages, without file pages such as code faulting in):
  footprint_bytes_peak       the highest anon_bytes of the timeline
  fragmentation_peak         1 - highest live_bytes / highest anon_bytes: the worst moment of
                             each, what a person sizing a machine needs; = 1 - 1/overhead_peak
  fragmentation_at_live_peak 1 - live / anon at the first sample of the highest live bytes
  fragmentation_resolution   how far either may be off: the anonymous growth seen before the
                             first allocation (at least a page; plus a page per worker thread
                             for its stack) over footprint_bytes_peak.  Every fragmentation
                             value is null, with the reason in notes, where that noise is more
                             than a tenth of the live bytes
  overhead_peak              highest anon_bytes / highest live_bytes
  fragmentation_mean         1 - live / anon, averaged over the samples (leaving out those
                             whose live bytes still fit in pages resident before the run:
                             growth below live bytes cannot weigh them)
  overhead_mean              anon / live, averaged over the samples that hold live bytes
                             (the trade-off figure's memory axis)
  rounding_bytes_peak        usable_bytes - live_bytes at the live peak (size classes, chunk
                             headers' alignment)
  What stays after free-all is retained_after_free_bytes, never part of a peak figure.
  glibc's own view, kept apart (virtual, not resident), at the sample of highest anon_bytes:
  glibc_virtual_peak_bytes   mallinfo2 arena + hblkhd
  glibc_breakdown_peak       where it goes: live_heap, heap_overhead (uordblks -
                             live_heap: headers, rounding), free_chunks (fordblks -
                             keepcost), top_chunk (keepcost), live_mmapped,
                             mmapped_rounding (hblkhd - live_mmapped: headers and page
                             rounding), and resident (anon_bytes) against virtual
  retained_after_free_bytes  anonymous RSS growth over the baseline (smaps_rollup's
                             Anonymous) still held after the last repeat freed everything
                             (fragment, grow, sawtooth: all but the blocks they keep on
                             purpose); file pages (code faulting in) are not the allocator's
  retained_after_free_bytes_by_process  the same for each process (its own baseline and last repeat)
  arena_heaps                glibc's non-main arena heaps mapped after the last repeat (64 MiB
                             aligned anonymous mappings in /proc/self/maps; of the first process)
  arena_heap_bytes           their usable (read-write) part, of 64 MiB reserved each
  latency                    with the latency passes (latency=1; null without them): for each call
                             kind that occurred (malloc, calloc, realloc, free, aligned) its count,
                             p50_ns, p90_ns, p99_ns, p999_ns, max_ns and histogram ([highest ns of
                             the bucket, calls], two significant digits), from one untimed repeat
                             that timed every call (csrc/lib/calltime.h); latency_clock and
                             latency_clock_overhead_ns (one reading, included in every figure);
                             latency_threshold_ns, the p99.9 of all calls
  slow_calls                 the slowest calls (the top 64 and all at or above that p99.9), each with
                             thread, index (its place among its thread's calls), op, size, ns,
                             off_cpu_ns and preempted (the timed pass's context switches inside it,
                             from the kernel's switch records; null for a call under 2 us or where
                             they were not read: latency_attribution.off_cpu says why), again_ns
                             (the same call timed again in the second pass), and,
                             from a second pass making the same calls, the syscalls that ran inside
                             it, its faults and whether the program break moved down (trimmed); null
                             where they could not be counted (latency_attribution says why, and has
                             every call kind's counts of calls with each syscall)
  latency_causes             the share of the slow calls (by count and by time) slowed from outside
                             the allocator (preempted: switched out by preemption for at least half
                             the call, in the timed pass; interference: nothing ran inside and the
                             same call repeated was not slow), apart; of the rest, each syscall, the
                             faults, a trim and blocked (off the CPU waiting in the kernel) that ran
                             inside (a call can have several), and the unexplained
  latency_without_outside    by call kind: p99_ns, p999_ns and max_ns with the calls slowed from
                             outside taken out of the histogram (removed: how many)
  toy_stats_after            the toy's own books after the last repeat (toy only):
                             mapped, live and cached bytes, syscalls it issued
  trace_summary              pattern trace: what the trace holds, from the cell's preparation:
                             events, allocations, threads, slots, peak_live_bytes,
                             live_at_end_bytes, allocations_at_or_above_boundary and
                             bytes_at_or_above_boundary (glibc's default mmap boundary)
  counter_method, counter_note   "perf", "strace" or "none"; why a better one was not used
  env                        {glibc, kernel, cpu, cpus, page_size, thp, python}
  status, error              "ok", "failed" with the reason (signal, timeout, ...), or
                             "skipped" (the allocator's library is not installed)
  notes                      why any field is null
"""
from __future__ import annotations

import json
import statistics

from ._native import LATENCY_KINDS, LATENCY_MARK_MIN_NS, MALLINFO2_FIELDS, TIMELINE_COLUMNS, TOY_STATS
from .backends import BACKENDS
from .counters import SYSCALLS
from .units import human_bytes

_FOOTPRINT = {"rss_bytes": None, "anon_bytes": None, "peak_rss_bytes": None, "heap_top": None,
              "mallinfo2": dict.fromkeys(MALLINFO2_FIELDS)}
# What allocbench-cell prints (csrc/programs/cell.c), key by key: build() reads every key
# (tests/test_house.py holds the cell's output against it).  A list holds one entry's keys.
CELL_OUTPUT = {
    "counter_method": None, "counter_note": None, "arena_heaps": None, "arena_heap_bytes": None,
    "baseline": {"rss_bytes": None, "anon_bytes": None, "heap_top": None},
    "repeats": [{
        "counts": {"syscalls": dict.fromkeys(SYSCALLS), "minor_faults": None, "major_faults": None,
                   "wall_ns": None, "cpu_ns": None},
        "calls": {"allocs": None, "frees": None, "reallocs": None, "failed": None},
        "live_bytes_peak": None, "mmapped_blocks": None, "checked_blocks": None,
        "at_end": {"live_bytes": None, "anon_bytes": None},
        "after": _FOOTPRINT}],
    "timeline": {"kind": None, **dict.fromkeys(TIMELINE_COLUMNS)},
    "toy_stats_after": dict.fromkeys(TOY_STATS),
    "trace": {"events": None, "allocations": None, "threads": None, "slots": None, "peak_live_bytes": None,
              "live_at_end_bytes": None, "allocations_at_or_above_boundary": None,
              "bytes_at_or_above_boundary": None, "cross_thread_frees": None, "unmatched_frees": None},
    "replay": {"threads": None, "window": None, "thread_count": None, "peak_live_bytes": None, "reordered": None},
    "latency": {
        "error": None, "clock": None, "clock_overhead_ns": None, "threshold_ns": None,
        "kinds": {k: {"count": None, "p50_ns": None, "p90_ns": None, "p99_ns": None, "p999_ns": None,
                      "max_ns": None, "histogram": [None]} for k in LATENCY_KINDS},
        "attribution": {"available": None, "why": None, "all_calls": None,
                        "off_cpu": {"switches": None, "preemptions": None, "available": None, "why": None},
                        "totals": {k: {"calls": None, "calls_with": dict.fromkeys(SYSCALLS),
                                       "syscalls": dict.fromkeys(SYSCALLS)} for k in LATENCY_KINDS}},
        "slow_calls": [{"thread": None, "index": None, "op": None, "size": None, "ns": None, "off_cpu_ns": None,
                        "preempted": None, "again_ns": None, "syscalls": dict.fromkeys(SYSCALLS), "faults": None,
                        "trimmed": None}]},
}
# timeline=0, another allocator, another pattern (at_end: in each repeat of a trace; the blocks
# checked for glibc's IS_MMAPPED bit: glibc's blocks only)
CELL_OUTPUT_OPTIONAL = ("timeline", "toy_stats_after", "trace", "replay", "at_end", "mmapped_blocks",
                        "checked_blocks", "latency", "error", *LATENCY_KINDS)
# what build() keeps as the cell printed it: cell output key -> record field
CELL_OUTPUT_KEPT_WHOLE = {"timeline": "timeline", "toy_stats_after": "toy_stats_after", "trace": "trace_summary"}

# What identifies a cell: a resumed sweep skips a cell whose key is already measured.
KEY_FIELDS = ("allocator", "settings", "pattern", "size_lo", "size_hi", "ops", "threads",
              "live", "touch", "seed", "repeats", "warmup", "trace", "processes", "replay_threads",
              "replay_window", "latency")


PROGRAM_KEY_FIELDS = ("kind", "command", "allocator", "settings", "repeat", "latency")


def cell_key(d: dict) -> str:
    """What identifies a record: a cell's spec, or a program run (allocbench exec)."""
    if d.get("kind") == "program":  # latency: the shim's histograms (a record) or asked for (a run)
        return json.dumps({k: bool(d.get(k)) if k == "latency" else d.get(k) for k in PROGRAM_KEY_FIELDS},
                          sort_keys=True)
    key = {k: d.get(k) for k in KEY_FIELDS}
    key["processes"] = key["processes"] or 1  # records from before the field: one process
    key["latency"] = bool(key["latency"])  # records from before the field: no latency passes
    if key["trace"] and key["replay_threads"] is None:  # records from before the field: one thread
        key["replay_threads"], key["replay_window"] = "one", None
    return json.dumps(key, sort_keys=True)


def series_key(d: dict) -> tuple:
    """What a line of a figure or a row of a table stands for: the allocator and
    its settings, as data (labels are made only when drawing)."""
    return (d["allocator"], tuple(sorted(d["settings"].items())))


def _per_op(value, ops):
    return None if value is None else value / ops


def resolution_bytes(timeline: dict, threads: int, page: int) -> int:
    """How far the anonymous RSS growth can be off, in bytes: what it had grown
    by before the first allocation (the harness's and libc's own pages; at
    least a page), plus a page for each worker thread's stack."""
    start = [a for kind, a in zip(timeline["kind"], timeline["anon_bytes"]) if kind == "start"]
    return max(page, abs(start[0]) if start else page) + (page * threads if threads > 1 else 0)


def memory_over_time(timeline: dict | None, touch, glibc: bool, threads: int, page: int, notes: list) -> dict:
    """The shared fragmentation measure (and glibc's own view) from the timeline:
    live bytes against the anonymous RSS growth (the allocator's pages)."""
    shared = ("footprint_bytes_peak", "fragmentation_peak", "fragmentation_at_live_peak",
              "fragmentation_resolution", "overhead_peak", "fragmentation_mean", "overhead_mean",
              "rounding_bytes_peak")
    out = dict.fromkeys(shared + ("glibc_virtual_peak_bytes", "glibc_breakdown_peak"))
    out["timeline"] = timeline
    if not timeline or not timeline["op"]:
        notes.append("fragmentation: no timeline was recorded (timeline=0)")
        return out
    live, anon, usable = timeline["live_bytes"], timeline["anon_bytes"], timeline["usable_bytes"]
    if touch is not True:
        notes.append("fragmentation: blocks not written in full leave no resident trace to weigh them against")
        return out
    live_peak, anon_peak = max(live), max(anon)
    at_live = live.index(live_peak)
    noise = resolution_bytes(timeline, threads, page)
    out["footprint_bytes_peak"] = anon_peak
    if live_peak <= 0 or noise > live_peak / 10:
        notes.append(f"fragmentation: the measure's noise ({noise} B, the growth before any allocation and the "
                     f"threads' stacks) is more than a tenth of the {live_peak} live bytes")
        return out
    if anon_peak < live_peak:
        notes.append(f"fragmentation: the highest RSS growth ({anon_peak} B) is below the highest live bytes "
                     f"({live_peak} B): the baseline moved")
        return out
    # a sample whose live bytes still fit in pages resident before the run cannot be weighed: left out
    weighable = [i for i in range(len(anon)) if anon[i] > 0 and anon[i] >= live[i]]
    fractions = [1 - live[i] / anon[i] for i in weighable]
    overheads = [anon[i] / live[i] for i in weighable if live[i] > 0]
    out.update(fragmentation_peak=1 - live_peak / anon_peak, overhead_peak=anon_peak / live_peak,
               fragmentation_at_live_peak=(1 - live_peak / anon[at_live] if anon[at_live] >= live_peak else None),
               fragmentation_resolution=noise / anon_peak,
               fragmentation_mean=sum(fractions) / len(fractions) if fractions else None,
               overhead_mean=sum(overheads) / len(overheads) if overheads else None,
               rounding_bytes_peak=usable[at_live] - live_peak)
    if out["fragmentation_at_live_peak"] is None:
        notes.append("fragmentation_at_live_peak: at the live peak the RSS growth was below the live bytes")
    peak = anon.index(anon_peak)
    if glibc and timeline["arena"][peak] is not None:
        t = {k: v[peak] for k, v in timeline.items()}
        live_heap = t["live_bytes"] - t["live_mmapped_bytes"]
        out["glibc_virtual_peak_bytes"] = t["arena"] + t["hblkhd"]
        out["glibc_breakdown_peak"] = {
            "live_heap": live_heap, "heap_overhead": t["uordblks"] - live_heap,
            "free_chunks": t["fordblks"] - t["keepcost"], "top_chunk": t["keepcost"],
            "live_mmapped": t["live_mmapped_bytes"], "mmapped_rounding": t["hblkhd"] - t["live_mmapped_bytes"],
            "resident": t["anon_bytes"], "virtual": t["arena"] + t["hblkhd"]}
    return out


def _replay(spec: dict, raw: dict, reps: list[dict]) -> dict:
    """A replay's own fields: its mode and window, and the calls it made (one repeat's)."""
    if not spec.get("trace"):
        return {}
    rp, calls = raw["replay"], reps[0]["calls"]
    return {"replay_threads": rp["threads"], "replay_window": rp["window"],
            "replay_thread_count": rp["thread_count"], "replay_peak_live_bytes": rp["peak_live_bytes"],
            "replay_reordered": rp["reordered"],
            "trace_threads": raw["trace"]["threads"], "replay_allocs": calls["allocs"],
            "replay_frees": calls["frees"], "replay_failed": calls["failed"]}


def _at_end(rep: dict, base: dict) -> dict:
    """A replay's end, before the blocks the program never freed are freed."""
    end = rep.get("at_end")
    if end is None:
        return {"live_at_end_bytes": None, "rss_at_end_bytes": None}
    grown = None if end["anon_bytes"] is None or base["anon_bytes"] is None else end["anon_bytes"] - base["anon_bytes"]
    return {"live_at_end_bytes": end["live_bytes"], "rss_at_end_bytes": grown}


CAUSES = (*SYSCALLS, "faults", "trim", "blocked")
OUTSIDE = ("preempted", "interference")  # slow for reasons outside the allocator: counted apart from its tail
INTERFERENCE_MIN_NS = LATENCY_MARK_MIN_NS  # the least time a thread loses to being taken off its CPU


def own_causes(c: dict) -> set[str]:
    """What ran inside a named slow call (pass 2's syscalls, faults and trim; pass 1's time off
    the CPU waiting in the kernel, a lock or I/O): the allocator's own doing."""
    out = {k for k, v in c["syscalls"].items() if v > 0}
    out |= {"faults"} if c["faults"] > 0 else set()
    out |= {"trim"} if c["trimmed"] else set()
    off = c.get("off_cpu_ns")
    return out | ({"blocked"} if off is not None and not c.get("preempted") and 2 * off >= c["ns"] else set())


def outside_cause(c: dict, threshold_ns: float | None) -> str | None:
    """Why a named slow call was slow from outside the allocator, if it was: "preempted" (in the
    timed pass its thread was switched out, by preemption, for at least half its time) or
    "interference" (it took at least INTERFERENCE_MIN_NS, nothing ran inside it, and when the
    second pass made the same call it was not slow: something else on the machine, an interrupt
    or the hypervisor taking the CPU, slowed the first).  Shorter calls are left alone: a few
    hundred ns either way is as likely a cache or TLB miss of the allocator's own."""
    off = c.get("off_cpu_ns")
    if off is not None and c.get("preempted") and 2 * off >= c["ns"]:
        return "preempted"
    if own_causes(c) or c.get("again_ns") is None or threshold_ns is None or c["ns"] < INTERFERENCE_MIN_NS:
        return None
    return "interference" if c["again_ns"] < threshold_ns else None


def latency_causes(slow: list[dict], threshold_ns: float | None = None) -> dict | None:
    """The share of the named slow calls (by count and by time) each cause explains.  "preempted"
    and "interference" are outside the allocator and exclusive (outside_cause); the others are the
    allocator's own and a call can have several (own_causes); "unexplained" is a call with none.
    None when no call was named."""
    named = [c for c in slow if c["syscalls"] is not None]
    if not named:
        return None
    total_ns = sum(c["ns"] for c in named) or 1
    outside = {id(c): outside_cause(c, threshold_ns) for c in named}

    def share(hit):
        return {"calls": len(hit), "share": len(hit) / len(named), "ns_share": sum(c["ns"] for c in hit) / total_ns}
    out = {cause: share([c for c in named if outside[id(c)] == cause]) for cause in OUTSIDE}
    own = [c for c in named if outside[id(c)] is None]
    for cause in CAUSES:
        out[cause] = share([c for c in own if cause in own_causes(c)])
    out["unexplained"] = share([c for c in own if not own_causes(c)])
    return {"slow_calls": len(named), "outside_calls": len(named) - len(own), **out}


def hist_quantile(histogram: list[list[float]], q: float) -> float | None:
    """The q-quantile of a histogram of [upper ns, calls], as csrc/lib/latency.c reads it: the upper
    edge of the bucket where the count reaches ceil(q n)."""
    n = sum(k for _, k in histogram)
    if not n:
        return None
    want, seen = max(1, int(q * n + 0.999999)), 0
    for upper, k in histogram:
        seen += k
        if seen >= want:
            return upper
    return histogram[-1][0]


def without_outside(kinds: dict, slow: list[dict], threshold_ns: float | None) -> dict:
    """Each call kind's tail once the calls slowed from outside the allocator are taken out of its
    histogram: the allocator's own p99, p99.9 and max, beside the machine's."""
    gone: dict[str, list[float]] = {}
    for c in slow:
        if c["syscalls"] is not None and outside_cause(c, threshold_ns):
            gone.setdefault(c["op"], []).append(c["ns"])
    out = {}
    for kind, h in kinds.items():
        hist = [[u, k] for u, k in h["histogram"]]
        for ns in gone.get(kind, []):
            b = next((b for b in hist if b[0] >= ns * (1 - 1e-9) and b[1]), None)
            if b:
                b[1] -= 1
        hist = [b for b in hist if b[1]]
        top = hist[-1][0] if hist else None  # the highest bucket left: its edge, or the max if it still holds it
        top = min(top, h["max_ns"]) if top is not None and top >= h["max_ns"] else top
        p99, p999 = hist_quantile(hist, 0.99), hist_quantile(hist, 0.999)
        out[kind] = {"removed": len(gone.get(kind, [])), "p99_ns": p99 if p99 is None else min(p99, top),
                     "p999_ns": p999 if p999 is None else min(p999, top), "max_ns": top}
    return out


def _latency(lat: dict | None, notes: list) -> dict:
    """The latency passes' fields (cell latency=1); without them, latency is null."""
    if lat is None:
        return {"latency": None}
    if lat.get("error"):
        notes.append(f"latency: {lat['error']}")
        return {"latency": None, "latency_error": lat["error"]}
    att = lat["attribution"]
    if not att["available"]:
        notes.append(f"latency: the slow calls are not named: {att['why']}")
    return {"latency": lat["kinds"], "latency_clock": lat["clock"],
            "latency_clock_overhead_ns": lat["clock_overhead_ns"], "latency_threshold_ns": lat["threshold_ns"],
            "latency_attribution": att, "slow_calls": lat["slow_calls"],
            "latency_causes": latency_causes(lat["slow_calls"], lat["threshold_ns"]),
            "latency_without_outside": without_outside(lat["kinds"], lat["slow_calls"], lat["threshold_ns"])}


def build(spec: dict, raw: dict, env: dict) -> dict:
    """Turn the child's raw repeats into one record; a synthetic cell whose malloc returned NULL is a
    failed one (it timed the failure, not the allocator's paths; a trace replays the program's own)."""
    reps = raw["repeats"]
    refused = max(r["calls"]["failed"] for r in reps)
    if refused and not spec.get("trace"):
        return failed(spec, env, f"{refused} allocation(s) returned NULL in a repeat (out of memory for "
                                 f"blocks up to {human_bytes(spec['size_hi'])}?): nothing was measured")
    total_ops = spec["ops"] * spec["threads"]
    notes = []
    ns = [r["counts"]["wall_ns"] / total_ops for r in reps]
    cpu = [r["counts"]["cpu_ns"] / total_ops for r in reps]
    syscalls = {}
    for name in SYSCALLS:
        values = [r["counts"]["syscalls"][name] for r in reps]
        syscalls[name] = None if None in values else statistics.median_low(values)
    if None in syscalls.values():
        notes.append(f"syscalls not measured: {raw.get('counter_note') or 'no counter method'}")
    minor = statistics.median_low(r["counts"]["minor_faults"] for r in reps)
    major = statistics.median_low(r["counts"]["major_faults"] for r in reps)

    # per process: its repeats share a layout and a stretch of the machine's time
    by_process = {}
    for r, v in zip(reps, ns):
        by_process.setdefault(r.get("process", 0), []).append(v)
    ns_by_process = [statistics.median(by_process[k]) for k in sorted(by_process)]
    baselines = raw.get("baselines") or [raw["baseline"]]  # one per process (runner.run_cells)
    ends = {r.get("process", 0): r["after"] for r in reps}  # each process's last repeat
    retained_by_process = [None if ends[p]["anon_bytes"] is None or baselines[p]["anon_bytes"] is None
                           else ends[p]["anon_bytes"] - baselines[p]["anon_bytes"] for p in sorted(ends)]
    peak_by_process = [max((r["after"]["peak_rss_bytes"] or 0) for r in reps if r.get("process", 0) == p) or None
                       for p in sorted(ends)]

    base = raw["baseline"]  # footprint before the warm-up, in the first process
    last_rep = [r for r in reps if r.get("process", 0) == 0][-1]  # so its last repeat, too
    last = last_rep["after"]
    live_peak = max(r["live_bytes_peak"] for r in reps)
    peak_rss = max((r["after"]["peak_rss_bytes"] or 0) for r in reps) or None
    glibc_books = BACKENDS[spec["allocator"]].glibc  # mallinfo2 and chunk headers describe its blocks
    memory = memory_over_time(raw.get("timeline"), spec["touch"], glibc_books, spec["threads"],
                              env.get("page_size") or 4096, notes)
    checked = sum(r.get("checked_blocks", 0) for r in reps)  # printed for glibc's blocks only
    if glibc_books and checked:
        mmapped_fraction = sum(r["mmapped_blocks"] for r in reps) / checked
    else:
        mmapped_fraction = None
        notes.append("mmapped_fraction: known only for glibc with touched blocks")
    rss_after = last["rss_bytes"]
    if base["rss_bytes"] is None:
        notes.append("rss: /proc/self/smaps_rollup was not readable")
    return {
        "allocator": spec["allocator"],
        "settings": spec["settings"],
        "pattern": spec["pattern"],
        "size_bytes": spec["size_lo"] if spec["size_lo"] == spec["size_hi"] else None,
        "size_lo": spec["size_lo"],
        "size_hi": spec["size_hi"],
        "ops": spec["ops"],
        "threads": spec["threads"],
        "live": spec["live"],
        "touch": spec["touch"],
        "trace": spec.get("trace"),
        **_replay(spec, raw, reps),
        "seed": spec["seed"],
        "repeats": spec["repeats"],
        "warmup": spec["warmup"],
        "processes": spec.get("processes", 1),
        "ns_per_op": {"min": min(ns), "median": statistics.median(ns), "max": max(ns)},
        "ns_per_op_repeats": ns,
        "ns_per_op_by_process": ns_by_process,
        "cpu_ns_per_op": {"min": min(cpu), "median": statistics.median(cpu), "max": max(cpu)},
        "calls": reps[0]["calls"],
        "syscalls": syscalls,
        "syscalls_per_op": {k: _per_op(v, total_ops) for k, v in syscalls.items()},
        "minor_faults": minor,
        "major_faults": major,
        "faults_per_op": (minor + major) / total_ops,
        "peak_rss_bytes": peak_rss,
        "peak_rss_bytes_by_process": peak_by_process,
        "rss_after_free_bytes": rss_after,
        "heap_top_growth_bytes": last["heap_top"] - base["heap_top"],
        "mallinfo2_after": last["mallinfo2"],
        "mmapped_fraction": mmapped_fraction,
        "live_bytes_peak": live_peak,
        **_at_end(last_rep, base),
        **memory,
        # anonymous memory only: the program's file pages (libc's code faulting in) are not the allocator's
        "retained_after_free_bytes": (last["anon_bytes"] - base["anon_bytes"]
                                      if last["anon_bytes"] is not None and base["anon_bytes"] is not None
                                      else None),
        "retained_after_free_bytes_by_process": retained_by_process,
        "arena_heaps": raw["arena_heaps"],
        "arena_heap_bytes": raw["arena_heap_bytes"],
        **_latency(raw.get("latency"), notes),
        "toy_stats_after": raw.get("toy_stats_after"),
        "trace_summary": raw.get("trace"),
        "counter_method": raw["counter_method"],
        "counter_note": raw.get("counter_note"),
        "env": env,
        "status": "ok",
        "error": None,
        "notes": notes,
    }


def failed(spec: dict, env: dict, error: str, status: str = "failed") -> dict:
    """A record for a cell that did not give a measurement: status "failed"
    (crashed, hung, refused) or "skipped" (its allocator is not installed here)."""
    rec = {k: spec.get(k) for k in KEY_FIELDS}
    rec["size_bytes"] = spec["size_lo"] if spec.get("size_lo") == spec.get("size_hi") else None
    rec.update(env=env, status=status, error=error)
    return rec
