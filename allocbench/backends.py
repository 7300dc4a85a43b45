"""The allocators a cell can measure, one row each, and each one's settings:
the only lists of them.  A setting says its range and how it is applied (a
mallopt in a cell, a GLIBC_TUNABLES entry or an environment variable for a
program); nothing downstream special-cases an allocator by name."""
from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass

from . import _native
from .glibc import MALLOPT_PARAMS

LIB_DIRS = [f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}",
            "/usr/lib", "/usr/local/lib"]


@dataclass(frozen=True)
class Setting:
    name: str                  # record key; the CLI flag is --name-with-dashes
    lo: int = 0
    hi: int = 2**63 - 1
    choices: tuple | None = None   # an enumerated setting (its value is one of these names)
    mallopt: int | None = None     # the M_* parameter a glibc cell sets
    tunable: str | None = None     # the GLIBC_TUNABLES name for a whole program
    env: str | None = None         # the environment variable for a whole program (and the cell)
    help: str = ""
    in_bytes: bool = True          # a size ("128K" on the command line) rather than a count

    def check(self, value) -> None:
        """ValueError unless `value` is valid for this setting."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return
        if not isinstance(value, int) or isinstance(value, bool) or not self.lo <= value <= self.hi:
            raise ValueError(f"{self.name} must be an integer in [{self.lo}, {self.hi}]"
                             f"{f' ({self.help})' if self.help else ''}, got {value!r}")

    def cell_arg(self, value) -> str:
        """How allocbench-cell applies it."""
        return f"mallopt={self.mallopt}:{value}" if self.mallopt is not None else f"{self.name}={value}"


def _mallopt(name: str, in_bytes: bool) -> Setting:
    p = MALLOPT_PARAMS[name]
    return Setting(name, p.lo, p.hi, mallopt=p.value, tunable=f"glibc.malloc.{name}",
                   help=f"glibc M_{name.upper()}: {p.why}", in_bytes=in_bytes)


GLIBC_KNOBS = (_mallopt("mmap_threshold", True), _mallopt("trim_threshold", True),
               _mallopt("top_pad", True), _mallopt("mmap_max", False), _mallopt("arena_max", False))
TOY_KNOBS = (
    Setting("toy_threshold", 0, _native.TOY_MAX_THRESHOLD_BYTES, env="TOYALLOC_THRESHOLD",
            help="toy: own mapping above this size"),
    Setting("toy_cache_cap", 0, 2**63 - 1, env="TOYALLOC_CACHE_CAP",
            help="toy: bytes of freed mappings kept"),
    Setting("toy_policy", choices=_native.TOY_POLICIES, env="TOYALLOC_POLICY",
            help="toy: what freed mappings do with their pages"),
)


@dataclass(frozen=True)
class Backend:
    name: str
    cell: str = "libc"           # allocbench-cell's allocator=: glibc, toy, or libc (whatever is preloaded)
    preload: str | None = None   # library put in LD_PRELOAD of the measured process
    debian: str | None = None    # the Debian package that ships it
    glibc: bool = False          # glibc's chunk headers and mallinfo2 describe its blocks
    settings: tuple = ()

    def setting(self, name: str) -> Setting:
        for s in self.settings:
            if s.name == name:
                return s
        owners = [b.name for b in BACKENDS.values() if any(s.name == name for s in b.settings)]
        if owners:
            raise ValueError(f"{name} is a setting of {', '.join(owners)}; it does not apply to {self.name}")
        raise ValueError(f"unknown setting {name!r}; known: {', '.join(ALL_SETTINGS)}")

    def library_path(self) -> str | None:
        if self.preload is None:
            return None
        if os.path.isabs(self.preload):
            return self.preload if os.path.exists(self.preload) else None
        for d in LIB_DIRS:
            path = os.path.join(d, self.preload)
            if os.path.exists(path):
                return path
        return None

    def unavailable_reason(self) -> str | None:
        if self.preload and not self.library_path():
            where = "" if os.path.isabs(self.preload) else f" in {', '.join(LIB_DIRS)}"
            fix = (f"Debian package {self.debian}; `make system` installs it as root" if self.debian
                   else "`make build` builds it")
            return f"{self.preload} not found{where} ({fix})"
        return None


def toy_library() -> str:
    """libtoyalloc.so beside this package (built by `make build`)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "libtoyalloc.so")


BACKENDS = {b.name: b for b in (
    Backend("glibc", cell="glibc", glibc=True, settings=GLIBC_KNOBS),
    Backend("toy", cell="toy", settings=TOY_KNOBS),
    Backend("jemalloc", preload="libjemalloc.so.2", debian="libjemalloc2"),
    Backend("tcmalloc", preload="libtcmalloc_minimal.so.4", debian="libtcmalloc-minimal4"),
    Backend("mimalloc", preload="libmimalloc.so.2", debian="libmimalloc2.0"),
)}
# every setting name, in table order (the CLI offers each as a flag)
ALL_SETTINGS = tuple(dict.fromkeys(s.name for b in BACKENDS.values() for s in b.settings))
