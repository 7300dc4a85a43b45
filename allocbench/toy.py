"""The toy allocator (csrc/toyalloc.c): malloc built only on anonymous private mmap.

In this process through owning handles (the same contract as glibc.Block):

    from allocbench import toy
    toy.configure(threshold=128 * 1024, cache_cap=32 << 20, policy="keep")
    with toy.Block(200_000) as b:
        b.fill(1)
    toy.stats()

As a whole-program malloc: LD_PRELOAD=$(allocbench info --json | jq -r .toy_library),
configured by TOYALLOC_THRESHOLD, TOYALLOC_CACHE_CAP (bytes) and TOYALLOC_POLICY
(keep | dontneed | free | unmap).
"""
from __future__ import annotations

from . import _native
from ._native import TOY_MAX_THRESHOLD_BYTES, TOY_POLICIES
from ._native import ToyBlock as Block

__all__ = ["Block", "POLICIES", "configure", "config", "stats"]
POLICIES = TOY_POLICIES


def config() -> dict:
    """{threshold, cache_cap, policy} in force."""
    return _native.toy_get_config_raw()


def configure(threshold: int | None = None, cache_cap: int | None = None,
              policy: str | None = None) -> None:
    """Change the toy's policies for this process; unspecified ones stay."""
    cur = config()
    threshold = cur["threshold"] if threshold is None else threshold
    cache_cap = cur["cache_cap"] if cache_cap is None else cache_cap
    policy = cur["policy"] if policy is None else policy
    if not isinstance(threshold, int) or not 0 <= threshold <= TOY_MAX_THRESHOLD_BYTES:
        raise ValueError(f"threshold must be in [0, {TOY_MAX_THRESHOLD_BYTES}], got {threshold!r}")
    if not isinstance(cache_cap, int) or not 0 <= cache_cap < 2**63:
        raise ValueError(f"cache_cap must be a byte count >= 0, got {cache_cap!r}")
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    _native.toy_configure_raw(threshold, cache_cap, POLICIES.index(policy))


def stats() -> dict:
    """Bytes mapped, live and cached now, and the syscalls the toy issued itself."""
    return _native.toy_stats_raw()
