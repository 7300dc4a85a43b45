"""The preload shims' logs, read: the threshold explainer's (csrc/preload/explain.c)
and the latency shim's (csrc/preload/latency_shim.c).  The line formats are
defined once, in csrc/preload/shimlog.h; each becomes its parser here."""
from __future__ import annotations

import re

from ._native import SHIMLOG_FORMATS, SHIMLOG_PREFIXES

_FIELD = {"%llu": r"(\d+)", "%d": r"(-?\d+)", "0x%llx": r"(0x[0-9a-f]+)", "%s": r"(\S+)"}


def _pattern(fmt: str, tail_words: bool = True) -> str:
    """A printf format from shimlog.h as a regex with a group per value; a %s
    that ends the format takes the rest of the line (a path with spaces)."""
    parts = re.split(r"(0x%llx|%llu|%d|%s)", fmt)
    out = []
    for i, part in enumerate(parts):
        if part in _FIELD:
            out.append(r"(.*)" if part == "%s" and tail_words and i == len(parts) - 2 and not parts[-1] else
                       _FIELD[part])
        else:
            out.append(re.escape(part))
    return "".join(out)


def _line(prefix: str, name: str) -> re.Pattern:
    return re.compile(_pattern(prefix, tail_words=False) + _pattern(SHIMLOG_FORMATS[name]) + r"$")


EXPLAIN = {name: _line(SHIMLOG_PREFIXES["explain"], name) for name in SHIMLOG_FORMATS}
LATENCY = {name: _line(SHIMLOG_PREFIXES["latency"], name) for name in SHIMLOG_FORMATS}
# a frame with a symbol first: its object and offset would also match the plain frame
FRAMES = ("frame_symbol", "frame")


def _frame(table: dict, line: str) -> dict | None:
    for name in FRAMES:
        if m := table[name].match(line):
            g = m.groups()[-4:] if name == "frame_symbol" else (*m.groups()[-2:], None, None)
            return {"object": g[0], "offset": g[1], "function": g[2], "function_offset": g[3]}
    return None


def parse_explain(text: str) -> dict:
    """The explainer's log: each rise with its backtrace (frames: object, offset,
    function), and the moved blocks."""
    rises, summary = [], None
    for line in text.splitlines():
        if m := EXPLAIN["explain_rise"].match(line):
            t, old, new, trim = map(int, m.groups())
            rises.append({"t_ns": t, "old_threshold": old, "new_threshold": new, "trim_threshold": trim,
                          "backtrace": []})
        elif rises and (f := _frame(EXPLAIN, line)):
            rises[-1]["backtrace"].append(f)
        elif m := EXPLAIN["explain_summary"].match(line):
            n, final, blocks, nbytes = map(int, m.groups())
            summary = {"rise_count": n, "final_threshold": final, "moved_blocks": blocks, "moved_bytes": nbytes}
    return {"rises": rises, **(summary or {"rise_count": len(rises)})}


SHIM_CLOCKS = {"tsc": "tsc (rdtsc; constant_tsc and nonstop_tsc), against CLOCK_MONOTONIC over the run",
               "monotonic": "clock_gettime(CLOCK_MONOTONIC) through the vDSO"}
QUANTILE_KEYS = ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns")  # latency_kind's values after the count


def parse_latency(text: str) -> list[dict]:
    """The latency shim's log: for each process that wrote one, in the order
    they ended, its clock, each call kind's percentiles and histogram ([highest
    ns of the bucket, calls]), and its slowest calls with their frames, all in
    nanoseconds."""
    procs: dict[int, dict] = {}
    for line in text.splitlines():
        name, m = next(((n, m) for n, pattern in LATENCY.items() if (m := pattern.match(line))), (None, None))
        if not m:
            continue
        pid, values = int(m[1]), m.groups()[1:]
        p = procs.setdefault(pid, {"pid": pid, "program": None, "kinds": {}, "slow_calls": [], "complete": False})
        if name == "latency_clock":
            p["clock"], p["ns_per_tick"] = SHIM_CLOCKS.get(values[0], values[0]), int(values[1]) / 1000
            p["clock_overhead_ns"] = int(values[2]) * p["ns_per_tick"]
        elif name == "latency_program":
            p["program"] = values[0]
        elif name == "latency_kind":
            p["kinds"][values[0]] = {"count": int(values[1]), "histogram": [],
                                     **{k: int(v) * p["ns_per_tick"] for k, v in zip(QUANTILE_KEYS, values[2:])}}
        elif name == "latency_bucket":
            p["kinds"][values[0]]["histogram"].append([int(values[1]) * p["ns_per_tick"], int(values[2])])
        elif name == "latency_slow":
            # free has no size argument, and asking the allocator first would warm the line free then reads
            size = None if values[0] == "free" else int(values[2])
            p["slow_calls"].append({"op": values[0], "ns": int(values[1]) * p["ns_per_tick"], "size": size,
                                    "tid": int(values[3]), "backtrace": []})
        elif name in FRAMES and p["slow_calls"]:
            p["slow_calls"][-1]["backtrace"].append(_frame(LATENCY, line))
        elif name == "latency_end":
            p["complete"] = True
    for p in procs.values():
        p["slow_calls"].sort(key=lambda c: -c["ns"])
    return list(procs.values())
