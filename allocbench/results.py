"""Results files: JSON Lines, one record per cell, appended atomically; and
JSON documents (probes, calibration) replaced atomically."""
from __future__ import annotations

import hashlib
import json
import os
import sys


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


def read_json(path: str):
    """A JSON file's value; ValueError saying what is wrong with it (missing, a folder, not text, not JSON)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError as e:  # a trace or another binary file
        raise ValueError(f"not JSON text: the byte at offset {e.start} is not UTF-8") from None
    except OSError as e:
        raise ValueError(e.strerror) from None
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e})") from None


def write_json_atomically(path: str, obj) -> None:
    """A half-written file never replaces a good one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(path + ".tmp", path)


class ResultsError(ValueError):
    pass


def load_records(path: str, strict: bool = False) -> list[dict]:
    """Every record of a results file; ResultsError says what is wrong and where.
    A last line cut short (a kill or power loss during its write: no newline at
    the end of the file) is set aside with a warning, or with `strict` is an
    error; a bad line anywhere else is an error naming it."""
    if not os.path.exists(path):
        raise ResultsError(f"{path}: no such results file")
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:  # a trace or another binary file given as results
        raise ResultsError(f"{path}: not a results file (JSON Lines text): the byte at offset {e.start} "
                           "is not UTF-8") from None
    except OSError as e:
        raise ResultsError(f"{path}: {e.strerror}") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines) and not line.endswith("\n") and strict:
                raise ResultsError(f"{path}:{n}: the last line was cut short ({len(line)} bytes, not JSON); "
                                   "remove it, or rerun what wrote it to resume") from None
            if n == len(lines) and not line.endswith("\n"):
                print(f"allocbench: warning: {path}:{n}: the last line was cut short "
                      f"({len(line)} bytes, not JSON); set aside, its cell will be measured again",
                      file=sys.stderr)
                continue
            raise ResultsError(f"{path}:{n}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or "allocator" not in rec or "status" not in rec:
            raise ResultsError(f"{path}:{n}: not an allocbench record")
        out.append(rec)
    if not out:
        raise ResultsError(f"{path}: no records")
    return out


def set_aside_partial_tail(path: str) -> str | None:
    """Before appending to a results file: a last line cut short is moved to
    PATH.partial and the file truncated after its last complete line, so the
    next record starts on a line of its own.  Returns a warning, or None."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return None
        cut = data.rfind(b"\n") + 1
        with open(path + ".partial", "ab") as aside:
            aside.write(data[cut:] + b"\n")
        f.truncate(cut)
    line = data[:cut].count(b"\n") + 1
    return (f"{path}:{line}: the last line was cut short ({len(data) - cut} bytes); "
            f"moved to {path}.partial, its cell will be measured again")


def check_resumable(path: str) -> None:
    """What measured_keys would refuse (a bad line before the last), refused
    without touching the file: for checking --out before any work.  A last line
    cut short is set aside later, when the run appends its first record."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return
    with open(path, "rb") as f:
        data = f.read()
    for n, line in enumerate(data[:data.rfind(b"\n") + 1].splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ResultsError(f"{path}:{n}: not JSON") from None
        if not isinstance(rec, dict) or "allocator" not in rec or "status" not in rec:
            raise ResultsError(f"{path}:{n}: not an allocbench record")


_digests: dict = {}  # (path, inode, size, mtime) -> its content's digest: each file read once while it stays


def _file_digest(path: str) -> bytes:
    st = os.stat(path)
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _digests:
        with open(path, "rb") as f:
            _digests[key] = hashlib.sha256(f.read()).digest()
    return _digests[key]


def build_hash(paths, text: str = "") -> str:
    """What a record was measured with, by content: the files (a program, a library; None is skipped)
    and any text (arguments), hashed: the same build, the same hash, wherever it was built.  Every
    cell a sweep runs asks again; a file is read again only once it changed."""
    h = hashlib.sha256(text.encode())
    for path in paths:
        if path:
            h.update(_file_digest(path))
    return h.hexdigest()[:16]


def set_aside(path: str) -> str:
    """Move a results file or folder out of the way, whole, to PATH.stale (PATH.stale.N when that is
    taken); returns where it went."""
    aside, n = path + ".stale", 1
    while os.path.exists(aside):
        n += 1
        aside = f"{path}.stale.{n}"
    os.rename(path, aside)
    return aside


def set_aside_other_builds(path: str, current) -> str | None:
    """Before resuming into a results file: when a record there was measured by another build than would
    measure it now (current(record) is false: its "build" field differs, or it has none, made before
    records had one), the whole file is moved to PATH.stale (or PATH.stale.N), so old and new numbers
    never mix in one file and none is lost.  Returns the message to print, or None."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    recs = load_records(path)
    stale = sum(not current(r) for r in recs)
    if not stale:
        return None
    aside = set_aside(path)
    return (f"{path} held {stale} of {len(recs)} records measured by another build (changed since, or from "
            f"before records named theirs): moved to {aside}, starting over")


def measured_keys(path: str) -> set:
    """For a resumed run: the keys of the records already measured (status ok)
    in `path`; a cut-short last line is set aside first, with a warning."""
    from .records import cell_key

    warning = set_aside_partial_tail(path)
    if warning:
        print(f"allocbench: warning: {warning}", file=sys.stderr)
    try:
        return {cell_key(r) for r in load_records(path) if r.get("status") == "ok"}
    except ResultsError as e:
        if "no such results file" in str(e) or "no records" in str(e):
            return set()
        raise


def latest_per_cell(recs: list[dict]) -> list[dict]:
    """One record per cell: a resumed sweep may have measured a cell again after
    it failed; the last ok record wins, else the last record."""
    from .records import cell_key

    best = {}
    for r in recs:
        key = cell_key(r)
        if key not in best or r["status"] == "ok" or best[key]["status"] != "ok":
            best[key] = r
    return list(best.values())
