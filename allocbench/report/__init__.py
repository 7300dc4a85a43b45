"""REPORT.md: findings computed from the records, each section in a module of
this package with its figures.  SECTIONS lists them in the report's order: a
new section is one new module here and one line in that list.  Each module
has render(inputs, canvas) -> markdown lines (none when its inputs are
missing); its figures go through canvas.figure(), so `allocbench plot`
draws the same figures without writing the report."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..series import caption
from . import (
    advice,
    batch,
    churn,
    cost_model,
    findings,
    fragmentation,
    glibc_probes,
    inspect,
    latency,
    mmap_claims,
    programs,
    replays,
    summary,
    toy_peers,
)

SECTIONS = (summary, findings, churn, batch, toy_peers, fragmentation, programs, replays, latency, advice, inspect,
            cost_model, mmap_claims, glibc_probes)


@dataclass
class Inputs:
    """What a report is made from, and the file each part was read from."""
    cells: list[dict]
    results_path: str
    probes: dict | None = None
    calibration: dict | None = None
    programs: list[dict] | None = None
    replays: list[dict] | None = None
    fidelity: list[dict] | None = None  # allocbench trace info --fidelity records
    peers: list[dict] | None = None  # make toy-speed's runs of benchmarks/peers under every allocator
    advice: list[dict] | None = None  # allocbench advise's answers (advice.json)
    inspect: list[dict] | None = None  # allocbench inspect's snapshots (--out, or make bench's mid-run ones)
    sources: list[tuple[str, str]] = field(default_factory=list)  # (what, path), every file read
    results_kind: str = "cells"  # what the results file held: cells, or peers, programs or inspect alone

    def caption(self) -> str:
        if not self.cells and self.peers:  # make toy-speed's runs alone
            return f"{len(self.peers)} runs of benchmarks/peers' programs under every allocator, in turns"
        if not self.cells and self.programs:  # allocbench exec's runs alone
            names = {" ".join(r["command"]) for r in self.programs}
            return f"{len(self.programs)} run(s) of {len(names)} program(s) under allocbench exec, settings in turns"
        if not self.cells:  # a file of inspect snapshots alone
            return f"{len(self.inspect or [])} snapshot(s) of running processes (allocbench inspect)"
        return caption(self.cells)


class Canvas:
    """Where figures go: each drawn once, listed for `allocbench plot`."""

    def __init__(self, out_dir: str, caption: str):
        self.out_dir, self.caption, self.made = out_dir, caption, []
        os.makedirs(out_dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.out_dir, name)

    def figure(self, name: str, title: str, draw) -> list[str]:
        """draw(path, caption) -> bool (False: nothing to draw); the markdown that shows it."""
        if not draw(self.path(name), self.caption):
            return []
        self.made.append((name, title))
        return [f"![{title}]({name})", ""]


def header(inputs: Inputs) -> list[str]:
    read = [f"- {what}: `{path}`" for what, path in [(inputs.results_kind, inputs.results_path)] + inputs.sources]
    return ["# allocbench report", "", f"{inputs.caption()}.", "",
            "Every number below is computed by `allocbench report` from these files:", "", *read, "",
            "A comparison reads \"1.23x slower [1.15, 1.31]\": the ratio to what it is compared with and its 95% "
            "interval; \"same\" says how large a difference the runs could have shown (allocbench/stats.py).", ""]


def write_report(inputs: Inputs, out_path: str) -> list[tuple[str, str]]:
    """Write the report; returns the figures drawn, (file name, title)."""
    canvas = Canvas(os.path.dirname(os.path.abspath(out_path)), inputs.caption())
    lines = header(inputs)
    openings = summary.section_openings(inputs)  # each section opens with its answer from the first screen
    for section in SECTIONS:
        for line in section.render(inputs, canvas):
            lines.append(line)
            said = openings.pop(summary.anchor(line.lstrip("#").strip()), None) if line.startswith("#") else None
            if said and section is not summary:
                lines += ["", *(f"**In short**: {x}" for x in said)]
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return canvas.made


def draw_figures(inputs: Inputs, out_dir: str) -> list[tuple[str, str]]:
    """Every figure the report would show, without the report."""
    canvas = Canvas(out_dir, inputs.caption())
    for section in SECTIONS:
        section.render(inputs, canvas)
    return canvas.made
