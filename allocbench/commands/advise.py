"""allocbench advise -- CMD: the settings for this program, with the measured trade-off."""
from __future__ import annotations

import json
import sys

from .common import UsageError, command_after_dashes, out_dir, seconds_arg

NAME, HELP = "advise", "the malloc settings for this program, with the measured trade-off (screen, then verify)"


def ratio_arg(text: str) -> float:
    import argparse
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a ratio (e.g. 1.10)") from None


def add_arguments(p) -> None:
    p.add_argument("--objective", choices=("memory", "time"), default="memory",
                   help="memory: the least time-weighted mean RSS within --max-slowdown of the default's wall time; "
                        "time: the least wall time within --max-growth of the default's peak RSS (memory)")
    p.add_argument("--max-slowdown", type=ratio_arg, default=1.10,
                   help="memory objective: the most wall time allowed, as a ratio to the default's (1.10)")
    p.add_argument("--max-growth", type=ratio_arg, default=1.25,
                   help="time objective: the most peak RSS allowed, as a ratio to the default's (1.25)")
    p.add_argument("--budget", type=seconds_arg, default=180,
                   help="seconds of running the program and its replays, in all (180)")
    p.add_argument("--out", type=out_dir,
                   help="a folder for the runs, the trace, advice.json and advice.png; rerunning into it resumes "
                        "(a folder with runs of another build is refused)")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    p.add_argument("command", nargs="...", help="-- CMD ARGS...")


def table(result: dict) -> list[str]:
    from ..report.advice import screen_text

    out = [f"{'candidate':<36} {'stage':<9} {'runs':>4}  screen estimate; verdict (ratios to glibc's dynamic default)"]
    for c in result["candidates"]:
        mark = "*" if c["eligible"] else " "
        label = c["label"] if len(c["label"]) <= 35 else c["label"][:34] + "…"
        out.append(f"{mark}{label:<35} {c['stage']:<9} {c['runs']:>4}  {screen_text(c['screen'])}")
        out.append(f"{'':<52}{c['verdict']}")
    return out


def accuracy_text(acc: dict) -> str:
    """The screen against verification, in a line that always says something."""
    from ..report.advice import MEASURE_NAMES

    head = f"screening ({acc['method']}) against verification, {acc['verified']} verified: "
    parts = [f"{MEASURE_NAMES[k]} rank correlation {v['rank_correlation']:.2f}" for k, v in acc.items()
             if isinstance(v, dict) and v["rank_correlation"] is not None]
    if parts:
        return head + ", ".join(parts)
    return head + ("too few to rank (a rank correlation needs 3)" if acc["verified"] else "nothing to compare")


def render(result: dict) -> list[str]:
    from ..advise import rss_text

    b = result["baseline"]
    lines = [f"advise ({result['objective']}): {' '.join(result['command'])}",
             f"default: {b['wall_s']:.3f} s, mean RSS {rss_text(b['mean_rss_bytes'])}, peak RSS "
             f"{rss_text(b['peak_rss_bytes'])} (median of {b['runs']} run(s)); "
             f"screened by {result['screen']['method']}: {result['screen']['why']}", ""]
    lines += table(result) + ["", "* better at 95% and inside the constraint at 95%", ""]
    rec = result["recommendation"]
    if rec:
        lines += ["recommendation:", f"    {rec['line']}", f"because {rec['why']}."]
    else:
        lines += [f"recommendation: {result['keep_default_why']}."]
    lines.append(accuracy_text(result["screening_accuracy"]))
    lines.append(f"spent {result['spent_s']:.0f} s of a {result['budget_s']:g} s budget")
    return lines


def run(args) -> int:
    from .. import advise

    command = command_after_dashes(args)
    try:
        advisor = advise.Advisor(command, args.objective, args.max_slowdown, args.max_growth, args.budget, args.out)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    try:
        result = advisor.advise()
    except advise.AdviceError as e:  # a budget too small for the program: found by its first run
        raise UsageError(str(e)) from None
    except advise.FailedBaseline as e:
        print(f"allocbench: failed baseline: {e}", file=sys.stderr)
        return 1
    if args.out:
        from ..report.advice import draw_front
        draw_front(result, f"{args.out}/advice.png")
    print(json.dumps(result) if args.json else "\n".join(render(result)))
    return 0
