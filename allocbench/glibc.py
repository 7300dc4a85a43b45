"""glibc's malloc API from Python: mallopt (validated), mallinfo2, malloc_trim,
malloc_info, the heap top, and Block, an owning handle for one malloc'd block."""
from __future__ import annotations

from typing import NamedTuple

from . import _native
from ._native import Block, glibc_version, heap_top
from .glibc_constants import MMAP_THRESHOLD_MAX

__all__ = [
    "Block", "Mallinfo2", "MALLOPT_PARAMS", "glibc_version", "heap_top", "mallinfo2",
    "malloc_info", "malloc_trim", "mallopt", "param_of",
    "M_MXFAST", "M_TRIM_THRESHOLD", "M_TOP_PAD", "M_MMAP_THRESHOLD", "M_MMAP_MAX",
    "M_CHECK_ACTION", "M_PERTURB", "M_ARENA_TEST", "M_ARENA_MAX",
]

INT_MAX = 2**31 - 1

M_MXFAST = 1
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
M_CHECK_ACTION = -5
M_PERTURB = -6
M_ARENA_TEST = -7
M_ARENA_MAX = -8


class Param(NamedTuple):
    name: str     # lower-case name, also accepted by mallopt()
    value: int    # the M_* constant
    lo: int
    hi: int
    why: str      # where the range comes from


# glibc 2.36 accepts almost anything (mallopt(-1000, 1) returns 1), so the
# ranges below are mallopt(3)'s and malloc.c's documented limits.
MALLOPT_PARAMS = {p.name: p for p in (
    Param("mxfast", M_MXFAST, 0, 80 * 8 // 4, "MAX_FAST_SIZE on 64-bit"),
    Param("trim_threshold", M_TRIM_THRESHOLD, 0, INT_MAX, "bytes, an int"),
    Param("top_pad", M_TOP_PAD, 0, INT_MAX, "bytes, an int"),
    Param("mmap_threshold", M_MMAP_THRESHOLD, 0, MMAP_THRESHOLD_MAX,
          "DEFAULT_MMAP_THRESHOLD_MAX = 4 MiB * sizeof(long) on 64-bit"),
    Param("mmap_max", M_MMAP_MAX, 0, INT_MAX, "a count, an int"),
    Param("check_action", M_CHECK_ACTION, 0, 7, "three flag bits; ignored since glibc 2.34 "
          "unless libc_malloc_debug.so is preloaded"),
    Param("perturb", M_PERTURB, 0, 255, "only the low byte is used"),
    Param("arena_test", M_ARENA_TEST, 1, INT_MAX, "glibc ignores values <= 0"),
    Param("arena_max", M_ARENA_MAX, 1, INT_MAX, "glibc ignores values <= 0"),
)}
_BY_VALUE = {p.value: p for p in MALLOPT_PARAMS.values()}


def param_of(param: int | str) -> Param:
    """The Param for an M_* constant (an int) or a name like "mmap_threshold" / "M_MMAP_THRESHOLD"."""
    if isinstance(param, str):
        key = param.lower().removeprefix("m_").replace("-", "_")
        if key in MALLOPT_PARAMS:
            return MALLOPT_PARAMS[key]
    elif isinstance(param, int) and not isinstance(param, bool) and param in _BY_VALUE:
        return _BY_VALUE[param]
    names = ", ".join(MALLOPT_PARAMS)
    raise ValueError(f"unknown mallopt parameter {param!r}; known: {names}")


def mallopt(param: int | str, value: int) -> None:
    """Set one malloc parameter for this whole process (validated first).

    Raises ValueError for an unknown parameter, an out-of-range value, or
    glibc refusing it (mallopt returning 0)."""
    p = param_of(param)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"mallopt value must be an int, not {type(value).__name__}")
    if not p.lo <= value <= p.hi:
        raise ValueError(f"M_{p.name.upper()} must be in [{p.lo}, {p.hi}] ({p.why}), got {value}")
    if _native.mallopt_raw(p.value, value) != 1:
        raise ValueError(f"glibc refused mallopt(M_{p.name.upper()}, {value})")


# The fields come from the C list (csrc/lib/counters.h AB_MALLINFO2_LIST), in glibc's order:
#   arena     non-mmapped bytes obtained from the system (brk heap + arena heaps)
#   ordblks   free chunks (count)            smblks   free fastbin chunks (count)
#   hblks     mmapped chunks (count)         hblkhd   bytes in mmapped chunks
#   usmblks   always 0                       fsmblks  bytes in free fastbin chunks
#   uordblks  bytes in use (non-mmapped)     fordblks free bytes (non-mmapped)
#   keepcost  trimmable bytes at the top of the main heap
# It covers every arena, not memory of other allocators (a preloaded jemalloc keeps its own books).
Mallinfo2 = NamedTuple("Mallinfo2", [(name, int) for name in _native.MALLINFO2_FIELDS])


def mallinfo2() -> Mallinfo2:
    return Mallinfo2(*_native.mallinfo2_raw())


def malloc_trim(pad: int = 0) -> bool:
    """Return free memory to the OS; True when some was released."""
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be an int >= 0, got {pad!r}")
    return bool(_native.malloc_trim_raw(pad))


def malloc_info() -> str:
    """glibc's malloc_info(0, ...) XML."""
    return _native.malloc_info_raw()
