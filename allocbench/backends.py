"""The allocators a cell can measure: one entry each, the only list of them."""
from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass

LIB_DIRS = [f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}",
            "/usr/lib", "/usr/local/lib"]


@dataclass(frozen=True)
class Backend:
    name: str
    preload: str | None = None   # library put in LD_PRELOAD of the cell's process
    debian: str | None = None    # the Debian package that ships it
    glibc: bool = False          # mallopt settings and glibc chunk headers apply
    in_process: str | None = None  # allocator table inside allocbench (the toy)

    def library_path(self) -> str | None:
        if self.preload is None:
            return None
        for d in LIB_DIRS:
            path = os.path.join(d, self.preload)
            if os.path.exists(path):
                return path
        return None

    def unavailable_reason(self) -> str | None:
        if self.preload and not self.library_path():
            return (f"{self.preload} not found in {', '.join(LIB_DIRS)} "
                    f"(Debian package {self.debian}; `make system` installs it as root)")
        return None


BACKENDS = {b.name: b for b in (
    Backend("glibc", glibc=True),
    Backend("toy", in_process="toy"),
    Backend("jemalloc", preload="libjemalloc.so.2", debian="libjemalloc2"),
    Backend("tcmalloc", preload="libtcmalloc_minimal.so.4", debian="libtcmalloc-minimal4"),
    Backend("mimalloc", preload="libmimalloc.so.2", debian="libmimalloc2.0"),
)}

# mallopt settings a glibc cell accepts, by CLI/record name
GLIBC_SETTINGS = ("mmap_threshold", "trim_threshold", "top_pad", "mmap_max", "arena_max")
# the toy's own knobs (csrc/toyalloc.h)
TOY_SETTINGS = ("toy_threshold", "toy_cache_cap", "toy_policy")
