"""The toy against the best, program by program: `make toy-speed`'s peer programs (benchmarks/peers/,
the shapes of the public allocator suites) and make bench's real programs, each run under every
allocator in fresh processes taken in turns.  Every toy run has a partner of each other allocator from
the same round, so each ratio is stats.paired over those rounds; "best" is, per program, the faster of
glibc and mimalloc by median wall time, as the suites' own tables pick it."""
from __future__ import annotations

from .. import stats
from ..series import program_name
from ..units import MIB

TOY, BEST_OF = "toy", ("glibc", "mimalloc")
PEERS = ("glibc", "jemalloc", "tcmalloc", "mimalloc")
NOCHECK = "toy-nocheck"  # the toy without free's key check, built by make toy-speed for this measurement only


def runs_by_program(recs: list[dict], key) -> dict:
    """{program: {allocator: {round: record}}} of the ok runs with default settings."""
    out: dict = {}
    for r in recs:
        if r.get("status") == "ok" and not r.get("settings") and r.get("kind", "program") == "program":
            out.setdefault(key(r), {}).setdefault(r["allocator"], {})[r["repeat"]] = r
    return out


def paired(runs: dict, a: str, b: str, field: str, kind: str) -> stats.Comparison | None:
    """b against a over the rounds both ran."""
    rounds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
    if not rounds:
        return None
    return stats.paired([runs[a][k][field] for k in rounds], [runs[b][k][field] for k in rounds], kind)


def median_of(runs: dict, alloc: str, field: str) -> float | None:
    return stats.median_present(r.get(field) for r in runs.get(alloc, {}).values())


def vs_best(runs: dict) -> tuple[str | None, stats.Comparison | None]:
    """The faster of glibc and mimalloc for one program (by median wall time), and the toy against it."""
    best = min((a for a in BEST_OF if a in runs), key=lambda a: median_of(runs, a, "wall_ns"), default=None)
    return best, (paired(runs, best, TOY, "wall_ns", "time") if best else None)


def table(by_program: dict) -> tuple[list[str], dict]:
    """The table's rows, and the ratios for the geomeans: {"best": [...], "glibc": [...], "rss": [...]}."""
    lines = ["| program | toy s | toy / best (of glibc, mimalloc) | toy / glibc | toy / jemalloc | toy / tcmalloc "
             "| toy peak RSS / glibc's |", "|---|---:|---|---|---|---|---|"]
    ratios: dict = {"best": [], "glibc": [], "rss": []}
    for name in sorted(by_program):
        runs = by_program[name]
        if TOY not in runs:
            continue
        best, against = vs_best(runs)
        words = {a: paired(runs, a, TOY, "wall_ns", "time") for a in PEERS}
        rss = paired(runs, "glibc", TOY, "peak_rss_bytes", "memory")
        for k, c in (("best", against), ("glibc", words["glibc"]), ("rss", rss)):
            if c and c.estimate:
                ratios[k].append(c.estimate)
        cell = lambda c: c.words() if c else "-"
        lines.append(f"| {name} | {median_of(runs, TOY, 'wall_ns') / 1e9:.3f} | "
                     f"{cell(against)}{f' ({best})' if best else ''} | {cell(words['glibc'])} | "
                     f"{cell(words['jemalloc'])} | {cell(words['tcmalloc'])} | {cell(rss)} |")
    return lines, ratios


def geomeans(ratios: dict) -> str:
    g = {k: stats.geometric_mean(v) for k, v in ratios.items() if v}
    if not g:
        return ""
    worst = max(ratios["best"], default=0)
    heaviest = max(ratios["rss"], default=0)
    return (f"Geometric means over {len(ratios['best'])} programs: toy / best {g.get('best', 0):.2f} (the goal: "
            f"at most 1.0, and no program above 1.1: the worst here is {worst:.2f}), toy / glibc "
            f"{g.get('glibc', 0):.2f}, peak RSS toy / glibc {g.get('rss', 0):.2f} (the goal: at most 1.0, and no "
            f"program above 1.25: the highest here is {heaviest:.2f}). The geomeans are of the paired medians; "
            f"each row's interval is its own test.")


def check_cost(by_program: dict) -> list[str]:
    """What catching every double free costs the toy: its build without free's key check against the toy
    and against the best, program by program, from the same rounds."""
    names = sorted(n for n, runs in by_program.items() if TOY in runs and NOCHECK in runs)
    if not names:
        return []
    lines = ["| program | toy without the check / toy | toy without the check / best |", "|---|---|---|"]
    saved, left, whole = [], [], []
    for name in names:
        runs = by_program[name]
        best, against = vs_best(runs)
        own = paired(runs, TOY, NOCHECK, "wall_ns", "time")
        rest = paired(runs, best, NOCHECK, "wall_ns", "time") if best else None
        for into, c in ((saved, own), (left, rest)):
            if c and c.estimate:
                into.append(c.estimate)
        # the check is the whole gap: the toy slower than the best, the build without it faster than
        # the toy and not slower than the best
        if (against and against.verdict == "slower" and own and own.verdict == "faster" and rest
                and rest.verdict != "slower"):
            whole.append(name)
        lines.append(f"| {name} | {own.words() if own else '-'} | {rest.words() if rest else '-'}"
                     f"{f' ({best})' if best else ''} |")
    if saved and left:
        lines += ["", f"Geometric means: without the check / toy {stats.geometric_mean(saved):.2f}, without the "
                      f"check / best {stats.geometric_mean(left):.2f}. Where the second stays above 1, the check "
                      "is not what keeps the toy from the best."]
    if whole:
        lines += ["", "The check is the whole gap (the toy slower than the best, the build without it faster "
                      "than the toy and not slower than the best) in: " + ", ".join(whole) + "."]
    return lines


def draw(by_program: dict):
    def fig(path, cap):
        names = sorted(n for n in by_program if TOY in by_program[n])
        if not names:
            return False
        from .draw import plt, save
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / len(PEERS)
        for i, a in enumerate(PEERS):
            cs = [paired(by_program[n], a, TOY, "wall_ns", "time") for n in names]
            est = [c.estimate if c else float("nan") for c in cs]
            err = [[c.estimate - c.low if c and c.low else 0 for c in cs],
                   [c.high - c.estimate if c and c.high else 0 for c in cs]]
            ax.bar([k + i * width for k in range(len(names))], est, width, yerr=err, capsize=2, label=f"toy / {a}")
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xticks([k + 0.4 - width / 2 for k in range(len(names))], names, rotation=20, fontsize=8)
        ax.set_ylabel("toy's wall time / the other's (95% interval)")
        ax.legend(fontsize=7)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_title("the mmap-only toy against the others, program by program (below 1: the toy is faster)")
        return save(fig, cap, path)
    return fig


def render(inputs, canvas) -> list[str]:
    peers = runs_by_program(inputs.peers or [], lambda r: r.get("peer"))
    real = {k: v for k, v in runs_by_program(inputs.programs or [], program_name).items() if TOY in v}
    if not peers and not real:
        return []
    lines = ["## The toy against the best", "",
             "Each program ran under every allocator (preloaded, in a fresh process) in turns, so each ratio is "
             "paired over the rounds, with its 95% interval (allocbench/stats.py). \"best\" is the faster of glibc "
             "and mimalloc for that program, by median wall time.", ""]
    if peers:
        rows, ratios = table(peers)
        lines += ["### Our programs with the public suites' shapes (`make toy-speed`)", "",
                  "benchmarks/peers/*.c: large blocks (malloc-large), a larson-like server, producer/consumer "
                  "(xmalloc), a cross-thread ring (rptest), cache-scratch, alloc-test on 1 and 2 threads and over "
                  "50,000 blocks (about 17 MB live, far beyond the caches), and glibc-thread's per-thread churn; "
                  "each file's header names the program it follows.", "",
                  *rows, "", geomeans(ratios), ""]
        lines += canvas.figure("toy_peers.png", "the toy against the others, program by program", draw(peers))
        cost = check_cost(peers)
        if cost:
            lines += ["### What catching every double free costs", "",
                      "The toy's `free` reads the freed block's second word (its key) to catch a double free, "
                      "under every policy; mimalloc, jemalloc and tcmalloc only store to the block (a load that "
                      "misses the caches holds the core up; a store that misses waits in the store buffer). A "
                      "thread holding more small blocks than TOYALLOC_DEFER_BYTES (the L2's size by default) "
                      "reads it one free later, once the line has come in. `toy-nocheck` is the toy built "
                      "without that read on free's fast paths (for this measurement only: it misses a double "
                      "free there), run in the same rounds.", "", *cost, ""]
    if real:
        rows, ratios = table(real)
        lines += ["### make bench's real programs", "", *rows, "", geomeans(ratios), ""]
    big = {a: next((r for r in inputs.peers or [] if r.get("peer") == "large" and r["allocator"] == a
                    and r.get("status") == "ok" and r.get("syscalls")), None) for a in ("toy", "glibc")}
    if all(big.values()):  # what large blocks cost each in the kernel: the mechanism behind the row, counted
        lines += ["In `large` (one run each): " + "; ".join(
            f"{a} {r['syscalls'].get('mmap', 0):,} mmap, {r['syscalls'].get('munmap', 0):,} munmap, "
            f"{r['syscalls'].get('mremap', 0):,} mremap, {r['syscalls'].get('brk', 0):,} brk and "
            f"{r['minor_faults']:,} minor faults, peak RSS {r['peak_rss_bytes'] / MIB:.0f} MiB"
            for a, r in big.items()) + ".", ""]
    return lines
