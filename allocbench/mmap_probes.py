"""The mmap claims the project grew from, each a probe: evidence from fresh C
processes (allocbench-mmap-probe) and a verdict computed from that evidence.

    read-vs-mmap  read() copies, mmap maps; but filling a mapping faults, so
                  mmap is often slower than read()
    lazy          mmap only creates a VMA; memory comes at the first touch
    unmappable    directories and pipes cannot be mapped
    shared        MAP_SHARED writes are seen by every mapper and reach the
                  file; mmap itself gives no locking
    private       MAP_PRIVATE is copy-on-write; libc.so is mapped privately
    shm           POSIX shared memory is a file on the tmpfs at /dev/shm
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile

from .children import ChildFailed, program, run_json
from .counters import hold_tracepoints
from .units import KIB, MIB, size_label

CLAIMS = {
    "read-vs-mmap": "read() copies from the page cache into the caller's buffer, one syscall and one copy per "
                    "call; mmap() reads the page cache with no syscall or copy per access, but filling a "
                    "mapping takes page faults and page-table work, so in many cases mmap is slower than read().",
    "lazy": "mmap only creates a VMA: no physical memory is used until the first access faults each page in.",
    "unmappable": "Not every file can be mapped: directories and pipes cannot.",
    "shared": "A write to a shared mapping is seen by every process that maps the file and reaches the file; "
              "mmap provides no locking, so callers must synchronise.",
    "private": "A private mapping is copy-on-write: a write copies the page for the writer alone, others see "
               "the original and the file never changes. Shared libraries such as libc.so are private file "
               "mappings.",
    "shm": "POSIX shared memory on Linux is a file on the tmpfs mounted at /dev/shm, so it is a shared file "
           "mapping too.",
}
PROBES = tuple(CLAIMS)
READ_SIZES = [4 * KIB, 64 * KIB, MIB, 16 * MIB, 64 * MIB]  # 64 MiB at most: a cold 256 MiB read cost make bench 70 s
READ_METHODS = ("read4k", "read64k", "read1m", "mmap", "populate", "sequential", "random")
TMPFS_MAGIC = 0x01021994


class ProbeError(RuntimeError):
    pass


def _binary() -> str:
    return program("allocbench-mmap-probe", "ALLOCBENCH_MMAP_PROBE")


def _observe(*args, timeout=300) -> dict:
    hold_tracepoints()
    try:
        return run_json([_binary(), *map(str, args)], timeout=timeout)
    except ChildFailed as e:
        raise ProbeError(f"{args[0]}: {e}") from None


def _scratch(work_dir: str, need_bytes: int) -> str:
    """A temporary directory on the filesystem of work_dir, refused when too full."""
    os.makedirs(work_dir, exist_ok=True)
    free = shutil.disk_usage(work_dir).free
    if free < need_bytes:
        raise ValueError(f"{work_dir}: {free / MIB:.0f} MiB free, the probe needs {need_bytes / MIB:.0f} MiB "
                         "for its files (choose another --out folder)")
    return tempfile.mkdtemp(prefix="allocbench-mmap-", dir=work_dir)


def _observe_in_scratch(work_dir: str, mode: str, name: str | None = None) -> dict:
    """One observation whose files live in a scratch folder, removed afterwards;
    the program gets the folder itself, or the path `name` inside it."""
    d = _scratch(work_dir, MIB)
    try:
        return _observe(mode, os.path.join(d, name) if name else d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _verdict(ok: bool, caveats: list[str], undecided: str | None = None) -> str:
    if undecided:
        return f"undecided: {undecided}"
    if not ok:
        return "does not hold here"
    return "holds" if not caveats else "holds with caveats: " + "; ".join(caveats)


# ---- read() against mmap() ----

def read_vs_mmap(work_dir: str, sizes=READ_SIZES, repeats: int = 5) -> dict:
    d = _scratch(work_dir, max(sizes) + 64 * MIB)
    cells = []
    try:
        for size in sizes:
            path = os.path.join(d, f"data-{size}")
            with open(path, "wb") as f:
                for off in range(0, size, 4 * MIB):
                    f.write(os.urandom(min(4 * MIB, size - off)))
                f.flush()
                os.fsync(f.fileno())
            for cache in ("warm", "cold"):
                for consume in ("all", "page"):
                    for method in READ_METHODS:
                        out = _observe("read-vs-mmap", path, method, consume, cache, repeats)
                        reps = out["repeats"]
                        if not all(r["sum_ok"] for r in reps):
                            raise ProbeError(f"{method} {size}: the sum disagrees with read()'s")
                        if cache == "cold" and any(r["resident_pages_before"] for r in reps):
                            raise ProbeError(f"{size} B: the file was still cached after POSIX_FADV_DONTNEED")
                        gbps = [size / r["ns"] for r in reps]  # bytes per ns = GB/s
                        cells.append({
                            "size_bytes": size, "cache": cache, "consume": consume, "method": method,
                            "gbps": {"median": statistics.median(gbps), "min": min(gbps), "max": max(gbps)},
                            "ns_repeats": [r["ns"] for r in reps],
                            "read_calls_per_op": statistics.median(r["read_calls"] for r in reps),
                            "syscalls_per_op": {k: statistics.median(r["syscalls"][k] for r in reps)
                                                if reps[0]["syscalls"][k] is not None else None
                                                for k in reps[0]["syscalls"]},
                            "minor_faults_per_op": statistics.median(r["minor_faults"] for r in reps),
                            "major_faults_per_op": statistics.median(r["major_faults"] for r in reps),
                            "counter": out["counter"]})
            os.unlink(path)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return summarise_read_vs_mmap({"probe": "read-vs-mmap", "repeats": repeats, "cells": cells})


def summarise_read_vs_mmap(res: dict) -> dict:
    """Per cache state, consumption and size: the best read() against the best
    mmap (by median), compared over their repeats (stats.unpaired: each method
    ran in a process of its own); a winner only where the test says so."""
    from . import stats

    cells = res["cells"]
    wins, summary = {"read": [], "mmap": [], "same": []}, []
    for cache in ("warm", "cold"):
        for consume in ("all", "page"):
            for size in sorted({c["size_bytes"] for c in cells}):
                group = [c for c in cells if (c["cache"], c["consume"], c["size_bytes"]) == (cache, consume, size)]
                r, m = (max((c for c in group if c["method"].startswith("read") == reads),
                            key=lambda c: c["gbps"]["median"], default=None) for reads in (True, False))
                if r and m:
                    c = stats.unpaired(r.get("ns_repeats") or [], m.get("ns_repeats") or [], "time")
                    winner = {"slower": "read", "faster": "mmap"}.get(c.verdict, "same")
                    wins[winner].append(f"{cache} {consume} {size_label(size)}")
                    summary.append(f"{cache:>4} {consume:>4} {size_label(size):>8}: best read() {r['method']} "
                                   f"{r['gbps']['median']:.2f} GB/s, best mmap {m['method']} "
                                   f"{m['gbps']['median']:.2f} GB/s; mmap's time against read()'s: {c.words()}")
    big = max(c["size_bytes"] for c in cells)
    cell = lambda method: next(c for c in cells if (c["method"], c["cache"], c["consume"], c["size_bytes"])
                               == (method, "warm", "all", big))
    plain, pop, rd = cell("mmap"), cell("populate"), cell("read64k")
    pages = big // 4096
    per_mib = plain["minor_faults_per_op"] / (big / MIB)
    evidence = [
        f"read() with a 64 KiB buffer makes {rd['read_calls_per_op']:.0f} read calls for {size_label(big)} "
        f"({big // (64 * KIB)} full buffers + 1 at the end of the file); mmap makes "
        f"{plain['syscalls_per_op']['mmap']} mmap and {plain['syscalls_per_op']['munmap']} munmap, no read",
        f"a plain mapping of a cached {size_label(big)} file ({pages} pages) took {plain['minor_faults_per_op']:.0f} "
        f"minor faults ({per_mib:.2g} per MiB, {pages / max(plain['minor_faults_per_op'], 1):.0f} pages per "
        f"fault: fewer faults than pages); MAP_POPULATE took "
        f"{pop['minor_faults_per_op']:.0f}",
        f"of {sum(map(len, wins.values()))} comparisons of the best read() and the best mmap (their repeats, "
        f"Mann-Whitney at 95%), read() was faster in {len(wins['read'])}, mmap in {len(wins['mmap'])}"
        + (f" ({', '.join(wins['mmap'])})" if wins["mmap"] else "")
        + f", and {len(wins['same'])} could not be told apart"]
    caveats = []
    if wins["mmap"]:
        caveats.append("mmap wins in " + ", ".join(wins["mmap"]))
    if wins["same"]:
        caveats.append(f"{len(wins['same'])} comparisons show no difference at 95%")
    # "in many cases mmap is slower": it holds where read() won more of the comparisons than mmap did
    res.update(claim=CLAIMS["read-vs-mmap"], evidence=evidence, wins=wins,
               verdict=_verdict(len(wins["read"]) > len(wins["mmap"]), caveats,
                                undecided=None if wins["read"] or wins["mmap"] else
                                "no comparison showed a difference at 95% (too few repeats, or none)")
               + ("" if len(wins["read"]) > len(wins["mmap"]) or not (wins["read"] or wins["mmap"]) else
                  f": read() was faster in {len(wins['read'])} comparisons, mmap in {len(wins['mmap'])}"),
               summary=["method comparison per cache state, consumption and size (medians of repeats):"] + summary
               + evidence)
    return res


# ---- the others: one fresh process each ----

def lazy(work_dir: str) -> dict:
    runs = {"4 KiB pages": _observe("lazy"), "MADV_HUGEPAGE": _observe("lazy", "hugepage")}
    evidence, ok, caveats = [], True, []
    for label, r in runs.items():
        s = {step["step"]: step for step in r["steps"]}
        mapped, one, wrote, zero = (s["mapped"], s["touched one page"], s["wrote 64 MiB"],
                                    s["read 64 MiB never written"])
        page_faults = wrote["minor_faults"] - one["minor_faults"]
        evidence.append(
            f"{label}: mapping {size_label(r['mapping_bytes'])} grew VmSize by "
            f"{size_label(mapped['vm_size_bytes'] - r['vm_size_before_bytes'])} and the region's Rss by "
            f"{mapped['region_rss_bytes']} B; one touched page made Rss {size_label(one['region_rss_bytes'])}; "
            f"writing 64 MiB took {page_faults} faults (Rss {size_label(wrote['region_rss_bytes'])}, "
            f"AnonHugePages {size_label(wrote['anon_huge_bytes'])}); reading 64 MiB never written took "
            f"{zero['minor_faults'] - wrote['minor_faults']} faults and Rss stayed "
            f"{size_label(zero['region_rss_bytes'])} (the shared zero page)")
        ok &= mapped["region_rss_bytes"] == 0 and zero["region_rss_bytes"] == wrote["region_rss_bytes"]
        if label == "MADV_HUGEPAGE" and wrote["anon_huge_bytes"] > 0:
            caveats.append(f"with transparent huge pages (THP mode: {r['thp_enabled']}) one fault brings in "
                           f"2 MiB: {page_faults} faults for 64 MiB, not 16384")
    return {"probe": "lazy", "claim": CLAIMS["lazy"], "runs": runs, "evidence": evidence,
            "verdict": _verdict(ok, caveats), "summary": evidence}


def unmappable(work_dir: str) -> dict:
    r = _observe_in_scratch(work_dir, "unmappable")
    rows = {x["what"]: x for x in r["results"]}
    refused = lambda what: rows[what]["shared"] != "OK" and rows[what]["private"] != "OK"
    ok = refused("a directory") and refused("a pipe's read end")
    caveats = [f"{w} also refused ({x['shared']})" for w, x in rows.items()
               if w not in ("a directory", "a pipe's read end") and x["shared"] != "OK" and "regular" not in w]
    caveats += [f"{w} can be mapped" for w, x in rows.items() if x["shared"] == "OK" and "regular" not in w]
    caveats.append(f"an empty regular file maps ({rows['an empty regular file']['shared']}), but touching the "
                   f"page raises SIG{r['touch_empty_file']}; a zero length is "
                   f"{rows['a regular file, zero length']['shared']}")
    evidence = [f"{w}: MAP_SHARED {x['shared']}, MAP_PRIVATE {x['private']}" for w, x in rows.items()]
    return {"probe": "unmappable", "claim": CLAIMS["unmappable"], **r, "evidence": evidence,
            "verdict": _verdict(ok, caveats),
            "summary": evidence + [f"touching a mapped empty file: SIG{r['touch_empty_file']}"]}


def shared(work_dir: str) -> dict:
    r = _observe_in_scratch(work_dir, "shared", "shared")
    seen = r["parent_sees_child_write"] and r["parent_fresh_mapping_sees"] and r["child_sees_parent_write"]
    evidence = [
        f"parent sees the child's write: inherited mapping {r['parent_sees_child_write']}, fresh mapping "
        f"{r['parent_fresh_mapping_sees']}; child sees the parent's: {r['child_sees_parent_write']}",
        f"read() sees the write before any msync: {r['read_sees_write_before_msync']} (one page cache)",
        f"after msync and dropping the file's cache ({r['cached_pages_after_drop']} pages left), read() from "
        f"the disk finds both writes: {r['in_file_after_msync']}",
        f"two processes x {r['increments_per_process']:,} increments of one shared counter, running at once for "
        f"{r['plain_overlap_ns'] / 1e6:.1f} ms (timestamps; {r['race_rounds']} rounds): "
        f"{r['lost_updates_plain']:,} updates lost without atomics, {r['lost_updates_atomic']} with them"]
    ok = seen and r["in_file_after_msync"] and r["lost_updates_atomic"] == 0
    # a lost update shows the race; none lost shows only that the two never ran at the same instant
    # (a busy machine runs them in turns), which says nothing against the claim
    undecided = None if not ok or r["lost_updates_plain"] > 0 else (
        f"no update was lost ({r['race_rounds']} rounds with and without atomics): the two processes never ran "
        "at the same instant (a busy machine ran them in turns)")
    return {"probe": "shared", "claim": CLAIMS["shared"], **r, "evidence": evidence,
            "verdict": _verdict(ok, [], undecided), "summary": evidence}


def private(work_dir: str) -> dict:
    r = _observe_in_scratch(work_dir, "private", "private")
    c = r["child"]
    evidence = [
        f"the child wrote {r['file_pages']} pages of a MAP_PRIVATE file mapping: {c['file_write_faults']} faults, "
        f"Private_Dirty {c['file_private_dirty_before']} -> {c['file_private_dirty_after']} B, Shared_Clean "
        f"{c['file_shared_clean_before']} -> {c['file_shared_clean_after']} B (fork copies no page-table entries "
        "for a file mapping without anonymous pages: the child faults them in again)",
        f"and {r['anon_pages']} inherited anonymous pages: {c['anon_write_faults']} faults, Private_Dirty "
        f"{c['anon_private_dirty_before']} -> {c['anon_private_dirty_after']} B (shared with the parent until written)",
        f"bytes the parent saw change: {r['parent_bytes_changed']}; "
        f"bytes of the file changed: {r['file_bytes_changed']}",
        "libc.so.6 is mapped " + ", ".join(f"{m['perms']} ({size_label(m['bytes'])})" for m in r["libc_mappings"])]
    ok = (c["file_write_faults"] >= r["file_pages"] and c["anon_write_faults"] >= r["anon_pages"]
          and r["parent_bytes_changed"] == 0 and r["file_bytes_changed"] == 0
          and c["file_private_dirty_after"] == r["file_pages"] * 4096
          and all(m["perms"].endswith("p") for m in r["libc_mappings"]))
    return {"probe": "private", "claim": CLAIMS["private"], **r, "evidence": evidence,
            "verdict": _verdict(ok, []), "summary": evidence}


def shm(work_dir: str) -> dict:
    r = _observe("shm")
    magic = int(r["fs_magic"], 16)
    evidence = [
        f"shm_open(\"{r['name']}\") is the regular file {r['path']}: {r['is_regular_file']}; /dev/shm's "
        f"statfs magic {r['fs_magic']} ({'tmpfs' if magic == TMPFS_MAGIC else 'not tmpfs'})",
        f"a separately started process (exec'd) read: \"{r['reader_saw']}\"",
        f"MAP_SHARED|MAP_ANONYMOUS shared with a forked child: its write seen {r['anon_shared_child_write_seen']}; "
        f"/proc/self/maps names its backing \"{r['anon_shared_backing']}\" (shmem, the same tmpfs machinery, "
        "with no name a third process could open)"]
    ok = r["is_regular_file"] and magic == TMPFS_MAGIC and r["reader_saw"] == "written by the creator"
    return {"probe": "shm", "claim": CLAIMS["shm"], **r, "evidence": evidence,
            "verdict": _verdict(ok, []), "summary": evidence}


RUNNERS = {"read-vs-mmap": read_vs_mmap, "lazy": lazy, "unmappable": unmappable, "shared": shared,
           "private": private, "shm": shm}
assert tuple(RUNNERS) == PROBES  # one runner per claim, in the claims' order


def run(name: str, work_dir: str) -> dict:
    result = RUNNERS[name](work_dir)
    result["summary"] = result["summary"] + [f"verdict: {result['verdict']}"]
    return result
