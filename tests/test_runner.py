"""allocbench run: fresh-process cells, exact counts, failures recorded."""
import json
import os
import stat

import pytest
from conftest import ENV, cli, needs_counts, one_line_error

from allocbench import runner
from allocbench.backends import BACKENDS


def run_json(*args):
    proc = cli("run", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_counts
def test_fixed_threshold_churn_above_it_mmaps_every_op():
    rec = run_json("--allocator", "glibc", "--mmap-threshold", "131072", "--pattern", "churn",
                   "--size", "135168", "--ops", "10000", "--repeats", "2")
    assert rec["status"] == "ok"
    assert rec["syscalls"]["mmap"] == 10000 and rec["syscalls"]["munmap"] == 10000
    assert rec["syscalls_per_op"]["mmap"] == 1.0
    assert rec["mmapped_fraction"] == 1.0


@needs_counts
def test_dynamic_threshold_churn_mmaps_at_most_once():
    rec = run_json("--pattern", "churn", "--size", "135168", "--ops", "10000",
                   "--repeats", "1", "--warmup", "0")
    assert rec["syscalls"]["mmap"] <= 1 and rec["syscalls"]["munmap"] <= 1


def test_record_schema():
    rec = run_json("--pattern", "batch", "--size", "64K", "--ops", "200", "--live", "50",
                   "--repeats", "3")
    for key in ("allocator", "settings", "pattern", "size_bytes", "ops", "threads", "touch",
                "repeats", "ns_per_op", "syscalls", "syscalls_per_op", "minor_faults",
                "major_faults", "faults_per_op", "peak_rss_bytes", "rss_after_free_bytes",
                "heap_top_growth_bytes", "mallinfo2_after", "mmapped_fraction",
                "live_bytes_peak", "footprint_bytes_peak", "fragmentation_peak",
                "retained_after_free_bytes", "counter_method", "env", "status", "error"):
        assert key in rec, key
    assert rec["live_bytes_peak"] == 50 * 64 * 1024
    assert rec["footprint_bytes_peak"] >= rec["live_bytes_peak"]
    assert 0 <= rec["fragmentation_peak"] < 1
    ns = rec["ns_per_op"]
    assert ns["min"] <= ns["median"] <= ns["max"]
    assert rec["env"]["page_size"] == os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize("pattern,extra", [
    ("churn", ["--size", "1K"]), ("batch", ["--size", "300K"]), ("lifo", ["--size", "4K"]),
    ("fifo", ["--size", "200K"]), ("random-free", ["--size", "100K"]),
    ("band", ["--size-lo", "96K", "--size-hi", "160K"]),
    ("realloc-grow", ["--size-lo", "4K", "--size-hi", "1M"]), ("fragment", ["--size", "256K"]),
])
def test_every_pattern_runs(pattern, extra):
    rec = run_json("--pattern", pattern, *extra, "--ops", "300", "--repeats", "1", "--threads", "2")
    assert rec["status"] == "ok" and rec["threads"] == 2


@needs_counts
def test_fragment_pins_the_heap_below_the_threshold():
    """100 KiB blocks (below a fixed 128 KiB threshold, so on the heap) interleaved
    with pinned 64-byte ones: the freed large blocks are holes below the last small
    block, so the heap cannot shrink."""
    rec = run_json("--pattern", "fragment", "--size", "100K", "--ops", "64", "--live", "64",
                   "--mmap-threshold", "128K", "--repeats", "1", "--warmup", "0")
    assert rec["heap_top_growth_bytes"] >= 63 * 100 * 1024
    assert rec["syscalls"]["brk"] >= 1 and rec["syscalls"]["mmap"] == 0


@pytest.mark.skipif(BACKENDS["jemalloc"].unavailable_reason() is not None,
                    reason=str(BACKENDS["jemalloc"].unavailable_reason()))
@needs_counts
def test_jemalloc_churn_makes_no_mmap_per_op():
    rec = run_json("--allocator", "jemalloc", "--pattern", "churn", "--size", "200K",
                   "--ops", "10000", "--repeats", "2")
    assert rec["status"] == "ok" and rec["syscalls"]["mmap"] <= 1
    assert rec["mmapped_fraction"] is None  # glibc's chunk bit means nothing here


def test_missing_allocator_library_is_skipped_with_a_reason(monkeypatch):
    from allocbench import backends

    monkeypatch.setattr(backends, "LIB_DIRS", ["/nonexistent"])
    rec = runner.run_cell(runner.make_spec(allocator="mimalloc", size=1024, ops=10))
    assert rec["status"] == "skipped"
    assert "libmimalloc.so.2 not found" in rec["error"] and "libmimalloc2.0" in rec["error"]


def _script(tmp_path, body):
    path = tmp_path / "fake-cell"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_crashing_cell_is_recorded_as_failed(tmp_path):
    env = dict(ENV, ALLOCBENCH_CELL=_script(tmp_path, "kill -SEGV $$"))
    proc = cli("run", "--json", "--size", "1K", env=env)
    assert proc.returncode == 1
    rec = json.loads(proc.stdout)
    assert rec["status"] == "failed" and rec["error"] == "crashed: killed by SIGSEGV"


def test_hanging_cell_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOCBENCH_CELL", _script(tmp_path, "exec sleep 60"))
    rec = runner.run_cell(runner.make_spec(size=1024), timeout=1)
    assert rec["status"] == "failed" and rec["error"].startswith("timeout")


@needs_counts
def test_processes_each_run_the_cell_and_pool_their_repeats(tmp_path, monkeypatch):
    """3 processes x 2 repeats: the cell runs 3 times, the record is built from
    6 repeats, and each process's exact counts are the same (one mmap and one
    munmap per op at a fixed threshold)."""
    log = tmp_path / "launches"
    real = runner.cell_binary()
    monkeypatch.setenv("ALLOCBENCH_CELL", _script(tmp_path, f'echo x >> {log}\nexec {real} "$@"'))
    seen = {}
    build = runner.records.build

    def spy(spec, raw, env):
        seen["repeats"] = len(raw["repeats"])
        seen["mmaps"] = {r["counts"]["syscalls"]["mmap"] for r in raw["repeats"]}
        return build(spec, raw, env)

    monkeypatch.setattr(runner.records, "build", spy)
    spec = runner.make_spec(size=135168, ops=500, repeats=2, processes=3,
                            settings={"mmap_threshold": 131072})
    rec = runner.run_cell(spec)
    assert rec["status"] == "ok" and rec["processes"] == 3
    assert len(log.read_text().split()) == 3
    assert seen == {"repeats": 6, "mmaps": {500}}
    per = rec["ns_per_op_by_process"]
    assert len(per) == 3 and all(rec["ns_per_op"]["min"] <= v <= rec["ns_per_op"]["max"] for v in per)
    # footprint fields come from one process: every block is mmapped, so the
    # heap top barely moves (another process's randomised brk would be MiBs away)
    assert 0 <= rec["heap_top_growth_bytes"] < 1 << 20
    with pytest.raises(ValueError, match="processes"):
        runner.make_spec(size=1024, processes=0)


@pytest.mark.parametrize("args", [
    ["--size", "-5"], ["--pattern", "nope", "--size", "1K"], ["--size", "1K", "--mmap-threshold", "64M"],
    ["--allocator", "jemalloc", "--size", "1K", "--mmap-threshold", "128K"], [],
    ["--pattern", "band", "--size", "1K"], ["--size", "1K", "--threads", "0"], ["--size", "2K", "--size-lo", "1K"],
    ["--size", "1K", "--processes", "21"],
])
def test_bad_input_one_line_exit_2(args):
    proc = cli("run", *args)
    assert one_line_error(proc), proc.stdout + proc.stderr


def test_a_sweep_takes_the_processes_of_compared_cells_in_turns(tmp_path, monkeypatch):
    """Two allocators at two sizes, 3 processes each: at each size the cells'
    processes alternate (toy, glibc, toy, glibc, ...), and each record still
    pools its own 3 processes' repeats."""
    from allocbench import sweep
    log = tmp_path / "launches"
    real = runner.cell_binary()
    monkeypatch.setenv("ALLOCBENCH_CELL", _script(
        tmp_path, f'for a in "$@"; do case $a in allocator=*|size_hi=*) printf "%s " $a >> {log};; esac; done\n'
                  f'echo >> {log}\nexec {real} "$@"'))
    grid = {"repeats": 1, "processes": 3,
            "blocks": [{"pattern": "churn", "allocators": ["toy", "glibc"], "sizes": [1024, 4096], "ops": 50}]}
    pooled, build = [], runner.records.build
    monkeypatch.setattr(runner.records, "build", lambda spec, raw, env: (
        pooled.append(len(raw["repeats"])), build(spec, raw, env))[1])
    out = tmp_path / "r.jsonl"
    stats = sweep.run_sweep(sweep.expand(grid), str(out), progress=False)
    assert stats["ok"] == 4
    launches = [line.split() for line in log.read_text().splitlines()]
    want = [[f"allocator={a}", f"size_hi={s}"] for s in (1024, 4096) for _ in range(3) for a in ("toy", "glibc")]
    assert launches == want
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["allocator"], r["size_hi"], r["processes"]) for r in recs] == \
        [("toy", 1024, 3), ("glibc", 1024, 3), ("toy", 4096, 3), ("glibc", 4096, 3)]
    assert pooled == [3, 3, 3, 3]
