"""The allocators allocbench measures, one row each, and each one's settings:
the only lists of them.  A row says what an allocator needs everywhere: how
the cell runs it, the library a whole program preloads, the Debian package
that brings that library, and its settings table.  A setting says what it
does, its unit and range, and how it is applied (a mallopt in a cell, a
GLIBC_TUNABLES entry or an environment variable for a program).  Nothing
downstream special-cases an allocator by name: adding a preloaded allocator
is one row here."""
from __future__ import annotations

import os
import sysconfig
from dataclasses import dataclass

from . import _native
from .children import HERE
from .glibc import MALLOPT_PARAMS
from .units import size_label

LIB_DIRS = [f"/usr/lib/{sysconfig.get_config_var('MULTIARCH') or 'x86_64-linux-gnu'}",
            "/usr/lib", "/usr/local/lib"]


@dataclass(frozen=True)
class Setting:
    name: str                      # record key; the CLI flag is --name-with-dashes
    doc: str                       # what it does, for --help and the README
    lo: int = 0
    hi: int = 2**63 - 1
    choices: tuple | None = None   # an enumerated setting (its value is one of these names)
    mallopt: int | None = None     # the M_* parameter a glibc cell sets
    tunable: str | None = None     # the GLIBC_TUNABLES name for a whole program (and a cell without mallopt)
    env: str | None = None         # the environment variable for a whole program (a cell takes name=value)
    in_bytes: bool = True          # a size ("128K" on the command line) rather than a count

    def check(self, value) -> None:
        """ValueError unless `value` is valid for this setting."""
        if self.choices is not None:
            if value not in self.choices:
                raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
            return
        if not isinstance(value, int) or isinstance(value, bool) or not self.lo <= value <= self.hi:
            raise ValueError(f"{self.name} must be an integer in [{self.lo}, {self.hi}], got {value!r}")

    def help(self) -> str:
        """--help: what it does, its unit and range."""
        if self.choices is not None:
            return f"{self.doc} ({', '.join(self.choices)})"
        unit = (f"bytes, {size_label(self.lo) if self.lo else 0} to {size_label(self.hi)}" if self.in_bytes
                else f"a count, {self.lo} to {self.hi}")
        return f"{self.doc} ({unit})"

    def cell_arg(self, value) -> str | None:
        """How allocbench-cell applies it on its command line (None: by its environment variable or
        tunable_entry)."""
        return f"mallopt={self.mallopt}:{value}" if self.mallopt is not None else None

    def tunable_entry(self, value) -> str | None:
        return f"{self.tunable}={value}" if self.tunable else None


FREEZES = "; setting it freezes glibc's dynamic mmap threshold"


def _mallopt(name: str, doc: str, in_bytes: bool = True) -> Setting:
    p = MALLOPT_PARAMS[name]
    return Setting(name, doc, p.lo, p.hi, mallopt=p.value, tunable=f"glibc.malloc.{name}", in_bytes=in_bytes)


GLIBC_KNOBS = (
    _mallopt("mmap_threshold", "glibc M_MMAP_THRESHOLD: a request whose chunk reaches it gets a mapping of its "
                               "own" + FREEZES + " (and with it the trim threshold)"),
    _mallopt("trim_threshold", "glibc M_TRIM_THRESHOLD: free() gives the heap top back with brk once the top "
                               "chunk exceeds it" + FREEZES),
    _mallopt("top_pad", "glibc M_TOP_PAD: extra bytes each brk asks for, and keeps when trimming" + FREEZES),
    _mallopt("mmap_max", "glibc M_MMAP_MAX: most chunks mmapped at once (0: never mmap)" + FREEZES,
             in_bytes=False),
    _mallopt("arena_max", "glibc M_ARENA_MAX: most malloc arenas; threads beyond it share them (1: every "
                          "thread uses the main arena's brk heap)", in_bytes=False),
    Setting("tcache_count", "glibc tunable glibc.malloc.tcache_count: chunks each thread caches per size "
                            "class (0: no thread cache)", 0, 65535, tunable="glibc.malloc.tcache_count",
            in_bytes=False),
    Setting("hugetlb", "glibc tunable glibc.malloc.hugetlb: 1 asks for transparent huge pages (madvise) for "
                       "the heap and mmapped chunks, 2 maps them from the reserved hugetlbfs pool, 0 neither",
            0, 2, tunable="glibc.malloc.hugetlb", in_bytes=False),
)
TOY_KNOBS = (
    Setting("toy_threshold", "toy: a request above it gets a mapping of its own", 0,
            _native.TOY_MAX_THRESHOLD_BYTES, env="TOYALLOC_THRESHOLD"),
    Setting("toy_cache_cap", "toy: bytes of freed mappings kept for reuse whatever the demand (4 MiB; 0: only "
            "what the decay keeps)", env="TOYALLOC_CACHE_CAP"),
    Setting("toy_decay_ms", "toy: beyond the cap, freed large blocks are kept up to what the program had live at "
                            "its peak, and go back after this many ms unused (0: the cap alone)", 0, 3_600_000,
            env="TOYALLOC_DECAY_MS", in_bytes=False),
    Setting("toy_defer_bytes", "toy: a thread holding more bytes of small blocks than this checks each free for a "
            "double free one free later, once the block's line has come in (default: the L2's size; 0: always)",
            env="TOYALLOC_DEFER_BYTES"),
    Setting("toy_policy", "toy: what a freed mapping does with its pages", choices=_native.TOY_POLICIES,
            env="TOYALLOC_POLICY"),
)


@dataclass(frozen=True)
class Backend:
    name: str
    about: str
    cell: str = "libc"           # allocbench-cell's allocator=: glibc, toy (in the cell), libc (the preloaded one)
    library: str | None = None   # what a whole program preloads: a file name in LIB_DIRS, or a path
    debian: str | None = None    # the Debian package that ships the library
    built: bool = False          # the library is built by `make build` beside this package
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

    def check_settings(self, settings: dict) -> None:
        for key, value in settings.items():
            self.setting(key).check(value)

    def library_path(self) -> str | None:
        """The library to preload, where it is on this machine (None: not here, or none needed)."""
        if self.library is None:
            return None
        dirs = [HERE] if self.built else LIB_DIRS
        candidates = [self.library] if os.path.isabs(self.library) else [os.path.join(d, self.library) for d in dirs]
        return next((p for p in candidates if os.path.exists(p)), None)

    def unavailable_reason(self) -> str | None:
        if self.library and not self.library_path():
            where = "" if os.path.isabs(self.library) else f" in {', '.join([HERE] if self.built else LIB_DIRS)}"
            fix = ("`make build` in a clone builds it, as pip install does" if self.built else
                   f"Debian package {self.debian}; `make system` installs it as root" if self.debian else
                   "install it")
            return f"{self.library} not found{where} ({fix})"
        return None

    def cell_preload(self) -> str | None:
        """A cell preloads the library only when the cell does not run this allocator itself."""
        return self.library_path() if self.cell == "libc" else None

    def cell_run(self, settings: dict) -> tuple[list[str], dict]:
        """(allocbench-cell arguments, environment entries) for these settings.  The toy's knobs go by
        their TOYALLOC_* variables, as for a whole program: the toy in the cell reads them at its first
        call (the cell once took them as arguments and read only some: toy_decay_ms was ignored)."""
        args, env, tunables = [], {}, []
        for name, value in settings.items():
            s = self.setting(name)
            arg = s.cell_arg(value)
            if arg:
                args.append(arg)
            elif s.env:
                env[s.env] = str(value)
            else:
                tunables.append(s.tunable_entry(value))
        if tunables:
            env["GLIBC_TUNABLES"] = ":".join(tunables)
        return args, env

    def program_env(self, settings: dict) -> tuple[dict, list[str]]:
        """(environment entries, libraries to preload) for a whole program under these settings."""
        env, tunables = {}, []
        for name, value in settings.items():
            s = self.setting(name)
            if s.tunable:
                tunables.append(s.tunable_entry(value))
            elif s.env:
                env[s.env] = str(value)
        if tunables:
            env["GLIBC_TUNABLES"] = ":".join(tunables)
        lib = self.library_path()
        return env, [lib] if lib else []


BACKENDS = {b.name: b for b in (
    Backend("glibc", "glibc's own malloc, ptmalloc2 (the default)", cell="glibc", glibc=True,
            settings=GLIBC_KNOBS),
    Backend("toy", "allocbench's toy allocator: anonymous private mmap only (csrc/lib/toyalloc.c)", cell="toy",
            library="libtoyalloc.so", built=True, settings=TOY_KNOBS),
    Backend("jemalloc", "jemalloc 5, preloaded", library="libjemalloc.so.2", debian="libjemalloc2"),
    Backend("tcmalloc", "gperftools' tcmalloc (minimal), preloaded", library="libtcmalloc_minimal.so.4",
            debian="libtcmalloc-minimal4"),
    Backend("mimalloc", "Microsoft's mimalloc 2, preloaded", library="libmimalloc.so.2", debian="libmimalloc2.0"),
)}
# every setting name, in table order (the CLI offers each as a flag)
ALL_SETTINGS = tuple(dict.fromkeys(s.name for b in BACKENDS.values() for s in b.settings))


def debian_packages() -> list[str]:
    """What `make system` installs for the allocators."""
    return [b.debian for b in BACKENDS.values() if b.debian]


def toy_knob_edges() -> list[str]:
    """The toy's knobs at their edges, one run's environment each ("NAME=VALUE", several joined by
    commas): the threshold at its lowest (every block a mapping) and highest, no fixed cap, no decay,
    and neither (nothing cached), and every free's check deferred.  make glibc-tests and make
    mimalloc-stress run each beside every policy."""
    knob = {k.name: k for k in TOY_KNOBS}
    threshold, cap, decay = knob["toy_threshold"], knob["toy_cache_cap"].env, knob["toy_decay_ms"].env
    defer = knob["toy_defer_bytes"].env
    return [f"{threshold.env}={threshold.lo}", f"{threshold.env}={threshold.hi}", f"{cap}=0", f"{decay}=0",
            f"{cap}=0,{decay}=0", f"{defer}=0"]


def glibc_backend() -> Backend:
    """The row whose chunk headers, mallinfo2 and tunables are glibc's (the baseline everywhere)."""
    return next(b for b in BACKENDS.values() if b.glibc)


def others() -> list[str]:
    """Every allocator but glibc's own, in table order."""
    return [name for name, b in BACKENDS.items() if not b.glibc]
