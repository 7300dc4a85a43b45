"""The command line: info, and one-line errors with exit code 2."""
import json
import subprocess
import sys

from conftest import ROOT
import os

ENV = dict(os.environ, PYTHONPATH=ROOT)


def allocbench(*args, **kw):
    return subprocess.run([sys.executable, "-m", "allocbench", *args], capture_output=True,
                          text=True, env=ENV, timeout=300, **kw)


def test_info_json_describes_the_machine():
    proc = allocbench("info", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("glibc", "kernel", "cpu", "page_size", "thp", "python", "counter_methods"):
        assert key in info
    assert info["page_size"] == os.sysconf("SC_PAGE_SIZE")
    assert set(info["counter_methods"]) == {"perf", "strace", "none"}


def test_info_human_output():
    proc = allocbench("info")
    assert proc.returncode == 0 and "glibc" in proc.stdout and "counter_methods" in proc.stdout


def test_bad_input_is_one_line_and_exit_2():
    for args in (["bogus"], ["info", "--nope"], []):
        proc = allocbench(*args)
        assert proc.returncode == 2
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
