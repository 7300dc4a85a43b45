"""The report's first screen: the answers a reader comes for, each one line of numbers from the
records with a link to the section that holds the evidence.  A line whose records are missing
is left out; nothing here is a number the sections below do not also print."""
from __future__ import annotations

import re

from .. import stats
from ..advise import left_unseen
from ..glibc_constants import DEFAULT_MMAP_THRESHOLD, mmapped_chunk_bytes
from ..records import series_key
from ..series import glibc_at, program_name
from ..units import KIB, human_bytes, human_ns, size_label
from .findings import cliff_cells
from .replays import MODE_WORDS


def anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return "#" + re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def cliff(inputs) -> str | None:
    found = cliff_cells(inputs.cells)
    if not found:
        return None
    lo, hi, c = found
    return (f"**The cliff**: at a fixed 128 KiB threshold, 132 KiB churn against 124 KiB is {c.words()} "
            f"({hi['ns_per_op']['median']:,.0f} vs {lo['ns_per_op']['median']:,.0f} ns/op): "
            f"{hi['mmapped_fraction']:.0%} of the 132 KiB blocks are mmapped, "
            f"{mmapped_chunk_bytes(132 * KIB) // 4096} pages each, with {hi['faults_per_op']:.1f} faults per op. "
            f"[Churn]({anchor('Churn (malloc, touch, free) by size')})")


def threshold(inputs) -> str | None:
    parts = []
    dyn = (inputs.probes or {}).get("dynamic")
    if dyn and dyn.get("cap_reached"):
        parts.append(f"on this glibc the dynamic threshold climbs from {size_label(DEFAULT_MMAP_THRESHOLD)} to "
                     f"{human_bytes(dyn['cap_reached'])} as larger mmapped blocks are freed "
                     f"([probe dynamic]({anchor('probe dynamic')}))")
    seen = {}
    for s in inputs.inspect or []:  # make bench's snapshots of its programs mid-run: the live value
        if s.get("mp") and s["mp"].get("mmap_threshold"):
            name = s.get("program") or s.get("comm") or "?"
            seen[name] = max(seen.get(name, 0), s["mp"]["mmap_threshold"])
    if seen:
        parts.append("read from outside mid-run: " + ", ".join(
            f"{name} {human_bytes(v)}" + (" (default)" if v == DEFAULT_MMAP_THRESHOLD else "")
            for name, v in sorted(seen.items()))
            + f" ([Inside a running process]({anchor('Inside a running process')}))")
    return ("**Where glibc's dynamic threshold went**: " + "; ".join(parts) + ".") if parts else None


def advice(inputs) -> list[str]:
    out = []
    for result in inputs.advice or []:
        rec = result.get("recommendation")
        cands = result["candidates"]
        verified = sum(1 for c in cands if c["stage"] == "verified")
        unseen = sum(1 for c in cands if left_unseen(c["stage"], c["stopped"]))
        why = result.get("keep_default_why") or ""
        answer = (f"`{rec['line']}`" if rec else "no answer within the budget" if why.startswith("no answer within")
                  else "no answer" if why.startswith("no answer") else "keep the default")
        unseen_words = f", {unseen} of {len(cands)} not seen within the budget" if unseen else ""
        out.append(f"{program_name(result)}: {answer} ({verified} verified{unseen_words}, {result['spent_s']:.0f} s)")
    if not out:
        return []
    return ["**What to set** (`allocbench advise`, objective as run): " + "; ".join(out)
            + f". [Advice]({anchor('Advice')})"]


def fidelity(inputs) -> str | None:
    rows = []
    for rec in inputs.fidelity or []:
        if rec.get("status") != "ok":
            continue
        for r in rec["replays"]:
            err = r["errors"]["peak_anon_growth"]["relative"]
            verdict = "faithful" if r["faithful"] else "not faithful" if r["faithful"] is False else "not judged"
            rows.append(f"{program_name({'command': rec['argv']})} {MODE_WORDS.get(r['mode'], r['mode'])} {verdict}"
                        + (f" (peak {err:+.0%})" if err is not None else ""))
    if not rows:
        return None
    return ("**How faithful the replays are** (peak growth against the program's): " + "; ".join(rows)
            + f". [Replayed programs]({anchor('How far each replay is from its program')})")


def trim(inputs) -> str | None:
    res = (inputs.probes or {}).get("trim-pause")
    fitted = [e for e in (res or {}).get("cases", []) if e["fit"]]
    if not fitted:
        return None
    per_gib = {(e["arena"], e["layout"], e["how"]): 262144 * e["fit"]["b"] + e["fit"]["a"] for e in fitted}
    lo, hi = min(per_gib.items(), key=lambda kv: kv[1]), max(per_gib.items(), key=lambda kv: kv[1])
    return (f"**What a trim costs**: returning 1 GiB stalls the thread about {human_ns(lo[1])} "
            f"({', '.join(lo[0])}) to {human_ns(hi[1])} ({', '.join(hi[0])}), from the fitted pause per page. "
            f"[How long a trim stalls]({anchor('How long a trim stalls')})")


def toy(inputs) -> str | None:
    """The toy against glibc's default and the best of the others, over the churn sizes both ran."""
    rows = {}
    for r in inputs.cells:
        if r["status"] == "ok" and r["pattern"] == "churn" and r["threads"] == 1 and r["size_bytes"]:
            rows.setdefault(series_key(r), {})[r["size_bytes"]] = r["ns_per_op"]["median"]
    toy = rows.get(("toy", ())) or next((v for k, v in rows.items() if k[0] == "toy"), None)
    glibc = rows.get(glibc_at(None))
    if not toy or not glibc:
        return None
    sizes = sorted(set(toy) & set(glibc))
    best = {s: min(v[s] for k, v in rows.items() if s in v and k[0] != "toy") for s in sizes}
    c = stats.paired_ratios([toy[s] / glibc[s] for s in sizes], "time")
    b = stats.paired_ratios([toy[s] / best[s] for s in sizes], "time")
    worst = max(sizes, key=lambda s: toy[s] / best[s])
    return (f"**The mmap-only toy**: over {len(sizes)} churn sizes, its ns/op against glibc's default "
            f"{c.words()}, against the fastest other series at each size {b.words()} (median ratio); worst at "
            f"{size_label(worst)}, {toy[worst] / best[worst]:.2f}x. "
            f"[Churn]({anchor('Churn (malloc, touch, free) by size')})")


def peers_line(inputs) -> str | None:
    """The toy against the best on make toy-speed's programs, when the report has them."""
    from .toy_peers import TOY, runs_by_program, vs_best

    by_program = runs_by_program(inputs.peers or [], lambda r: r.get("peer"))
    ratios = {name: c for name, runs in sorted(by_program.items()) if TOY in runs
              for c in [vs_best(runs)[1]] if c and c.estimate}
    if not ratios:
        return None
    worst = max(ratios, key=lambda n: ratios[n].estimate)
    mean = stats.geometric_mean([c.estimate for c in ratios.values()])
    return (f"**The toy against the best**: on {len(ratios)} programs with the public suites' shapes, its wall "
            f"time against the faster of glibc and mimalloc has a geometric mean of {mean:.2f}, worst {worst} "
            f"{ratios[worst].words()}. [The toy against the best]({anchor('The toy against the best')})")


def inside(inputs) -> str | None:
    snaps = [s for s in inputs.inspect or [] if s.get("totals")]
    if not snaps:
        return None
    by = {}
    for s in snaps:
        name = s.get("program") or s.get("comm") or "?"
        if name not in by or (s["totals"].get("free_resident_bytes") or 0) > (
                by[name]["totals"].get("free_resident_bytes") or 0):
            by[name] = s
    parts = [f"{n} {human_bytes(s['totals']['free_resident_bytes'] or 0)} free in RAM of "
             f"{human_bytes(s['rss']['total_bytes'])} RSS, a trim would return "
             f"{human_bytes(s['totals']['trimmable_bytes'] or 0)}" for n, s in sorted(by.items())]
    return ("**Inside the running programs** (the snapshot with the most free memory held): " + "; ".join(parts)
            + f". [Inside a running process]({anchor('Inside a running process')})")


def answers(inputs) -> list[str]:
    return [x for x in (cliff(inputs), threshold(inputs), *advice(inputs), fidelity(inputs), trim(inputs),
                        toy(inputs), peers_line(inputs), inside(inputs)) if x]


def render(inputs, canvas) -> list[str]:
    lines = answers(inputs)
    if not lines:
        return []
    return ["## At a glance", "", *[f"- {x}" for x in lines], ""]


def section_openings(inputs) -> dict[str, list[str]]:
    """Each section's own answer, to open it: the first-screen lines that link to it (their links to
    it dropped), by the section's heading."""
    out: dict[str, list[str]] = {}
    for line in answers(inputs):
        for target in re.findall(r"\]\((#[^)]+)\)", line):
            text = re.sub(r" ?\(?\[[^\]]+\]\(" + re.escape(target) + r"\)\)?", "", line).rstrip()
            out.setdefault(target, []).append(text)
    return out

