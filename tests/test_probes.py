"""The probes' exact facts on this machine's glibc."""
import json

import pytest
from conftest import NO_COUNTER, cli, needs_counts, one_line_error

from allocbench import probes
from allocbench.glibc_constants import request2size

KIB, MIB = 1024, 1 << 20


@pytest.mark.parametrize("threshold", [64 * KIB, 128 * KIB, 256 * KIB])
def test_boundary_found_by_search_equals_prediction(threshold):
    res = probes.run_probe("boundary", threshold=threshold)
    assert res["found_when_heap_must_grow"] == res["predicted"] == threshold - 23
    assert res["served_from_free_chunk"]["mmapped"] == 0 and res["served_from_free_chunk"]["setup_on_heap"]
    assert res["served_from_top_chunk"]["mmapped"] == 0 and res["served_from_top_chunk"]["heap_grew"] == 0


def test_dynamic_threshold_rises_to_its_cap_and_settings_freeze_it(dynamic_probe):
    res = dynamic_probe
    page = 4096
    for row in res["steps"][1:]:
        mmapped_chunk = (request2size(row["freed"]) + 8 + page - 1) // page * page
        if mmapped_chunk <= probes.MMAP_THRESHOLD_MAX:
            assert row["threshold_inferred"] == mmapped_chunk, row
        # glibc: trim threshold = 2 x mmap threshold, inside the bracket the search found
        assert row["top_kept_max"] < 2 * row["threshold_inferred"] <= row["trim_threshold_inferred"], row
    assert res["cap_reached"] <= probes.MMAP_THRESHOLD_MAX
    assert res["steps"][-1]["threshold_inferred"] == res["cap_reached"]  # 64 MiB freed: no further rise
    assert res["after_free_1MiB_next_1MiB_mmapped"] is False
    assert res["with_fixed_threshold_mmapped"] is True
    for name, frozen in res["frozen_by"].items():
        assert frozen["boundary_after_freeing_1MiB"] == 128 * KIB - 23, name


@needs_counts
def test_trim_pinned_heap_and_trim_threshold():
    res = probes.run_probe("trim")
    p = res["pinned"]
    assert p["freed"]["heap_top"] == p["allocated"]["heap_top"]  # pinned by the small block
    assert sum(p["free_syscalls"].values()) == 0
    assert p["trim_released"] == 1 and p["trim_syscalls"]["madvise"] >= 1
    assert p["trimmed"]["rss_bytes"] < p["freed"]["rss_bytes"] - 2 * MIB
    assert res["trim_threshold_effect"]["128 KiB"]["trimmed"] == 1
    assert res["trim_threshold_effect"]["64 MiB"]["trimmed"] == 0


@needs_counts
def test_threads_take_mappings_not_brk_unless_one_arena():
    res = probes.arenas(threads=(1, 2), arena_max=(None, 1), turn_arena_max=(None, 1, 2))
    rows = {(r["arena_max"], r["threads"]): r["syscalls"] for r in res["rows"]}
    assert rows[(None, 1)]["brk"] == 0 and rows[(None, 1)]["mmap"] >= 2  # stack + arena heap
    assert rows[(1, 1)]["mmap"] == 1 and rows[(1, 1)]["brk"] > 0          # stack only; main heap
    # threads taking turns: live stays one burst plus the kept blocks, and each arena keeps its own
    turns = {r["arena_max"]: r for r in res["turns"]}
    n = probes.TURN_BURST // probes.TURN_BLOCK
    kept_each = -(-n // probes.TURN_KEEP) * probes.TURN_BLOCK  # blocks 0, 50, 100, ... of each burst
    live = probes.TURN_BURST + (probes.TURN_THREADS - 1) * kept_each + 64  # the last turn's burst, the first call
    assert all(r["live_peak_bytes"] == live for r in turns.values())  # window 1: strictly in turns
    assert turns[None]["arena_heaps"] == probes.TURN_THREADS  # the first caller has the main arena
    assert turns[1]["arena_heaps"] == 0 and turns[2]["arena_heaps"] == 1
    assert turns[None]["rss_growth_peak_bytes"] >= probes.TURN_THREADS * probes.TURN_BURST * 0.9
    assert turns[1]["rss_growth_peak_bytes"] <= 1.2 * live
    assert turns[None]["rss_growth_peak_bytes"] > 3 * turns[1]["rss_growth_peak_bytes"]


def test_probe_arenas_without_a_counter_prints_dashes_not_a_bug(tmp_path):
    """Counter method none: the arenas probe's table shows "-" where it has no count, and the
    report draws its figure with gaps (both crashed, exit 70, on formatting None)."""
    out, report = tmp_path / "arenas.json", tmp_path / "REPORT.md"
    proc = cli("probe", "arenas", "--out", out, env=NO_COUNTER)
    assert proc.returncode == 0, proc.stderr
    row = next(line.split() for line in proc.stdout.splitlines() if line.split()[:2] == ["default", "1"])
    assert row[2:6] == ["-", "-", "-", "-"]
    assert "syscalls not counted" in proc.stdout and "not brk" not in proc.stdout  # no mechanism unseen
    cells = tmp_path / "r.jsonl"
    run = cli("run", "--pattern", "churn", "--size", "4K", "--ops", "10", "--out", cells, env=NO_COUNTER)
    assert run.returncode == 0, run.stderr
    proc = cli("report", cells, "--probes", out, "--out", report, env=NO_COUNTER)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "probe_arenas.png").exists()


def test_toy_boundary_is_its_threshold():
    res = probes.run_probe("boundary", allocator="toy", threshold=64 * KIB)
    assert res["found_when_heap_must_grow"] == 64 * KIB + 1 and res["agrees"]


def test_cli_probe_json_and_errors(tmp_path):
    out = tmp_path / "b.json"
    proc = cli("probe", "boundary", "--json", "--out", out, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["agrees"] is True and json.loads(out.read_text())["agrees"] is True
    for args in (["trim", "--allocator", "toy"], ["all", "--mmap-threshold", "64K"],
                 ["dynamic", "--mmap-threshold", "64K"], ["nope"]):
        assert one_line_error(cli("probe", *args, timeout=300))
