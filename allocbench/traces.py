"""Allocation traces: `allocbench record -- CMD` writes one (csrc/preload/recorder.c,
format in csrc/lib/trace.h), `allocbench trace info FILE` summarises it, and
`allocbench run --pattern trace --trace FILE` replays it in a cell.

The format, defined once in trace.h (its header fields reach Python through
_native): a header (magic "ABTRACE1", the fixed fields of ab_trace_head, then
NUL-terminated JSON: recorder settings, program, argv, cwd, pid, LD_PRELOAD and
GLIBC_TUNABLES, and what the recorder measured at exit) whose size is a
multiple of 4096 bytes, as large as its JSON needs; then records of
EVENT_DTYPE, little-endian, in the calls' global order.  The header's `events`
is 0 when the program ended without running destructors: readers then stop at
the first record whose op is 0."""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from ._native import GLIBC_DEFAULT_BOUNDARY as BOUNDARY  # the smallest request glibc mmaps at 128 KiB
from ._native import (
    TRACE_EVENT_BYTES,
    TRACE_FLAGS,
    TRACE_HEAD_FIELDS,
    TRACE_HEADER_MAX,
    TRACE_HEADER_UNIT,
    TRACE_OP_KINDS,
    TRACE_OPS,
    TRACE_OWNER_WIDTH,
    TRACE_VERSION,
)
from .children import ChildFailed, check_command, child_env, library, run_user

MAGIC = b"ABTRACE1"
VERSIONS = tuple(range(1, TRACE_VERSION + 1))  # 2 added the thread events; 1 has none
# the header's fixed fields, from trace.h's one list: a struct format in their order
_HEAD_NAMES = sorted(TRACE_HEAD_FIELDS, key=lambda k: TRACE_HEAD_FIELDS[k][0])
_HEAD = struct.Struct("<8s" + "".join({4: "I", 8: "Q"}[TRACE_HEAD_FIELDS[k][1]] for k in _HEAD_NAMES))
JSON_OFFSET = _HEAD.size  # the header's JSON starts here
# one record: csrc/lib/trace.h ab_event
EVENT_DTYPE = np.dtype([("t_ns", "<u8"), ("ptr", "<u8"), ("old", "<u8"), ("size", "<u8"), ("tid", "<u4"),
                        ("op", "u1"), ("pad", "V3")])
OPS = TRACE_OPS  # op value -> name, from trace.h's one list
ALLOCATING = {op for op, kind in TRACE_OP_KINDS.items() if kind == "alloc"}
RESIZING = {op for op, kind in TRACE_OP_KINDS.items() if kind == "resize"}
(FREE,) = (op for op, kind in TRACE_OP_KINDS.items() if kind == "free")
THREAD_OPS = {op for op, kind in TRACE_OP_KINDS.items() if kind == "thread"}
THREAD_START = next(op for op, name in OPS.items() if name == "thread_start")
THREAD_EXIT = next(op for op, name in OPS.items() if name == "thread_exit")
OP_CODE = {name: op for op, name in OPS.items()}
assert EVENT_DTYPE.itemsize == TRACE_EVENT_BYTES and _HEAD.size == 40
assert [TRACE_HEAD_FIELDS[k][0] for k in _HEAD_NAMES] == [8 + sum(TRACE_HEAD_FIELDS[j][1] for j in _HEAD_NAMES[:i])
                                                          for i in range(len(_HEAD_NAMES))]  # packed, in order


class TraceError(ValueError):
    pass


def read_head(path: str) -> tuple[dict, int]:
    """The header's fixed fields, checked, and the file's size.  TraceError names the offset."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEAD.size)
    except OSError as e:
        raise TraceError(f"{path}: {e.strerror}") from None
    if len(head) < _HEAD.size or head[:8] != MAGIC:
        raise TraceError(f"{path}: offset 0: not an allocbench trace (no ABTRACE1 magic)")
    h = dict(zip(["magic", *_HEAD_NAMES], _HEAD.unpack(head)))
    hb = h["header_bytes"]
    if h["version"] not in VERSIONS or h["record_bytes"] != EVENT_DTYPE.itemsize or hb % TRACE_HEADER_UNIT \
            or not TRACE_HEADER_UNIT <= hb <= TRACE_HEADER_MAX:
        raise TraceError(f"{path}: offset 8: version {h['version']}, header {hb}, record {h['record_bytes']} "
                         f"(this allocbench reads versions {', '.join(map(str, VERSIONS))}, a header of a multiple "
                         f"of {TRACE_HEADER_UNIT} up to {TRACE_HEADER_MAX} bytes, {EVENT_DTYPE.itemsize}-byte records)")
    if size < hb:
        raise TraceError(f"{path}: offset {size}: truncated inside the {hb}-byte header")
    return h, size


UNFINISHED_CHUNK = 1 << 16  # records read at a time from a trace without a count (2.5 MiB)


def _until_empty(path: str, offset: int) -> np.ndarray:
    """The records from offset up to the first empty one, a chunk at a time.  A trace whose process
    ended by exec or a crash keeps the recorder's full sparse length (2.5 GiB for its 64 Mi records):
    read whole, each took about 0.4 s of the kernel's zero-filling and as much memory, and a program
    that execs through a shell script (pyenv's shims) leaves dozens."""
    parts = []
    with open(path, "rb") as f:
        f.seek(offset)
        while len(part := np.fromfile(f, dtype=EVENT_DTYPE, count=UNFINISHED_CHUNK)):
            empty = np.flatnonzero(part["op"] == 0)
            parts.append(part[:empty[0]] if len(empty) else part)
            if len(empty):
                break
    return np.concatenate(parts) if parts else np.empty(0, dtype=EVENT_DTYPE)


def read(path: str) -> tuple[dict, np.ndarray]:
    """(header, events).  TraceError names the offset of what is wrong."""
    h, size = read_head(path)
    hb, record_size = h["header_bytes"], h["record_bytes"]
    body = size - hb
    if body % record_size:
        raise TraceError(f"{path}: offset {hb + body // record_size * record_size}: truncated record "
                         f"({body % record_size} of {record_size} bytes)")
    with open(path, "rb") as f:
        f.seek(JSON_OFFSET)
        text = f.read(hb - JSON_OFFSET)
    try:
        meta = json.loads(text.split(b"\0", 1)[0].decode())
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError):
        raise TraceError(f"{path}: offset {JSON_OFFSET}: the header's JSON is unreadable") from None
    count, held = h["events"], body // record_size
    if count > held:
        raise TraceError(f"{path}: offset {size}: the header counts {count} events, the file holds {held}")
    # no count: the process ended without the recorder's destructor, and its trace ends at its first empty record
    events = np.fromfile(path, dtype=EVENT_DTYPE, offset=hb, count=count) if count else _until_empty(path, hb)
    bad = np.flatnonzero((events["op"] == 0) | (events["op"] > max(OPS)))
    if len(bad):
        raise TraceError(f"{path}: offset {hb + int(bad[0]) * record_size}: event {int(bad[0])} has "
                         f"unknown op {int(events['op'][bad[0]])}")
    if "command" not in meta and isinstance(meta.get("argv"), list):  # the recorder keeps argv alone
        meta["command"] = " ".join(map(str, meta["argv"]))
    return {**meta, "events": len(events), "flags": h["flags"], "start_ns": h["start_ns"],
            "header_bytes": hb}, events


def header_size(json_bytes: int) -> int:
    """The header that holds JSON of this many bytes: whole units, as the recorder sizes it."""
    return -(-(JSON_OFFSET + json_bytes + 1) // TRACE_HEADER_UNIT) * TRACE_HEADER_UNIT


def write(path: str, events: np.ndarray, meta: dict) -> None:
    """A trace file of `events` (EVENT_DTYPE, in global order) with `meta` as
    the header's JSON: for traces made rather than recorded (the arenas probe's)."""
    text = json.dumps(meta).encode()
    hb = header_size(len(text))
    fields = {"version": TRACE_VERSION, "header_bytes": hb, "record_bytes": EVENT_DTYPE.itemsize, "flags": 0,
              "events": len(events), "start_ns": 0}
    with open(path, "wb") as f:
        f.write((_HEAD.pack(MAGIC, *(fields[k] for k in _HEAD_NAMES)) + text).ljust(hb, b"\0"))
        f.write(np.ascontiguousarray(events, dtype=EVENT_DTYPE).tobytes())


def event_offset(header: dict, index: int, field: str | None = None) -> int:
    """Where event `index` (or its `field`) lies in the file (tests and fuzzers flip bytes there)."""
    return header["header_bytes"] + index * EVENT_DTYPE.itemsize + (EVENT_DTYPE.fields[field][1] if field else 0)


def head_offset(field: str) -> int:
    """Where a header field lies in the file."""
    return TRACE_HEAD_FIELDS[field][0]


def finalize(path: str) -> None:
    """A trace whose program ended by exec or a crash still has its full sparse
    length and no count: cut it after its last record."""
    header, events = read(path)
    with open(path, "r+b") as f:
        f.seek(head_offset("events"))
        f.write(struct.pack("<Q", len(events)))
        f.truncate(header["header_bytes"] + len(events) * EVENT_DTYPE.itemsize)


def thread_of(ev: np.ndarray) -> np.ndarray:
    """Each event's thread, numbered as the replay numbers them (csrc/lib/replay.c):
    0 the thread of the first allocation call (glibc gave it the main arena),
    then the created threads in creation order (their THREAD_START), then any
    others (the program's initial thread, when another made the first call; a
    version 1 trace's threads) in the order they first appear.  A tid that a
    later thread reuses is taken over at that thread's start."""
    starts = sorted({int(s) for s in ev["size"][ev["op"] == THREAD_START] if 1 <= s <= len(ev)})
    dense = {c: i + 1 for i, c in enumerate(starts)}
    calls = np.flatnonzero(~np.isin(ev["op"], list(THREAD_OPS)))
    first = int(calls[0]) if len(calls) else len(ev) - 1
    current = {int(ev["tid"][first]): 0} if len(ev) else {}
    out = np.empty(len(ev), dtype=np.int64)
    extra = len(dense)
    for i, (op, tid, size) in enumerate(zip(ev["op"].tolist(), ev["tid"].tolist(), ev["size"].tolist())):
        if op == THREAD_START and size in dense:
            current[tid] = dense[size]
        elif tid not in current:
            extra += 1
            current[tid] = extra
        out[i] = current[tid]
    return out


def info(path: str) -> dict:
    """What a trace holds: operations by kind, sizes, peak live bytes, lifetimes, and
    per thread its events, peak live bytes, the share of its frees that free another
    thread's block, and its lifetime."""
    header, ev = read(path)
    ops = {OPS[k]: int(v) for k, v in zip(*np.unique(ev["op"], return_counts=True))}
    alloc = ev[np.isin(ev["op"], list(ALLOCATING | RESIZING)) & (ev["ptr"] != 0)]
    sizes = alloc["size"].astype(np.float64)
    buckets = {}
    if len(sizes):
        log2 = np.floor(np.log2(np.maximum(sizes, 1))).astype(int)
        for b, n in zip(*np.unique(log2, return_counts=True)):
            buckets[f"{1 << int(b)}..{(1 << (int(b) + 1)) - 1}"] = int(n)
    # live bytes and lifetimes, in event order; per thread: the blocks it made, and whose it frees
    live = peak = 0
    born: dict[int, tuple[int, int, int]] = {}
    lifetimes = []
    threads = thread_of(ev)
    nthreads = int(threads.max()) + 1 if len(ev) else 0
    t_live, t_peak, t_frees, t_cross = ([0] * nthreads for _ in range(4))
    for i, (op, ptr, old, size, t) in enumerate(zip(ev["op"].tolist(), ev["ptr"].tolist(), ev["old"].tolist(),
                                                    ev["size"].tolist(), threads.tolist())):
        if op in THREAD_OPS:
            continue
        gone = ptr if op == FREE else old if op in RESIZING else 0
        if gone and gone in born and not (op in RESIZING and not ptr and size):
            start, s, owner = born.pop(gone)
            live -= s
            t_live[owner] -= s
            t_frees[t] += 1
            t_cross[t] += owner != t
            lifetimes.append(i - start)
        if op != FREE and ptr:
            born[ptr] = (i, size, t)
            live += size
            peak = max(peak, live)
            t_live[t] += size
            t_peak[t] = max(t_peak[t], t_live[t])
    life = {}
    if lifetimes:
        lg = np.floor(np.log10(np.maximum(np.array(lifetimes), 1))).astype(int)
        for b, n in zip(*np.unique(lg, return_counts=True)):
            life[f"{10 ** int(b)}..{10 ** (int(b) + 1) - 1} events"] = int(n)
    above = int((alloc["size"] >= BOUNDARY).sum())
    per_thread = []
    for t in range(nthreads):
        mine = np.flatnonzero(threads == t)
        if not len(mine):
            continue
        exit_at = mine[ev["op"][mine] == THREAD_EXIT]
        per_thread.append({
            "thread": t, "tid": int(ev["tid"][mine[0]]), "events": int(len(mine)), "peak_live_bytes": int(t_peak[t]),
            "frees": t_frees[t], "cross_thread_free_share": t_cross[t] / t_frees[t] if t_frees[t] else 0.0,
            "first_ns": int(ev["t_ns"][mine[0]]), "last_ns": int(ev["t_ns"][mine[-1]]),
            "exited": bool(len(exit_at)), "lifetime_ns": int(ev["t_ns"][mine[-1]] - ev["t_ns"][mine[0]])})
    return {
        "path": path, "program": header.get("program"), "command": header.get("command"),
        "argv": header.get("argv"), "cwd": header.get("cwd"), "at_exit": header.get("at_exit"),
        "events": int(len(ev)), "ops": ops, "threads": nthreads, "per_thread": per_thread,
        "cross_thread_frees": sum(t_cross),
        "allocations": int(len(alloc)), "size_histogram": buckets,
        "share_at_or_above_128k_boundary": above / len(alloc) if len(alloc) else 0.0,
        "bytes_at_or_above_128k_boundary": int(alloc["size"][alloc["size"] >= BOUNDARY].sum()),
        "peak_live_bytes": int(peak), "live_at_end_blocks": len(born), "live_at_end_bytes": int(live),
        "lifetime_histogram": life, "duration_ns": int(ev["t_ns"][-1]) if len(ev) else 0,
        "recorder_overflowed": bool(header["flags"] & TRACE_FLAGS["overflow"]),
        "cut_at_exit": bool(header["flags"] & TRACE_FLAGS["cut_at_exit"])}


def summary_lines(i: dict) -> list[str]:
    from .units import human_bytes
    command = i["command"] or i["program"] or "?"
    command = command if len(command) <= 100 else command[:99] + "…"  # a 100 KB argv stays in the JSON
    lines = [f"{i['path']}: {i['events']:,} events from {command}, {i['threads']} thread(s), "
             f"{i['duration_ns'] / 1e9:.2f} s",
             "operations: " + ", ".join(f"{k} {v:,}" for k, v in i["ops"].items()),
             f"peak live {human_bytes(i['peak_live_bytes'])}; live at the end {i['live_at_end_blocks']:,} blocks, "
             f"{human_bytes(i['live_at_end_bytes'])}",
             f"at or above the 128 KiB boundary ({BOUNDARY} B): {i['share_at_or_above_128k_boundary']:.2%} of "
             f"allocations, {human_bytes(i['bytes_at_or_above_128k_boundary'])}",
             "sizes (bytes: allocations): " + ", ".join(f"{k}: {v:,}" for k, v in i["size_histogram"].items()),
             "lifetimes: " + ", ".join(f"{k}: {v:,}" for k, v in i["lifetime_histogram"].items())]
    if i["threads"] > 1:
        lines.append(f"threads (the replay's numbering): {i['cross_thread_frees']:,} frees of another thread's block")
        lines.append(f"  {'thread':>6} {'tid':>8} {'events':>10} {'peak live':>11} {'frees of another':>16} "
                     f"{'lifetime':>10}")
        for t in i["per_thread"]:
            lines.append(f"  {t['thread']:>6} {t['tid']:>8} {t['events']:>10,} {human_bytes(t['peak_live_bytes']):>11} "
                         f"{t['cross_thread_free_share']:>16.1%} {t['lifetime_ns'] / 1e6:>7.1f} ms"
                         + ("" if t["exited"] or t["thread"] == 0 else " (no exit event)"))
    if i["recorder_overflowed"]:
        lines.append("the recorder ran out of room: raise ALLOCBENCH_TRACE_MAX_EVENTS")
    if i["cut_at_exit"]:
        lines.append(f"{(i['at_exit'] or {}).get('unfinished_calls', 'some')} call(s) still unfinished in other "
                     "threads when the program exited are left out")
    return lines


def check_record(command: list[str], stdin: str | None, cwd: str | None = None) -> None:
    """What record() refuses before anything runs (ValueError, FileNotFoundError);
    the --out file itself is tried by the command line (commands.common.out_path)."""
    check_command(command, cwd)
    library("librecord.so")
    if stdin and not os.path.isfile(stdin):
        raise ValueError(f"--input {stdin}: no such file")


def record(command: list[str], out: str, timeout: float = 3600, stdin: str | None = None,
           output: str | None = None, env: dict | None = None, cwd: str | None = None) -> tuple[list[str], int]:
    """Run the command with the recorder preloaded; returns the trace files
    written (the program's, then any child's, OUT.PID) and the program's exit
    status.  stdin, output and cwd as children.run_user; env: more of the
    program's environment (an LD_PRELOAD in it comes after the recorder, so
    the recorder sees the calls and passes them on to that allocator).
    ValueError (one line) before anything runs when OUT cannot be written,
    ChildFailed on a timeout or when the recorder wrote nothing."""
    import glob

    check_record(command, stdin, cwd)
    lib = library("librecord.so")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    children = glob.escape(out) + ".[0-9]*"  # a forked or exec'd child's trace: OUT.PID
    for old in [out] + glob.glob(children):  # a previous recording's files
        if os.path.exists(old):
            os.unlink(old)
    extra = dict(env or {})
    preload = ":".join([lib] + ([extra.pop("LD_PRELOAD")] if extra.get("LD_PRELOAD") else []))
    env = child_env(preload, {**extra, "ALLOCBENCH_TRACE": os.path.abspath(out)})
    env["ALLOCBENCH_TRACE_OWNER"] = " " * TRACE_OWNER_WIDTH  # room for the first process's pid (recorder.c)
    status = run_user(command, env, timeout, stdin=stdin, output=output, cwd=cwd)
    files = [out] + sorted(glob.glob(children))
    files = [f for f in files if os.path.exists(f)]
    if not files:
        raise ChildFailed(f"the recorder wrote no trace to {out} (exit status {status}): does the program "
                          "ignore LD_PRELOAD (a static or setuid binary)?")
    for f in files:
        finalize(f)
    return files, status
