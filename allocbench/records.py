"""The result record: one JSON object per measured cell (JSON Lines in files).

Fields (units in the names; null means "not measured", with the reason in
`notes` or `error`):

  allocator, settings        backend name; mallopt settings applied ({} = glibc's
                             dynamic default)
  pattern, size_bytes        workload; size_bytes is null for a band, which has
  size_lo, size_hi           size_lo..size_hi (for realloc-grow: step..target)
  ops, threads, live         allocations per thread; threads; live blocks K
  touch, seed                whether every page was written; the workload's seed
  repeats, warmup            measured repeats after `warmup` unmeasured ones, all
                             in the cell's one fresh process
  ns_per_op                  {min, median, max} over repeats of wall time / (ops * threads)
  syscalls                   {brk, mmap, munmap, mremap, madvise, mprotect}: the
                             counts of one repeat's window (the low median over repeats)
  syscalls_per_op            the same divided by ops * threads
  minor_faults, major_faults one repeat's page faults (low median); faults_per_op
  peak_rss_bytes             highest VmHWM seen in a repeat's window (reset before each)
  rss_after_free_bytes       RSS after the last repeat's window closed
  heap_top_growth_bytes      sbrk(0) after the last repeat - before the warm-up
  mallinfo2_after            glibc's mallinfo2() after the last repeat
  mmapped_fraction           share of blocks glibc served with mmap (glibc, touched
                             blocks only: read from the chunk header's IS_MMAPPED bit)
  live_bytes_peak            bytes the workload asked for and held at its peak
                             (threads: per-thread peaks summed)
  footprint_bytes_peak       what the allocator held from the OS at that peak: for
                             glibc, mallinfo2 arena + hblkhd (the cell's heap holds
                             nothing else but a few KiB of its own); for others, peak
                             RSS growth over the cell's start (touched cells only)
  fragmentation_peak         1 - live_bytes_peak / footprint_bytes_peak
  retained_after_free_bytes  RSS growth still held after the last repeat freed
                             everything (fragment: all but its pinned small blocks)
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
              "live", "touch", "seed", "repeats", "warmup")


def cell_key(d: dict) -> str:
    return json.dumps({k: d.get(k) for k in KEY_FIELDS}, sort_keys=True)


def series_key(d: dict) -> tuple:
    """What a line of a figure or a row of a table stands for: the allocator and
    its settings, as data (labels are made only when drawing)."""
    return (d["allocator"], tuple(sorted(d["settings"].items())))


def _per_op(value, ops):
    return None if value is None else value / ops


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

    base = raw["baseline"]  # footprint before the warm-up
    last = reps[-1]["after"]
    live_peak = max(r["live_bytes_peak"] for r in reps)
    peak_rss = max((r["after"]["peak_rss_bytes"] or 0) for r in reps) or None
    glibc_books = BACKENDS[spec["allocator"]].glibc  # mallinfo2 and chunk headers describe its blocks
    if glibc_books:
        peaks = [r["peak_mallinfo"] for r in reps if r["peak_mallinfo"]]
        # the cell's heap holds only the workload (and a few KiB of its own books)
        footprint = max(p["arena"] + p["hblkhd"] for p in peaks) if peaks else None
    elif spec["touch"] and peak_rss is not None and base["rss_bytes"] is not None:
        footprint = peak_rss - base["rss_bytes"]
    else:
        footprint = None
        notes.append("footprint_bytes_peak: untouched blocks of a non-glibc allocator leave no trace to measure")
    fragmentation = (1 - live_peak / footprint) if footprint and footprint > 0 else None
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
        "seed": spec["seed"],
        "repeats": spec["repeats"],
        "warmup": spec["warmup"],
        "ns_per_op": {"min": min(ns), "median": statistics.median(ns), "max": max(ns)},
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
        "footprint_bytes_peak": footprint,
        "fragmentation_peak": fragmentation,
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
