"""Where glibc keeps its malloc state in a process that allocbench did not
start, and how that state is laid out: the target's own libc (its container's,
through /proc/PID/map_files), its build-id, then

- debuginfo: the debug file for that build-id (Debian's libc6-dbg installs it
  under /usr/lib/debug/.build-id/), whose symbol table places main_arena and
  mp_ and whose DWARF gives malloc_state, malloc_par and heap_info member by
  member (read with pyelftools, cached per build-id);
- scan: without debug information, the layouts of a table per glibc version,
  and main_arena and mp_ found in libc's .data by their initial values
  (main_arena's next points to itself with attached_threads 1; mp_ holds the
  128 KiB trim and mmap thresholds and arena_test 8).

ALLOCBENCH_SYMBOLS=debuginfo|scan forces one path.  Either answer is checked
against the live process (glibc_heap.snapshot) before a number is trusted."""
from __future__ import annotations

import json
import os
import re
import struct

from .glibc_constants import DEFAULT_MMAP_THRESHOLD, DEFAULT_TRIM_THRESHOLD
from .remote import Mapping, Process, TargetError, TargetGone, ptrace_hint

# the allocators people swap in, by the library that brings them: a process that maps one mallocs with it
OTHER_MALLOCS = {"libjemalloc": "jemalloc", "libtcmalloc": "tcmalloc", "libmimalloc": "mimalloc",
                 "libtbbmalloc": "tbbmalloc", "libhoard": "hoard", "libtoyalloc": "allocbench's toy"}
STRUCTS = {"malloc_state": ("mutex", "flags", "have_fastchunks", "fastbinsY", "top", "last_remainder", "bins",
                            "binmap", "next", "next_free", "attached_threads", "system_mem", "max_system_mem"),
           "malloc_par": ("trim_threshold", "top_pad", "mmap_threshold", "arena_test", "arena_max", "n_mmaps",
                          "n_mmaps_max", "max_n_mmaps", "no_dyn_threshold", "mmapped_mem", "max_mmapped_mem",
                          "sbrk_base", "tcache_count"),
           "_heap_info": ("ar_ptr", "prev", "size_", "mprotect_size")}  # size_: the member named size
# Layouts per glibc version, x86_64 (for the scan path): each struct's size and members' offsets.  2.36 was
# read from the DWARF of Debian's 2.36-9+deb12u14 (libc6-dbg); a version not here is refused, never guessed.
VERSION_LAYOUTS = {
    "2.36": {
        "malloc_state": {"size": 2200, "mutex": 0, "flags": 4, "have_fastchunks": 8, "fastbinsY": 16, "top": 96,
                         "last_remainder": 104, "bins": 112, "binmap": 2144, "next": 2160, "next_free": 2168,
                         "attached_threads": 2176, "system_mem": 2184, "max_system_mem": 2192},
        "malloc_par": {"size": 136, "trim_threshold": 0, "top_pad": 8, "mmap_threshold": 16, "arena_test": 24,
                       "arena_max": 32, "n_mmaps": 60, "n_mmaps_max": 64, "max_n_mmaps": 68, "no_dyn_threshold": 72,
                       "mmapped_mem": 80, "max_mmapped_mem": 88, "sbrk_base": 96, "tcache_count": 120},
        "_heap_info": {"size": 48, "ar_ptr": 0, "prev": 8, "size_": 16, "mprotect_size": 24},
    },
}
SYMBOLS = ("main_arena", "mp_")
DEBUG_ROOTS = ("/usr/lib/debug/.build-id",)


class LayoutError(TargetError):
    """glibc's state could not be found or trusted in this process: one line."""


def find_libc(process: Process) -> tuple[Mapping, str]:
    """The mapping of the target's libc at file offset 0, and the file as the target sees it.
    LayoutError names what malloc the process has instead."""
    maps = process.maps()
    names = {os.path.basename(m.path) for m in maps if m.path.startswith("/")}
    for lib, allocator in OTHER_MALLOCS.items():
        hit = next((n for n in names if n.startswith(lib)), None)
        if hit:
            raise LayoutError(f"process {process.pid} ({process.comm}) mallocs with {allocator} ({hit} is mapped), "
                              "not glibc: inspect reads glibc's malloc only")
    libc = [m for m in maps if re.match(r"libc(\.so\.6|-2\.\d+\.so)$", os.path.basename(m.path)) and m.offset == 0]
    if not libc:
        if any("musl" in n for n in names):
            raise LayoutError(f"process {process.pid} ({process.comm}) runs on musl, not glibc: nothing to read")
        raise LayoutError(f"process {process.pid} ({process.comm}) maps no libc.so.6: statically linked, or not glibc")
    return libc[0], process.file_of(libc[0])


def build_id(path: str) -> str:
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        note = elf.get_section_by_name(".note.gnu.build-id")
        for n in note.iter_notes() if note else ():
            if n["n_type"] == "NT_GNU_BUILD_ID":
                return n["n_desc"]
    raise LayoutError(f"{path}: no build-id note")


def glibc_version(path: str) -> str | None:
    """The version libc states about itself ("... release version 2.36.")."""
    with open(path, "rb") as f:
        m = re.search(rb"release version (\d+\.\d+)", f.read())
    return m.group(1).decode() if m else None


def debug_file(process: Process, bid: str) -> str | None:
    for root in (f"/proc/{process.pid}/root", ""):
        for base in DEBUG_ROOTS:
            path = f"{root}{base}/{bid[:2]}/{bid[2:]}.debug"
            if os.path.exists(path):
                return path
    return None


def _cache_path(bid: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "allocbench", "glibc", f"{bid}.json")


def from_debuginfo(path: str, bid: str) -> dict:
    """{"symbols": {name: offset}, "layouts": {...}} from the debug file: its symbol table and
    the DWARF of malloc.c and arena.c, cached per build-id (a first read takes seconds)."""
    cache = _cache_path(bid)
    try:
        with open(cache) as f:
            got = json.load(f)
        if got.get("build_id") == bid and got.get("format") == CACHE_FORMAT:
            return got
    except (OSError, ValueError):
        pass
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name in SYMBOLS} if symtab else {}
        text = malloc_text(symtab) if symtab else None
        if set(symbols) != set(SYMBOLS):
            raise LayoutError(f"{path}: the debug file names no {', '.join(set(SYMBOLS) - set(symbols))}")
        layouts = {}
        dwarf = elf.get_dwarf_info()
        for cu in dwarf.iter_CUs():
            top = cu.get_top_DIE()
            name = top.attributes.get("DW_AT_name")
            if not name or not name.value.endswith((b"malloc.c", b"arena.c")):
                continue
            text = cu_text(dwarf, cu, top) or text
            for die in top.iter_children():
                sname = die.attributes.get("DW_AT_name")
                if die.tag != "DW_TAG_structure_type" or not sname or sname.value.decode() not in STRUCTS:
                    continue
                members = {"size": die.attributes["DW_AT_byte_size"].value}
                for m in die.iter_children():
                    if m.tag == "DW_TAG_member" and "DW_AT_data_member_location" in m.attributes:
                        key = m.attributes["DW_AT_name"].value.decode()
                        members[key + "_" if key == "size" else key] = m.attributes["DW_AT_data_member_location"].value
                layouts[sname.value.decode()] = members
            if set(layouts) == set(STRUCTS):
                break
    missing = [s for s in STRUCTS if s not in layouts or not set(STRUCTS[s]) <= set(layouts[s])]
    if missing:
        raise LayoutError(f"{path}: its DWARF lacks the layout of {', '.join(missing)}")
    got = {"build_id": bid, "format": CACHE_FORMAT, "symbols": symbols, "layouts": layouts, "malloc_text": text}
    try:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        with open(cache + ".tmp", "w") as f:
            json.dump(got, f)
        os.replace(cache + ".tmp", cache)
    except OSError:
        pass  # no cache: the next read takes seconds again
    return got


CACHE_FORMAT = 3  # bumped whenever what is cached changes


def cu_text(dwarf, cu, top) -> list[int] | None:
    """[lo, hi): the code of a compilation unit (malloc.c, with arena.c and hooks.c compiled into it)."""
    attrs = top.attributes
    if "DW_AT_low_pc" in attrs and "DW_AT_high_pc" in attrs:
        lo, hi = attrs["DW_AT_low_pc"].value, attrs["DW_AT_high_pc"]
        return [lo, hi.value if hi.form == "DW_FORM_addr" else lo + hi.value]
    if "DW_AT_ranges" in attrs:
        spans = [(r.begin_offset, r.end_offset) for r in dwarf.range_lists().get_range_list_at_offset(
            attrs["DW_AT_ranges"].value, cu=cu) if hasattr(r, "begin_offset") and getattr(r, "is_absolute", True)]
        if spans:
            return [min(a for a, _ in spans), max(b for _, b in spans)]
    return None


def malloc_text(symtab) -> list[int] | None:
    """[lo, hi): the span of malloc.c's code (its functions follow its STT_FILE symbol in the
    symbol table; arena.c and hooks.c are compiled into it), for telling whether a thread stands
    inside malloc before --trim calls into it."""
    current, lo, hi = None, None, None
    for s in symtab.iter_symbols():
        kind = s["st_info"]["type"]
        if kind == "STT_FILE":
            current = s.name
        elif current == "malloc.c" and kind == "STT_FUNC" and s["st_size"]:
            lo = s["st_value"] if lo is None else min(lo, s["st_value"])
            hi = s["st_value"] + s["st_size"] if hi is None else max(hi, s["st_value"] + s["st_size"])
    return None if lo is None else [lo, hi]


def dynamic_symbol(path: str, name: str) -> int | None:
    """A function libc exports (malloc_trim), as an offset from its load address."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        table = elf.get_section_by_name(".gnu.hash")  # a hash lookup: reading all of .dynsym takes 0.1 s
        if table is not None:
            found = table.get_symbol(name)
            return found["st_value"] if found is not None and found["st_value"] else None
        dynsym = elf.get_section_by_name(".dynsym")
        return next((s["st_value"] for s in dynsym.iter_symbols() if s.name == name and s["st_value"]), None)


def from_scan(path: str, version: str | None) -> dict:
    """The layouts of this glibc version's row, and main_arena and mp_ found in the file's .data by
    their initial values: each must be found exactly once."""
    from elftools.elf.elffile import ELFFile

    layouts = VERSION_LAYOUTS.get(version or "")
    if not layouts:
        raise LayoutError(f"glibc {version or '(unknown version)'}: no layout table for the scan path")
    ms, mp = layouts["malloc_state"], layouts["malloc_par"]
    with open(path, "rb") as f:
        elf = ELFFile(f)
        data = elf.get_section_by_name(".data")
        if data is None:
            raise LayoutError(f"{path}: no .data section")
        blob, vaddr = data.data(), data["sh_addr"]
    arenas, pars = [], []
    words = struct.unpack(f"<{len(blob) // 8}Q", blob[:len(blob) // 8 * 8])
    for i in range(0, len(words)):
        at = vaddr + 8 * i
        j = i + ms["next"] // 8
        if j < len(words) and words[j] == at and i + ms["attached_threads"] // 8 < len(words) \
                and words[i + ms["attached_threads"] // 8] == 1 and words[i + ms["top"] // 8] == 0:
            arenas.append(at)
        if i + mp["n_mmaps_max"] // 8 < len(words) \
                and words[i + mp["trim_threshold"] // 8] == DEFAULT_TRIM_THRESHOLD \
                and words[i + mp["mmap_threshold"] // 8] == DEFAULT_MMAP_THRESHOLD \
                and words[i + mp["arena_test"] // 8] == 8:
            pars.append(at)
    if len(arenas) != 1 or len(pars) != 1:
        raise LayoutError(f"{path}: the scan of .data found {len(arenas)} main_arena and {len(pars)} mp_ "
                          "candidates, not one each")
    return {"symbols": {"main_arena": arenas[0], "mp_": pars[0]}, "layouts": layouts}


def locate(process: Process) -> dict:
    """Where main_arena and mp_ are in the process, their layouts, and how that was found:
    {"symbols": "debuginfo"|"scan", "build_id", "version", "libc", "main_arena", "mp_", "layouts"}."""
    libc, path = find_libc(process)
    try:
        bid = build_id(path)
        version = glibc_version(path)
        trim = dynamic_symbol(path, "malloc_trim")
    except ProcessLookupError:
        raise TargetGone(f"process {process.pid} exited while it was read") from None
    except PermissionError:
        raise TargetError(f"process {process.pid}: permission denied reading its libc ({ptrace_hint()})") from None
    except OSError as e:
        raise LayoutError(f"process {process.pid}: cannot read its libc {libc.path}: {e.strerror}") from None
    forced = os.environ.get("ALLOCBENCH_SYMBOLS", "")
    if forced not in ("", "debuginfo", "scan"):
        raise LayoutError(f"ALLOCBENCH_SYMBOLS must be debuginfo or scan, not {forced!r}")
    dbg = debug_file(process, bid) if forced != "scan" else None
    if forced == "debuginfo" and not dbg:
        raise LayoutError(f"libc build-id {bid}: no debug file under /usr/lib/debug/.build-id "
                          "(apt-get install libc6-dbg)")
    if dbg:
        found, how = from_debuginfo(dbg, bid), "debuginfo"
    else:
        try:
            found, how = from_scan(path, version), "scan"
        except LayoutError as e:
            raise LayoutError(f"glibc {version} (build-id {bid}): neither path recognises it: no debug file "
                              f"(apt-get install libc6-dbg) and {e}") from None
    base = libc.start
    text = found.get("malloc_text")
    return {"symbols": how, "build_id": bid, "version": version, "libc": libc.path,
            "main_arena": base + found["symbols"]["main_arena"], "mp_": base + found["symbols"]["mp_"],
            "layouts": found["layouts"], "malloc_text": text and [base + text[0], base + text[1]],
            "malloc_trim": trim and base + trim}
