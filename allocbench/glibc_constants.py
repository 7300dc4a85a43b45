"""glibc 2.36's malloc constants on 64-bit Linux, once (malloc.c, arena.c):
what the report, advise, the probes and the tests compute with.  The C side
has its own single copy where it needs one (trace.h AB_GLIBC_DEFAULT_BOUNDARY,
checked against request2size here by the tests)."""
from __future__ import annotations

from .units import KIB, MIB

SIZE_SZ = 8                              # a chunk's size field
MALLOC_ALIGNMENT = 16
MINSIZE = 32                             # the smallest chunk
DEFAULT_MMAP_THRESHOLD = 128 * KIB       # DEFAULT_MMAP_THRESHOLD_MIN: where the dynamic threshold starts
DEFAULT_TRIM_THRESHOLD = 128 * KIB
MMAP_THRESHOLD_MAX = 32 * MIB            # DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB x sizeof(long); the dynamic rise stops here
HEAP_MAX_SIZE = 64 * MIB                 # a thread arena's heap: 2 x DEFAULT_MMAP_THRESHOLD_MAX, aligned to itself


def request2size(request: int) -> int:
    """The chunk glibc carves for a request: its header, 16-byte alignment, 32 bytes at least."""
    return max(MINSIZE, (request + SIZE_SZ + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1))


def smallest_mmapped_request(threshold: int) -> int:
    """The smallest request whose chunk reaches `threshold` (glibc mmaps a chunk of at least it)."""
    return max(0, threshold - SIZE_SZ - MALLOC_ALIGNMENT + 1)


def mmapped_chunk_bytes(request: int, page: int = 4096) -> int:
    """The mapping glibc makes for a request it serves by mmap (sysmalloc: the chunk and its size
    field, rounded up to whole pages)."""
    return -(-(request2size(request) + SIZE_SZ) // page) * page
