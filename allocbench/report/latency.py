"""Latency: the distribution of single calls and what made the slow ones slow
(cells and replays run with --latency), the bench programs' tails, and the
trim-pause fit (probe trim-pause).  Every ratio between two settings comes
from stats.quantiles: the two quantiles' order-statistic intervals, so a
"slower" is never read off two single numbers."""
from __future__ import annotations

import os

from .. import stats
from ..records import CAUSES, OUTSIDE, latency_causes, series_key
from ..series import glibc_at, glibc_fixed, series, series_order
from ..units import human_ns, size_label

KINDS = ("malloc", "free")  # the figures' and the findings' call kinds


def latency_cells(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["status"] == "ok" and isinstance(r.get("latency"), dict) and not r.get("trace")]


def ccdf(histogram: list[list[float]]) -> tuple[list[float], list[float]]:
    """(latency, share of calls slower than it) at each bucket's upper edge."""
    total = sum(c for _, c in histogram)
    xs, ys, seen = [], [], 0
    for value, count in histogram:
        seen += count
        if seen < total:
            xs.append(value)
            ys.append((total - seen) / total)
    return xs, ys


def fig_ccdf(cells: list[dict], size: int):
    def draw(path, cap):
        rows = sorted((r for r in cells if r["size_bytes"] == size), key=lambda r: series_order(series_key(r)))
        if not rows:
            return False
        from .draw import plt, save
        fig, axes = plt.subplots(1, len(KINDS), figsize=(12, 4.5))
        for ax, kind in zip(axes, KINDS):
            for r in rows:
                h = r["latency"].get(kind)
                if h:
                    xs, ys = ccdf(h["histogram"])
                    ax.step(xs, ys, where="post", label=series(r))
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(f"{kind} latency (ns, the clock's own reading included)")
            ax.set_ylabel("share of calls slower")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{rows[0]['pattern']} {size_label(size)}: single-call latency, complementary CDF (log-log)")
        return save(fig, cap, path)
    return draw


def machine_limits(recs: list[dict]) -> str:
    """What this machine lets the slow calls be named by, said once for the section."""
    env = next((r.get("env") for r in recs if r.get("env")), {}) or {}
    off = next(((r.get("latency_attribution") or {}).get("off_cpu") for r in recs
                if (r.get("latency_attribution") or {}).get("off_cpu")), None)
    parts = ["This machine has " + ("hardware performance counters" if env.get("hardware_counters") else
                                    "no hardware performance counters (no `cpu` perf event source): no cycles, cache "
                                    "or TLB misses, so a short slow call with nothing inside it is \"not "
                                    "attributable on this machine\"")]
    if off and off.get("why"):
        parts.append(f"its context switches were not read ({off['why']})")
    return "; ".join(parts) + "."


def own_tail(rec: dict, kind: str) -> str:
    """A kind's p99.9 and max without the calls slowed from outside the allocator ("=" if none were)."""
    w = (rec.get("latency_without_outside") or {}).get(kind)
    if not w or not w["removed"]:
        return "="
    return f"{human_ns(w['p999_ns'])}, {human_ns(w['max_ns'])}"


def percentile_table(cells: list[dict]) -> list[str]:
    lines = ["| size | setting | call | calls | p50 | p90 | p99 | p99.9 | max | p99.9, max without outside "
             "| slow calls: what made them slow |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sorted(cells, key=lambda r: (r["size_bytes"] or 0, series_order(series_key(r)))):
        for kind, h in r["latency"].items():
            lines.append(f"| {size_label(r['size_bytes'])} | {series(r)} | {kind} | {h['count']:,} | "
                         f"{human_ns(h['p50_ns'])} | {human_ns(h['p90_ns'])} | {human_ns(h['p99_ns'])} | "
                         f"{human_ns(h['p999_ns'])} | {human_ns(h['max_ns'])} | {own_tail(r, kind)} | "
                         f"{causes_text(r, kind)} |")
    return lines


def _share(n: int, of: int) -> str:
    return "<1%" if n / of < 0.005 else f"{n / of:.0%}"


def causes_words(causes: dict, hardware_counters: bool | None) -> str:
    """records.latency_causes in words, as counts of calls: those slowed from outside the allocator
    first, then what ran inside the others (a call can have several), then those with nothing."""
    n, outside = causes["slow_calls"], causes["outside_calls"]
    parts = []
    if outside:
        parts.append(f"{outside} slowed from outside the allocator (" + ", ".join(
            f"{causes[k]['calls']} {k}" for k in OUTSIDE if causes[k]["calls"]) + ")")
    own = [f"{causes[k]['calls']} {k if k in ('blocked', 'faults', 'trim') else 'with ' + k}" for k in CAUSES
           if causes[k]["calls"]]
    if own:
        several = sum(causes[k]["calls"] for k in CAUSES) > n - outside - causes["unexplained"]["calls"]
        parts.append(f"of the {n - outside} others: " + ", ".join(own) + (" (a call can have several)" if several
                                                                             else ""))
    if causes["unexplained"]["calls"]:
        parts.append(f"{causes['unexplained']['calls']} " + (
            "unexplained" if hardware_counters else "not attributable on this machine (no hardware counters: "
                                                    "no cache or TLB misses to read)"))
    return f"{n} slowest: " + "; ".join(parts)


def causes_text(rec: dict, kind: str | None = None) -> str:
    """What made the slow calls (of one kind, or all) slow (records.latency_causes)."""
    slow = [c for c in rec.get("slow_calls") or [] if kind is None or c["op"] == kind]
    if not slow:
        return "-"
    causes = latency_causes(slow, rec.get("latency_threshold_ns"))
    if causes is None:
        return "not named: " + ((rec.get("latency_attribution") or {}).get("why") or "no counters")
    return causes_words(causes, (rec.get("env") or {}).get("hardware_counters"))


def findings(cells: list[dict]) -> list[str]:
    """Each size's fixed 128 KiB threshold against the dynamic default, p99 by p99, with the tail's make-up."""
    out = []
    for size in sorted({r["size_bytes"] for r in cells}):
        base = next((r for r in cells if r["size_bytes"] == size and series_key(r) == glibc_at(None)), None)
        fixed = next((r for r in cells if r["size_bytes"] == size and series_key(r) == glibc_fixed()), None)
        if not base or not fixed:
            continue
        for kind in KINDS:
            a, b = base["latency"].get(kind), fixed["latency"].get(kind)
            if not a or not b:
                continue
            c = stats.quantiles(a["histogram"], b["histogram"], 0.99)
            out.append(f"{kind}({size_label(size)}) p99 at a fixed 128 KiB threshold: {human_ns(b['p99_ns'])}, "
                       f"at the dynamic default: {human_ns(a['p99_ns'])}; fixed against default: {c.words()}. "
                       f"Its slow calls: {causes_text(fixed, kind)}.")
    return out


def program_tails(replays: list[dict]) -> list[str]:
    """The bench programs' replays run with --latency: each setting's tail and its make-up."""
    rows = [r for r in replays if r["status"] == "ok" and isinstance(r.get("latency"), dict) and r.get("trace")]
    if not rows:
        return []
    lines = ["| trace | replay | setting | malloc p99 | malloc p99.9 | malloc max | free p99 | free p99.9 | free max "
             "| slow calls: what ran inside |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    rows.sort(key=lambda r: (os.path.basename(r["trace"]), r.get("replay_threads") or "one",
                             series_order(series_key(r))))
    for r in rows:
        m, f = r["latency"].get("malloc") or {}, r["latency"].get("free") or {}
        lines.append(f"| {os.path.basename(r['trace'])} | {r.get('replay_threads') or 'one'} | {series(r)} | "
                     f"{human_ns(m.get('p99_ns'))} | {human_ns(m.get('p999_ns'))} | {human_ns(m.get('max_ns'))} | "
                     f"{human_ns(f.get('p99_ns'))} | {human_ns(f.get('p999_ns'))} | {human_ns(f.get('max_ns'))} | "
                     f"{causes_text(r)} |")
    return lines


def trim_fit(res: dict | None) -> list[str]:
    if not res:
        return []
    lines = [f"`probe trim-pause`: the pause of free()'s own trim (auto) and of malloc_trim(0) (trim) against the "
             f"memory they return, {size_label(min(r['bytes'] for r in res['cases'][0]['rows']))} to "
             f"{size_label(max(r['bytes'] for r in res['cases'][0]['rows']))} of 64 KiB blocks, each point in fresh "
             f"processes; the fit pause = a + b x pages weighs each point by its relative error and leaves "
             f"{size_label(res['held_out_bytes'])} out, then predicts it.", "",
             "| arena | layout | how | a | b per 4 KiB page | fit's relative error | held out: predicted | measured "
             "| error | within the spread |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for e in res["cases"]:
        f, h = e["fit"], e["held_out"]
        if not f:
            lines.append(f"| {e['arena']} | {e['layout']} | {e['how']} | not fitted: the memory went back before "
                         "the timed call | | | | | | |")
            continue
        measured = (f"{human_ns(min(h['measured_ns']))}..{human_ns(max(h['measured_ns']))}" if h else "-")
        error = f"{h['error']:+.0%}" if h else "-"
        a = human_ns(f["a"]) if f["a"] >= 0 else "-" + human_ns(-f["a"])
        lines.append(f"| {e['arena']} | {e['layout']} | {e['how']} | {a} | "
                     f"{f['b']:.0f} ns ±{f['b_stderr']:.0f} | {f['relative_error']:.0%} | "
                     f"{human_ns(h['predicted_ns']) if h else '-'} | {measured} | "
                     f"{error} | "
                     f"{('yes' if h['within_spread'] else 'no') if h else '-'} |")
    fitted = [e for e in res["cases"] if e["fit"]]
    if fitted:
        big = max(fitted, key=lambda e: e["fit"]["b"])
        gib = 262144 * big["fit"]["b"] + big["fit"]["a"]
        lines += ["", f"- At this machine's slowest rate ({big['arena']} arena, {big['layout']}, {big['how']}), "
                      f"returning 1 GiB takes about {human_ns(gib)} (±{big['fit']['relative_error']:.0%}): the pause "
                      "grows with the pages returned, so a trim after a large free is a stall of that size."]
    return lines + [""]


def render(inputs, canvas) -> list[str]:
    cells = latency_cells(inputs.cells)
    tails = program_tails(inputs.replays or [])
    trim = trim_fit((inputs.probes or {}).get("trim-pause"))
    if not cells and not tails and not trim:
        return []
    lines = ["## Latency", "",
             "Cells and replays run with `--latency` make two more untimed repeats: the first times every "
             "allocation call (the clock's own reading, stated below, is in every figure), the second makes the "
             "same calls and reads the memory-syscall counters, the page faults and the program break around the "
             "slowest (the top 64 and every call at or above the p99.9 of all calls), so each is named with what ran "
             "inside it. During the first, the kernel records each time a thread is switched off its CPU: a slow "
             "call whose thread was preempted for at least half of it is named `preempted`, and one of 2 µs or "
             "more with nothing inside it that was not slow when the second repeat made it again is named "
             "`interference`. Both are the machine's, not the allocator's: they are counted apart, and the "
             "tables give each call kind's p99.9 and max without them as well.", "", machine_limits(cells + [
                 r for r in inputs.replays or [] if r.get("latency")]), ""]
    if cells:
        clock = cells[0]
        lines += [f"Clock: {clock['latency_clock']}; one reading costs {clock['latency_clock_overhead_ns']:.0f} ns.",
                  ""]
        for size in sorted({r["size_bytes"] for r in cells}):
            lines += canvas.figure(f"latency_ccdf_{size}.png", f"latency at {size_label(size)}",
                                   fig_ccdf(cells, size))
        lines += percentile_table(cells) + [""]
        lines += [f"- {f}" for f in findings(cells)] + [""]
    if tails:
        lines += ["### The bench programs' tails (their replays, exact calls)", "", *tails, ""]
    if trim:
        lines += ["### How long a trim stalls", "", *trim]
    return lines
