"""A running process's glibc heap, read from outside (allocbench inspect PID):
mp_, every arena of the ring with its bins and heaps, mallinfo2 as the
process would compute it about itself (glibc 2.36 malloc.c int_mallinfo),
what a malloc_trim(0) would return now (mtrim and systrim, page by page from
pagemap), the RSS split by who holds it, and findings in the program's terms.

tcache chunks count as in use, as mallinfo2 counts them.  Nothing here writes
to the target."""
from __future__ import annotations

import struct

from . import glibc_layout
from .glibc_constants import DEFAULT_MMAP_THRESHOLD, HEAP_MAX_SIZE, MINSIZE
from .remote import PAGE, Process, Stopped, TargetError, TargetGone, call, get_regs
from .units import human_bytes

NBINS, NFASTBINS = 128, 10
MIN_LARGE_SIZE = 64 * 16          # smallbins hold chunks below this (64-bit)
CHUNK_HEADER = 48                 # sizeof(struct malloc_chunk): what mtrim leaves before the pages it returns
PREV_INUSE, IS_MMAPPED, NON_MAIN_ARENA = 1, 2, 4
NONCONTIGUOUS = 2  # malloc_state.flags: the main arena grew by mmap once brk could not (its top may lie anywhere)
MAX_ARENAS = 4096
MALLINFO2_FIELDS = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                    "keepcost")
CHUNK_RECORD = struct.Struct("<QQII")  # csrc/lib/remote_heap.h ab_free_chunk: addr, size_word, bin, arena
INT_FIELDS = {"mutex", "flags", "have_fastchunks", "hp_flags", "n_mmaps", "n_mmaps_max", "max_n_mmaps",
              "no_dyn_threshold"}


class HeapError(TargetError):
    """What was read does not hold together: the layout does not fit this process."""


def _fields(process: Process, base: int, layout: dict, names) -> dict:
    out = {}
    for name in names:
        off = layout[name]
        out[name.rstrip("_")] = struct.unpack("<i" if name in INT_FIELDS else "<Q", process.read(
            base + off, 4 if name in INT_FIELDS else 8))[0]
    return out


def chunksize(word: int) -> int:
    return word & ~(PREV_INUSE | IS_MMAPPED | NON_MAIN_ARENA)


class Walker:
    """One snapshot's reads of glibc's structures, bounded: every list is capped by what the
    arena could hold, and a list that loops or is torn is an error, never a hang (the bins are
    walked in C: csrc/lib/remote_heap.c)."""

    def __init__(self, process: Process, where: dict):
        self.p, self.where = process, where
        self.ms = where["layouts"]["malloc_state"]
        self.mp_layout = where["layouts"]["malloc_par"]
        self.hi = where["layouts"]["_heap_info"]

    def mp(self) -> dict:
        return _fields(self.p, self.where["mp_"], self.mp_layout, glibc_layout.STRUCTS["malloc_par"])

    def arena_addresses(self) -> list[int]:
        main, seen, a = self.where["main_arena"], [], self.where["main_arena"]
        while True:
            seen.append(a)
            a = self.p.word(a + self.ms["next"])
            if a == main:
                return seen
            if a in seen or len(seen) >= MAX_ARENAS or a == 0:
                raise HeapError(f"the arena ring does not return to main_arena (at {len(seen)} arenas)")

    def heaps(self, top: int, arena: int) -> list[dict]:
        """A thread arena's heaps, newest first (heap_info chain from the top chunk's heap)."""
        out, h = [], top & ~(HEAP_MAX_SIZE - 1)
        while h:
            info = _fields(self.p, h, self.hi, ("ar_ptr", "prev", "size_", "mprotect_size"))
            if info["ar_ptr"] != arena:
                raise HeapError(f"heap {h:#x} names arena {info['ar_ptr']:#x}, not {arena:#x}")
            out.append({"address": h, "size": info["size"], "mprotect_size": info["mprotect_size"]})
            if len(out) > MAX_ARENAS:
                raise HeapError(f"the heaps of arena {arena:#x} form a loop")
            h = info["prev"]
        return out

    def arenas(self, prior: tuple[list[int], bytes] | None = None) -> list[dict]:
        """Every arena of the ring with its free chunks: the lists of all of them walked in C, in
        lockstep (csrc/lib/remote_heap.c), while the process is stopped.  `prior` (a walk of the
        same arenas made while it ran: self.walked) is checked rather than walked again."""
        from ._native import walk_arenas

        addresses = self.arena_addresses()
        raw = []
        for index, address in enumerate(addresses):
            st = _fields(self.p, address, self.ms, ("flags", "top", "attached_threads", "system_mem",
                                                     "max_system_mem"))
            raw.append({"index": index, "address": address, "main": index == 0, "st": st, "chunks": [],
                        "top_size": chunksize(self.p.word(st["top"] + 8)) if st["top"] else 0,
                        "heaps": [] if index == 0 else self.heaps(st["top"], address)})
        cap = sum(a["st"]["system_mem"] for a in raw) // MINSIZE + 2 * len(raw)
        try:
            walked, reads = walk_arenas(self.p.pid, addresses, self.ms["fastbinsY"], self.ms["bins"], NFASTBINS,
                                        NBINS, cap, prior[1] if prior and prior[0] == addresses else None)
        except ValueError as e:
            raise HeapError(str(e)) from None
        self.p.reads += reads
        self.walked = (addresses, walked)
        return raw


def add_chunks(raw: list[dict], walked: bytes) -> None:
    """The walk's free chunks (ab_free_chunk records) put in their arenas: done after the stop."""
    for address, size_word, b, a in CHUNK_RECORD.iter_unpack(walked):
        raw[a]["chunks"].append((b, address, size_word))


def classify(raw: dict) -> dict:
    """An arena's free chunks by kind (after the stop: nothing here reads the process)."""
    st, top_size, chunks = raw["st"], raw["top_size"], raw["chunks"]
    fast = [(c, chunksize(w)) for b, c, w in chunks if b < NFASTBINS]
    kinds = {"unsorted": [], "small": [], "large": []}
    flag_bits = 0
    for b, c, w in chunks:
        if b >= NFASTBINS:
            size = chunksize(w)
            flag_bits += w - size  # malloc_info sums the bins' size words with their flags (chunksize_nomask)
            kinds["unsorted" if b == NFASTBINS + 1 else "small" if size < MIN_LARGE_SIZE else "large"].append(
                (c, size))
    regular = kinds["unsorted"] + kinds["small"] + kinds["large"]
    free = fast + regular
    return {"index": raw["index"], "address": raw["address"], "main": raw["main"],
            "attached_threads": st["attached_threads"], "system_bytes": st["system_mem"],
            "max_system_bytes": st["max_system_mem"], "top": st["top"], "top_bytes": top_size,
            "noncontiguous": bool(st["flags"] & NONCONTIGUOUS),
            "fast": fast, "regular": regular,
            "free_bytes": {"fast": sum(s for _, s in fast), **{k: sum(s for _, s in v) for k, v in kinds.items()},
                           "top": top_size},
            "free_chunks": len(free), "largest_free_bytes": max((s for _, s in free), default=0),
            "bin_flag_bits": flag_bits, "heaps": raw["heaps"]}


def mallinfo2(arenas: list[dict], mp: dict) -> dict:
    """What mallinfo2() returns inside the process (int_mallinfo, arena by arena)."""
    m = dict.fromkeys(MALLINFO2_FIELDS, 0)
    for a in arenas:
        fastavail = a["free_bytes"]["fast"]
        avail = a["top_bytes"] + fastavail + sum(s for _, s in a["regular"])
        m["smblks"] += len(a["fast"])
        m["ordblks"] += 1 + len(a["regular"])  # the top always counts
        m["fordblks"] += avail
        m["uordblks"] += a["system_bytes"] - avail
        m["arena"] += a["system_bytes"]
        m["fsmblks"] += fastavail
        if a["main"]:
            m["hblks"], m["hblkhd"], m["keepcost"] = mp["n_mmaps"], mp["mmapped_mem"], a["top_bytes"]
    return m


def trimmable(p: Process, a: dict) -> tuple[int, int]:
    """(resident bytes malloc_trim(0) would give back from this arena, resident bytes of its free
    chunks past their bookkeeping).  mtrim consolidates the fastbins first (their chunks merge with
    free neighbours and the top), then madvises the whole pages of every binned chunk past its
    header; systrim then shrinks the main arena's top to a page above MINSIZE."""
    spans = sorted((c, c + s) for c, s in a["fast"] + a["regular"])
    top_lo = a["top"]
    merged: list[list[int]] = []
    for lo, hi in spans:
        if merged and merged[-1][1] == lo:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi])
    top_hi = top_lo + a["top_bytes"]
    if merged and merged[-1][1] == top_lo:  # consolidation gives the top its free neighbour
        top_lo = merged.pop()[0]
    back = held = p.resident_spans((lo + CHUNK_HEADER, hi) for lo, hi in merged)
    if a["top"]:
        held += p.resident(top_lo + CHUNK_HEADER, top_hi)
        if a["main"]:
            top_size = top_hi - top_lo
            extra = (top_size - MINSIZE - 1) // PAGE * PAGE if top_size > MINSIZE + 1 else 0
            back += p.resident(top_hi - extra, top_hi)
    return back, held


def rss_split(p: Process, arenas: list[dict]) -> dict:
    """The process's RSS by who holds it, adding up to smaps' total: the brk heap, thread-arena
    heaps, mmapped chunks (anonymous mappings that are chains of chunks with IS_MMAPPED set),
    other anonymous memory (thread stacks, a runtime's own mappings) and file pages."""
    heaps = [(h["address"], h["address"] + HEAP_MAX_SIZE) for a in arenas for h in a["heaps"]]
    out = dict.fromkeys(("brk_heap_bytes", "arena_heap_bytes", "mmapped_chunk_bytes", "other_anon_bytes",
                         "file_bytes"), 0)
    total = 0
    for m, c in p.smaps():
        rss = c.get("Rss", 0)
        total += rss
        if m.path == "[heap]":
            out["brk_heap_bytes"] += rss
        elif any(lo <= m.start < hi for lo, hi in heaps):
            out["arena_heap_bytes"] += rss
        elif not m.path:  # an unnamed anonymous mapping: mmapped chunks, or someone else's
            chunks = _mmapped_chunks(p, m) if m.perms.startswith("rw") else 0
            out["mmapped_chunk_bytes"] += chunks
            out["other_anon_bytes"] += rss - chunks
        else:  # files (their written private pages are anonymous), the stack, the vdso
            anon = min(rss, c.get("Anonymous", 0))
            out["file_bytes"] += rss - anon
            out["other_anon_bytes"] += anon
    out["total_bytes"] = total
    return out


def _mmapped_chunks(p: Process, m) -> int:
    """Resident bytes of the mmapped chunks that tile mapping m from its start (glibc gives each
    its own mapping; adjacent ones merge into one VMA): prev_size 0, IS_MMAPPED, whole pages."""
    at, resident = m.start, 0
    while at + 16 <= m.end:
        try:
            prev, size_word = struct.unpack("<QQ", p.read(at, 16))
        except TargetError:
            break
        size = chunksize(size_word)
        if prev or not size_word & IS_MMAPPED or size < PAGE or size % PAGE or at + size > m.end:
            break
        resident += p.resident(at, at + size)
        at += size
    return resident


def snapshot(pid: int, stop: bool = True) -> dict:
    """The process's glibc heap now (see the module's doc).  --no-stop reads it twice while it
    runs and keeps only what both reads agree on."""
    try:
        return _snapshot(pid, stop)
    except (FileNotFoundError, ProcessLookupError):  # one of its /proc files, gone with it
        raise TargetGone(f"process {pid} exited while it was read") from None


def _snapshot(pid: int, stop: bool) -> dict:
    p = Process(pid)
    where = glibc_layout.locate(p)
    if stop:  # the stop covers glibc's structures only; the pages' residency and smaps are read after it
        prior = _walk_running(p, where)
        with Stopped(p) as held:
            walked = _walk(p, where, prior)
        snap = _figures(p, where, *walked)
        snap["stopped_ns"] = held.ns
    else:
        first = _figures(p, where, *_walk(p, where))
        p.forget()
        snap = _agree(first, _figures(p, where, *_walk(p, where)))
        snap["stopped_ns"] = None
    return _finish(snap, p, where, stop)


def as_record(snap: dict, **extra) -> dict:
    """A snapshot as a line of a results file (--out, --watch, make bench's results/inspect.jsonl)."""
    return {"kind": "inspect", "allocator": "glibc", "status": "ok", **extra, **snap}


def _finish(snap: dict, p: Process, where: dict, stopped: bool) -> dict:
    """A snapshot's who and how (the process, the libc, the path to its layout), and its findings."""
    snap.update({"pid": p.pid, "comm": p.comm, "symbols": where["symbols"], "glibc": where["version"],
                 "build_id": where["build_id"], "libc": where["libc"], "stopped": stopped,
                 "tcache": "chunks in the thread caches count as in use, as mallinfo2 counts them",
                 "reads": p.reads})
    snap["findings"] = findings(snap)
    return snap


class TrimRefused(TargetError):
    """--trim would not be safe now (a malloc lock held, a thread inside malloc): nothing was changed."""


class TrimFailed(TargetError):
    """The call into the process did not return as it should (it was put back as it was)."""


def rss_now(p: Process) -> int:
    with open(f"/proc/{p.pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) * 1024
    raise TargetError(f"process {p.pid}: no Rss in its smaps_rollup")


def trim(pid: int, timeout_s: float = 10.0) -> dict:
    """malloc_trim(0) inside the process, with every thread stopped, called on the main thread the
    way a debugger makes an inferior call; refused (TrimRefused, nothing changed) while any arena's
    mutex is held or any thread stands inside malloc's code.  Returns the snapshot taken just
    before, with "trim": the RSS it returned (smaps_rollup before and after), the call's pause,
    malloc_trim's own answer and the prediction beside them."""
    p = Process(pid)
    where = glibc_layout.locate(p)
    if not where.get("malloc_text") or not where.get("malloc_trim"):
        raise TrimRefused("--trim needs to know where malloc's code is, to call it only from outside it: that "
                          "comes from the debug file (apt-get install libc6-dbg); the scan path cannot tell")
    lo, hi = where["malloc_text"]
    prior = _walk_running(p, where)
    with Stopped(p) as held:
        mp, raw, walked = _walk(p, where, prior)
        for a in raw:
            if struct.unpack("<i", p.read(a["address"] + where["layouts"]["malloc_state"]["mutex"], 4))[0]:
                raise TrimRefused(f"arena {a['index']} ({a['address']:#x}) is locked: a thread is inside malloc")
        for tid in held.seized:
            rip = get_regs(tid).rip
            if lo <= rip < hi:
                raise TrimRefused(f"thread {tid} stands inside malloc's code ({rip:#x}): try again")
        snap = _figures(p, where, mp, raw, walked)  # the prediction, before anything changes
        tid = pid if pid in held.seized else held.seized[0]
        before = rss_now(p)
        try:
            answer, pause_ns = call(tid, where["malloc_trim"], 0, timeout_s)
        except TargetError as e:
            raise TrimFailed(f"malloc_trim(0) in process {pid}: {e}") from None
        after = rss_now(p)
    snap["stopped_ns"] = held.ns
    snap["trim"] = {"returned_bytes": before - after, "rss_before_bytes": before, "rss_after_bytes": after,
                    "pause_ns": pause_ns, "malloc_trim_returned": int(answer & 0xFFFFFFFF),
                    "predicted_bytes": snap["totals"]["trimmable_bytes"], "thread": tid}
    return _finish(snap, p, where, True)


def _check(p: Process, where: dict, mp: dict, arenas: list[dict]) -> None:
    """The layout holds for this process: the main arena's top inside [heap] (or, where brk could not
    grow it and glibc went on with mmap, in a read-write mapping), mp_.sbrk_base at the heap's start,
    and every arena in a read-write mapping."""
    maps = p.maps()
    parts = [m for m in maps if m.path == "[heap]"]  # the brk heap can be several mappings (split by madvise)
    heap = parts and type(parts[0])(parts[0].start, parts[-1].end, parts[0].perms, 0, "[heap]")
    main = arenas[0]
    writable = lambda addr: any(m.start <= addr < m.end and m.perms.startswith("rw") for m in maps)
    if heap and main["top"] and not heap.start <= main["top"] < heap.end and not (
            main["noncontiguous"] and writable(main["top"])):
        raise HeapError(f"main_arena's top {main['top']:#x} lies outside [heap] {heap.start:#x}-{heap.end:#x}")
    if heap and mp["sbrk_base"] and mp["sbrk_base"] != heap.start:
        raise HeapError(f"mp_.sbrk_base {mp['sbrk_base']:#x} is not the start of [heap] {heap.start:#x}")
    for a in arenas:
        if not writable(a["address"]):
            raise HeapError(f"arena {a['address']:#x} lies in no read-write mapping")


def _walk(p: Process, where: dict, prior=None) -> tuple[dict, list[dict], bytes]:
    """mp_, every arena and their free chunks: what must be read while nothing changes."""
    w = Walker(p, where)
    mp, raw = w.mp(), w.arenas(prior)
    return mp, raw, w.walked[1]


def _walk_running(p: Process, where: dict):
    """The free lists walked once before the stop, so that the stopped walk only checks them (the
    pages read again in parallel batches, not one round trip per step of the longest list).  A
    heap that moves under this walk just leaves less to check: None if it could not be read."""
    w = Walker(p, where)
    try:
        w.arenas()
    except TargetGone:
        raise
    except TargetError:
        return None
    finally:
        p.forget()  # what the stopped walk reads must be read again, not come from this walk's page cache
    return w.walked


def _figures(p: Process, where: dict, mp: dict, raw: list[dict], walked: bytes) -> dict:
    add_chunks(raw, walked)
    arenas = [classify(a) for a in raw]
    _check(p, where, mp, arenas)
    info = mallinfo2(arenas, mp)
    out_arenas = []
    for a in arenas:
        back, held = trimmable(p, a)
        out_arenas.append({
            **{k: a[k] for k in ("index", "address", "main", "attached_threads", "system_bytes", "top_bytes",
                                 "free_bytes", "free_chunks", "largest_free_bytes", "heaps")},
            "in_use_bytes": a["system_bytes"] - sum(a["free_bytes"].values()),
            "free_resident_bytes": held, "trimmable_bytes": back,
            "malloc_info": {"fast": {"count": len(a["fast"]), "size": a["free_bytes"]["fast"]},
                            "rest": {"count": 1 + len(a["regular"]),
                                     "size": a["top_bytes"] + sum(s for _, s in a["regular"]) + a["bin_flag_bits"]},
                            "system_current": a["system_bytes"], "system_max": a["max_system_bytes"],
                            "aspace_total": a["system_bytes"] if a["main"] else sum(h["size"] for h in a["heaps"]),
                            "aspace_mprotect": a["system_bytes"] if a["main"] else
                            sum(h["mprotect_size"] for h in a["heaps"])}})
    totals = {k: sum(a[k] for a in out_arenas) for k in ("system_bytes", "in_use_bytes", "free_resident_bytes",
                                                          "trimmable_bytes")}
    totals["free_bytes"] = sum(sum(a["free_bytes"].values()) for a in out_arenas)
    totals["mmapped_bytes"] = mp["mmapped_mem"]
    mp_out = {k: mp[k] for k in ("mmap_threshold", "trim_threshold", "top_pad", "n_mmaps", "n_mmaps_max",
                                 "mmapped_mem", "max_mmapped_mem", "arena_max", "arena_test", "sbrk_base")}
    mp_out["no_dyn_threshold"] = bool(mp["no_dyn_threshold"])
    mp_out["threshold_risen"] = mp["mmap_threshold"] > DEFAULT_MMAP_THRESHOLD and not mp["no_dyn_threshold"]
    return {"mp": mp_out, "mallinfo2": info, "arenas": out_arenas, "totals": totals, "rss": rss_split(p, arenas)}


def _agree(a: dict, b: dict) -> dict:
    """Two reads of a running process: the figures both agree on; the rest null, named in `unsettled`."""
    out, unsettled = dict(a), []
    for key in ("mallinfo2", "totals", "mp"):
        out[key] = {k: (v if b[key].get(k) == v else None) for k, v in a[key].items()}
        unsettled += [f"{key}.{k}" for k, v in out[key].items() if v is None and a[key][k] is not None]
    if [x["address"] for x in a["arenas"]] != [x["address"] for x in b["arenas"]]:
        unsettled.append("arenas")
        out["arenas"] = []
    else:
        for x, y in zip(out["arenas"], b["arenas"]):
            for k in ("system_bytes", "in_use_bytes", "free_chunks", "largest_free_bytes", "top_bytes",
                      "free_resident_bytes", "trimmable_bytes"):
                if x[k] != y[k]:
                    x[k] = None
                    unsettled.append(f"arenas[{x['index']}].{k}")
    out["unsettled"] = unsettled
    return out


def findings(s: dict) -> list[str]:
    """Sentences in the program's terms, each only where the numbers show it."""
    out = []
    mp, t = s["mp"], s["totals"]
    threads = [a for a in s["arenas"] if not a["main"] and a["system_bytes"]]
    if threads and all(a["system_bytes"] is not None and a["in_use_bytes"] is not None for a in threads):
        system = sum(a["system_bytes"] for a in threads)
        free = system - sum(a["in_use_bytes"] for a in threads)
        back = sum(a["trimmable_bytes"] or 0 for a in threads)
        if free > max(MINSIZE, system // 2) and free >= 1 << 20:
            out.append(f"{len(threads)} thread arena(s) hold {human_bytes(free)} free ({free / system:.0%} of their "
                       f"{human_bytes(system)}); malloc_trim(0) would return {human_bytes(back)} of it now; "
                       f"GLIBC_TUNABLES=glibc.malloc.arena_max=1 bounds this at the next start")
    if mp.get("threshold_risen"):
        out.append(f"the mmap threshold has risen to {human_bytes(mp['mmap_threshold'])} (trim threshold "
                   f"{human_bytes(mp['trim_threshold'])}): blocks up to that size now stay on the heap after free; "
                   f"GLIBC_TUNABLES=glibc.malloc.mmap_threshold={DEFAULT_MMAP_THRESHOLD} keeps the default")
    main = next((a for a in s["arenas"] if a["main"]), None)
    if main and main["trimmable_bytes"] and main["trimmable_bytes"] >= 1 << 20:
        out.append(f"the main arena holds {human_bytes(main['free_resident_bytes'])} of free pages in RAM; "
                   f"malloc_trim(0) would return {human_bytes(main['trimmable_bytes'])} now")
    rss = s["rss"]["total_bytes"]
    if t["free_resident_bytes"] and rss and t["free_resident_bytes"] >= rss // 4:
        out.append(f"{t['free_resident_bytes'] / rss:.0%} of the process's RSS ({human_bytes(t['free_resident_bytes'])}"
                   f" of {human_bytes(rss)}) is memory malloc holds free")
    return out
