"""Byte and time units and how sizes and durations are written, once for the whole package."""
from __future__ import annotations

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def size_label(n: int) -> str:
    """An exact size as people write it: "128 KiB", "1 MiB", "135168 B"."""
    if n >= MIB and n % MIB == 0:
        return f"{n // MIB} MiB"
    if n >= KIB and n % KIB == 0:
        return f"{n // KIB} KiB"
    return f"{n} B"


def human_bytes(n) -> str:
    """An amount rounded for reading ("3.2 MiB"); exact sizes keep their label; None is "-"."""
    if n is None:
        return "-"
    if n > 0 and (n % MIB == 0 or (n < MIB and n % KIB == 0)):
        return size_label(n)
    for unit, scale in (("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def human_ns(ns) -> str:
    """A duration rounded for reading ("38 ns", "4.2 µs", "3.0 ms", "1.25 s"); None is "-"."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            v = ns / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{ns:.0f} ns"
