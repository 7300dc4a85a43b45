"""sweep, plot and report on tiny grids: files written, resume, failures kept, bad input."""
import json
import stat
import struct

import matplotlib.image as mpimg
import numpy as np
import pytest
from conftest import ENV, NO_COUNTER, cli, needs_counts, one_line_error

from allocbench import sweep
from allocbench.backends import BACKENDS
from allocbench.records import cell_key
from allocbench.report import draw
from allocbench.results import ResultsError, load_records

GRID = {"repeats": 1, "budget_bytes": 1 << 20, "blocks": [
    {"pattern": "churn", "allocators": ["glibc"], "thresholds": [None, 131072],
     "sizes": [65536, 135168, 262144]},
    {"pattern": "batch", "allocators": ["glibc"], "thresholds": [None], "sizes": [65536], "live": 8},
]}


@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.json"
    path.write_text(json.dumps(GRID))
    return str(path)


@pytest.mark.slow
def test_sweep_plot_report_and_resume(tmp_path, grid_file):
    out = str(tmp_path / "r.jsonl")
    proc = cli("sweep", "--config", grid_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    recs = load_records(out)
    assert len(recs) == 7 and all(r["status"] == "ok" for r in recs)
    proc = cli("sweep", "--config", grid_file, "--out", out)
    assert "7 already" in proc.stderr and len(load_records(out)) == 7
    with open(out) as f:  # drop the last cell: the next run measures only it
        lines = f.readlines()
    with open(out, "w") as f:
        f.writelines(lines[:-1])
    proc = cli("sweep", "--config", grid_file, "--out", out)
    assert "1 measured" in proc.stderr and len(load_records(out)) == 7

    # a cell from before records named their build: the file is another build's, moved aside whole
    # (never lost, never mixed with new cells), and every cell is measured again
    recs = [json.loads(line) for line in lines]
    assert len({r["build"] for r in recs}) == 1  # one allocator here, one cell program
    del recs[0]["build"]
    old = "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs)
    with open(out, "w") as f:
        f.write(old)
    proc = cli("sweep", "--config", grid_file, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{out} held 1 of 7 records measured by another build" in proc.stderr, proc.stderr
    assert f"moved to {out}.stale, starting over" in proc.stderr and "7 measured, 0 failed" in proc.stderr
    assert (tmp_path / "r.jsonl.stale").read_text() == old
    assert len(load_records(out)) == 7

    report = tmp_path / "plots" / "REPORT.md"
    proc = cli("report", out, "--out", str(report))
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert "At 256 KiB churn, a fixed 128 KiB threshold against glibc's dynamic default: " in text
    assert f"- cells: `{out}`" in text  # the header lists every file the report read
    for name, size in (("churn_ns_per_op.png", draw.SIZE_FIGURE),
                       ("churn_syscalls_per_op.png", draw.SIZE_FIGURE),
                       ("heatmap_ns_per_op.png", draw.HEATMAP_FIGURE),
                       ("batch_footprint.png", draw.FOOTPRINT_FIGURE)):
        png = (tmp_path / "plots" / name).read_bytes()
        # a PNG (signature), as large as the figure at its dpi (IHDR), not blank
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
        assert struct.unpack(">II", png[16:24]) == (size[0] * draw.DPI, size[1] * draw.DPI)
        pixels = mpimg.imread(str(tmp_path / "plots" / name))
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 2, name
        assert f"]({name})" in text
    proc = cli("plot", out, "--out", str(tmp_path / "p2"))
    assert proc.returncode == 0 and "churn_ns_per_op.png" in proc.stdout


def test_failed_cell_is_recorded_and_sweep_completes(tmp_path, grid_file):
    fake = tmp_path / "cell"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *size_lo=135168*) kill -SEGV $$;; esac\n"
                    f"exec {sweep.runner.cell_binary()} \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    out = str(tmp_path / "r.jsonl")
    proc = cli("sweep", "--config", grid_file, "--out", out, env=dict(ENV, ALLOCBENCH_CELL=str(fake)))
    assert proc.returncode == 1, proc.stderr  # failed cells: exit 1, and every other cell measured
    recs = load_records(out)
    failed = [r for r in recs if r["status"] == "failed"]
    assert len(recs) == 7 and len(failed) == 2
    assert all(r["error"] == "crashed: killed by SIGSEGV" for r in failed)
    proc = cli("report", out, "--out", str(tmp_path / "REPORT.md"))
    assert proc.returncode == 0 and "2 cell(s) failed" in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("content,message", [
    ("", "no records"), ("not json\n", "not JSON"), ('{"a": 1}\n', "not an allocbench record"),
    (b"ABTRACE1\xef\xbf\x00\n",  # a trace's first bytes
     "not a results file (JSON Lines text): the byte at offset 8 is not UTF-8"),
])
def test_plot_and_report_reject_bad_results(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for cmd in ("plot", "report", "compare"):
        proc = cli(cmd, str(path), *([str(path)] if cmd == "compare" else ["--out", str(tmp_path / "o" / "R.md")]))
        assert one_line_error(proc, message), proc.stderr
    if isinstance(content, bytes):  # and given where a JSON file goes: a grid, probes, calibration, advice
        cells = tmp_path / "cells.jsonl"
        assert cli("run", "--size", "4K", "--ops", "10", "--out", cells).returncode == 0
        for args in (["sweep", "--config", path, "--out", tmp_path / "s.jsonl"], ["exec", "--grid", path, "--", "true"],
                     *(["report", cells, f"--{what}", path, "--out", tmp_path / "o" / "R.md"]
                       for what in ("probes", "calibration", "advice"))):
            assert one_line_error(cli(*args), "not JSON text: the byte at offset 8 is not UTF-8"), args
    with pytest.raises(ResultsError):
        load_records(str(tmp_path / "missing.jsonl"))


def _cells_in(block) -> int:
    """A block's cells counted from its lists: per allocator, its settings entries x sizes."""
    sizes = len(block.get("bands") or block["sizes"])
    n = 0
    for a in block["allocators"]:
        has_threshold = any(s.name == "mmap_threshold" for s in BACKENDS[a].settings)
        n += (len(block.get("thresholds", [None])) if has_threshold else 1) * sizes
    return n


def test_presets_expand_to_valid_distinct_cells():
    quick = sweep.PRESETS["quick"]  # blocks that share no cell: every cell of every block
    assert len(sweep.expand(quick)) == sum(_cells_in(b) for b in quick["blocks"])
    for name, grid in sweep.PRESETS.items():
        keys = [cell_key(s) for s in sweep.expand(grid)]
        assert len(keys) == len(set(keys)), name
        assert len(keys) >= max(_cells_in(b) for b in grid["blocks"]), name
    sizes = {s["size_lo"] for s in sweep.expand(sweep.PRESETS["default"]) if s["pattern"] == "churn"}
    assert {96 * 1024, 128 * 1024, 160 * 1024, 124 * 1024, 132 * 1024, 8 << 20} <= sizes


def test_bad_grid_file(tmp_path):
    path = tmp_path / "g.json"
    path.write_text("[1, 2]")
    proc = cli("sweep", "--config", str(path), "--out", str(tmp_path / "r.jsonl"))
    assert proc.returncode == 2 and "blocks" in proc.stderr
    # a misspelt key is refused, at the grid or in a block; "_" keys are notes
    for grid, where in (({"procesess": 3, "blocks": []}, "procesess"),
                        ({"_about": "x", "blocks": [{"pattern": "churn", "allocators": ["glibc"],
                                                     "sizes": [1024], "_why": "y", "repeat": 2}]}, "repeat")):
        path.write_text(json.dumps(grid))
        proc = cli("sweep", "--config", str(path), "--out", str(tmp_path / "r.jsonl"))
        assert proc.returncode == 2 and f"unknown key(s) {where};" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.slow
@needs_counts
def test_calibrate_and_cost_model_in_report(tmp_path, grid_file):
    out = str(tmp_path / "r.jsonl")
    assert cli("sweep", "--config", grid_file, "--out", out).returncode == 0
    cal = tmp_path / "cal.json"
    proc = cli("calibrate", "--runs", "1", "--out", str(cal))
    assert proc.returncode == 0, proc.stderr
    units = json.loads(cal.read_text())["units_ns"]
    assert units["mmap_munmap_pair"] > 0 and units["brk_call"] > 0
    assert set(units["map_cycle"]) == {"1", "4", "16", "64", "256", "1024"}
    probe = tmp_path / "probe.json"
    assert cli("probe", "boundary", "--out", str(probe)).returncode == 0
    report = tmp_path / "REPORT.md"
    proc = cli("report", out, "--calibration", str(cal), "--probes", str(probe), "--out", str(report))
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert "## Cost model" in text and "modelled cells" in text and "![cost model](cost_model.png)" in text
    assert "### probe boundary" in text and (tmp_path / "probe_boundary.png").exists()
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = cli("report", out, "--calibration", str(bad), "--out", str(report))
    assert proc.returncode == 2 and "units_ns" in proc.stderr


@pytest.mark.parametrize("text,says", [("{}", "no probe results"), ('{"x": 1}', "unknown: x"),
                                       ("[1, 2]", "not an object"), ('{"trim": 3}', "not objects")])
def test_a_probes_file_of_something_else_is_refused(tmp_path, text, says):
    """It would leave every probe section out of the report without a word."""
    cells, probes = tmp_path / "r.jsonl", tmp_path / "probes.json"
    assert cli("run", "--pattern", "churn", "--size", "4K", "--ops", "10", "--out", cells).returncode == 0
    probes.write_text(text)
    proc = cli("report", cells, "--probes", probes, "--out", tmp_path / "REPORT.md")
    assert one_line_error(proc, "not the output of allocbench probe") and says in proc.stderr
    assert not (tmp_path / "REPORT.md").exists()


def test_a_report_of_uncounted_cells_says_so(tmp_path, grid_file):
    """Where neither perf nor strace can count (counter method none), the report still renders: the
    findings say the syscalls were not counted, and the cost model that it has no cell to model."""
    out, cal, report = tmp_path / "r.jsonl", tmp_path / "cal.json", tmp_path / "REPORT.md"
    assert cli("sweep", "--config", grid_file, "--out", out, env=NO_COUNTER).returncode == 0
    assert cli("calibrate", "--runs", "1", "--out", cal, env=NO_COUNTER).returncode == 0
    proc = cli("report", out, "--calibration", cal, "--out", report, env=NO_COUNTER)
    assert proc.returncode == 0, proc.stderr
    text = report.read_text()
    assert "syscall counter: none" in text and "with uncounted vs uncounted syscalls/op" in text
    assert "No modelled cell: the cells' syscalls were not counted" in text


def test_a_cut_short_last_line_is_set_aside_on_resume(tmp_path, grid_file):
    """A kill during a write leaves the last line incomplete: the resume moves it
    to FILE.partial with a warning naming it, and measures that cell again."""
    out = tmp_path / "r.jsonl"
    assert cli("sweep", "--config", grid_file, "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    cut = lines[-1][: len(lines[-1]) // 2]
    out.write_text("".join(lines[:-1]) + cut)
    proc = cli("sweep", "--config", grid_file, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"{out}:{len(lines)}: the last line was cut short" in proc.stderr
    assert "1 measured" in proc.stderr
    assert (tmp_path / "r.jsonl.partial").read_text() == cut + "\n"
    assert len(load_records(str(out))) == len(lines)
    # a bad line anywhere else is still an error that names it
    out.write_text("not json\n" + "".join(lines))
    proc = cli("sweep", "--config", grid_file, "--out", str(out))
    assert proc.returncode == 2 and f"{out}:1: not JSON" in proc.stderr


def test_grid_settings_lists_apply_to_the_backends_that_own_them():
    grid = {"repeats": 1, "blocks": [
        {"pattern": "churn", "allocators": ["glibc", "toy", "jemalloc"], "sizes": [4096],
         "settings": [{}, {"mmap_threshold": 65536}, {"toy_policy": "dontneed"},
                      {"toy_policy": "unmap", "toy_threshold": 65536}]}]}
    got = sorted((s["allocator"], json.dumps(s["settings"], sort_keys=True)) for s in sweep.expand(grid))
    assert got == sorted([("glibc", "{}"), ("glibc", '{"mmap_threshold": 65536}'),
                          ("toy", "{}"), ("toy", '{"toy_policy": "dontneed"}'),
                          ("toy", '{"toy_policy": "unmap", "toy_threshold": 65536}'),
                          ("jemalloc", "{}")])
    bad = {"blocks": [{"pattern": "churn", "allocators": ["toy"], "sizes": [1], "settings": [{"toy_policy": "x"}]}]}
    with pytest.raises(ValueError, match="toy_policy must be one of"):
        sweep.expand({**bad, "blocks": [{**bad["blocks"][0]}]})


def test_the_cost_model_prices_a_cell_from_its_counts_by_hand():
    """132 KiB churn, 100 ops, each an mmap, a munmap and 34 faults (the block, its header and size
    field in whole pages), every page touched. Units: mapping cycles of 1, 64 and 256 pages at
    12,000, 76,000 and 268,000 ns, a pair 10,000 ns, touching 2 ns, malloc+free 50 ns. Per op:
    2 x 5,000 (half a pair each) + 34 x the slope between the cycles around 34 pages, (76,000 -
    12,000) / 63 ns a page + no resident page touched (33 pages, all faulted) + 50."""
    from allocbench.costmodel import evaluate, predict_ns_per_op

    units = {"map_cycle": {"1": 12000.0, "64": 76000.0, "256": 268000.0}, "mmap_munmap_pair": 10000.0,
             "brk_call": 300.0, "madvise_call": 700.0, "mprotect_call": 400.0,
             "touch_page": {"65536": 2.0, "1048576": 2.0}, "malloc_free": {"4096": 50.0, "1048576": 50.0}}
    ops = 100
    rec = {"status": "ok", "threads": 1, "ops": ops, "pattern": "churn", "live": 1, "allocator": "glibc",
           "size_bytes": 132 * 1024, "size_lo": 132 * 1024, "size_hi": 132 * 1024, "touch": "all",
           "syscalls": {"mmap": ops, "munmap": ops, "mremap": 0, "brk": 0, "madvise": 0, "mprotect": 0},
           "minor_faults": 34 * ops, "major_faults": 0,
           "ns_per_op": {"median": 44000.0, "min": 43000.0, "max": 46000.0}, "ns_per_op_repeats": [44000.0]}
    slope = (76000 - 12000) / 63
    want = 2 * 5000 + 34 * slope + 50
    assert predict_ns_per_op(rec, units) == pytest.approx(want)
    [row] = evaluate([rec], units)
    assert row["error"] == pytest.approx(want / 44000 - 1)
    assert row["all_repeats_within"] == (abs(want / 44000 - 1) <= 0.15)
