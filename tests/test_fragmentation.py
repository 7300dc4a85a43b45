"""Fragmentation, one definition for every allocator, from the memory timeline.
Expected values come from chunk rounding and page sizes, not from a run."""
import json
import subprocess

import pytest

from allocbench import _native, runner
from allocbench.backends import BACKENDS
from cells import cell_json

PAGE = 4096
KIB = 1024


def glibc_chunk(request: int) -> int:
    """glibc's request2size on 64-bit: 8 bytes of header, 16-byte alignment, 32 minimum."""
    return max(32, (request + 8 + 15) & ~15)


def record(allocator="glibc", **kw):
    spec = runner.make_spec(allocator=allocator, **kw)
    rec = runner.run_cell(spec)
    assert rec["status"] in ("ok", "skipped"), rec.get("error")
    return rec


def sample(rec, kind):
    t = rec["timeline"]
    i = t["kind"].index(kind)
    return {k: v[i] for k, v in t.items()}


@pytest.fixture(scope="module")
def small_trace(tmp_path_factory):
    """A trace of a real program (this interpreter building and freeing lists)."""
    import sys
    from allocbench import traces
    path = str(tmp_path_factory.mktemp("trace") / "py.trace")
    traces.record([sys.executable, "-c", "x = [list(range(i)) for i in range(3000)]; del x"], path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("allocator", list(BACKENDS))
@pytest.mark.parametrize("pattern", _native.PATTERNS)
def test_every_pattern_and_allocator_stays_in_bounds(pattern, allocator, small_trace):
    """fragmentation_peak and fragmentation_mean lie in [0, 1], overhead_peak >= 1,
    or each is null with the reason in notes."""
    band = {"size_lo": 96 * KIB, "size_hi": 160 * KIB} if pattern in ("band", "grow", "realloc-grow") \
        else {"trace": small_trace, "size": 0} if pattern == "trace" else {"size": 132 * KIB}
    rec = record(allocator, pattern=pattern, ops=None if pattern == "trace" else 256, live=32, repeats=1,
                 threads=2 if pattern == "handoff" else 1, **band)
    if rec["status"] == "skipped":
        pytest.skip(rec["error"])
    for key in ("fragmentation_peak", "fragmentation_mean"):
        v = rec[key]
        assert (v is None and any("fragmentation" in n for n in rec["notes"])) or 0 <= v <= 1, (key, v)
    assert rec["overhead_peak"] is None or rec["overhead_peak"] >= 1
    t = rec["timeline"]
    assert len(t["op"]) >= 64  # a periodic sample every 1/64 of the allocations, plus the boundaries
    assert all(len(col) == len(t["op"]) for col in t.values())


def test_checkerboard_of_64_byte_blocks_keeps_its_rss():
    """65,536 blocks of 64 B, then every other one freed: RSS stays, live halves.
    glibc: 80-byte chunks, so 1 - 64/80 = 0.2 at the peak and 1 - 32/80 = 0.6
    after; the toy: 64-byte slots plus one state byte each, so about 0.5 after."""
    k = 65536
    g = record("glibc", pattern="checkerboard", size=64, ops=k, live=k, repeats=1)
    chunk = glibc_chunk(64)
    slack = 64 * PAGE  # the heap's top chunk pages touched, and its page rounding
    for kind, live_share in (("peak", 1.0), ("half", 0.5)):
        s = sample(g, kind)
        assert s["live_bytes"] == int(k * live_share) * 64
        assert k * chunk <= s["rss_bytes"] <= k * chunk + slack, (kind, s)
        frag = 1 - s["live_bytes"] / s["rss_bytes"]
        assert 1 - s["live_bytes"] / (k * chunk) <= frag <= 1 - s["live_bytes"] / (k * chunk + slack)
    assert sample(g, "half")["rss_bytes"] == sample(g, "peak")["rss_bytes"]
    t = record("toy", pattern="checkerboard", size=64, ops=k, live=k, repeats=1)
    s = sample(t, "half")
    # the toy's 64 KiB spans hold their books at the end (a descriptor of at most
    # 192 bytes, one state byte per slot): (65536 - 192) / 65 slots each
    # (RSS counts touched pages: at least a slot and a state byte per block, at most
    # every span whole plus the allocator's own maps: granule leaf, large table, heap)
    spans = -(-k // ((65536 - 192) // 65))
    least, most = k * 65, spans * 65536 + 64 * PAGE
    assert least <= s["rss_bytes"] <= most
    assert 1 - s["live_bytes"] / least <= 1 - s["live_bytes"] / s["rss_bytes"] <= 1 - s["live_bytes"] / most


def test_fragment_above_a_fixed_threshold_is_page_rounding_only():
    """132 KiB blocks above a fixed 128 KiB threshold are mmapped: each costs its
    chunk rounded up to pages (34 pages), and freeing one unmaps it."""
    size = 132 * KIB
    rec = record(pattern="fragment", size=size, ops=64, live=64, settings={"mmap_threshold": 128 * KIB})
    pages = -(-glibc_chunk(size) // PAGE) * PAGE
    assert rec["fragmentation_peak"] < 1 - size / pages + 0.02  # page rounding, plus the 64-byte pins
    assert rec["retained_after_free_bytes"] < 1 << 20


def test_fragment_at_the_dynamic_default_keeps_the_large_blocks():
    """After the first free the threshold rises above 132 KiB: later blocks land
    on the heap between 64-byte pins, and the freed ones cannot be returned."""
    size = 132 * KIB
    rec = record(pattern="fragment", size=size, ops=64, live=64)
    assert rec["retained_after_free_bytes"] >= 0.9 * 64 * size


def test_timeline_live_bytes_is_the_workloads_own_count():
    size, k = 100 * KIB, 16
    rec = record(pattern="batch", size=size, ops=4 * k, live=k, repeats=1)
    t = rec["timeline"]
    for kind, live in zip(t["kind"], t["live_bytes"]):
        assert live == {"peak": k * size, "freed": 0, "end": 0}.get(kind, live)
    churn = record(pattern="churn", size=size, ops=640, repeats=1)["timeline"]
    periodic = [v for kind, v in zip(churn["kind"], churn["live_bytes"]) if kind == "periodic"]
    assert len(periodic) == 64 and set(periodic) == {size}  # sampled right after each malloc


@pytest.mark.parametrize("args", [
    ["pattern=fragment", "size_lo=135168"],
    ["pattern=fragment", "size_lo=135168", "mallopt=-3:131072"],
    ["pattern=churn", "size_lo=135168", "mallopt=-3:131072"],
    ["pattern=batch", "size_lo=262144"],
    ["allocator=toy", "pattern=batch", "size_lo=1048576"],
    ["pattern=grow", "size_lo=4096", "size_hi=140000"],
    ["pattern=checkerboard", "size_lo=140000"],
])
def test_the_timeline_leaves_the_timed_repeats_as_they_were(args):
    """The timeline is the first warm-up repeat and allocates nothing itself, so
    the timed repeats count exactly the same syscalls with it and without it
    (handoff is left out: its counts follow the threads' timing)."""
    runs = [cell_json(*args, "ops=256", "live=64", "repeats=3", f"timeline={on}") for on in (0, 1)]
    counts = [[r["counts"]["syscalls"] for r in out["repeats"]] for out in runs]
    assert counts[0] == counts[1]
    assert "timeline" not in runs[0] and len(runs[1]["timeline"]["op"]) >= 64


def test_handoff_needs_thread_pairs():
    proc = subprocess.run([runner.cell_binary(), "pattern=handoff", "size_lo=1000"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "even number of threads" in proc.stderr
    out = json.loads(subprocess.run([runner.cell_binary(), "pattern=handoff", "size_lo=1000", "threads=2",
                                     "ops=5000", "repeats=1"], capture_output=True, text=True,
                                    timeout=60).stdout)
    rep = out["repeats"][0]
    assert rep["allocs"] == rep["frees"] == 5000  # every block allocated by one thread, freed by the other
    assert out["timeline"]["live_bytes"][-1] == 0


@pytest.mark.slow
def test_report_draws_the_fragmentation_figures_and_findings(tmp_path):
    """A small grid of `fragment` at the dynamic default and a fixed 128 KiB:
    the four figures exist and the pinning finding names the measured sizes."""
    from allocbench.results import append_record
    from allocbench.report import write_report
    from allocbench.sweep import expand, fragmentation_blocks

    grid = {"repeats": 1, "blocks": [dict(b, allocators=["glibc", "toy"]) for b in fragmentation_blocks(
        sizes=[64 * KIB, 132 * KIB, 256 * KIB], thresholds=[None, 128 * KIB], ops=64)]}
    out = tmp_path / "r.jsonl"
    recs = [runner.run_cell(s) for s in expand(grid)]
    for r in recs:
        append_record(str(out), r)
    figures = write_report(recs, str(tmp_path / "REPORT.md"), str(out))
    for name in ("frag_timelines.png", "frag_vs_size.png", "frag_tradeoff.png", "frag_glibc_breakdown.png"):
        assert name in figures and (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Fragmentation over time" in text
    assert "The dynamic threshold pins memory" in text and "132 KiB" in text
