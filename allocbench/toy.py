"""The toy allocator (csrc/lib/toyalloc.c): malloc built only on anonymous private mmap.

In this process through owning handles (the same contract as glibc.Block):

    from allocbench import toy
    toy.configure(threshold=128 * 1024, cache_cap=4 << 20, policy="keep")
    with toy.Block(200_000) as b:
        b.fill(1)
    toy.stats()

As a whole-program malloc: LD_PRELOAD=$(allocbench info --json | jq -r .toy_library),
configured by TOYALLOC_THRESHOLD, TOYALLOC_CACHE_CAP (bytes), TOYALLOC_DECAY_MS,
TOYALLOC_DEFER_BYTES and TOYALLOC_POLICY (keep | dontneed | free | unmap).  A value the toy cannot take is named in
one line on stderr ("toyalloc: NAME=VALUE ignored: why") and the default kept.
"""
from __future__ import annotations

from . import _native
from ._native import TOY_POLICIES
from ._native import ToyBlock as Block

__all__ = ["Block", "POLICIES", "configure", "config", "library_path", "stats"]
POLICIES = TOY_POLICIES


def config() -> dict:
    """{threshold, cache_cap, policy} in force."""
    return _native.toy_get_config_raw()


def library_path() -> str | None:
    """libtoyalloc.so (built by `make build`), or None when it is not built."""
    from .backends import BACKENDS

    return BACKENDS["toy"].library_path()


def configure(threshold: int | None = None, cache_cap: int | None = None,
              policy: str | None = None) -> None:
    """Change the toy's policies for this process; unspecified ones stay."""
    cur = config()
    threshold = cur["threshold"] if threshold is None else threshold
    cache_cap = cur["cache_cap"] if cache_cap is None else cache_cap
    policy = cur["policy"] if policy is None else policy
    from .backends import BACKENDS

    toy = BACKENDS["toy"]
    for name, value in (("threshold", threshold), ("cache_cap", cache_cap), ("policy", policy)):
        toy.setting(f"toy_{name}").check(value)  # the one table of the toy's settings
    _native.toy_configure_raw(threshold, cache_cap, POLICIES.index(policy))


def stats() -> dict:
    """Bytes mapped, live and cached now, and the syscalls the toy issued itself."""
    return _native.toy_stats_raw()
