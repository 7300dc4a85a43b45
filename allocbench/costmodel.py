"""A cost model that explains the figures: this host's unit costs (measured by
allocbench-calibrate in fresh processes) times a cell's exact counts.

    predicted ns/op = ( mmap and munmap calls x half an mmap+munmap pair
                      + brk, madvise, mprotect calls x their unit costs
                      + mremap calls x half a pair (not calibrated: a proxy)
                      + page faults x the cost of a faulted page's whole life
                      + resident pages touched x the cost of touching one
                      + operations x glibc's untouched malloc+free at that size (the floor)
                      ) / operations

The pair and the page's life come from timing mmap + touch + munmap cycles of
1 to 1024 pages: the cost per page is the slope between the two measured sizes
around the pages a cell faults before it gives any back (faults per op, times
the live blocks for batch), the pair is what a 1-page cycle costs beyond its
page.  Touching a resident page costs more as the working set
outgrows the caches, so that cost is interpolated at the cell's working set.
"""
from __future__ import annotations

import bisect
import math
import statistics

from .counters import SYSCALLS

PAGE = 4096
MODELLED = ("churn", "batch")
TARGET_ERROR = 0.15


def _median_of(samples: list[dict]) -> dict:
    out = {}
    for key, value in samples[0].items():
        if isinstance(value, dict):
            out[key] = {k: statistics.median(s[key][k] for s in samples) for k in value}
        else:
            out[key] = statistics.median(s[key] for s in samples)
    return out


def calibrate(runs: int = 5) -> dict:
    """Median of each unit cost over `runs` fresh processes (ns)."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    from .children import ChildFailed, program, run_json
    from .counters import hold_tracepoints

    hold_tracepoints()
    binary = program("allocbench-calibrate")
    samples = []
    for _ in range(runs):
        try:
            samples.append(run_json([binary], timeout=300))
        except ChildFailed as e:
            raise RuntimeError(f"allocbench-calibrate failed: {e}") from None
    from .machine import describe
    units = _median_of(samples)
    cyc = {int(k): v for k, v in units["map_cycle"].items()}
    pages = sorted(cyc)
    units["mmap_munmap_pair"] = cyc[pages[0]] - _slope(cyc, pages[0])
    return {"units_ns": units, "runs": runs, "samples": samples, "env": describe()}


def _slope(cyc: dict, n: float) -> float:
    """ns per page of a mapping's cycle, between the measured sizes around n pages."""
    pages = sorted(cyc)
    i = min(max(bisect.bisect_right(pages, n) - 1, 0), len(pages) - 2)
    lo, hi = pages[i], pages[i + 1]
    return (cyc[hi] - cyc[lo]) / (hi - lo)


def _interpolate(table: dict, x: float) -> float:
    """Interpolated in log(x) between the measured points, clamped at the ends."""
    sets = sorted((int(k), v) for k, v in table.items())
    working_set = x
    if working_set <= sets[0][0]:
        return sets[0][1]
    for (s0, c0), (s1, c1) in zip(sets, sets[1:]):
        if working_set <= s1:
            f = (math.log(working_set) - math.log(s0)) / (math.log(s1) - math.log(s0))
            return c0 + f * (c1 - c0)
    return sets[-1][1]


# what each counted syscall costs in the model, a row for every name of the one list (counters.h):
# a syscall added there fails here, never goes uncosted.  mremap: half a pair (not calibrated: a proxy)
SYSCALL_COSTS = {"mmap": "half_pair", "munmap": "half_pair", "mremap": "half_pair", "brk": "brk_call",
                 "madvise": "madvise_call", "mprotect": "mprotect_call"}
assert set(SYSCALL_COSTS) == set(SYSCALLS), "costmodel.SYSCALL_COSTS must cost every counted syscall"


def predict_ns_per_op(rec: dict, units: dict) -> float | None:
    """None when the record lacks what the model needs (unmeasured syscalls, threads)."""
    sc = rec.get("syscalls") or {}
    if rec.get("status") != "ok" or rec["threads"] != 1 or None in sc.values():
        return None
    ops = rec["ops"]
    cyc = {int(k): v for k, v in units["map_cycle"].items()}
    unit = {**units, "half_pair": units["mmap_munmap_pair"] / 2}
    syscall_ns = sum(sc[name] * unit[cost] for name, cost in SYSCALL_COSTS.items())
    faults = rec["minor_faults"] + rec["major_faults"]
    live = 1 if rec["pattern"] == "churn" else min(rec["live"], ops)
    # a page's life costs what a mapping cycle of as many pages costs per page:
    # the pages faulted before any is given back (batch holds `live` blocks)
    fault_ns = faults * _slope(cyc, faults / ops * live) if faults else 0.0
    mean_size = (rec["size_lo"] + rec["size_hi"]) / 2
    pages = ops * -(-int(mean_size) // PAGE) if rec["touch"] else 0
    touch_ns = max(0, pages - faults) * _interpolate(units["touch_page"], mean_size * live)
    floor_ns = ops * _interpolate(units["malloc_free"], max(mean_size, 1))
    return (syscall_ns + fault_ns + touch_ns + floor_ns) / ops


def modelled(allocator: str) -> bool:
    """The allocators the cell runs itself (glibc, the toy): their calls cost what calibrate measured."""
    from .backends import BACKENDS

    return allocator in BACKENDS and BACKENDS[allocator].cell != "libc"


def evaluate(recs: list[dict], units: dict, lo: int = 4096, hi: int = 64 << 20) -> list[dict]:
    """Predicted vs measured for the modelled cells (churn and batch of the allocators
    the cell runs itself), with each cell's repeats inside TARGET_ERROR or not."""
    rows = []
    for r in recs:
        if (r.get("pattern") not in MODELLED or not modelled(r.get("allocator"))
                or r.get("size_bytes") is None or not lo <= r["size_bytes"] <= hi):
            continue
        pred = predict_ns_per_op(r, units)
        if pred is None:
            continue
        measured = r["ns_per_op"]["median"]
        repeats = r.get("ns_per_op_repeats") or [r["ns_per_op"]["min"], r["ns_per_op"]["max"]]
        inside = [abs(pred - m) / m <= TARGET_ERROR for m in repeats]
        rows.append({"record": r, "predicted": pred, "measured": measured,
                     "error": (pred - measured) / measured, "all_repeats_within": all(inside),
                     "some_repeat_within": any(inside)})
    return rows
