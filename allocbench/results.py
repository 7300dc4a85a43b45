"""Results files: JSON Lines, one record per cell, appended atomically."""
from __future__ import annotations

import json
import os


def append_record(path: str, rec: dict) -> None:
    """Append one record as one line with a single write(2) on an O_APPEND fd,
    so an interrupted run never leaves half a line behind."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = (json.dumps(rec, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class ResultsError(ValueError):
    pass


def load_records(path: str) -> list[dict]:
    """Every record of a results file; ResultsError says what is wrong and where."""
    if not os.path.exists(path):
        raise ResultsError(f"{path}: no such results file")
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsError(f"{path}:{n}: not JSON ({e.msg})") from None
            if not isinstance(rec, dict) or "allocator" not in rec or "status" not in rec:
                raise ResultsError(f"{path}:{n}: not an allocbench record")
            out.append(rec)
    if not out:
        raise ResultsError(f"{path}: no records")
    return out


def latest_per_cell(recs: list[dict]) -> list[dict]:
    """One record per cell: a resumed sweep may have measured a cell again after
    it failed; the last ok record wins, else the last record."""
    from .sweep import cell_key

    best = {}
    for r in recs:
        key = cell_key(r)
        if key not in best or r["status"] == "ok" or best[key]["status"] != "ok":
            best[key] = r
    return list(best.values())
