"""The native helpers installed beside this package, with how each is built: the one list,
read by setup.py (which builds them, for make build, pip install and a wheel alike) and by
children.py (which finds them) and `allocbench info` (commands/info.py: where they are).  No imports:
setup.py reads this file before the package exists."""

LIB = "csrc/lib"
# name -> (sources, extra compiler flags, libraries).  -fno-builtin-malloc: GCC must not pair up and
# delete a workload's malloc/free.  A name ending in .so is a shared library preloaded into someone
# else's process.
SHIM = ["-fPIC", "-shared"]
CFLAGS = ["-O2", "-Wall", "-Wextra"]  # unless $CFLAGS says otherwise
HELPERS = {
    "allocbench-cell": (["csrc/programs/cell.c", *(f"{LIB}/{n}.c" for n in ("counters", "workloads", "replay",
                                                                                "toyalloc", "calltime", "latency",
                                                                                "offcpu"))],
                        ["-fno-builtin-malloc"], ["pthread"]),
    "allocbench-probe": (["csrc/programs/probe.c", f"{LIB}/counters.c"], ["-fno-builtin-malloc"], ["pthread"]),
    "allocbench-mmap-probe": (["csrc/programs/mmap_probe.c", f"{LIB}/counters.c"], [], ["pthread"]),
    "allocbench-launch": (["csrc/programs/launcher.c", f"{LIB}/counters.c"], [], ["pthread"]),
    "allocbench-calibrate": (["csrc/programs/calibrate.c"], ["-fno-builtin-malloc"], []),
    "libexplain.so": (["csrc/preload/explain.c"], SHIM, ["dl"]),
    "liblatency.so": (["csrc/preload/latency_shim.c", f"{LIB}/latency.c"], SHIM, ["dl", "pthread"]),
    "librecord.so": (["csrc/preload/recorder.c", f"{LIB}/counters.c"], [*SHIM, "-Wno-format-truncation"],
                     ["dl", "pthread"]),
    # TOY_PRELOAD: initial-exec TLS for the thread caches (the library is preloaded, never dlopened),
    # and malloc, free, ... exported as aliases of the toy_ functions (toyalloc.c's end);
    # -fno-semantic-interposition: toyalloc.c's own calls to its toy_ functions go direct
    "libtoyalloc.so": ([f"{LIB}/toyalloc.c"],
                       [*SHIM, "-DTOY_PRELOAD", "-fno-semantic-interposition"], ["pthread"]),
}


def compile_command(name: str, out: str, cc: list, flags: list, extra_flags: tuple = ()) -> list:
    """The compiler's command line for helper `name` into `out` (setup.py's, and a script's build of a
    variant of one with extra_flags, such as make toy-speed's toy-nocheck)."""
    sources, extra, libs = HELPERS[name]
    return [*cc, *flags, *extra, *extra_flags, f"-I{LIB}", "-Icsrc/preload", "-o", out, *sources,
            *(f"-l{x}" for x in libs)]
