"""Shared helpers: run code in a fresh interpreter, because mallopt settings,
the heap's history and the dynamic threshold are process-wide state."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_python(code: str, env: dict | None = None, timeout: float = 120, check: bool = True,
                 prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    """Run `code` in a new interpreter; return the completed process."""
    full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    cmd = (prefix or []) + [sys.executable, "-c", textwrap.dedent(code)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)
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
