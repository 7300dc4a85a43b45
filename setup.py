"""Builds every native part of allocbench in one step, so that `pip install .`, a wheel and
`make build` (which calls `setup.py build_ext --inplace`) give the same working tool: the
Cython extension, the C programs, the preload shims and the toy library.  Metadata lives in
pyproject.toml.

ALLOCBENCH_DEBUG=1 builds with bounds checks, assertions and -O0 -g.  ALLOCBENCH_LINK_ONLY=1 builds
nothing (the Makefile's editable install, which `make build` follows: the extension is compiled once)."""
import glob
import os
import runpy
import shlex
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

DEBUG = os.environ.get("ALLOCBENCH_DEBUG") == "1"
CFLAGS = os.environ.get("ALLOCBENCH_CFLAGS", "-O0 -g -UNDEBUG" if DEBUG else "-O2 -Wall")
DIRECTIVES = {
    "release": {"language_level": 3, "boundscheck": False, "wraparound": False},
    "debug": {"language_level": 3, "boundscheck": True, "wraparound": True},
}["debug" if DEBUG else "release"]
LIB = "csrc/lib"
HEADERS = sorted(glob.glob(f"{LIB}/*.h") + glob.glob("csrc/preload/*.h"))

CSRC = [f"{LIB}/{name}.c" for name in ("counters", "workloads", "replay", "toyalloc", "calltime", "latency",
                                        "offcpu", "remote_heap")]

# the helpers beside the package: the one table, shared with allocbench itself (read, not imported:
# the package is not built yet)
_helpers = runpy.run_path("allocbench/helpers.py")
HELPERS, HELPER_CFLAGS, compile_command = _helpers["HELPERS"], _helpers["CFLAGS"], _helpers["compile_command"]


class build_native(build_ext):
    """build_ext, then the helpers with the same compiler into the package's folder (the source tree
    with --inplace, the build tree otherwise, from which a wheel or an install takes them)."""

    def run(self):
        if os.environ.get("ALLOCBENCH_LINK_ONLY") == "1":
            return  # make's `pip install -e`: it only links the package; `make build` builds in place right after
        super().run()
        folder = "allocbench" if self.inplace else os.path.join(self.build_lib, "allocbench")
        os.makedirs(folder, exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "gcc"))
        flags = shlex.split(os.environ["CFLAGS"]) if "CFLAGS" in os.environ else HELPER_CFLAGS
        for name, (sources, _, _) in HELPERS.items():
            out = os.path.join(folder, name)
            inputs = sources + HEADERS
            if not self.force and os.path.exists(out) and os.path.getmtime(out) >= max(map(os.path.getmtime, inputs)):
                continue
            cmd = compile_command(name, out, cc, flags)
            print(" ".join(cmd))
            subprocess.run(cmd, check=True)


extensions = [
    Extension(
        "allocbench._native",
        ["allocbench/_native.pyx", *CSRC],
        include_dirs=[LIB, "csrc/preload"],
        # every header and declaration file of the folder: touching trace.h or hooks.h rebuilds the extension
        depends=sorted(HEADERS + glob.glob(f"{LIB}/*.pxd") + glob.glob("csrc/preload/*.pxd")),
        extra_compile_args=CFLAGS.split(),
        libraries=["pthread"],
    ),
]

# the .pxd files sit beside the headers they declare, in csrc/lib
setup(ext_modules=cythonize(extensions, compiler_directives=DIRECTIVES, include_path=[LIB, "csrc/preload"]),
      cmdclass={"build_ext": build_native})
