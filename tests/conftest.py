"""Shared helpers: the environment of a child, the command line, code in a
fresh interpreter (mallopt settings, the heap's history and the dynamic
threshold are process-wide state), and the probes that are costly enough to
run once per test run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a child's environment: this package importable, no allocator inherited from whoever runs the tests
ENV = {**{k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}, "PYTHONPATH": ROOT}
NO_COUNTER = {**ENV, "ALLOCBENCH_COUNTER_METHOD": "none"}  # the same child, with no syscall counter
ZSTD_TRACE = os.path.join(ROOT, "tests", "data", "zstd-T2.trace")  # a real program's trace, on 2 threads


def cli(*args, env: dict | None = None, timeout: float = 600, text: bool = True, **kw) -> subprocess.CompletedProcess:
    """`python -m allocbench ARGS` in a child; its output captured."""
    return subprocess.run([sys.executable, "-m", "allocbench", *map(str, args)], capture_output=True, text=text,
                          env=env or ENV, timeout=timeout, **kw)


def one_line_error(proc: subprocess.CompletedProcess, message: str = "") -> bool:
    """Exit status 2 with a single line on stderr that says `message`."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    return proc.returncode == 2 and len(err.strip().splitlines()) == 1 and message in err


def fresh_python(code: str, env: dict | None = None, timeout: float = 120, check: bool = True,
                 prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter; return the completed process."""
    cmd = (prefix or []) + [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**ENV, **(env or {})}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def fresh_json(code: str, **kw):
    """Run `code` in a new interpreter and parse the last line it prints as JSON."""
    out = fresh_python(code, **kw).stdout.strip().splitlines()
    return json.loads(out[-1])


@pytest.fixture
def run_json():
    return fresh_json


@pytest.fixture(scope="session")
def dynamic_probe():
    """probe dynamic (hundreds of fresh processes), once for the whole test run."""
    from allocbench import probes

    return probes.run_probe("dynamic")


def _method_unavailable(name: str) -> str | None:
    """None when the counter method works here, else why not (C's own answer)."""
    from allocbench import _native

    counter = _native.Counter(name)
    return counter.open_error


# scripts/setup-system mounts tracefs (root) and installs strace; where it could
# not, the tests that need them say why instead of failing.
_PERF_WHY = _method_unavailable("perf")
_STRACE_WHY = _method_unavailable("strace")
needs_perf = pytest.mark.skipif(_PERF_WHY is not None, reason=f"perf tracepoints unavailable: {_PERF_WHY}")
needs_strace = pytest.mark.skipif(_STRACE_WHY is not None, reason=f"strace unavailable: {_STRACE_WHY}")
# a test of exact syscall counts, by whichever method counts here (auto: perf, else strace)
needs_counts = pytest.mark.skipif(_PERF_WHY is not None and _STRACE_WHY is not None,
                                  reason=f"no syscall counter: perf: {_PERF_WHY}; strace: {_STRACE_WHY}")
