"""Real programs under every setting (`allocbench exec`): a table per program
whose rows carry their ratio to glibc's dynamic default with its interval
(runs were taken in turns, so repeat i of each setting forms a pair), the
findings that the tests support, and RSS over time."""
from __future__ import annotations

from collections import defaultdict

from .. import stats
from ..counters import SYSCALLS
from ..records import series_key
from ..series import glibc_at, glibc_fixed, is_glibc, program_name, series_label, series_order
from ..units import MIB

MEASURES = (  # (what, value of one run, kind)
    ("time", lambda r: r["wall_ns"], "time"),
    ("peak RSS", lambda r: r["peak_rss_bytes"], "memory"),
    ("final RSS", lambda r: r["final_rss_bytes"], "memory"),
)


def grouped(progs: list[dict]) -> dict:
    """program name -> series key -> its ok runs."""
    out = defaultdict(lambda: defaultdict(list))
    for r in progs:
        if r["status"] == "ok":
            out[program_name(r)][series_key(r)].append(r)
    return out


def _med(rs, f):
    return stats.median_present(f(r) for r in rs)


def table(groups: dict) -> list[str]:
    """Two tables a screen wide: the answer (time and memory against the default, each with its test),
    then what the kernel saw (median syscalls and faults of the same runs)."""
    base = groups.get(glibc_at(None))
    keys = sorted(groups, key=series_order)
    lines = ["| setting | runs | wall s | time vs default | peak RSS MiB | vs default | final RSS MiB | vs default |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key in keys:
        rs = groups[key]
        cmp = [("-" if base is None or key == glibc_at(None) else stats.runs(base, rs, f, kind).words())
               for _, f, kind in MEASURES]
        lines.append(f"| {series_label(key)} | {len(rs)} | {_med(rs, MEASURES[0][1]) / 1e9:.3f} | {cmp[0]} | "
                     f"{_med(rs, MEASURES[1][1]) / MIB:.1f} | {cmp[1]} | {(_med(rs, MEASURES[2][1]) or 0) / MIB:.1f} | "
                     f"{cmp[2]} |")
    lines += ["", "| setting | " + " | ".join(SYSCALLS) + " | minor faults | loader mmaps |",
              "|---|" + "---:|" * len(SYSCALLS) + "---:|---:|"]
    fmt = lambda v: "-" if v is None else f"{v:,.0f}"
    for key in keys:
        rs = groups[key]
        counts = {k: _med(rs, lambda r, k=k: (r["syscalls"] or {}).get(k)) for k in SYSCALLS}
        loader = (rs[0]["loader"]["syscalls"] or {}).get("mmap", "-")
        lines.append(f"| {series_label(key)} | " + " | ".join(fmt(counts[k]) for k in SYSCALLS)
                     + f" | {_med(rs, lambda r: r['minor_faults']):,.0f} | {loader} |")
    return lines


def findings(groups: dict) -> list[str]:
    """Against the default, which settings differ at 95%; a best is named only when it beats every other."""
    base = groups.get(glibc_at(None))
    if base is None or len(groups) < 2:
        return []
    out = []
    for what, f, kind in MEASURES:
        better, worse, same = [], [], []
        for key in sorted(groups, key=series_order):
            if key == glibc_at(None):
                continue
            c = stats.runs(base, groups[key], f, kind)
            (better if c.verdict == stats.BETTER[kind] else worse if c.verdict == stats.WORSE[kind] else same).append(
                f"{series_label(key)} {c.words()}")
        # the repeats every setting measured (a run too short for an RSS sample has no final RSS)
        repeats = sorted(set.intersection(*({r["repeat"] for r in rs if f(r) is not None}
                                            for rs in groups.values())))
        aligned = {k: [next(f(r) for r in rs if r["repeat"] == i) for i in repeats] for k, rs in groups.items()}
        top = stats.best_of(aligned, kind, pairs=True)[0] if repeats else None
        head = (f"{stats.BETTER[kind].capitalize()} than every other setting: {series_label(top)}. " if top else
                f"No setting is {'the fastest' if kind == 'time' else 'the leanest'} by the test. ")
        out.append(f"{what[0].upper() + what[1:]}: {head}Against the dynamic default, {stats.BETTER[kind]}: "
                   f"{'; '.join(better) or 'none'}; {stats.WORSE[kind]}: {'; '.join(worse) or 'none'}; "
                   f"the same: {'; '.join(same) or 'none'}.")
    fixed = groups.get(glibc_fixed())
    if fixed:
        mm = lambda rs: _med(rs, lambda r: (r["syscalls"] or {}).get("mmap"))
        if mm(fixed) is not None and mm(base) is not None:
            out.append(f"A fixed 128 KiB threshold makes {mm(fixed):.0f} mmap calls against {mm(base):.0f} at the "
                       f"dynamic default; time {stats.runs(base, fixed, MEASURES[0][1]).words()}, final RSS "
                       f"{stats.runs(base, fixed, MEASURES[2][1], 'memory').words()}.")
    return out


def fig_rss(progs: list[dict], name: str):
    """RSS over time of one program, one line per setting (its first ok run)."""
    def draw(path, cap):
        runs = {}
        for r in progs:
            if r["status"] == "ok" and program_name(r) == name and r["timeline"]["t_ns"]:
                runs.setdefault(series_key(r), r)
        if not runs:
            return False
        import numpy as np

        from .draw import SIZE_FIGURE, finish, plt
        fig, ax = plt.subplots(figsize=SIZE_FIGURE)
        for key in sorted(runs, key=series_order):
            t = runs[key]["timeline"]
            ax.plot(np.array(t["t_ns"]) / 1e9, np.array(t["rss_bytes"]) / MIB, "-" if is_glibc(key) else "--",
                    label=series_label(key))
        ax.legend(fontsize=7)
        return finish(fig, ax, f"{name}: RSS over time (allocbench exec, one run per setting)", "seconds",
                      "RSS (MiB)", cap, path)
    return draw


def render(inputs, canvas) -> list[str]:
    progs = inputs.programs
    if not progs:
        return []
    lines = ["## Real programs", "",
             "From `allocbench exec`: each run an unmodified program in a fresh process, the settings taken in turns "
             "(every setting's first run, then every setting's second, ...), so the i-th runs form pairs; each "
             "ratio to glibc's dynamic default is the median of the pairs' ratios with its 95% interval. Memory "
             "syscalls are counted exactly over the whole process tree (medians over runs); the loader's own "
             "(measured once per binary and allocator) are part of every count and shown apart. Peak RSS is "
             "wait4's: the largest single process of the tree.", ""]
    for name, groups in grouped(progs).items():
        lines += [f"### {name}", "", *table(groups), ""]
        lines += canvas.figure(f"program_{name.replace('.', '_')}_rss.png", f"{name} RSS over time",
                               fig_rss(progs, name))
        lines += [f"- {f}" for f in findings(groups)] + [""]
    failed = [r for r in progs if r["status"] != "ok"]
    if failed:
        lines += [f"{len(failed)} run(s) failed or were skipped: "
                  + "; ".join(sorted({r['error'] for r in failed})[:5]) + ".", ""]
    return lines
