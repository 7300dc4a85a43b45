"""The command line: info, and one-line errors with exit code 2."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ENV, cli, one_line_error

allocbench = cli


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


def test_a_reader_gone_ends_it_quietly_with_sigpipes_status():
    """`allocbench info | head -1`, with the reader gone before the first byte is written
    (its end of the pipe closed before the start): 141, as a shell reports a SIGPIPE death."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "allocbench", "info"], stdout=w, stderr=subprocess.PIPE,
                              text=True, env=ENV, timeout=120)
    finally:
        os.close(w)
    assert (proc.returncode, proc.stderr) == (141, "")


def test_bad_input_is_one_line_and_exit_2():
    for args in (["bogus"], ["info", "--nope"], []):
        assert one_line_error(allocbench(*args))


def test_importing_the_cli_loads_no_plotting():
    proc = subprocess.run([sys.executable, "-c", "import sys, allocbench.cli; "
                           "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'numpy'))))"],
                          capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--pattern", "band", "--size", "100K"], "pattern band needs size_lo < size_hi"),
    (["--pattern", "realloc-grow", "--size", "4K"], "realloc-grow needs size_lo (the step) < size_hi"),
    (["--pattern", "realloc-grow", "--size-lo", "0", "--size-hi", "4K"], "needs a step"),
    (["--size", "1K", "--ops", "0"], "ops must be between 1 and"),
    (["--size", "1K", "--threads", "300"], "threads must be between 1 and 256"),
    (["--size", "1K", "--repeats", "0"], "repeats must be between 1 and 1000"),
    (["--size", "1K", "--toy-policy", "keep"], "toy_policy is a setting of toy"),
])
def test_one_validator_for_cli_python_and_cell(args, message):
    """The C validator answers the CLI, make_spec and the cell program alike."""
    proc = cli("run", *args, timeout=60)
    assert one_line_error(proc, message), proc.stderr


def test_the_cell_program_refuses_what_python_refuses():
    from allocbench import runner
    with pytest.raises(ValueError, match="pattern band needs size_lo < size_hi"):
        runner.make_spec(pattern="band", size=4096)
    for argv, message in ((["pattern=band", "size_lo=4096", "size_hi=4096"], "pattern band needs size_lo"),
                          (["pattern=nosuch", "size_lo=4096"], "unknown pattern")):
        proc = subprocess.run([runner.cell_binary(), *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr


def test_info_reports_the_method_the_cells_use():
    info = json.loads(cli("info", "--json", timeout=120).stdout)
    from allocbench import runner
    cell = runner.run_cell(runner.make_spec(size=1024, ops=10, repeats=1))
    assert info["counter_method_default"] == cell["counter_method"]


def test_an_out_file_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    """A long run must not be lost to its --out: the folder is tried (a file made
    and removed) before anything runs; a folder given as the file is refused too."""
    for args in (["run", "--pattern", "churn", "--size", "64K", "--out", "/proc/allocbench/x.jsonl"],
                 ["calibrate", "--out", "/sys/allocbench.json"],
                 ["probe", "boundary", "--out", tmp_path],
                 ["trace", "info", "--fidelity", tmp_path / "none.trace", "--out", "/proc/x.jsonl"]):
        proc = cli(*args, timeout=60)
        assert one_line_error(proc, "argument --out"), (args, proc.stderr)
