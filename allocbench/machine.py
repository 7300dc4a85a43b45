"""The context every result carries: glibc, kernel, CPU, page size, THP mode."""
from __future__ import annotations

import os
import platform

from ._native import glibc_version


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def thp_mode() -> str | None:
    text = _read("/sys/kernel/mm/transparent_hugepage/enabled")
    if text and "[" in text:
        return text[text.index("[") + 1:text.index("]")]
    return None


def cpu_model() -> str | None:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine() or None


def hardware_counters() -> bool:
    """Whether the CPU's performance counters are exposed (a `cpu` perf event source, or a hybrid
    CPU's cpu_core): without them there are no cycles, cache or TLB misses to name a slow call by."""
    return any(os.path.isdir(f"/sys/bus/event_source/devices/{d}") for d in ("cpu", "cpu_core", "cpu_atom"))


def describe() -> dict:
    return {
        "glibc": glibc_version(),
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "thp": thp_mode(),
        "hardware_counters": hardware_counters(),
        "python": platform.python_version(),
    }
