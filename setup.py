"""Declares the Cython extensions; metadata lives in pyproject.toml.

ALLOCBENCH_DEBUG=1 builds with bounds checks, assertions and -O0 -g."""
import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

DEBUG = os.environ.get("ALLOCBENCH_DEBUG") == "1"
CFLAGS = os.environ.get("ALLOCBENCH_CFLAGS", "-O0 -g -UNDEBUG" if DEBUG else "-O2 -Wall")
DIRECTIVES = {
    "release": {"language_level": 3, "boundscheck": False, "wraparound": False},
    "debug": {"language_level": 3, "boundscheck": True, "wraparound": True},
}["debug" if DEBUG else "release"]

CSRC = ["csrc/lib/counters.c", "csrc/lib/workloads.c", "csrc/lib/replay.c", "csrc/lib/toyalloc.c",
        "csrc/lib/calltime.c", "csrc/lib/latency.c", "csrc/lib/remote_heap.c"]

extensions = [
    Extension(
        "allocbench._native",
        ["allocbench/_native.pyx", *CSRC],
        include_dirs=["csrc/lib", "csrc/preload"],
        # every header and declaration file of the folder: touching trace.h or hooks.h rebuilds the extension
        depends=sorted(glob.glob("csrc/lib/*.h") + glob.glob("csrc/lib/*.pxd") + glob.glob("csrc/preload/*.h")
                       + glob.glob("csrc/preload/*.pxd")),
        extra_compile_args=CFLAGS.split(),
        libraries=["pthread"],
    ),
]

# the .pxd files sit beside the headers they declare, in csrc/lib
setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, include_path=["csrc/lib", "csrc/preload"]))
