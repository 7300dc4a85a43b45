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
  repeats, warmup            measured repeats after `warmup` unmeasured ones, in
  processes                  each of `processes` fresh processes (1 unless a grid
                             or --processes asks for more; the repeats are pooled)
  ns_per_op                  {min, median, max} over all repeats of wall time / (ops * threads)
  ns_per_op_by_process       the median of each process's repeats, in launch order; the processes
                             of cells compared in a sweep ran in turns, so their i-th entries
                             were measured side by side
  syscalls                   {brk, mmap, munmap, mremap, madvise, mprotect}: the
                             counts of one repeat's window (the low median over repeats)
  syscalls_per_op            the same divided by ops * threads
  minor_faults, major_faults one repeat's page faults (low median); faults_per_op
  peak_rss_bytes             highest VmHWM seen in a repeat's window (reset before each)
  rss_after_free_bytes       RSS after the last repeat's window closed (of the first process,
                             like every footprint field: the one that gave the timeline)
  heap_top_growth_bytes      sbrk(0) after the last repeat - before the warm-up
  mallinfo2_after            glibc's mallinfo2() after the last repeat
  mmapped_fraction           share of blocks glibc served with mmap (glibc, touched
                             blocks only: read from the chunk header's IS_MMAPPED bit)
  live_bytes_peak            bytes the workload asked for and held at its peak
                             (threads: per-thread peaks summed)
  timeline                   memory over one extra, untimed repeat, column-wise: kind
                             (periodic, peak, half, freed, end) and op, live_bytes,
                             usable_bytes, rss_bytes, heap_bytes, mapped_bytes, and for
                             glibc arena, hblkhd, uordblks, fordblks, keepcost,
                             live_mmapped_bytes (csrc/workloads.h AB_TIMELINE_COLUMNS)
  The shared measure, from the same samples for every allocator (touched cells):
  footprint_bytes_peak       the highest rss_bytes of the timeline (RSS growth over
                             the cell's baseline before its warm-up)
  fragmentation_peak         1 - live_bytes / rss_bytes at that sample (the first one
                             at the highest RSS), in [0, 1]
  overhead_peak              highest rss_bytes / highest live_bytes
  fragmentation_mean         1 - live_bytes / rss_bytes, averaged over the samples (leaving
                             out those whose live bytes still fit in pages resident before
                             the run: RSS growth below live bytes cannot weigh them)
  overhead_mean              rss_bytes / live_bytes, averaged over the samples that hold
                             live bytes (the trade-off figure's memory axis)
  rounding_bytes_peak        usable_bytes - live_bytes at that sample (size classes,
                             chunk headers' alignment)
  glibc's own view, kept apart (virtual, not resident):
  glibc_virtual_peak_bytes   mallinfo2 arena + hblkhd at that sample
  glibc_breakdown_peak       where it goes: live_heap, heap_overhead (uordblks -
                             live_heap: headers, rounding), free_chunks (fordblks -
                             keepcost), top_chunk (keepcost), live_mmapped,
                             mmapped_rounding (hblkhd - live_mmapped: headers and page
                             rounding), and resident (rss_bytes) against virtual
  retained_after_free_bytes  RSS growth still held after the last repeat freed
                             everything (fragment, grow, sawtooth: all but the blocks
                             they keep on purpose)
  toy_stats_after            the toy's own books after the last repeat (toy only):
                             mapped, live and cached bytes, syscalls it issued
  counter_method, counter_note   "perf", "strace" or "none"; why a better one was not used
  env                        {glibc, kernel, cpu, cpus, page_size, thp, python}
  status, error              "ok", "failed" with the reason (signal, timeout, ...), or
                             "skipped" (the allocator's library is not installed)
  notes                      why any field is null
"""
from __future__ import annotations

import statistics

import json

from .backends import BACKENDS
from .counters import SYSCALLS

# What identifies a cell: a resumed sweep skips a cell whose key is already measured.
KEY_FIELDS = ("allocator", "settings", "pattern", "size_lo", "size_hi", "ops", "threads",
              "live", "touch", "seed", "repeats", "warmup", "trace", "processes")


PROGRAM_KEY_FIELDS = ("kind", "command", "allocator", "settings", "repeat")


def cell_key(d: dict) -> str:
    """What identifies a record: a cell's spec, or a program run (allocbench exec)."""
    if d.get("kind") == "program":
        return json.dumps({k: d.get(k) for k in PROGRAM_KEY_FIELDS}, sort_keys=True)
    key = {k: d.get(k) for k in KEY_FIELDS}
    key["processes"] = key["processes"] or 1  # records from before the field: one process
    return json.dumps(key, sort_keys=True)


def series_key(d: dict) -> tuple:
    """What a line of a figure or a row of a table stands for: the allocator and
    its settings, as data (labels are made only when drawing)."""
    return (d["allocator"], tuple(sorted(d["settings"].items())))


def _per_op(value, ops):
    return None if value is None else value / ops


MIN_LIVE_PAGES = 16  # below this, page-granular RSS cannot weigh the live bytes


def memory_over_time(timeline: dict | None, touch: bool, glibc: bool, notes: list) -> dict:
    """The shared fragmentation measure (and glibc's own view) from the timeline."""
    shared = ("footprint_bytes_peak", "fragmentation_peak", "overhead_peak", "fragmentation_mean",
              "overhead_mean", "rounding_bytes_peak")
    out = dict.fromkeys(shared + ("glibc_virtual_peak_bytes", "glibc_breakdown_peak"))
    out["timeline"] = timeline
    if not timeline or not timeline["op"]:
        notes.append("fragmentation: no timeline was recorded (timeline=0)")
        return out
    live, rss, usable = timeline["live_bytes"], timeline["rss_bytes"], timeline["usable_bytes"]
    if not touch:
        notes.append("fragmentation: untouched blocks leave no resident trace to weigh them against")
        return out
    if max(live) < MIN_LIVE_PAGES * 4096:
        notes.append(f"fragmentation: the workload holds under {MIN_LIVE_PAGES} pages, too little for RSS to weigh")
        return out
    peak = rss.index(max(rss))
    if rss[peak] <= 0 or live[peak] > rss[peak]:
        notes.append(f"fragmentation: at the peak RSS sample (op {timeline['op'][peak]}) the RSS growth is below "
                     "the live bytes: the baseline moved")
        return out
    # a sample whose live bytes still fit in pages resident before the run cannot be weighed: left out
    weighable = [i for i in range(len(rss)) if rss[i] > 0 and rss[i] >= live[i]]
    fractions = [1 - live[i] / rss[i] for i in weighable]
    overheads = [rss[i] / live[i] for i in weighable if live[i] > 0]
    out.update(footprint_bytes_peak=rss[peak], fragmentation_peak=1 - live[peak] / rss[peak],
               overhead_peak=max(rss) / max(live), fragmentation_mean=sum(fractions) / len(fractions),
               overhead_mean=sum(overheads) / len(overheads) if overheads else None,
               rounding_bytes_peak=usable[peak] - live[peak])
    if glibc and timeline["arena"][peak] is not None:
        t = {k: v[peak] for k, v in timeline.items()}
        live_heap = t["live_bytes"] - t["live_mmapped_bytes"]
        out["glibc_virtual_peak_bytes"] = t["arena"] + t["hblkhd"]
        out["glibc_breakdown_peak"] = {
            "live_heap": live_heap, "heap_overhead": t["uordblks"] - live_heap,
            "free_chunks": t["fordblks"] - t["keepcost"], "top_chunk": t["keepcost"],
            "live_mmapped": t["live_mmapped_bytes"], "mmapped_rounding": t["hblkhd"] - t["live_mmapped_bytes"],
            "resident": t["rss_bytes"], "virtual": t["arena"] + t["hblkhd"]}
    return out


def build(spec: dict, raw: dict, env: dict) -> dict:
    """Turn the child's raw repeats into one record."""
    reps = raw["repeats"]
    total_ops = spec["ops"] * spec["threads"]
    notes = []
    ns = [r["counts"]["wall_ns"] / total_ops for r in reps]
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

    base = raw["baseline"]  # footprint before the warm-up, in the first process
    last = [r for r in reps if r.get("process", 0) == 0][-1]["after"]  # so its last repeat, too
    live_peak = max(r["live_bytes_peak"] for r in reps)
    peak_rss = max((r["after"]["peak_rss_bytes"] or 0) for r in reps) or None
    glibc_books = BACKENDS[spec["allocator"]].glibc  # mallinfo2 and chunk headers describe its blocks
    memory = memory_over_time(raw.get("timeline"), spec["touch"], glibc_books, notes)
    checked = sum(r["checked_blocks"] for r in reps)
    if glibc_books and checked:
        mmapped_fraction = sum(r["mmapped_blocks"] for r in reps) / checked
    else:
        mmapped_fraction = None
        notes.append("mmapped_fraction: known only for glibc with touched blocks")
    rss_after = last["rss_bytes"]
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
        "seed": spec["seed"],
        "repeats": spec["repeats"],
        "warmup": spec["warmup"],
        "processes": spec.get("processes", 1),
        "ns_per_op": {"min": min(ns), "median": statistics.median(ns), "max": max(ns)},
        "ns_per_op_by_process": ns_by_process,
        "syscalls": syscalls,
        "syscalls_per_op": {k: _per_op(v, total_ops) for k, v in syscalls.items()},
        "minor_faults": minor,
        "major_faults": major,
        "faults_per_op": (minor + major) / total_ops,
        "peak_rss_bytes": peak_rss,
        "rss_after_free_bytes": rss_after,
        "heap_top_growth_bytes": last["heap_top"] - base["heap_top"],
        "mallinfo2_after": last["mallinfo2"],
        "mmapped_fraction": mmapped_fraction,
        "live_bytes_peak": live_peak,
        **memory,
        "retained_after_free_bytes": (rss_after - base["rss_bytes"]
                                      if rss_after is not None and base["rss_bytes"] is not None else None),
        "toy_stats_after": raw.get("toy_stats_after"),
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
