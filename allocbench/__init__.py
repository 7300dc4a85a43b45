"""allocbench: what glibc malloc's brk heap and mmap paths cost, measured."""
from .counters import measure

__version__ = "0.1.0"
__all__ = ["measure", "__version__"]
