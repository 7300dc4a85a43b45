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


def check_setting(name: str, value, prefix: str = "") -> None:
    """ValueError unless `value` is valid for the toy's threshold, cache_cap or policy."""
    if name == "threshold":
        ok, want = isinstance(value, int) and 0 <= value <= TOY_MAX_THRESHOLD_BYTES, \
            f"in [0, {TOY_MAX_THRESHOLD_BYTES}]"
    elif name == "cache_cap":
        ok, want = isinstance(value, int) and 0 <= value < 2**63, "a byte count >= 0"
    elif name == "policy":
        ok, want = value in POLICIES, f"one of {', '.join(POLICIES)}"
    else:
        raise ValueError(f"unknown toy setting {prefix}{name!r}")
    if not ok or isinstance(value, bool):
        raise ValueError(f"{prefix}{name} must be {want}, got {value!r}")


def configure(threshold: int | None = None, cache_cap: int | None = None,
              policy: str | None = None) -> None:
    """Change the toy's policies for this process; unspecified ones stay."""
    cur = config()
    threshold = cur["threshold"] if threshold is None else threshold
    cache_cap = cur["cache_cap"] if cache_cap is None else cache_cap
    policy = cur["policy"] if policy is None else policy
    check_setting("threshold", threshold)
    check_setting("cache_cap", cache_cap)
    check_setting("policy", policy)
    _native.toy_configure_raw(threshold, cache_cap, POLICIES.index(policy))


def stats() -> dict:
    """Bytes mapped, live and cached now, and the syscalls the toy issued itself."""
    return _native.toy_stats_raw()
