"""Grids of cells (named presets or a JSON file), run one fresh process each,
appended to a JSON Lines file as they finish; a rerun skips cells already there,
when the same build measured them (see run_sweep)."""
from __future__ import annotations

import sys
import time

from . import machine, runner
from .backends import BACKENDS, glibc_backend, others
from .children import DEFAULT_TIMEOUT_S
from .glibc_constants import DEFAULT_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX
from .records import cell_key
from .results import append_record, measured_keys, read_json, set_aside_other_builds
from .series import FRAG_PATTERNS
from .units import KIB, MIB

DYNAMIC = None  # glibc's default, dynamic threshold
FROZEN = DEFAULT_MMAP_THRESHOLD  # the same 128 KiB, set: it no longer rises

LOG_SIZES = [KIB << i for i in range(0, 14, 2)] + [8 * MIB]          # 1K 4K ... 4M 8M
DENSE_SIZES = list(range(96 * KIB, 160 * KIB + 1, 4 * KIB))           # around 128 KiB
THRESHOLDS = [DYNAMIC, 32 * KIB, 64 * KIB, FROZEN, 256 * KIB, 512 * KIB, MIB, 4 * MIB, MMAP_THRESHOLD_MAX]
# fragmentation: 32 KiB to 1 MiB, dense from 112 to 160 KiB
FRAG_SIZES = [32 * KIB, 64 * KIB, 112 * KIB, 120 * KIB, 128 * KIB, 132 * KIB, 136 * KIB, 144 * KIB,
              160 * KIB, 256 * KIB, 512 * KIB, MIB]
FRAG_THRESHOLDS = [DYNAMIC, 64 * KIB, FROZEN, 256 * KIB, MIB, MMAP_THRESHOLD_MAX]
ALL = list(BACKENDS)  # every allocator, in the table's order
GLIBC = [glibc_backend().name]
OTHERS = others()


def fragmentation_blocks(sizes=FRAG_SIZES, thresholds=FRAG_THRESHOLDS, ops=None) -> list[dict]:
    """The patterns that fragment, each over every allocator and threshold: grow
    from a quarter of the size to the size; handoff on a pair of threads."""
    common = {"allocators": ALL, "thresholds": thresholds, "live": 16, "repeats": 5,  # 5 and 5: a 95% test
              **({"ops": ops} if ops else {})}
    shape = {"grow": {"bands": [[s // 4, s] for s in sizes]}, "handoff": {"sizes": sizes, "threads": 2}}
    return [{"pattern": p, **shape.get(p, {"sizes": sizes}), **common} for p in FRAG_PATTERNS]


def ops_for(size: int, budget_bytes: int, lo: int = 20, hi: int = 20000) -> int:
    """Enough operations to be measurable, few enough that big blocks stay quick."""
    return max(lo, min(hi, budget_bytes // max(size, 1)))


def threshold_neighbours(thresholds, up_to=8 * MIB) -> list[int]:
    """Sizes just below and above each threshold (within the sized range)."""
    return sorted({s for t in thresholds if t and t <= up_to for s in (t - 4 * KIB, t + 4 * KIB)})


# Each block: a pattern over allocators x settings x sizes.  "settings" is a list
# of settings dicts; each allocator runs the entries whose keys are all its own
# settings (none: its defaults, {}).  "thresholds" is shorthand for settings
# [{"mmap_threshold": t}, ...] (None: the dynamic default).
PRESETS = {
    "quick": {
        "repeats": 3, "budget_bytes": 32 * MIB,
        "blocks": [
            {"pattern": "churn", "allocators": GLIBC, "thresholds": [DYNAMIC, FROZEN],
             "sizes": [4 * KIB, 64 * KIB, 124 * KIB, 132 * KIB, 256 * KIB, MIB]},
            {"pattern": "churn", "allocators": OTHERS, "sizes": [64 * KIB, 132 * KIB, 256 * KIB]},
            {"pattern": "batch", "allocators": GLIBC, "thresholds": [DYNAMIC, FROZEN],
             "sizes": [64 * KIB, 256 * KIB], "live": 64},
        ],
    },
    "default": {
        "repeats": 5, "budget_bytes": 64 * MIB,
        "blocks": [
            {"pattern": "churn", "allocators": GLIBC, "thresholds": THRESHOLDS,
             "sizes": sorted(set(LOG_SIZES + threshold_neighbours(THRESHOLDS)))},
            {"pattern": "churn", "allocators": GLIBC,
             "thresholds": [DYNAMIC, 64 * KIB, FROZEN, 256 * KIB], "sizes": DENSE_SIZES},
            {"pattern": "churn", "allocators": OTHERS,
             "sizes": sorted(set(LOG_SIZES + [128 * KIB, 132 * KIB, 256 * KIB]))},
            {"pattern": "batch", "allocators": GLIBC, "live": 64,
             "thresholds": [DYNAMIC, 64 * KIB, FROZEN, 256 * KIB, MIB],
             "sizes": LOG_SIZES[:-1] + [128 * KIB, 132 * KIB]},
            {"pattern": "batch", "allocators": OTHERS, "live": 64,
             "sizes": [64 * KIB, 132 * KIB, 256 * KIB, MIB]},
            {"pattern": "band", "allocators": ALL,
             "thresholds": [DYNAMIC, FROZEN], "bands": [[96 * KIB, 160 * KIB]], "live": 16},
            {"pattern": "churn", "allocators": ALL,
             "thresholds": [DYNAMIC, FROZEN], "sizes": [64 * KIB, 256 * KIB], "threads": 2},
            *fragmentation_blocks(ops=128),
            {"pattern": "churn", "allocators": ALL, "thresholds": [DYNAMIC, FROZEN, MMAP_THRESHOLD_MAX],
             "sizes": [124 * KIB, 132 * KIB, 256 * KIB, MIB], "processes": 6, "repeats": 3,
             "_why": "the report's findings compare these cells: 6 fresh processes each, taken in turns, paired"},
            {"pattern": "churn", "allocators": ALL, "thresholds": [DYNAMIC, FROZEN], "latency": True,
             "sizes": [96 * KIB, 132 * KIB, 256 * KIB], "ops": 5000, "repeats": 1,
             "_why": "the report's latency section: every call timed (5000 of each kind: enough calls for a p99's "
                     "interval), the slowest named"},
        ],
    },
}
PRESETS["full"] = {**PRESETS["default"], "repeats": 9, "budget_bytes": 256 * MIB}


def load_grid(preset: str | None, config: str | None) -> dict:
    if config:
        try:
            grid = read_json(config)
        except ValueError as e:
            raise ValueError(f"grid file {config}: {e}") from None
        if not isinstance(grid, dict) or not isinstance(grid.get("blocks"), list):
            raise ValueError(f"grid file {config}: want an object with a list 'blocks' (see PRESETS)")
        return grid
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


# What a grid and its blocks may say; keys starting with "_" are notes for people.
GRID_KEYS = {"repeats", "processes", "budget_bytes", "blocks"}
BLOCK_KEYS = {"pattern", "allocators", "sizes", "bands", "thresholds", "settings", "traces", "ops",
              "threads", "live", "touch", "repeats", "processes", "budget_bytes", "replay_threads",
              "replay_window", "latency"}


def _unknown(d: dict, known: set) -> list[str]:
    return sorted(k for k in d if k not in known and not str(k).startswith("_"))


def expand(grid: dict, allocators=None, patterns=None) -> list[dict]:
    """Every distinct cell spec of a grid (validated), in a stable order.  An
    unknown key is an error: a misspelt "processes" must not pass unnoticed."""
    bad = _unknown(grid, GRID_KEYS)
    if bad:
        raise ValueError(f"grid: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(GRID_KEYS))}")
    for i, block in enumerate(grid["blocks"]):
        bad = _unknown(block, BLOCK_KEYS) if isinstance(block, dict) else ["(not an object)"]
        if bad:
            raise ValueError(f"grid block {i + 1}: unknown key(s) {', '.join(bad)}; "
                             f"known: {', '.join(sorted(BLOCK_KEYS))}")
    specs, seen = [], set()
    repeats = grid.get("repeats", 5)  # a block may set its own, and its own processes
    processes = grid.get("processes", 1)
    budget = grid.get("budget_bytes", 64 * MIB)
    for i, block in enumerate(grid["blocks"]):
        try:
            for spec in _expand_block(block, repeats, processes, budget, allocators, patterns):
                if cell_key(spec) not in seen:
                    seen.add(cell_key(spec))
                    specs.append(spec)
        except KeyError as e:
            raise ValueError(f"grid block {i + 1}: needs {e}") from None
        except (TypeError, AttributeError) as e:
            raise ValueError(f"grid block {i + 1}: {e}") from None
    return specs


def _settings_for(backend, block) -> list[dict]:
    """The settings entries of a block that apply to this backend."""
    own = {s.name for s in backend.settings}
    entries = block.get("settings")
    if entries is None:
        entries = [{} if t is None else {"mmap_threshold": t} for t in block.get("thresholds", [DYNAMIC])]
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TypeError("settings must be a list of objects")
    mine = [e for e in entries if set(e) <= own]
    return mine or [{}]


def _expand_block(block, repeats, processes, budget, allocators, patterns):
    pattern = block["pattern"]
    if patterns and pattern not in patterns:
        return
    traces = block.get("traces") if pattern == "trace" else [None]
    modes = block.get("replay_threads", ["one"]) if pattern == "trace" else [None]
    modes = [modes] if isinstance(modes, str) else modes  # an axis: one mode or a list of them
    latencies = block.get("latency", False)
    latencies = latencies if isinstance(latencies, list) else [latencies]  # an axis too
    bands = [[0, 0]] if pattern == "trace" else block.get("bands") or [[s, s] for s in block["sizes"]]
    chosen = []
    for allocator in block["allocators"]:
        if allocator not in BACKENDS:
            raise ValueError(f"unknown allocator {allocator!r}; known: {', '.join(BACKENDS)}")
        if not allocators or allocator in allocators:
            chosen.append(allocator)
    # allocators innermost: cells compared with each other run back to back,
    # so the machine's drift over a sweep does not land between them
    for trace in traces:
        for mode in modes:
            for latency in latencies:
                for lo, hi in bands:
                    for allocator in chosen:
                        for settings in _settings_for(BACKENDS[allocator], block):
                            yield runner.make_spec(
                                allocator=allocator, pattern=pattern, size_lo=lo, size_hi=hi,
                                ops=None if trace else block.get("ops") or ops_for(hi, block.get("budget_bytes",
                                                                                                 budget)),
                                threads=block.get("threads", 1), live=block.get("live", 64),
                                touch=block.get("touch", True), repeats=block.get("repeats", repeats),
                                processes=block.get("processes", processes), settings=settings, trace=trace,
                                replay_threads=mode, replay_window=block.get("replay_window") if trace else None,
                                latency=latency)


def comparison_key(spec: dict) -> str:
    """What cells compared with each other share: everything but the allocator
    and its settings."""
    return cell_key({**spec, "allocator": None, "settings": None})


def _groups(specs: list[dict]) -> list[list[dict]]:
    """Consecutive specs that differ only in allocator and settings (expand
    puts them together): their processes are taken in turns."""
    groups = []
    for spec in specs:
        if groups and comparison_key(groups[-1][0]) == comparison_key(spec):
            groups[-1].append(spec)
        else:
            groups.append([spec])
    return groups


def run_sweep(specs: list[dict], out: str, timeout: float = DEFAULT_TIMEOUT_S,
              progress: bool | None = None) -> dict:
    """Run every spec not already in `out`, the cells compared at one size
    together (runner.run_cells).  A file holding cells of another build is
    moved aside first (results.set_aside_other_builds).  Returns counts;
    KeyboardInterrupt propagates, with every finished group of cells already
    on disk."""
    def current(rec: dict) -> bool:  # exec's program runs, if appended here too, are not cells
        return rec.get("kind") == "program" or rec.get("build") == runner.cell_build(rec.get("allocator"))

    moved = set_aside_other_builds(out, current)
    if moved:
        print(f"allocbench: {moved}", file=sys.stderr)
    done = measured_keys(out)
    todo = [s for s in specs if cell_key(s) not in done]
    stats = {"total": len(specs), "done_before": len(specs) - len(todo), "ok": 0, "failed": 0, "skipped": 0}
    env_info = machine.describe()
    from tqdm import tqdm

    bar = tqdm(total=len(specs), initial=stats["done_before"], unit="cell", dynamic_ncols=True,
               disable=not sys.stderr.isatty() if progress is None else not progress)
    started = time.monotonic()
    try:
        for group in _groups(todo):
            names = sorted({s["allocator"] for s in group})
            bar.set_postfix_str(f"{'/'.join(names)} {group[0]['pattern']} {group[0]['size_hi']}")
            for rec in runner.run_cells(group, timeout=timeout, env_info=env_info):
                append_record(out, rec)
                stats[rec["status"]] += 1
                if rec["status"] != "ok" and bar.disable:
                    print(f"cell {rec['status']}: {rec['allocator']} {rec['pattern']} {rec['size_hi']}: "
                          f"{rec['error']}", file=sys.stderr)
                bar.update(1)
    finally:
        bar.close()
        stats["seconds"] = time.monotonic() - started
    return stats
