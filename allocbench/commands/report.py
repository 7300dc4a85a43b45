"""allocbench report (REPORT.md) and allocbench plot (its figures alone)."""
from __future__ import annotations

import os

from .common import UsageError, load_json, load_probes_and_calibration, load_results, record_kind

NAME, HELP = "report", "REPORT.md with findings and figures from a results file and the files beside it"


def add_arguments(p) -> None:
    p.add_argument("results", help="a JSON Lines results file: cells (run, sweep), or alone the runs of "
                                   "allocbench exec, of make toy-speed, or inspect's snapshots")
    p.add_argument("--out", default="plots/REPORT.md", help="report path; figures go beside it")
    p.add_argument("--html", action="store_true",
                   help="also write the report as one self-contained HTML page beside it (REPORT.html: figures "
                        "inline, sections collapsible)")
    add_inputs(p)


def add_inputs(p) -> None:
    p.add_argument("--probes", help="JSON from `allocbench probe all --out FILE`, for the probes' sections")
    p.add_argument("--calibration", help="JSON from `allocbench calibrate --out FILE`, for the cost model")
    p.add_argument("--programs", help="JSON Lines from `allocbench exec --out FILE`, for the real programs")
    p.add_argument("--replays", help="JSON Lines of trace cells (sweep of pattern trace), for the replayed programs")
    p.add_argument("--fidelity", help="JSON Lines from `allocbench trace info --fidelity --out FILE`: how far each "
                                      "replay is from its program, in the replayed programs' section")
    p.add_argument("--inspect", help="JSON Lines from `allocbench inspect --out FILE` (make bench: "
                                     "results/inspect.jsonl), for the section on running processes")
    p.add_argument("--advice", nargs="+", metavar="ADVICE_JSON",
                   help="advice.json files from `allocbench advise --out DIR`, for the advice section")
    p.add_argument("--peers", help="JSON Lines from scripts/toy-peers (make toy-speed): the toy against the "
                                   "other allocators on benchmarks/peers' programs")


# what each input holds, by its records' kind: a file of another kind crashed a section or left it out
KINDS = {"results": ("cell", "cells (allocbench run or sweep --out)"),
         "programs": ("program", "program runs (allocbench exec --out)"),
         "replays": ("cell", "trace cells (a sweep of pattern trace)"),
         "fidelity": ("fidelity", "fidelity records (allocbench trace info --fidelity --out)"),
         "peers": ("peer", "the toy's peer runs (scripts/toy-peers)"),
         "inspect": ("inspect", "snapshots (allocbench inspect --out)")}


def of_kind(what: str, path: str, recs: list[dict]) -> list[dict]:
    """recs, once each is what the input `what` holds; else one line, exit 2."""
    kind, holds = KINDS[what]
    bad = next((r for r in recs if record_kind(r) != kind or (what == "replays" and r.get("pattern") != "trace")), None)
    if bad is None:
        return recs
    got = record_kind(bad)
    said = f"cells of pattern {bad.get('pattern')}" if what == "replays" and got == "cell" else f"{got} records"
    hint = " (give them with --programs, beside a file of cells)" if got == "program" else ""
    flag = "the results file" if what == "results" else f"--{what}"
    raise UsageError(f"{path}: not {holds}, as {flag} must be: it holds {said}{hint}")


def inputs(args):
    """Everything the report reads, each with the file it came from."""
    from ..report import Inputs
    from ..results import ResultsError, latest_per_cell, load_records

    probes, calibration = load_probes_and_calibration(args)
    try:  # a file of inspect snapshots (--watch) is read as they are: they are not cells
        first = load_records(args.results)
    except ResultsError as e:
        raise UsageError(str(e)) from None
    # a report can stand on one kind of record alone: the sections that kind feeds
    alone = next((kind for kind in ("inspect", "peer", "program") if first and all(record_kind(r) == kind
                                                                                   for r in first)), None)
    if alone is None:
        of_kind("results", args.results, first)
    got = Inputs(cells=[] if alone else latest_per_cell(first), results_path=args.results,
                 probes=probes, calibration=calibration, inspect=first if alone == "inspect" else None,
                 peers=first if alone == "peer" else None,
                 programs=latest_per_cell(first) if alone == "program" else None,
                 results_kind=next((what for what, (kind, _) in KINDS.items() if kind == alone), "cells"))
    sources = [("probes", args.probes), ("calibration", args.calibration)]
    for what in ("programs", "replays", "fidelity", "peers"):
        path = getattr(args, what, None)
        if path:
            setattr(got, what, of_kind(what, path, load_results(path)))
            sources.append((what, path))
    if getattr(args, "inspect", None):
        try:  # snapshots are read as they are: they are not cells
            got.inspect = of_kind("inspect", args.inspect, load_records(args.inspect))
        except ResultsError as e:
            raise UsageError(str(e)) from None
        sources.append(("inspect", args.inspect))
    if getattr(args, "advice", None):
        got.advice = [load_json(f, "advice") for f in args.advice]
        for f, a in zip(args.advice, got.advice):
            if not (isinstance(a, dict) and {"recommendation", "candidates"} <= set(a)):
                raise UsageError(f"advice file {f}: not an advice.json (allocbench advise --out DIR writes one)")
        sources += [("advice", f) for f in args.advice]
    got.sources = [(what, path) for what, path in sources if path]
    return got


def run(args) -> int:
    from ..report import write_report

    write_report(inputs(args), args.out)
    print(args.out)
    if args.html:
        from ..report.html import write_html

        page = os.path.splitext(args.out)[0] + ".html"
        write_html(args.out, page)
        print(page)
    return 0


def run_plot(args) -> int:
    from ..report import draw_figures

    made = draw_figures(inputs(args), args.out)
    if not made:
        raise UsageError(f"{args.results}: nothing the figures use (churn, batch, fragmentation patterns, ...)")
    for name, _ in made:
        print(os.path.join(args.out, name))
    return 0
