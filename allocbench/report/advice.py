"""Advice (`allocbench advise`): for each program, the candidates with their
ratios to the default and 95% intervals, the time/memory front, the
recommendation, and how well the screening ranked what verification found."""
from __future__ import annotations

import os

from ..advise import rss_text
from ..series import program_name

MEASURE_NAMES = {"wall": "wall time", "mean_rss": "mean RSS", "peak_rss": "peak RSS"}


def draw_front(result: dict, path: str, cap: str | None = None) -> bool:
    """Wall-time ratio against mean-RSS ratio, one point per verified candidate
    with both intervals as bars, the constraint as a line, the default at (1, 1)."""
    pts = [c for c in result["candidates"] if c["wall_ratio"] and c["mean_rss_ratio"]]
    if not pts:
        return False
    from .draw import plt, save
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.scatter([1], [1], marker="*", s=120, color="k", label="glibc dynamic (the default)", zorder=3)
    for c in pts:
        w, m = c["wall_ratio"], c["mean_rss_ratio"]
        xerr = None if w["low"] is None else [[w["estimate"] - w["low"]], [w["high"] - w["estimate"]]]
        yerr = None if m["low"] is None else [[m["estimate"] - m["low"]], [m["high"] - m["estimate"]]]
        ax.errorbar([w["estimate"]], [m["estimate"]], xerr=xerr, yerr=yerr, fmt="o" if not c["eligible"] else "D",
                    capsize=3, label=c["label"])
    if result["objective"] == "memory":
        ax.axvline(result["max_slowdown"], color="C3", ls=":", label=f"max slowdown {result['max_slowdown']:g}x")
    ax.axhline(1, color="0.6", lw=0.8)
    ax.axvline(1, color="0.6", lw=0.8)
    ax.set_xlabel("wall time / the default's (95% interval)")
    ax.set_ylabel("mean RSS / the default's (95% interval)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"advise {os.path.basename(result['command'][0])}: the verified candidates (diamond: eligible)")
    return save(fig, cap or f"allocbench advise, objective {result['objective']}, {result['spent_s']:.0f} s", path)


def _ratio(r: dict | None, runs: int = 0) -> str:
    """A verified ratio with its 95% interval; without one (too few runs), the estimate says untested;
    "-" where the runs had no value (no RSS sample in a very short run)."""
    if not r or r["estimate"] is None:
        return "-"
    if r["low"] is None:
        return f"{r['estimate']:.2f}x, untested ({runs} runs: too few for a 95% interval)"
    if not r.get("verdict"):  # written before advice.json kept the verdict
        return f"{r['estimate']:.2f}x [{r['low']:.2f}, {r['high']:.2f}]"
    from ..stats import Comparison
    return Comparison(r["estimate"], r["low"], r["high"], r.get("coverage"), r.get("n") or runs, r.get("method", ""),
                      r["verdict"], r.get("detectable")).words()


def screen_text(screen: dict | None) -> str:
    """A candidate's screen estimates as ratios to the default: "replay: wall 1.00x, mean RSS 0.82x, peak 0.90x"
    (advise's terminal table and this section's)."""
    if not screen:
        return "not screened"
    names = (("wall", "wall"), ("mean_rss", "mean RSS"), ("peak_rss", "peak"))
    return f"{screen['method']}: " + ", ".join(f"{label} {screen[k]:.2f}x" for k, label in names
                                                if screen.get(k) is not None)


def render(inputs, canvas) -> list[str]:
    advice = inputs.advice or []
    if not advice:
        return []
    lines = ["## Advice", "",
             "From `allocbench advise`: candidates taken from each program (the levels its threshold rose to, the "
             "sizes its trace reuses, its threads), screened by replaying its trace (or one run where a replay "
             "cannot stand for it), then the survivors verified against the default in fresh processes taken in "
             "turns. Each ratio is to glibc's dynamic default with its 95% interval; a recommendation must be "
             "better at 95% and inside the constraint at 95%.", ""]
    for result in advice:
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(result["command"]))
        b = result["baseline"]
        rec = result["recommendation"]
        lines += [f"### {program_name(result)}", "",
                  ("**Answer**: `" + rec["line"] + "`." if rec else f"**Answer**: {result['keep_default_why']}."),
                  "", f"`{command}`: objective {result['objective']}; the default runs {b['wall_s']:.2f} s with a "
                  f"mean RSS of {rss_text(b['mean_rss_bytes'])}; screened by {result['screen']['method']} "
                  f"({result['screen']['why']}); {result['spent_s']:.0f} s of a {result['budget_s']:.0f} s budget.", "",
                  "| candidate | stage | runs | wall | mean RSS | peak RSS |", "|---|---|---:|---|---|---|"]
        for c in result["candidates"]:
            stage = c["stage"] + (f": {c['stopped']}" if c["stopped"] else "")
            lines.append(f"| {'**' if c['eligible'] else ''}{c['label']}{'**' if c['eligible'] else ''} | "
                         f"{stage} | {c['runs']} | {_ratio(c['wall_ratio'], c['runs'])} | "
                         f"{_ratio(c['mean_rss_ratio'], c['runs'])} | {_ratio(c['peak_rss_ratio'], c['runs'])} |")
        lines += ["", "| candidate | why it was tried | screen estimate | verdict |", "|---|---|---|---|"]
        for c in result["candidates"]:
            lines.append(f"| {c['label']} | {c['why']} | {screen_text(c.get('screen'))} | {c['verdict']} |")
        lines += ["", f"- Recommendation: `{rec['line']}`, because {rec['why']}." if rec else
                  f"- Recommendation: {result['keep_default_why']}."]
        acc = result["screening_accuracy"]
        parts = [f"{MEASURE_NAMES[k]}: rank correlation {v['rank_correlation']:.2f}, median error "
                 f"{v['median_error']:.0%}" for k, v in acc.items()
                 if isinstance(v, dict) and v.get("rank_correlation") is not None and v.get("median_error") is not None]
        lines.append(f"- Screening by {acc['method']} against the {acc['verified']} verified candidate(s): "
                     + ("; ".join(parts) if parts else "too few verified to say") + ".")
        lines += [""]
        stem = program_name(result).replace(".", "_")  # the script, or the binary: never an option
        lines += canvas.figure(f"advice_{stem}.png", f"advise {program_name(result)}",
                               lambda path, cap, result=result: draw_front(result, path, cap))
    return lines
