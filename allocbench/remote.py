"""Another process, from outside, read-only: who it is, its mappings, its memory
(process_vm_readv, in batches through a page cache), which pages are resident
(/proc/PID/pagemap), and a brief stop of every thread (PTRACE_SEIZE and
PTRACE_INTERRUPT, as py-spy does) that detaches whatever happens.  Nothing here
writes to the target."""
from __future__ import annotations

import ctypes
import errno
import os
import struct
import time
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 1 << 16          # one read brings this much into the cache, from the page that holds the address
CACHE_BLOCKS = 512       # at most 32 MiB of the target's memory held here; the cache starts over past it
PAGEMAP_WINDOW = 4096    # bytes of pagemap read at a time: 512 pages, 2 MiB of address space

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long


class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_iovec), ctypes.c_ulong, ctypes.POINTER(_iovec),
                                   ctypes.c_ulong, ctypes.c_ulong]
_libc.process_vm_readv.restype = ctypes.c_ssize_t

PTRACE_POKEDATA, PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS = 5, 7, 12, 13
PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
RED_ZONE = 128  # the x86-64 ABI's: below rsp, a leaf function's own
STOP_WAIT_S = 2.0  # how long a thread may take to stop for the snapshot
_WORD = struct.Struct("<Q")
WALL = 0x40000000  # __WALL: wait for threads that are not our children


class TargetError(Exception):
    """A process that cannot be read as asked: one line, nothing done to it."""


class TargetGone(TargetError):
    """The process exited while it was read."""


@dataclass
class Mapping:
    start: int
    end: int
    perms: str
    offset: int
    path: str

    @property
    def size(self) -> int:
        return self.end - self.start


CAP_SYS_PTRACE = 19


def has_cap_sys_ptrace() -> bool:
    """Whether this process's effective capabilities hold CAP_SYS_PTRACE (/proc/self/status CapEff)."""
    try:
        with open("/proc/self/status") as f:
            eff = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    except (OSError, ValueError):
        return False
    return bool(eff >> CAP_SYS_PTRACE & 1)


def ptrace_hint() -> str:
    if has_cap_sys_ptrace():
        # CAP_SYS_PTRACE passes the kernel's own checks (Yama's too) in this user namespace
        return ("this process has CAP_SYS_PTRACE, so something else refused: a security module (SELinux, "
                "AppArmor, a BPF LSM), or the target lives in a user namespace this one has no say over")
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope") as f:
            scope = f.read().strip()
    except OSError:
        scope = "not set (no Yama on this kernel)"
    return (f"kernel.yama.ptrace_scope is {scope}; reading another user's process needs CAP_SYS_PTRACE "
            "(run as root, or sudo setcap cap_sys_ptrace+ep on the interpreter)")


class Process:
    def __init__(self, pid: int):
        self.pid = pid
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except FileNotFoundError:
            raise TargetError(f"no such process: {pid}") from None
        except PermissionError:
            raise TargetError(f"process {pid}: permission denied ({ptrace_hint()})") from None
        self.comm = stat[stat.index(b"(") + 1:stat.rindex(b")")].decode(errors="replace")
        flags = int(stat[stat.rindex(b")") + 2:].split()[6])
        if flags & 0x00200000:  # PF_KTHREAD
            raise TargetError(f"process {pid} ({self.comm}) is a kernel thread: it has no malloc")
        self._cache: dict[int, tuple[int, bytes]] = {}  # page -> (block start, block)
        self._blocks = 0
        self._pagemap: dict[int, bytes] = {}  # window start (page number) -> its pagemap entries
        self.reads = 0

    # ---- who it is ----

    def maps(self) -> list[Mapping]:
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            raise TargetGone(f"process {self.pid} exited while it was read") from None
        except PermissionError:
            raise TargetError(f"process {self.pid}: permission denied reading its maps ({ptrace_hint()})") from None
        out = []
        for line in lines:
            parts = line.split(None, 5)
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            out.append(Mapping(lo, hi, parts[1], int(parts[2], 16), parts[5] if len(parts) > 5 else ""))
        if not out:
            raise TargetGone(f"process {self.pid} exited while it was read")
        return out

    def file_of(self, m: Mapping) -> str:
        """A mapped file as the process sees it (its container's, never ours): map_files, else its root."""
        via = f"/proc/{self.pid}/map_files/{m.start:x}-{m.end:x}"
        if os.path.exists(via):
            return via
        return f"/proc/{self.pid}/root{m.path}"

    def threads(self) -> list[int]:
        try:
            return sorted(int(t) for t in os.listdir(f"/proc/{self.pid}/task"))
        except FileNotFoundError:
            raise TargetGone(f"process {self.pid} exited while it was read") from None

    def smaps(self) -> list[tuple[Mapping, dict]]:
        """Each mapping with its smaps counters (bytes)."""
        try:
            with open(f"/proc/{self.pid}/smaps") as f:
                text = f.read()
        except FileNotFoundError:
            raise TargetGone(f"process {self.pid} exited while it was read") from None
        out, current = [], None
        for line in text.splitlines():
            head = line.split(None, 5)
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                current = (Mapping(lo, hi, head[1], int(head[2], 16), head[5] if len(head) > 5 else ""), {})
                out.append(current)
            elif current and len(head) >= 3 and head[2] == "kB":
                current[1][head[0].rstrip(":")] = int(head[1]) * 1024
        return out

    # ---- its memory ----

    def read(self, addr: int, n: int) -> bytes:
        """n bytes at addr, through a page cache filled CHUNK bytes at a time from the
        page that holds addr (a list walk touches many small records close together);
        TargetError where nothing is mapped."""
        out = bytearray()
        while n > 0:
            page = addr - addr % PAGE
            hit = self._cache.get(page)
            if hit is None:
                if self._blocks >= CACHE_BLOCKS:
                    self._cache.clear()
                    self._blocks = 0
                block = self._read_raw(page, CHUNK)
                self._blocks += 1
                for k in range(0, len(block), PAGE):
                    self._cache[page + k] = (page, block)
                hit = (page, block)
            base, block = hit
            take = min(n, base + len(block) - addr)
            if take <= 0:
                raise TargetError(f"process {self.pid}: nothing readable at {addr:#x}")
            out += block[addr - base:addr - base + take]
            addr, n = addr + take, n - take
        return bytes(out)

    def _read_raw(self, addr: int, n: int) -> bytes:
        """Up to n bytes at addr (fewer where the mapping ends: process_vm_readv reads up to the fault)."""
        buf = ctypes.create_string_buffer(n)
        local, remote = _iovec(ctypes.addressof(buf), n), _iovec(addr, n)
        self.reads += 1
        got = _libc.process_vm_readv(self.pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if got <= 0:
            e = ctypes.get_errno() if got < 0 else errno.EFAULT
            if e == errno.ESRCH:
                raise TargetGone(f"process {self.pid} exited while it was read")
            if e == errno.EPERM:
                raise TargetError(f"process {self.pid}: permission denied reading its memory ({ptrace_hint()})")
            raise TargetError(f"process {self.pid}: cannot read {n} bytes at {addr:#x}: {os.strerror(e)}")
        return buf.raw[:got]

    def word(self, addr: int) -> int:
        """The 8-byte word at addr: straight from the cached block where it lies in one (the list walks' case)."""
        hit = self._cache.get(addr - addr % PAGE)
        if hit is not None and addr + 8 <= hit[0] + len(hit[1]):
            return _WORD.unpack_from(hit[1], addr - hit[0])[0]
        return _WORD.unpack(self.read(addr, 8))[0]

    def forget(self) -> None:
        """Drop what was read: the next read sees the process as it is now."""
        self._cache.clear()
        self._pagemap.clear()
        self._blocks = 0

    def resident(self, lo: int, hi: int) -> int:
        """Bytes of whole pages in [lo, hi) that are resident (pagemap's present bit), the
        shared zero page apart (a page only ever read holds no memory of its own: reading
        the target's memory maps it into pages the program never wrote)."""
        return self.resident_spans([(lo, hi)])

    def resident_spans(self, spans) -> int:
        """resident() summed over spans [lo, hi), with one pagemap read per window they touch."""
        zero, count = zero_page_pfn(), 0
        per = PAGEMAP_WINDOW // 8
        for lo, hi in spans:
            page, last = -(-lo // PAGE), hi // PAGE
            while page < last:
                window = page - page % per
                entries = self._pagemap.get(window)
                if entries is None:
                    entries = self._pagemap[window] = memoryview(self._read_pagemap(window, per)).cast("Q")
                stop = min(last, window + per)
                for e in entries[page - window:stop - window]:
                    count += e >> 63 and (zero is None or e & PFN_MASK != zero)
                page = stop
        return count * PAGE

    def _read_pagemap(self, first: int, pages: int) -> bytes:
        try:
            with open(f"/proc/{self.pid}/pagemap", "rb") as f:
                f.seek(first * 8)
                return f.read(pages * 8).ljust(pages * 8, b"\0")
        except FileNotFoundError:
            raise TargetGone(f"process {self.pid} exited while it was read") from None


PFN_MASK = (1 << 55) - 1
_ZERO: list = []


def zero_page_pfn() -> int | None:
    """The shared zero page's frame (pagemap shows PFNs to root only): a page of our own, read, never written."""
    if not _ZERO:
        import mmap

        # private: a read fault maps the zero page there; a shared anonymous mapping (mmap's default) is
        # shmem, whose read fault takes a page of its own, freed at close and then anyone's, a target's too
        m = mmap.mmap(-1, PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        _ = m[0]
        addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(addr // PAGE * 8)
            e = struct.unpack("<Q", f.read(8))[0]
        _ZERO.append(e & PFN_MASK if e >> 63 and e & PFN_MASK else None)
        del _
        m.close()
    return _ZERO[0]


class Regs(ctypes.Structure):
    """struct user_regs_struct (x86-64)."""
    _fields_ = [(n, ctypes.c_ulonglong) for n in (
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")]


def get_regs(tid: int) -> Regs:
    regs = Regs()
    if _libc.ptrace(PTRACE_GETREGS, tid, None, ctypes.byref(regs)) != 0:
        raise TargetError(f"thread {tid}: PTRACE_GETREGS: {os.strerror(ctypes.get_errno())}")
    return regs


def set_regs(tid: int, regs: Regs) -> None:
    if _libc.ptrace(PTRACE_SETREGS, tid, None, ctypes.byref(regs)) != 0:
        raise TargetError(f"thread {tid}: PTRACE_SETREGS: {os.strerror(ctypes.get_errno())}")


def call(tid: int, function: int, arg: int, timeout_s: float) -> tuple[int, int]:
    """Call function(arg) on stopped thread tid the way a debugger makes an inferior call: its
    registers saved, the call made on its stack below the red zone with a return address of 0,
    so the return traps (SIGSEGV at 0), and its registers restored whatever happens.  Returns
    (the function's return value, ns it ran).  TargetError when it does not return in time
    (the registers are restored all the same) or stops for another reason."""
    saved = get_regs(tid)
    regs = Regs.from_buffer_copy(saved)
    sp = (saved.rsp - RED_ZONE - 256) & ~0xF
    sp -= 8  # the return address: at a call's entry rsp + 8 is 16-aligned
    regs.rsp, regs.rip, regs.rdi, regs.rax = sp, function, arg, 0
    regs.orig_rax = (1 << 64) - 1  # -1: no syscall to restart on the way out of this stop
    try:
        if _libc.ptrace(PTRACE_POKEDATA, tid, ctypes.c_void_p(sp), None) != 0:
            raise TargetError(f"thread {tid}: cannot write the return address: {os.strerror(ctypes.get_errno())}")
        set_regs(tid, regs)
        t0 = time.monotonic_ns()
        if _libc.ptrace(PTRACE_CONT, tid, None, None) != 0:
            raise TargetError(f"thread {tid}: PTRACE_CONT: {os.strerror(ctypes.get_errno())}")
        deadline = time.monotonic() + timeout_s
        while True:
            got, status = os.waitpid(tid, WALL | os.WNOHANG)
            if got:
                break
            if time.monotonic() > deadline:
                _libc.ptrace(PTRACE_INTERRUPT, tid, None, None)
                os.waitpid(tid, WALL)
                raise TargetError(f"the call did not return within {timeout_s:g} s: stopped and put back")
            time.sleep(0.0005)
        ns = time.monotonic_ns() - t0
        done = get_regs(tid)
        if not (os.WIFSTOPPED(status) and os.WSTOPSIG(status) == 11 and done.rip == 0):
            raise TargetError(f"the call stopped at {done.rip:#x} (status {status:#x}), not on its return")
        return done.rax, ns
    finally:
        set_regs(tid, saved)  # as it was, down to the syscall it was in (restarted on the way out)


class Stopped:
    """with Stopped(process): every thread stopped (PTRACE_SEIZE, then PTRACE_INTERRUPT)
    for the snapshot, and detached on the way out whatever happens; `ns` is how
    long the process was stopped.  Stops nothing when `stop` is false."""

    def __init__(self, process: Process, stop: bool = True):
        self.process, self.stop, self.seized, self.ns = process, stop, [], None

    def __enter__(self):
        if not self.stop:
            return self
        self.t0 = time.monotonic_ns()
        try:
            for _ in range(3):  # threads started meanwhile are caught on the next pass
                new = [t for t in self.process.threads() if t not in self.seized]
                if not new:
                    break
                for tid in new:
                    self._seize(tid)
        except BaseException:
            self._release()
            raise
        return self

    def _seize(self, tid: int) -> None:
        if _libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
            e = ctypes.get_errno()
            if e == errno.ESRCH:
                return  # the thread exited meanwhile
            if e == errno.EPERM:
                raise TargetError(f"process {self.process.pid}: cannot stop it: permission denied ({ptrace_hint()}; "
                                  "or it is traced already: --no-stop reads it without stopping)")
            raise TargetError(f"process {self.process.pid}: PTRACE_SEIZE: {os.strerror(e)}")
        self.seized.append(tid)
        if _libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
            return
        deadline = time.monotonic() + STOP_WAIT_S  # a thread in uninterruptible sleep stops when it wakes
        while True:
            try:
                if os.waitpid(tid, WALL | os.WNOHANG)[0]:
                    return
            except ChildProcessError:
                return  # it exited meanwhile
            if time.monotonic() > deadline:
                raise TargetError(f"process {self.process.pid}: thread {tid} did not stop within {STOP_WAIT_S:g} s "
                                  "(uninterruptible sleep?): nothing was read; --no-stop reads it running")
            time.sleep(0.0002)

    def _release(self) -> None:
        for tid in self.seized:
            _libc.ptrace(PTRACE_DETACH, tid, None, None)
        if self.stop and hasattr(self, "t0"):
            self.ns = time.monotonic_ns() - self.t0
        self.seized = []

    def __exit__(self, *exc):
        self._release()
        return False
