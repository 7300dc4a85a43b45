"""The headline findings of the sweep.  Every number comes from the records;
every comparison carries its test (stats.cells); a sentence that explains a
mechanism is printed only when the numbers it cites show it, and otherwise
the sentence says what was seen instead.  A finding whose cells are missing
is left out."""
from __future__ import annotations

from .. import stats
from ..glibc_constants import mmapped_chunk_bytes
from ..records import series_key
from ..series import find, glibc_at, glibc_fixed, other_defaults, series, syscalls_per_op
from ..units import KIB, MIB, size_label


def _ns(r: dict) -> float:
    return r["ns_per_op"]["median"]


def _mib(n) -> str:
    return "-" if n is None else f"{n / MIB:.1f} MiB"


def _per_op(r: dict, digits: int) -> str:
    """A cell's syscalls per op, or why there is no figure (counter method none)."""
    n = syscalls_per_op(r)
    return "uncounted" if n is None else f"{n:.{digits}f}"


def fixed_threshold_cost(recs) -> list[str]:
    out = []
    dyn, fixed = glibc_at(None), glibc_fixed()
    for size in (256 * KIB, 1024 * KIB):
        a, b = find(recs, "churn", fixed, size), find(recs, "churn", dyn, size)
        if a and b:
            c = stats.cells(b, a)
            out.append(f"At {size_label(size)} churn, a fixed 128 KiB threshold against glibc's dynamic default: "
                       f"{c.words()} ({_ns(a):,.0f} vs {_ns(b):,.0f} ns/op), with {_per_op(a, 2)} vs "
                       f"{_per_op(b, 4)} syscalls/op and {a['faults_per_op']:.1f} vs "
                       f"{b['faults_per_op']:.2f} page faults/op.")
    return out


def cliff_cells(recs) -> tuple[dict, dict, stats.Comparison] | None:
    """124 and 132 KiB churn at a fixed 128 KiB threshold, and 132 against 124 (the finding and the first
    screen both say it)."""
    fixed = glibc_fixed()
    lo, hi = find(recs, "churn", fixed, 124 * KIB), find(recs, "churn", fixed, 132 * KIB)
    return (lo, hi, stats.cells(lo, hi)) if lo and hi else None


def cliff(recs) -> list[str]:
    found = cliff_cells(recs)
    if not found:
        return []
    lo, hi, c = found
    pages = mmapped_chunk_bytes(132 * KIB) // 4096  # the block, its header and size field, in whole pages
    mmapped = "-" if hi["mmapped_fraction"] is None else f"{hi['mmapped_fraction']:.0%}"
    seen = f"{mmapped} of its blocks mmapped, {_per_op(hi, 2)} syscalls and {hi['faults_per_op']:.1f} faults per op"
    fresh = (hi["mmapped_fraction"] is not None and hi["mmapped_fraction"] >= 0.99
             and (syscalls_per_op(hi) or 0) >= 1.9 and hi["faults_per_op"] >= pages - 1 and c.verdict == "slower")
    why = (f"because every 132 KiB block is a fresh mmap whose {pages} pages all fault again ({seen})" if fresh
           else f"({seen})")
    return [f"The cliff at a fixed 128 KiB threshold: 132 KiB churn against 124 KiB churn, {c.words()} "
            f"({_ns(hi):,.0f} vs {_ns(lo):,.0f} ns/op), {why}."]


def smallest_mmapped(recs) -> list[str]:
    rows = sorted((r for r in recs if r["status"] == "ok" and r["pattern"] == "churn" and r["threads"] == 1
                   and r["size_bytes"] is not None and series_key(r) == glibc_fixed()
                   and r["mmapped_fraction"] is not None), key=lambda r: r["size_bytes"])
    first = next((r for r in rows if r["mmapped_fraction"] > 0.5), None)
    if not first:
        return []
    below = [r for r in rows if r["size_bytes"] < first["size_bytes"]]
    line = (f"With M_MMAP_THRESHOLD=128 KiB, in churn (one block at a time), the smallest measured size glibc "
            f"serves by mmap is {size_label(first['size_bytes'])} ({first['mmapped_fraction']:.0%} of its blocks)"
            + (f"; the next smaller measured, {size_label(below[-1]['size_bytes'])}, stays on the heap "
               f"({below[-1]['mmapped_fraction']:.0%})" if below else ""))
    if below:  # the same size in the other patterns: whether it stays on the heap depends on what else is live
        size = below[-1]["size_bytes"]
        others = sorted((r["pattern"], r["mmapped_fraction"]) for r in recs
                        if r["status"] == "ok" and r["pattern"] not in ("churn", "trace") and r["threads"] == 1
                        and r["size_bytes"] == size and series_key(r) == glibc_fixed()
                        and r["mmapped_fraction"] is not None)
        if others:
            line += (f". In the other patterns {size_label(size)} is not always on the heap: mmapped "
                     + ", ".join(f"{f:.1%} in {p}" for p, f in others))
    return [line + "."]


def batch_retained(recs) -> list[str]:
    out = []
    a, b = find(recs, "batch", glibc_at(None), 256 * KIB), find(recs, "batch", glibc_fixed(), 256 * KIB)
    if a and b and a["retained_after_free_bytes"] is not None and b["retained_after_free_bytes"] is not None:
        out.append(f"After a batch of {min(a['live'], a['ops'])} x 256 KiB is freed, the anonymous memory still "
                   f"held over the cell's start: {_mib(a['retained_after_free_bytes'])} at the dynamic default, "
                   f"{_mib(b['retained_after_free_bytes'])} at a fixed 128 KiB threshold.")
    rows = [r for r in (find(recs, "batch", k, MIB) for k in (glibc_at(None), glibc_fixed(), *other_defaults()))
            if r and r["retained_after_free_bytes"] is not None]
    if len(rows) >= 3:
        out.append(f"After {min(rows[0]['live'], rows[0]['ops'])} x 1 MiB blocks are freed, anonymous memory "
                   "still held: " + ", ".join(f"{series(r)} {_mib(r['retained_after_free_bytes'])}" for r in rows)
                   + ".")
    return out


def raised_threshold(recs) -> list[str]:
    high, dyn = find(recs, "churn", glibc_at(32 * MIB), 256 * KIB), find(recs, "churn", glibc_at(None), 256 * KIB)
    if not (high and dyn) or high["syscalls"]["brk"] is None:
        return []
    c = stats.cells(dyn, high)
    brk_high, brk_dyn = high["syscalls_per_op"]["brk"], dyn["syscalls_per_op"]["brk"]
    said = (f"At 256 KiB churn, M_MMAP_THRESHOLD=32 MiB against the dynamic default: {c.words()} "
            f"({_ns(high):,.0f} vs {_ns(dyn):,.0f} ns/op), {brk_high:.2f} vs {brk_dyn:.4f} brk calls and "
            f"{high['faults_per_op']:.1f} vs {dyn['faults_per_op']:.2f} faults per op")
    if c.verdict == "slower" and brk_high >= 1.9 and brk_dyn < 0.01:
        said += (": raising the threshold alone does not make these blocks cheap, because setting it leaves "
                 "M_TRIM_THRESHOLD at 128 KiB, so every free shrinks the heap and the next malloc grows it again "
                 "(the dynamic default raises both thresholds)")
    return [said + "."]


def fastest_at(recs, size: int = 132 * KIB) -> list[str]:
    """Each allocator's churn time against the fastest median, with the test; a
    fastest is named only when it beats every other."""
    cells = [r for r in (find(recs, "churn", k, size) for k in (glibc_at(None), glibc_fixed(),
                                                                  *other_defaults())) if r]
    if len(cells) < 3:
        return []
    cells.sort(key=_ns)
    top = cells[0]
    against = [(r, stats.cells(top, r)) for r in cells[1:]]
    same = [series(r) for r, c in against if not c.significant]
    parts = ", ".join(f"{series(r)} {_ns(r):,.0f} ns/op, {c.words()}" for r, c in against)
    if not same:
        head = f"{series(top)} is the fastest ({_ns(top):,.0f} ns/op); against it: "
    else:
        head = (f"no allocator is the fastest by the test: {series(top)} has the lowest median "
                f"({_ns(top):,.0f} ns/op), and {', '.join(same)} cannot be told from it; against it: ")
    return [f"At {size_label(size)} churn, {head}{parts}."]


def failed(recs) -> list[str]:
    bad = [r for r in recs if r["status"] != "ok"]
    if not bad:
        return []
    reasons = sorted({r["error"] for r in bad})
    return [f"{len(bad)} cell(s) failed or were skipped: " + "; ".join(reasons[:5])
            + (f"; and {len(reasons) - 5} other reasons" if len(reasons) > 5 else "") + "."]


FINDINGS = (fixed_threshold_cost, cliff, smallest_mmapped, batch_retained, raised_threshold, fastest_at, failed)


def findings(recs: list[dict]) -> list[str]:
    return [line for finding in FINDINGS for line in finding(recs)]


def render(inputs, canvas) -> list[str]:
    if not inputs.cells:  # a report of snapshots or of the peer table alone: no sweep to find things in
        return []
    found = findings(inputs.cells)
    return ["## Findings", "", *([f"- {f}" for f in found] or ["- (not enough cells for the standard findings)"]), ""]
