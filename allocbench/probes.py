"""Probes of what glibc malloc really does, each observation in a fresh process
(csrc/programs/probe.c, or allocbench-cell for threads).  Every number is found by
searching observations, never computed; predictions are shown beside them."""
from __future__ import annotations

import statistics

import numpy as np

from . import mmap_probes, runner
from .backends import BACKENDS
from .children import ChildFailed, program, run_json, run_python
from .counters import hold_tracepoints
from .glibc import M_MMAP_MAX, M_MMAP_THRESHOLD, M_TOP_PAD, M_TRIM_THRESHOLD
from .glibc_constants import DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD, MMAP_THRESHOLD_MAX, request2size
from .units import KIB, MIB, size_label

DYNAMIC_STEPS = [256 * KIB, 512 * KIB, MIB, 2 * MIB, 4 * MIB, 8 * MIB, 16 * MIB, 32 * MIB - 8192,
                 40 * MIB, 64 * MIB]


class ProbeError(RuntimeError):
    pass


def probe_binary() -> str:
    return program("allocbench-probe", "ALLOCBENCH_PROBE")


def observe(mode: str, *args, settings: dict | None = None, history=(), exhaust=False) -> dict:
    """One observation in a fresh process."""
    hold_tracepoints()
    argv = [probe_binary(), mode, *map(str, args)]
    argv += [f"mallopt={p}:{v}" for p, v in (settings or {}).items()]
    if history:
        argv.append("history=" + ",".join(map(str, history)))
    if exhaust:
        argv.append("exhaust=1")
    try:
        return run_json(argv, timeout=60)
    except ChildFailed as e:
        raise ProbeError(f"{' '.join(argv)}: {e}") from None


def smallest(pred, lo: int, hi: int) -> int | None:
    """Smallest n in [lo, hi] with pred(n) true, for a monotone pred (None if none)."""
    if not pred(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo




def predicted_boundary(threshold: int) -> int:
    """Smallest request whose chunk reaches the threshold: sysmalloc mmaps when nb >= threshold."""
    return smallest(lambda r: request2size(r) >= threshold, 0, threshold + 64)


def mmap_boundary(settings=None, history=(), exhaust=True, hi=128 * MIB) -> int | None:
    return smallest(lambda n: observe("mmapped", n, settings=settings, history=history,
                                      exhaust=exhaust)["mmapped"] == 1, 1, hi)


# ---- boundary ----

def boundary(threshold: int | None = None, allocator: str = "glibc") -> dict:
    if _in_process_toy(allocator):
        return _toy_boundary(threshold)
    settings = {M_MMAP_THRESHOLD: threshold} if threshold is not None else {}
    t = DEFAULT_MMAP_THRESHOLD if threshold is None else threshold
    found = mmap_boundary(settings)
    fresh = mmap_boundary(settings, exhaust=False)
    size = t + t // 2 if t else 64 * KIB
    free_chunk = observe("free-chunk", size, settings=settings)
    top_chunk = observe("top-chunk", size, settings={**settings, M_TOP_PAD: 4 * size})
    predicted = predicted_boundary(t)
    result = {
        "probe": "boundary", "allocator": "glibc",
        "threshold": threshold, "threshold_in_force": t,
        "found_when_heap_must_grow": found, "predicted": predicted,
        "formula": "smallest r with max(32, (r + 8 + 15) & ~15) >= threshold",
        "agrees": found == predicted,
        "found_first_malloc_of_a_process": fresh,
        "served_from_free_chunk": {"request": size, **free_chunk},
        "served_from_top_chunk": {"request": size, "top_pad": 4 * size, **top_chunk},
    }
    result["summary"] = [
        f"threshold {size_label(t)}{' (dynamic, not yet moved)' if threshold is None else ''}",
        f"smallest request glibc mmaps when the heap must grow: {found} bytes (found by search)",
        f"predicted from chunk rounding ({result['formula']}): {predicted} bytes -> "
        f"{'agrees' if result['agrees'] else 'DISAGREES'}",
        f"in a fresh process whose first malloc left a top chunk (M_TOP_PAD): {fresh} bytes",
        f"a {size} byte request with a free chunk that fits: "
        f"{'mmapped' if free_chunk['mmapped'] else 'served from the heap'}",
        f"a {size} byte request with a large top chunk ({top_chunk['top_before']} bytes): "
        f"{'mmapped' if top_chunk['mmapped'] else 'served from the top chunk, no syscall'}",
    ]
    return result


def _toy_in_fresh_python(code: str) -> dict:
    """The toy's own probes run its Python handles in a fresh interpreter."""
    try:
        return run_python(code)
    except ChildFailed as e:
        raise ProbeError(f"toy probe: {e}") from None


def _toy_boundary(threshold):
    conf = "" if threshold is None else f"toy.configure(threshold={threshold})\n"
    found = _toy_in_fresh_python(
        "import json\nfrom allocbench import toy\nfrom allocbench.probes import smallest\n" + conf +
        "def direct(n):\n    b = toy.Block(n); d = b.is_mmapped; b.free(); return d\n"
        "print(json.dumps({'found': smallest(direct, 0, 4 << 20), 'threshold': toy.config()['threshold']}))")
    t = found["threshold"]
    return {"probe": "boundary", "allocator": "toy", "threshold_in_force": t,
            "found_when_heap_must_grow": found["found"], "predicted": t + 1, "agrees": found["found"] == t + 1,
            "summary": [f"toy threshold {size_label(t)}: smallest request with its own mapping "
                        f"{found['found']} bytes (predicted threshold + 1 = {t + 1}); the toy has no "
                        "heap to grow and no top chunk, so the line is exact whatever came before"]}


# ---- dynamic ----

def trim_bracket(mmap_boundary_bytes: int, settings=None, history=()) -> dict:
    """The trim threshold, inferred: heap blocks (each below the mmap threshold)
    are freed so that one free leaves a top chunk of known size; a search over
    the freed total finds where trimming starts.  The threshold lies above the
    largest top that stayed and at most the smallest top that trimmed."""
    block = max(64 * KIB + 64, min(mmap_boundary_bytes // 2, MIB))
    seen = []

    def trims(total):
        obs = observe("trims", total, block, settings=settings, history=history, exhaust=True)
        seen.append(obs)
        return obs["trimmed"] == 1

    total = smallest(trims, block, 256 * MIB)
    kept = [o["top_at_last_free"] for o in seen if not o["trimmed"]]
    trimmed = [o["top_at_last_free"] for o in seen if o["trimmed"]]
    return {"block": block, "smallest_freed_total_that_trims": total,
            "top_kept_max": max(kept) if kept else None,
            "trim_threshold_inferred": min(trimmed) if trimmed else None}


def dynamic(allocator: str = "glibc", steps=DYNAMIC_STEPS) -> dict:
    if _in_process_toy(allocator):
        return {"probe": "dynamic", "allocator": allocator,
                "summary": ["the toy's threshold is static (set by toy.configure or TOYALLOC_THRESHOLD): "
                            "freeing a mapping never moves it; see `probe boundary --allocator toy`"]}
    rows = []
    history = []
    start = mmap_boundary()
    rows.append({"freed": None, "boundary": start, "threshold_inferred": request2size(start),
                 **trim_bracket(start)})
    for size in steps:
        history.append(size)
        b = mmap_boundary(history=history)
        rows.append({"freed": size, "boundary": b, "threshold_inferred": request2size(b) if b else None,
                     **trim_bracket(b or MIB, history=history)})
    frozen = {}
    for name, param, value in (("M_MMAP_THRESHOLD", M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD),
                               ("M_TOP_PAD", M_TOP_PAD, DEFAULT_MMAP_THRESHOLD),
                               ("M_TRIM_THRESHOLD", M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD),
                               ("M_MMAP_MAX", M_MMAP_MAX, 65536)):
        b = mmap_boundary(settings={param: value}, history=[MIB])
        frozen[name] = {"value": value, "boundary_after_freeing_1MiB": b}
    after_1m = observe("mmapped", MIB, history=[MIB], exhaust=True)["mmapped"]
    after_1m_fixed = observe("mmapped", MIB, history=[MIB], exhaust=True,
                             settings={M_MMAP_THRESHOLD: DEFAULT_MMAP_THRESHOLD})["mmapped"]
    cap = max(r["threshold_inferred"] or 0 for r in rows)
    summary = ["after each free of an mmapped chunk: smallest mmapped request (inferred mmap threshold) | "
               "trim threshold inferred: largest top chunk kept < T <= smallest that trimmed"]
    for r in rows:
        what = "fresh process" if r["freed"] is None else f"after freeing {size_label(r['freed'])}"
        summary.append(f"  {what:>26}: {r['boundary']} B ({r['threshold_inferred']}) | "
                       f"{r['top_kept_max']} < T <= {r['trim_threshold_inferred']}")
    summary.append("glibc's rule is trim threshold = 2 x mmap threshold; a fresh process cannot show its 128 KiB "
                   "because trimming also keeps M_TOP_PAD (128 KiB) and releases whole pages")
    summary.append(f"highest threshold reached: {cap} bytes (glibc's cap on 64-bit: {MMAP_THRESHOLD_MAX})")
    summary.append(f"after freeing a 1 MiB mmapped chunk the next 1 MiB request is "
                   f"{'mmapped' if after_1m else 'served from the heap'}; with M_MMAP_THRESHOLD set it is "
                   f"{'mmapped' if after_1m_fixed else 'served from the heap'}")
    for name, f in frozen.items():
        summary.append(f"  with {name}={f['value']} set first, the boundary after freeing 1 MiB stays "
                       f"{f['boundary_after_freeing_1MiB']} B")
    return {"probe": "dynamic", "allocator": "glibc", "steps": rows, "cap_reached": cap,
            "cap_documented": MMAP_THRESHOLD_MAX, "after_free_1MiB_next_1MiB_mmapped": bool(after_1m),
            "with_fixed_threshold_mmapped": bool(after_1m_fixed), "frozen_by": frozen, "summary": summary}


# ---- trim ----

def trim(blocks: int = 64, size: int = 64 * KIB) -> dict:
    pinned = observe("pinned", blocks, size)
    effect = {}
    for label, value in (("128 KiB", DEFAULT_TRIM_THRESHOLD), ("64 MiB", 64 * MIB)):
        effect[label] = observe("trims", 4 * MIB, 64 * KIB + 64, settings={M_TRIM_THRESHOLD: value},
                                exhaust=True)
    a, f, t = pinned["allocated"], pinned["freed"], pinned["trimmed"]
    mib = lambda n: f"{n / MIB:.1f} MiB"
    summary = [
        f"{blocks} x {size_label(size)} heap blocks, then one 64-byte block after them (the pin)",
        f"  after freeing the {blocks}: heap top moved {f['heap_top'] - a['heap_top']:+d} B, RSS {mib(a['rss_bytes'])}"
        f" -> {mib(f['rss_bytes'])}, free bytes in the heap {mib(f['fordblks'])} (pinned: cannot shrink)",
        f"  free() made {sum(v or 0 for v in pinned['free_syscalls'].values())} memory syscalls",
        f"  malloc_trim(0): RSS -> {mib(t['rss_bytes'])}, heap top moved {t['heap_top'] - f['heap_top']:+d} B, "
        f"madvise {pinned['trim_syscalls']['madvise']}, brk {pinned['trim_syscalls']['brk']} "
        f"(it returns free pages inside the heap with MADV_DONTNEED)",
        "M_TRIM_THRESHOLD, 4 MiB freed at the top of an unpinned heap:",
    ]
    for label, e in effect.items():
        summary.append(f"  {label}: " + (f"heap shrank by {e['heap_top_drop']} B" if e["trimmed"] else "heap kept"))
    return {"probe": "trim", "allocator": "glibc", "pinned": pinned, "trim_threshold_effect": effect,
            "summary": summary}


# ---- trim-pause ----

TRIM_PAUSE_SIZES = [MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB, 1024 * MIB]
TRIM_PAUSE_HELD_OUT = 64 * MIB  # left out of the fit, then predicted
# (arena, layout, how): free()'s own trim (unpinned: the free space reaches the top) and malloc_trim(0)
# (a thread arena's unpinned heaps go back during the frees, before any timed call: not a case here)
TRIM_PAUSE_CASES = [("main", "unpinned", "auto"), ("main", "unpinned", "trim"), ("main", "pinned", "trim"),
                    ("thread", "pinned", "trim")]


def fit_line(xs: list[float], ys: list[float]) -> dict:
    """y = a + b x by least squares on relative residuals (each point weighed
    by 1/y^2: a pause of 1 ms and one of 1 s count alike), with each
    coefficient's standard error and the residuals' relative spread (the fit's
    own error)."""
    w = [1 / (y * y) for y in ys]
    sw, swx, swy = sum(w), sum(wi * x for wi, x in zip(w, xs)), sum(wi * y for wi, y in zip(w, ys))
    swxx, swxy = sum(wi * x * x for wi, x in zip(w, xs)), sum(wi * x * y for wi, x, y in zip(w, xs, ys))
    det = sw * swxx - swx * swx
    b = (sw * swxy - swx * swy) / det
    a = (swy - b * swx) / sw
    rel = [(y - (a + b * x)) / y for x, y in zip(xs, ys)]
    n = len(xs)
    s2 = sum(r * r for r in rel) / (n - 2) if n > 2 else 0.0  # the relative residuals' variance
    return {"a": a, "b": b, "a_stderr": (s2 * swxx / det) ** 0.5, "b_stderr": (s2 * sw / det) ** 0.5,
            "relative_error": s2 ** 0.5, "points": n}


def held_out_check(fit: dict, test: dict, page: int = 4096) -> dict:
    """The fit asked for the held-out size: its prediction at the mean pages returned, and its error
    against the median of the measured pauses (not any one of them)."""
    pages = sum(test["released_bytes"]) / len(test["released_bytes"]) / page
    pred = fit["a"] + fit["b"] * pages
    median = statistics.median(test["ns"])
    return {"bytes": test["bytes"], "pages": pages, "predicted_ns": pred, "measured_ns": test["ns"],
            "error": pred / median - 1, "within_spread": min(test["ns"]) <= pred <= max(test["ns"]),
            "within_fit_error": abs(pred / median - 1) <= fit["relative_error"]}


def trim_pause(sizes=TRIM_PAUSE_SIZES, repeats: int = 4, cases=TRIM_PAUSE_CASES,
               held_out: int = TRIM_PAUSE_HELD_OUT) -> dict:
    """malloc_trim(0) and free()'s own trim against the memory they return:
    SIZES of 64 KiB blocks, written, then freed (each observation a fresh
    process, the cases taken in turns), and per case the fit pause = a + b x
    pages returned, made without the held-out size and then asked to predict
    it.  A case that returns under half its bytes at some size (they went back
    before the timed call) is shown but not fitted."""
    import platform
    page = 4096
    obs = {c: {s: [] for s in sizes} for c in cases}
    for _ in range(repeats):
        for s in sizes:
            for c in cases:
                arena, layout, how = c
                r = observe("trim-pause", s, f"arena={arena}", f"layout={layout}", f"how={how}")
                obs[c][s].append({"ns": r["ns"], "released_bytes": r["released_bytes"], "syscalls": r["syscalls"]})
    out = []
    for c, by_size in obs.items():
        arena, layout, how = c
        rows = [{"bytes": s, "ns": [o["ns"] for o in v], "released_bytes": [o["released_bytes"] for o in v],
                 "syscalls": v[0]["syscalls"]} for s, v in by_size.items()]
        entry = {"arena": arena, "layout": layout, "how": how, "rows": rows, "fit": None, "held_out": None}
        fittable = all(min(r["released_bytes"]) >= r["bytes"] / 2 for r in rows)
        train = [(rb / page, ns) for r in rows if r["bytes"] != held_out
                 for rb, ns in zip(r["released_bytes"], r["ns"])]
        if fittable and len(train) > 2:
            entry["fit"] = fit_line([x for x, _ in train], [y for _, y in train])
            test = next((r for r in rows if r["bytes"] == held_out), None)
            if test:
                entry["held_out"] = held_out_check(entry["fit"], test, page)
        out.append(entry)
    summary = [f"pause of free()'s own trim (auto) and malloc_trim(0) (trim) against the memory returned; "
               f"{repeats} fresh processes per point, fit without {size_label(held_out)}, then asked for it",
               f"{'arena':>6} {'layout':>8} {'how':>4} {'a':>9} {'b per page':>14} {'fit error':>9}  held out: "
               "predicted, measured"]
    for e in out:
        f, h = e["fit"], e["held_out"]
        if not f:
            summary.append(f"{e['arena']:>6} {e['layout']:>8} {e['how']:>4}  not fitted: returns under half its "
                           "bytes at some size (the memory went back before the timed call)")
            continue
        held = (f"{h['predicted_ns'] / 1e6:.2f} ms, {min(h['measured_ns']) / 1e6:.2f}.."
                f"{max(h['measured_ns']) / 1e6:.2f} ms ({h['error']:+.0%} from the median; "
                f"{'within' if h['within_spread'] else 'outside'} the spread)" if h else "-")
        summary.append(f"{e['arena']:>6} {e['layout']:>8} {e['how']:>4} {f['a'] / 1e3:>6.0f} us "
                       f"{f['b']:>7.1f} ns ±{f['b_stderr']:<4.1f} {f['relative_error']:>8.0%}  {held}")
    return {"probe": "trim-pause", "allocator": "glibc", "machine": platform.machine(), "page_size": page,
            "held_out_bytes": held_out, "cases": out, "summary": summary}


# ---- arenas ----

TURN_THREADS, TURN_BURST, TURN_BLOCK, TURN_KEEP = 8, 8 * MIB, 16 * KIB, 50


def turns_trace(path: str, threads: int = TURN_THREADS, burst: int = TURN_BURST, block: int = TURN_BLOCK,
                keep: int = TURN_KEEP) -> None:
    """A made trace of threads taking turns: the first thread creates the
    others; each in turn allocates `burst` bytes of `block`-byte blocks and
    frees all but every `keep`-th; all exit after the last turn.  Live memory
    stays near one burst; each arena, pinned by the kept blocks, keeps its own."""
    from . import traces

    n = burst // block
    ops = {name: op for op, name in traces.OPS.items()}
    rows = [(ops["malloc"], 0x10000, 0, 64, 1000)]  # the first thread's first call: it gets the main arena
    rows += [(ops["thread_create"], 1, 0, i + 1, 1000) for i in range(threads)]
    for i in range(threads):
        tid, base = 1001 + i, (i + 1) << 32
        rows.append((ops["thread_start"], 0, 1000, i + 1, tid))
        rows += [(ops["malloc"], base + j * block, 0, block, tid) for j in range(n)]
        rows += [(ops["free"], base + j * block, 0, 0, tid) for j in range(n) if j % keep]
    rows += [(ops["thread_exit"], 0, 0, i + 1, 1001 + i) for i in range(threads)]
    ev = np.zeros(len(rows), dtype=traces.EVENT_DTYPE)
    ev["op"], ev["ptr"], ev["old"], ev["size"], ev["tid"] = zip(*rows)
    ev["t_ns"] = np.arange(len(rows))
    traces.write(path, ev, {"program": "allocbench probe arenas (threads taking turns)", "argv": None,
                            "turns": {"threads": threads, "burst_bytes": burst, "block_bytes": block,
                                      "keep_every": keep}})


def _turns(arena_max) -> list[dict]:
    """The turn-taking trace replayed on its threads (window 1: strictly in turns) under each arena_max."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="allocbench-arenas-") as folder:
        path = f"{folder}/turns.trace"
        turns_trace(path)
        specs = [runner.make_spec(pattern="trace", trace=path, replay_threads="recorded", replay_window=1,
                                  repeats=1, warmup=1, settings={} if m is None else {"arena_max": m})
                 for m in arena_max]
        recs = runner.run_cells(specs, timeout=120)
    rows = []
    for m, rec in zip(arena_max, recs):
        if rec["status"] != "ok":
            raise ProbeError(f"arenas (turns, arena_max {m}): {rec['error']}")
        rows.append({"arena_max": m, "threads": TURN_THREADS, "live_peak_bytes": rec["replay_peak_live_bytes"],
                     "rss_growth_peak_bytes": rec["footprint_bytes_peak"], "overhead_peak": rec["overhead_peak"],
                     "arena_heaps": rec["arena_heaps"], "arena_heap_bytes": rec["arena_heap_bytes"],
                     "syscalls": rec["syscalls"]})
    return rows


def arenas(threads=(1, 2, 4, 8), arena_max=(None, 1, 2), turn_arena_max=(None, 1, 2, 4)) -> dict:
    rows = []
    for limit in arena_max:
        for t in threads:
            spec = runner.make_spec(pattern="batch", size=16 * KIB, ops=256, live=256, threads=t, repeats=1,
                                    warmup=0, settings={} if limit is None else {"arena_max": limit})
            try:  # spawn=1: even one worker runs on a thread of its own, as the others do
                raw = run_json(*runner.cell_command(spec, ("spawn=1", "timeline=0")), timeout=120)
            except ChildFailed as e:
                raise ProbeError(f"arenas: {e}") from None
            rep = raw["repeats"][0]
            rows.append({"arena_max": limit, "threads": t, "syscalls": rep["counts"]["syscalls"],
                         "peak_rss_bytes": rep["after"]["peak_rss_bytes"],
                         "rss_growth_bytes": rep["after"]["peak_rss_bytes"] - raw["baseline"]["rss_bytes"],
                         "arena_bytes": rep["after"]["mallinfo2"]["arena"]})
    summary = ["each worker thread: 256 x 16 KiB live, then freed (threads started inside the window)",
               f"{'M_ARENA_MAX':>12} {'threads':>7} {'mmap':>5} {'munmap':>6} {'mprotect':>8} {'brk':>4} "
               f"{'RSS growth':>11} {'arena bytes':>12}"]
    for r in rows:
        s = {k: "-" if v is None else v for k, v in r["syscalls"].items()}  # "-": not counted (method none)
        summary.append(f"{'default' if r['arena_max'] is None else r['arena_max']:>12} {r['threads']:>7} "
                       f"{s['mmap']:>5} {s['munmap']:>6} {s['mprotect']:>8} {s['brk']:>4} "
                       f"{r['rss_growth_bytes'] / MIB:>8.1f} MiB {r['arena_bytes']:>12}")
    # the mechanism is said only where the counts show it (the default's threads mapped and did not brk;
    # at M_ARENA_MAX=1 they did brk), else what was seen
    own = [r["syscalls"] for r in rows if r["arena_max"] is None]
    one = [r["syscalls"] for r in rows if r["arena_max"] == 1]
    if any(None in s.values() for s in own + one):
        summary.append("(syscalls not counted: the counter method is none)")
    elif own and one and all(s["brk"] == 0 and s["mmap"] > 0 for s in own) and all(s["brk"] > 0 for s in one):
        summary.append("threads allocate from mmapped arena heaps (mmap + mprotect), not brk; "
                       "M_ARENA_MAX=1 sends them all to the main arena's brk heap")
    turns = _turns(turn_arena_max)
    summary += ["", f"threads taking turns ({TURN_THREADS} threads, each in turn {size_label(TURN_BURST)} of "
                f"{size_label(TURN_BLOCK)} blocks, all but every {TURN_KEEP}th freed; replayed on its threads):",
                f"{'M_ARENA_MAX':>12} {'live peak':>10} {'RSS growth':>11} {'RSS/live':>8} {'heaps':>5} "
                f"{'heap bytes':>11}"]
    for r in turns:
        summary.append(f"{'default' if r['arena_max'] is None else r['arena_max']:>12} "
                       f"{r['live_peak_bytes'] / MIB:>6.1f} MiB {r['rss_growth_peak_bytes'] / MIB:>7.1f} MiB "
                       f"{r['overhead_peak']:>8.2f} {r['arena_heaps']:>5} {r['arena_heap_bytes'] / MIB:>7.1f} MiB")
    by = {r["arena_max"]: r for r in turns}
    if None in by and 1 in by and by[None]["rss_growth_peak_bytes"] >= 2 * by[1]["rss_growth_peak_bytes"]:
        summary.append("live memory is one burst at a time, but each arena keeps the peak its thread reached")
    return {"probe": "arenas", "allocator": "glibc", "rows": rows, "turns": turns, "summary": summary}


def run_probe(name: str, allocator: str = "glibc", threshold: int | None = None,
              work_dir: str = "results") -> dict:
    """One probe's result, with the machine it ran on under "env".  The mmap
    probes make their files in a temporary folder under work_dir."""
    from .machine import describe

    check_probe(name, allocator, threshold)
    if name not in GLIBC_PROBES:
        try:
            result = mmap_probes.run(name, work_dir)
        except mmap_probes.ProbeError as e:
            raise ProbeError(str(e)) from None
        result["env"] = describe()
        return result
    result = _run(name, allocator, threshold)
    result["env"] = describe()
    return result


# the allocators a probe can watch in its own process: glibc's, and the toy built into the cell
PROBE_ALLOCATORS = tuple(name for name, b in BACKENDS.items() if b.cell != "libc")


def _in_process_toy(allocator: str) -> bool:
    return BACKENDS[allocator].cell == "toy"


def check_probe(name: str, allocator: str = "glibc", threshold: int | None = None) -> None:
    """What run_probe refuses, refused before anything runs (ValueError, FileNotFoundError)."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; known: {', '.join(PROBES)}")
    if name not in GLIBC_PROBES:
        if allocator != "glibc" or threshold is not None:
            raise ValueError(f"probe {name} is about mmap itself: it takes no allocator or threshold")
        program("allocbench-mmap-probe")
        return
    if allocator not in PROBE_ALLOCATORS:
        raise ValueError(f"probes watch {' or '.join(PROBE_ALLOCATORS)} in their own process, not {allocator}")
    toy = _in_process_toy(allocator)
    if toy and name not in ("boundary", "dynamic"):
        raise ValueError(f"probe {name} is glibc-only: the toy has no brk heap, arenas or trimming")
    if name == "boundary":
        hi = BACKENDS[allocator].setting("toy_threshold" if toy else "mmap_threshold").hi
        if threshold is not None and not 0 <= threshold <= hi:
            raise ValueError(f"{allocator} threshold must be in [0, {hi}], got {threshold}")
    elif threshold is not None:
        raise ValueError("--mmap-threshold applies to the boundary probe only")
    probe_binary()


def _run(name, allocator, threshold):
    if name == "boundary":
        return boundary(threshold, allocator)
    return _GLIBC[name](**({"allocator": allocator} if name == "dynamic" else {}))


# every probe, once: glibc's here (boundary takes its threshold and allocator apart, in _run), the mmap
# claims in mmap_probes.CLAIMS
_GLIBC = {"boundary": boundary, "dynamic": dynamic, "trim": trim, "arenas": arenas, "trim-pause": trim_pause}
GLIBC_PROBES = tuple(_GLIBC)
PROBES = GLIBC_PROBES + mmap_probes.PROBES
