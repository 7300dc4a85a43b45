"""The toy against glibc's dynamic default, cell by cell, from two runs of
benchmarks/toy_speed.json (`make toy-speed`): an older toy, then this one.
Every cell ran its toy and glibc processes in turns, so each toy process has
a glibc partner: toy/glibc is stats.paired over those pairs."""
from __future__ import annotations

from .. import stats
from ..backends import glibc_backend
from ..units import size_label

TOY = "toy"  # the row of backends.py this section is about


def _by_cell(recs: list[dict]) -> dict:
    return {(r["pattern"], r["size_bytes"], r["threads"], r["ops"], r.get("touch", True) is False, r["allocator"]): r
            for r in recs if r.get("status") == "ok" and not r["settings"]}


def rows(before: list[dict], after: list[dict]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Table rows; the cells where the toy is slower; those 'same' with a ratio
    above 1; those with too few pairs for a test."""
    glibc = glibc_backend().name
    b, a = _by_cell(before), _by_cell(after)
    out, slower, same_above, untested = [], [], [], []
    for k in sorted(k for k in a if k[5] == TOY and k[:5] + (glibc,) in a):
        g = k[:5] + (glibc,)
        pattern = k[0] + (" (no touch)" if k[4] else "")
        sys_per_op = sum(v or 0 for v in a[k]["syscalls"].values()) / (k[3] * k[2])
        c = stats.cells(a[g], a[k])
        was = stats.cells(b[g], b[k]).estimate if k in b and g in b else None
        out.append(f"| {pattern} | {size_label(k[1])} | {k[2]} | {k[3]} | {'-' if was is None else f'{was:.2f}'} | "
                   f"{a[g]['ns_per_op']['median']:,.1f} | {a[k]['ns_per_op']['median']:,.1f} | "
                   f"**{c.estimate:.2f}** | {c.interval()} | {c.verdict} | {sys_per_op:.4f} |")
        name = f"{pattern} {size_label(k[1])}" + (f" x{k[2]} threads" if k[2] > 1 else "") + f" ({c.estimate:.2f})"
        if c.verdict == "slower":
            slower.append(name)
        elif c.verdict == "untested":
            untested.append(name)
        elif c.verdict == "same" and c.estimate > 1:
            same_above.append(name)
    return out, slower, same_above, untested


def render(inputs, canvas) -> list[str]:
    if not inputs.toy_speed:
        return []
    before, after = inputs.toy_speed
    table, slower, same_above, untested = rows(before, after)
    if not table:
        return []
    procs = "/".join(str(n) for n in sorted({r.get("processes", 1) for r in after if r.get("status") == "ok"}))
    lines = ["## The toy against glibc, before and after", "",
             "From `make toy-speed`: benchmarks/toy_speed.json run with an older toy's cell, then with this one, "
             f"back to back (ns/op: medians over every repeat of {procs} fresh processes). The toy's and glibc's "
             "processes ran in turns, so each toy process has a glibc partner measured next to it: toy/glibc is the "
             "median of these per-process ratios, with the sign test's 95% interval and its verdict (same: the "
             "interval holds 1). \"(no touch)\": the workload writes nothing into its blocks, so the time is the "
             "allocators' own.", "",
             "| pattern | size | threads | ops | toy/glibc before | glibc ns/op | toy ns/op | toy/glibc | "
             "95% interval | verdict | toy syscalls/op |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|", *table, "",
             "- Toy slower than glibc in: " + (", ".join(slower) if slower else "no cell") + "."]
    if same_above:
        lines.append("- Ratio above 1 but the same by the test: " + ", ".join(same_above) + ".")
    if untested:
        lines.append(f"- Too few process pairs for a {stats.LEVEL:.0%} interval (at least {stats.MIN_PAIRS}): "
                     + ", ".join(untested) + ".")
    by = _by_cell(after)
    for k in sorted(k for k in by if k[5] == TOY and k[2] > 1):
        one = by.get((k[0], k[1], 1, k[3], k[4], TOY))
        if one:  # wall time / total ops: with the work spread well, 2 threads take half of 1 thread's
            c = stats.cells(one, by[k], in_turns=False)
            lines.append(f"- Toy {k[0]} {size_label(k[1])}, {k[2]} threads against 1 thread, ns per op (wall / all "
                         f"threads' ops): {c.words()} ({by[k]['ns_per_op']['median']:,.1f} vs "
                         f"{one['ns_per_op']['median']:,.1f}; not run in turns, so the processes are unpaired).")
    return lines + [""]
