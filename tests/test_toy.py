"""The toy allocator: contract, stress (plain and sanitized), Python handles,
randomised sequences, misuse, what glibc promises (the same C program run on
glibc and on the preloaded toy), footprint against glibc, LD_PRELOAD into real
programs, and the backend.  Every C-level test runs under every policy."""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
from conftest import ENV, ROOT, cli, fresh_json, fresh_python, needs_counts
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from allocbench import _native, toy

BUILD = os.path.join(ROOT, "csrc", "build")
TOYLIB = toy.library_path()
preload = pytest.mark.skipif(TOYLIB is None, reason="libtoyalloc.so not built (make build)")


def run(cmd, env=None, timeout=600, preexec_fn=None):
    return subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout, preexec_fn=preexec_fn)


POLICIES = toy.POLICIES
DEFER_ALL = {**ENV, "TOYALLOC_DEFER_BYTES": "0"}  # every thread defers free's check (see toy_free)


@pytest.mark.parametrize("policy", POLICIES)
def test_contract(policy):
    proc = run([os.path.join(BUILD, "toy_contract"), policy])
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip().endswith(" 0 failed")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("misuse, want", [
    (("double-free", "small"), "double free"), (("double-free", "large"), "double free"),
    (("double-free-remote",), "double free"), (("double-free-span",), "double free"),
    (("realloc-freed",), "double free or use after free"), (("unused-slot",), "never returned"),
    (("bad-free",), "never returned")])
def test_misuse_aborts_with_a_message_under_every_policy(policy, misuse, want):
    proc = run([os.path.join(BUILD, "toy_contract"), policy, *misuse])
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout)
    assert want in proc.stderr, proc.stderr


@pytest.mark.parametrize("when", ["next", "malloc", "exit"])
@pytest.mark.parametrize("defer", [False, True])
def test_a_double_free_is_caught_at_once_or_one_free_later_when_deferred(when, defer):
    """A block freed again while it waits in the thread's cache: caught at that free, or, by a thread
    that defers the check (TOYALLOC_DEFER_BYTES=0: every thread), after that free returns: at the next
    free, at the malloc that would hand the block out, or at the program's exit."""
    proc = run([os.path.join(BUILD, "toy_contract"), "keep", f"double-free-{when}"], env=DEFER_ALL if defer else None)
    assert proc.returncode == -signal.SIGABRT, (proc.returncode, proc.stdout)
    assert "double free" in proc.stderr, proc.stderr
    assert ("the second free of p returned" in proc.stdout) == defer, proc.stdout


def books(**kw) -> str:
    """csrc/tests/toy_books run to a pass (every check held); its output, which says which granule map it
    checked.  kw: run's, such as preexec_fn."""
    proc = run([os.path.join(BUILD, "toy_books")], **kw)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(" 0 failed"), proc.stdout
    return proc.stdout


def test_books_slot_numbers_live_bytes_and_adopting_own_spans():
    """From inside the toy (csrc/tests/toy_books.c): every size class numbers each offset from a span's
    base as its definition says (a slot's start: offset / size; anything else, or below the base: past
    any slot), the live bytes are exact while one thread frees another's blocks, both alive, and a
    thread adopting a span takes one it owned last among the first ADOPT_LOOK (32) listed, else the first."""
    books()


def _address_space_limit(limit):
    """A preexec_fn: RLIMIT_AS of limit bytes in the child."""
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _strict_overcommit() -> bool:
    """vm.overcommit_memory=2: MAP_NORESERVE is ignored, so the flat map's 16 GiB would be charged and
    the toy keeps the two-level map."""
    with open("/proc/sys/vm/overcommit_memory") as f:
        return f.read().strip() == "2"


def test_granule_map_flat_and_in_two_levels():
    """The map from an address to its span is one flat array of 2^31 entries (16 GiB of address,
    MAP_NORESERVE) where the kernel grants it, and two levels where it refuses: under an
    address-space limit of 4 GiB it must, and every block still resolves to its span (toy_books),
    and threads freeing each other's blocks never get memory twice (toy_remote)."""
    assert ("granule map: two levels" if _strict_overcommit() else "granule map: flat") in books()
    limited = _address_space_limit(4 << 30)
    assert "granule map: two levels" in books(timeout=120, preexec_fn=limited)
    proc = run([os.path.join(BUILD, "toy_remote"), "8", "20000", "keep"], timeout=120, preexec_fn=limited)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 overlaps, 0 corruptions, live 0 bytes" in proc.stdout


def test_a_refused_span_reservation_halves_the_next_one_instead_of_asking_again_at_every_span():
    """Under an address-space limit 700 MiB above what the interpreter holds, the first span's 1 GiB
    reservation is refused and 512 MiB granted, and the next 39 spans are carved from it: 40 spans of
    64 KiB (2,560 blocks of 1 KiB, 64 a span) for 2 reservation calls, plus one call and 512 KiB for
    each leaf of the two-level granule map (the flat map's 16 GiB refused too), one per 4 GiB the blocks
    lie in (none if the flat map was made before the limit).  Asking for 1 GiB again at every span
    made 81 mmap and 41 munmap calls."""
    if _strict_overcommit():
        pytest.skip("vm.overcommit_memory=2: a reservation is charged in full, and its refusals are the commit limit's")
    out = fresh_json("""
        import json, resource
        from allocbench import toy
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) for line in f if line.startswith("VmSize:")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (700 << 20), resource.RLIM_INFINITY))
        s = toy.stats()
        blocks = [toy.Block(1024) for _ in range(64 * 40)]
        t = toy.stats()
        with open("/proc/self/maps") as f:
            sizes = [int(hi, 16) - int(lo, 16) for lo, hi in (line.split()[0].split("-") for line in f)]
        print(json.dumps({"calls": {k: t[k] - s[k] for k in ("mmap_calls", "munmap_calls", "mapped_bytes")},
                          "leaves": 0 if 16 << 30 in sizes else len({b.address >> 32 for b in blocks}),
                          "reservations": [n >> 20 for n in sizes if 256 << 20 <= n <= 1 << 30]}))
    """)
    leaves = out["leaves"]
    assert out["calls"] == {"mmap_calls": 2 + leaves, "munmap_calls": 0,
                            "mapped_bytes": 40 * (64 << 10) + leaves * (512 << 10)}, out
    assert out["reservations"] == [512], out


@preload
def test_the_flat_granule_map_reserves_no_memory_and_stays_out_of_core_dumps():
    """The flat map's 16 GiB mapping, in a program the toy serves: MAP_NORESERVE (smaps' VmFlags nr),
    MADV_DONTDUMP (dd), and only the pages of entries written resident, far below its size."""
    if _strict_overcommit():
        pytest.skip("vm.overcommit_memory=2: the toy keeps the two-level map")
    show = textwrap.dedent(r"""
        import re
        for m in re.split(r"\n(?=[0-9a-f]+-)", open("/proc/self/smaps").read()):
            lo, hi = (int(x, 16) for x in m.split()[0].split("-"))
            if hi - lo == 16 << 30:
                print(re.search(r"Rss: +(\d+) kB", m)[1], re.search(r"VmFlags:(.*)", m)[1].split())
        """)
    proc = run([sys.executable, "-c", show], env={**ENV, "LD_PRELOAD": TOYLIB})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout  # exactly one mapping of 16 GiB: the map
    rss_kib, flags = lines[0].split(" ", 1)
    assert "'nr'" in flags and "'dd'" in flags, flags
    assert int(rss_kib) <= 64 * 4, rss_kib  # a page of entries for each 32 MiB of spans: a few pages here


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_stress_4_threads_under_every_policy(policy):
    proc = run([os.path.join(BUILD, "toy_stress"), "4", "500000", policy])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 corruptions, fork child ok, live 0 bytes" in proc.stdout


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("threads", [2, 8, 32])
def test_remote_frees_never_hand_out_memory_twice(threads, policy):
    """Threads free and realloc each other's blocks through one shared table, and exit while
    others still free their blocks: no block handed out overlaps a live one (a tree of the live
    ranges), none loses a write, and 0 live bytes remain."""
    proc = run([os.path.join(BUILD, "toy_remote"), str(threads), str(400000 // threads), policy], timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 overlaps, 0 corruptions, live 0 bytes" in proc.stdout


@pytest.mark.parametrize("threads", [2, 8, 32])
def test_remote_frees_never_hand_out_memory_twice_with_every_free_check_deferred(threads):
    proc = run([os.path.join(BUILD, "toy_remote"), str(threads), str(400000 // threads), "keep"], env=DEFER_ALL,
               timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 overlaps, 0 corruptions, live 0 bytes" in proc.stdout


def test_stress_and_contract_with_every_free_check_deferred():
    proc = run([os.path.join(BUILD, "toy_stress"), "4", "200000", "keep"], env=DEFER_ALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 corruptions, fork child ok, live 0 bytes" in proc.stdout
    proc = run([os.path.join(BUILD, "toy_contract"), "keep"], env=DEFER_ALL)
    assert proc.returncode == 0 and proc.stdout.strip().endswith(" 0 failed"), proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_stress_and_contract_under_asan_and_ubsan(tmp_path):
    exes = {}
    for name in ("toy_stress", "toy_contract", "toy_remote", "toy_books"):
        exes[name] = str(tmp_path / name)
        toy = [] if name == "toy_books" else [os.path.join(ROOT, "csrc", "lib", "toyalloc.c")]  # it includes it
        build = run(["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
                     "-I", os.path.join(ROOT, "csrc", "lib"), "-o", exes[name],
                     os.path.join(ROOT, "csrc", "tests", f"{name}.c"), *toy, "-lpthread"])
        assert build.returncode == 0, build.stderr
    proc = run([exes["toy_books"]])
    assert proc.returncode == 0 and "runtime error" not in proc.stderr, proc.stdout + proc.stderr[-2000:]
    for policy in POLICIES:
        for cmd in ([exes["toy_stress"], "4", "150000", policy], [exes["toy_contract"], policy],
                    [exes["toy_remote"], "8", "20000", policy]):
            proc = run(cmd)
            assert proc.returncode == 0, (policy, proc.stdout + proc.stderr[-2000:])
            assert "ERROR" not in proc.stderr and "runtime error" not in proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc not installed")
def test_remote_frees_are_race_free_under_tsan(tmp_path):
    """The lock-free remote lists and the unlocked reads beside them, under ThreadSanitizer:
    8 and 32 threads freeing each other's blocks, no data race reported."""
    exe = str(tmp_path / "toy_remote_tsan")
    build = run(["gcc", "-O1", "-g", "-fsanitize=thread", "-I", os.path.join(ROOT, "csrc", "lib"), "-o", exe,
                 os.path.join(ROOT, "csrc", "tests", "toy_remote.c"), os.path.join(ROOT, "csrc", "lib", "toyalloc.c"),
                 "-lpthread"])
    assert build.returncode == 0, build.stderr
    for threads, ops, policy in (("8", "20000", "keep"), ("32", "2000", "unmap")):
        proc = run([exe, threads, ops, policy])
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
        assert "ThreadSanitizer" not in proc.stderr, proc.stderr[-3000:]


def _sections_of(source: str) -> list[str]:
    """The section names of malloc_promises.c's table, in its order."""
    table = source.split("sections[] = {", 1)[1].split("};", 1)[0]
    return re.findall(r'\{"([\w-]+)", \w+, \d+\}', table)


PROMISES = _sections_of(open(os.path.join(ROOT, "csrc", "tests", "malloc_promises.c")).read())


def _promises(env):
    proc = run([os.path.join(BUILD, "malloc_promises")], env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout
    sections = [line for line in proc.stdout.splitlines() if line.startswith(("ok ", "FAIL "))]
    assert sections == [f"ok {name}" for name in PROMISES], proc.stdout


def test_glibc_keeps_the_promises_the_toy_is_held_to():
    """The checks themselves are right: glibc, which they describe, passes them."""
    _promises(ENV)


@pytest.mark.slow
@preload
@pytest.mark.parametrize("policy", POLICIES)
def test_preloaded_toy_keeps_glibcs_promises(policy):
    """errno across free, realloc(p, 0), realloc of a large block the program split
    with madvise, calloc zeroing after a dirty free (64 B to 3 MiB), ENOMEM from every
    entry point, alignments with glibc's return codes, usable size, 4 threads churning
    256 KiB with tags at both ends, a thread exiting with blocks, fork while threads
    allocate, fork against stdio's locks, fork from a signal handler."""
    _promises(dict(ENV, LD_PRELOAD=TOYLIB, TOYALLOC_POLICY=policy))


def _peak_rss_growth(workload, env):
    proc = run([os.path.join(BUILD, "malloc_footprint"), workload], env=env)
    assert proc.returncode == 0, proc.stderr
    fields = dict(kv.split("=") for kv in proc.stdout.split())
    return int(fields["peak_rss_growth_bytes"]), int(fields["live_peak_bytes"])


@pytest.mark.slow
@preload
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("workload,limit", [("memalign64", 2.0), ("phases", 1.5)])
def test_footprint_against_glibc(policy, workload, limit):
    """100,000 posix_memalign(64, 64) within 2x glibc's RSS; three phases (small
    classes, other classes, large blocks) within 1.5x glibc's peak."""
    glibc_rss, live = _peak_rss_growth(workload, ENV)
    toy_rss, toy_live = _peak_rss_growth(workload, dict(ENV, LD_PRELOAD=TOYLIB, TOYALLOC_POLICY=policy))
    assert toy_live == live >= 6_400_000
    assert toy_rss <= limit * glibc_rss, (toy_rss, glibc_rss)


def test_large_blocks_start_a_few_lines_into_their_mapping():
    """A large block starts at a cache line 2 to 61 into its first page (its colour), never at a
    page's edge: the colour takes what the block's last page leaves free, and the mapping a page more
    only when that is under two lines.  Blocks in different mappings start at different lines (chosen
    by the mapping's address); realloc moves the pages and keeps the colour; an aligned request gets
    its alignment and no colour.
    In a fresh interpreter with nothing cached, so every block gets a mapping of the length asked."""
    fresh_python("""
        from allocbench import toy
        def colour(b):
            c = b.address % 4096
            assert c % 64 == 0 and 2 * 64 <= c <= 61 * 64, c
            return c
        def mapping(n, colour=128):  # n and its colour rounded up to a page (a new block: two lines)
            return -(-(n + colour) // 4096) * 4096
        sizes = [4 << 20, (4 << 20) - 100, (4 << 20) - 200, (4 << 20) - 3000, 200_000, 1 << 20]
        blocks = [toy.Block(n) for n in sizes] + [toy.Block(1 << 20) for _ in range(30)]
        for b in blocks:
            assert b.is_mmapped and b.usable_size >= b.size
            assert b.usable_size + colour(b) == mapping(b.size), (b.size, colour(b), b.usable_size)
        assert colour(blocks[2]) in (128, 192)  # 200 bytes free in the last page: lines 2 and 3
        assert len({colour(b) for b in blocks[6:]}) > 1
        b = blocks[4]
        b.fill(3)
        before = colour(b)
        b.realloc(5_000_000)
        assert b.memoryview()[199_999] == 3
        assert colour(b) == before and b.usable_size + before == mapping(5_000_000, before)
        for align in (4096, 65536):
            with toy.Block.aligned(align, 1 << 20) as a:
                assert a.address % align == 0 and a.usable_size == 1 << 20
        for b in blocks:
            b.free()
    """)


def test_a_block_of_whole_huge_pages_keeps_them_on_huge_page_boundaries():
    """A block whose size is whole huge pages (2 MiB) takes a page more for its colour, so its mapping
    would lose the 2 MiB boundary the kernel gives a mapping of whole huge pages (Linux 6.7 on; probed
    here with a mapping of Python's).  The toy maps the whole huge pages and then the page before them,
    one kernel mapping (/proc/self/maps): two mmaps, the block starts in that page and its next page is
    on a 2 MiB boundary; or, where that page was taken (the second mmap refused), the mapping grew at its
    end instead (one mremap).  A size of odd megabytes is one mmap of one length.  In a fresh
    interpreter, nothing cached."""
    proc = fresh_python("""
        import ctypes, mmap
        from allocbench import toy
        MIB, HUGE, PAGE = 1 << 20, 2 << 20, 4096
        probe = mmap.mmap(-1, 4 * MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if ctypes.addressof(ctypes.c_char.from_buffer(probe)) % HUGE:
            print("SKIP: this kernel does not place whole huge pages on their boundary")
            raise SystemExit(0)
        def vma_of(addr):  # the kernel mapping holding addr: (start, end)
            for line in open("/proc/self/maps"):
                lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                if lo <= addr < hi:
                    return lo, hi
        blocks, leads = [], 0  # kept to the end: each block a mapping of its own
        for size, mmaps in ((4 * MIB, 2), (8 * MIB, 2), (3 * MIB, 1)):
            s = toy.stats()
            b = toy.Block(size)
            t = toy.stats()
            base = b.address - b.address % PAGE
            assert b.usable_size + b.address % PAGE == size + PAGE, size  # the colour's page (no room left)
            lo, hi = vma_of(base)
            assert lo <= base and base + size + PAGE <= hi, (hex(base), hex(lo), hex(hi))
            calls = (t["mmap_calls"] - s["mmap_calls"], t["mremap_calls"] - s["mremap_calls"])
            assert calls in ([(2, 0), (2, 1)] if mmaps == 2 else [(1, 0)]), (size, s, t)
            if calls == (2, 0):
                assert (base + PAGE) % HUGE == 0, (size, hex(base))
                leads += 1
            blocks.append(b)
        assert leads, "the page before was taken both times"  # free but where the kernel's gap starts there
        for b in blocks:
            b.free()
    """)
    if proc.stdout.startswith("SKIP"):
        pytest.skip(proc.stdout.strip())


@pytest.mark.parametrize("size, stashed", [(4 << 20, True), ((4 << 20) + 8192, False)])
def test_a_block_of_the_cap_stays_in_its_threads_stash(size, stashed):
    """Under keep a thread keeps a freed mapping of up to the cache's cap (and the page its colour adds)
    for itself: another thread asking for the same size maps its own, and the first thread gets its
    mapping back with no mmap.  A larger block goes to the shared cache, where the other thread finds
    it.  In a fresh interpreter (nothing cached), the default cap (4 MiB)."""
    fresh_python(f"""
        import threading
        from allocbench import toy
        MIB = 1 << 20
        toy.configure(policy="keep")
        assert toy.config()["cache_cap"] == 4 * MIB
        def elsewhere(size):  # a malloc of size on another thread: the mmap calls it made
            made = []
            def run():
                s = toy.stats()
                toy.Block(size).free()
                made.append(toy.stats()["mmap_calls"] - s["mmap_calls"])
            t = threading.Thread(target=run)
            t.start()
            t.join()
            return made[0]
        toy.Block({size}).free()
        assert (elsewhere({size}) > 0) == {stashed}  # mapped its own (one call, or two: see map_large)
        s = toy.stats()
        toy.Block({size}).free()
        assert toy.stats()["mmap_calls"] == s["mmap_calls"]
    """)


# a fresh interpreter's toy.config(), as JSON on its stdout: what the toy took from TOYALLOC_*
PRINT_TOY_CONFIG = "from allocbench import toy; import json; print(json.dumps(toy.config()))"


@pytest.mark.parametrize("decay_ms", [0, 600_000])
def test_a_cell_takes_the_decay_setting(decay_ms):
    """A sweep's toy_decay_ms reaches the toy in the cell (it once went as an argument the cell never
    read, so both values of toy.json's decay axis measured the default).  Blocks of 8 MiB, twice the
    4 MiB fixed cap: with no decay none may stay cached and each freed one goes back with a munmap;
    with a decay of ten minutes the last one freed is kept."""
    from allocbench import runner

    rec = runner.run_cell(runner.make_spec(allocator="toy", pattern="random-free", size=8 << 20, live=4, ops=40,
                                           touch=False, repeats=1, warmup=0, settings={"toy_decay_ms": decay_ms}))
    assert rec["status"] == "ok", rec
    stats, frees = rec["toy_stats_after"], rec["calls"]["frees"]
    assert frees >= 40
    if decay_ms == 0:
        assert stats["cached_bytes"] <= 4 << 20 and stats["munmap_calls"] >= frees, stats
    else:
        assert stats["cached_bytes"] >= 8 << 20, stats


def test_the_knob_edges_the_malloc_suites_run_are_each_knobs_own_and_the_toy_takes_them():
    """make glibc-tests and make mimalloc-stress run the toy at its knobs' edges, as allocbench info
    lists them: the threshold at its lowest and highest, the cap and the decay each at 0, and both, and
    every free's check deferred (the defer bound at 0).
    Each assignment names a knob of backends.TOY_KNOBS with a value in its range, and the toy, started
    with it, reads it (a value it ignored would leave the suites testing the default)."""
    from allocbench.backends import TOY_KNOBS

    knobs = {k.env: k for k in TOY_KNOBS}
    runs = cli("info", "--field", "toy_knob_edges").stdout.split()
    threshold, cap, decay, defer = (knobs[f"TOYALLOC_{n}"] for n in ("THRESHOLD", "CACHE_CAP", "DECAY_MS",
                                                                      "DEFER_BYTES"))
    want = [{threshold.env: threshold.lo}, {threshold.env: threshold.hi}, {cap.env: 0}, {decay.env: 0},
            {cap.env: 0, decay.env: 0}, {defer.env: 0}]
    got = [{name: int(value) for name, value in (a.split("=") for a in run.split(","))} for run in runs]
    assert got == want
    for run in got:
        for name, value in run.items():
            knobs[name].check(value)
        config = json.loads(fresh_python(PRINT_TOY_CONFIG, env={k: str(v) for k, v in run.items()}).stdout)
        for name, key in ((threshold.env, "threshold"), (cap.env, "cache_cap")):
            if name in run:
                assert config[key] == run[name], (run, config)


MAX_THRESHOLD = _native.TOY_MAX_THRESHOLD_BYTES


@pytest.mark.parametrize("name, value, why", [
    ("TOYALLOC_THRESHOLD", str(MAX_THRESHOLD + 1), f"above the largest, {MAX_THRESHOLD}"),
    ("TOYALLOC_THRESHOLD", "128K", "not a whole number"),
    ("TOYALLOC_CACHE_CAP", "-1", "not a whole number"),
    ("TOYALLOC_POLICY", "madvise", "not a policy; one of " + " ".join(POLICIES)),
])
def test_a_toyalloc_value_the_toy_cannot_take_is_named_on_stderr_and_the_default_kept(name, value, why, tmp_path):
    """A bad TOYALLOC_* value is not taken silently (an experiment would measure the default): the toy,
    in allocbench's process or preloaded into a program, names it in one line on stderr, as jemalloc does
    for a bad MALLOC_CONF, keeps the default and runs on.  Reading it leaves the program's errno as it
    was (a library call never sets errno to 0: C11 7.5)."""
    line = f"toyalloc: {name}={value} ignored: {why}"
    src, exe = tmp_path / "first_malloc.c", tmp_path / "first_malloc"
    src.write_text('#include <errno.h>\n#include <stdio.h>\n#include <stdlib.h>\n'
                   'int main(void) { errno = 42; void *p = malloc(10); int e = errno; free(p);'
                   ' printf("%d\\n", e); return 0; }\n')
    assert subprocess.run(["gcc", "-O0", "-o", str(exe), str(src)]).returncode == 0
    first = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60,
                           env=dict(ENV, LD_PRELOAD=TOYLIB, **{name: value}))
    assert (first.returncode, first.stdout.strip()) == (0, "42") and line in first.stderr.splitlines(), first
    proc = fresh_python(PRINT_TOY_CONFIG, env={name: value})
    assert line in proc.stderr.splitlines(), proc.stderr
    assert json.loads(proc.stdout) == {"threshold": 128 << 10, "cache_cap": 4 << 20, "policy": "keep"}
    preloaded = subprocess.run([sys.executable, "-c", "print(len(bytearray(1 << 20)))"], capture_output=True,
                               text=True, env=dict(ENV, LD_PRELOAD=TOYLIB, **{name: value}), timeout=60)
    assert preloaded.returncode == 0 and preloaded.stdout.strip() == str(1 << 20)
    assert line in preloaded.stderr.splitlines(), preloaded.stderr


def test_toy_block_specifics():
    """What only the toy's handle has (the shared contract is in test_blocks.py)."""
    with toy.Block(300_000) as b:  # above the 128 KiB threshold: a mapping of its own
        assert b.is_mmapped and b.usable_size >= 300_000
        b.fill(3)
        b.realloc(5_000_000)
        assert b.memoryview()[299_999] == 3
    assert not toy.Block(100).is_mmapped
    for align in (16, 256, 4096, 65536, 1 << 20):
        assert toy.Block.aligned(align, 1000).address % align == 0
    for bad in (0, 3, 24, 1000):
        with pytest.raises(ValueError, match="power of two"):
            toy.Block.aligned(bad, 10)


def test_every_small_request_gets_its_class_size():
    """The classes from their definition: 16-byte steps to 128 B, then four per power of two (5/4,
    6/4, 7/4 and 8/4 of it).  Every size to 2 KiB, across the table that serves those to 1 KiB and
    the computed classes beyond, is handed the smallest class that holds it."""
    sizes = [16 * k for k in range(1, 9)] + [(128 << e) * q // 4 for e in range(4) for q in (5, 6, 7, 8)]
    for n in range(0, 2049):
        want = min(s for s in sizes if s >= max(n, 1))
        with toy.Block(n) as b:
            assert b.usable_size == want, n


def test_configure_and_stats():
    before = toy.config()
    try:
        toy.configure(threshold=64 * 1024, cache_cap=1 << 20, policy="unmap")
        s0 = toy.stats()
        toy.Block(100_000).free()
        s1 = toy.stats()
        assert s1["munmap_calls"] == s0["munmap_calls"] + 1
        for bad in ({"threshold": 2 << 20}, {"policy": "nope"}, {"cache_cap": -1}):
            with pytest.raises(ValueError):
                toy.configure(**bad)
    finally:
        toy.configure(**before)


class ToyMachine(RuleBasedStateMachine):
    """Random alloc/realloc/free sequences; each live block holds a pattern of
    its own, checked before it changes, and no two live blocks overlap."""
    blocks = Bundle("blocks")

    def __init__(self):
        super().__init__()
        self.live = {}  # id(block) -> (block, tag)
        self.tag = 0
        self.config = toy.config()

    @rule(policy=st.sampled_from(POLICIES), cache_cap=st.sampled_from([0, 1 << 20, 32 << 20]))
    def set_policy(self, policy, cache_cap):
        """Switching policy with blocks live and mappings cached must keep every block intact."""
        toy.configure(policy=policy, cache_cap=cache_cap)

    def _new(self, block):
        self.tag = self.tag % 255 + 1
        block.fill(self.tag)
        self.live[id(block)] = (block, self.tag)
        return block

    @rule(target=blocks, size=st.integers(0, 600_000))
    def malloc(self, size):
        return self._new(toy.Block(size))

    @rule(target=blocks, n=st.integers(0, 100), size=st.integers(0, 5000))
    def calloc(self, n, size):
        b = toy.Block.calloc(n, size)
        assert bytes(b.memoryview()) == bytes(n * size)
        return self._new(b)

    @rule(target=blocks, shift=st.integers(4, 17), size=st.integers(0, 200_000))
    def aligned(self, shift, size):
        b = toy.Block.aligned(1 << shift, size)
        assert b.address % (1 << shift) == 0
        return self._new(b)

    @rule(block=blocks, size=st.integers(0, 600_000))
    def realloc(self, block, size):
        if block.freed:
            return
        _, tag = self.live[id(block)]
        old = block.size
        block.realloc(size)
        keep = min(old, size)
        assert bytes(block.memoryview()[:keep]) == bytes([tag]) * keep
        block.fill(tag)

    @rule(block=consumes(blocks))
    def free(self, block):
        if block.freed:
            return
        _, tag = self.live.pop(id(block))
        assert bytes(block.memoryview()) == bytes([tag]) * block.size
        block.free()

    @invariant()
    def no_overlap_and_intact(self):
        spans = sorted((b.address, b.address + max(b.size, 1), b, t) for b, t in self.live.values())
        for (_, a1, _, _), (b0, _, _, _) in zip(spans, spans[1:]):
            assert a1 <= b0, "live blocks overlap"
        for _, _, b, t in spans:
            if b.size:
                view = b.memoryview()
                assert view[0] == t and view[-1] == t

    def teardown(self):
        for b, _ in self.live.values():
            b.free()
        toy.configure(**self.config)


TestToyStateful = ToyMachine.TestCase
TestToyStateful.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_randomised_misuse_never_crashes():
    """1,000 random misuse sequences in a child process: the interpreter survives,
    and exactly the actions the handle's contract forbids raise.  The expected
    count comes from a model of that contract run on the same random choices."""
    proc = fresh_python("""
        import random
        from allocbench import toy
        rng = random.Random(7)
        wrong = []  # (action, must raise, did raise) where the handle and the model disagree
        for _ in range(1000):
            b = toy.Block(rng.choice([0, 16, 5000, 200_000, 3_000_000]))
            views = []
            freed = False  # the model: a freed block refuses everything; exports block free/realloc
            for _ in range(rng.randint(1, 8)):
                action = rng.choice(["free", "fill", "view", "realloc", "release", "align"])
                must_raise = (action in ("free", "fill", "view", "realloc") and freed) or \\
                             (action in ("free", "realloc") and bool(views)) or action == "align"
                did_raise = False
                try:
                    if action == "free": b.free(); freed = True
                    elif action == "fill": b.fill(rng.randint(0, 255))
                    elif action == "view": views.append(memoryview(b))
                    elif action == "realloc": b.realloc(rng.choice([0, 10, 300_000]))
                    elif action == "release" and views: views.pop().release()
                    elif action == "align": toy.Block.aligned(rng.choice([3, 24, 100, 0]), 10)
                except (ValueError, BufferError):
                    did_raise = True
                if did_raise != must_raise:
                    wrong.append((action, must_raise, did_raise))
            for v in views: v.release()
        print("survived", len(wrong), wrong[:5])
    """)
    assert proc.returncode == 0 and proc.stdout.startswith("survived")
    assert proc.stdout.split()[1] == "0", proc.stdout  # each action, not a total that errors could cancel


@preload
def test_preload_python_runs_allocbench_itself(tmp_path):
    """The interpreter under the toy runs allocbench's own CLI end to end (a cell
    run, a probe, the toy's Python handles), and glibc.Block's malloc is the toy's."""
    env = dict(ENV, LD_PRELOAD=TOYLIB)
    out = tmp_path / "cells.jsonl"
    proc = cli("run", "--pattern", "churn", "--size", "132K", "--ops", "2000", "--repeats", "2",
               "--mmap-threshold", "128K", "--out", out, env=env)
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(out.read_text())
    assert rec["status"] == "ok" and rec["ops"] == 2000
    proc = cli("probe", "boundary", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    probe = run([sys.executable, "-c", "from allocbench import glibc, toy; b = toy.Block(10)\n"
                 "try: glibc.Block(200_000).is_mmapped\nexcept RuntimeError as e: print(e)"], env=env)
    assert probe.returncode == 0, probe.stderr
    assert "not glibc's" in probe.stdout  # no glibc chunk header in front of the toy's blocks


@preload
def test_preload_numpy_matplotlib_and_gcc(tmp_path):
    env = dict(ENV, LD_PRELOAD=TOYLIB, MPLBACKEND="agg")
    proc = run([sys.executable, "-c", "import numpy, matplotlib, matplotlib.pyplot as plt; "
                "print(numpy.linalg.inv(numpy.eye(50)).trace())"], env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "50.0", proc.stderr
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    src = tmp_path / "hello.c"
    src.write_text('#include <stdio.h>\nint main(void){puts("hi");return 0;}\n')
    proc = run(["gcc", "-O2", "-o", str(tmp_path / "hello"), str(src)], env=env)
    assert proc.returncode == 0, proc.stderr
    assert run([str(tmp_path / "hello")]).stdout == "hi\n"


def _toy_run(*args):
    proc = cli("run", "--json", "--allocator", "toy", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_counts
def test_toy_backend_churn_makes_no_syscalls_per_op():
    # 12M: above the default cap (4 MiB); the freed block is kept as the program's demand
    for size, ops in (("4K", 5000), ("132K", 5000), ("1M", 5000), ("12M", 500)):
        rec = _toy_run("--pattern", "churn", "--size", size, "--ops", str(ops), "--repeats", "2")
        assert sum(rec["syscalls"].values()) / rec["ops"] < 0.001, (size, rec["syscalls"])
        assert rec["minor_faults"] / rec["ops"] < 0.01, (size, rec["minor_faults"])


def test_toy_backend_batch_returns_all_but_its_cache():
    rec = _toy_run("--pattern", "batch", "--size", "1M", "--ops", "256", "--live", "256",
                   "--repeats", "1", "--toy-cache-cap", "32M")
    # the cap, and the last block freed, kept for the decay (a churn would ask for it again)
    assert rec["toy_stats_after"]["cached_bytes"] <= (32 << 20) + (1 << 20)
    assert rec["retained_after_free_bytes"] <= (32 << 20) + (2 << 20)


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "unmap"])
def test_a_split_block_freed_joins_its_cached_tail(policy):
    """A block split from a cached mapping comes back whole when freed: it joins the tail that stayed
    cached, so the mapping's whole size is taken again with no mmap and no mremap (without the join, the
    5 MiB tail is the largest cached range, grown by mremap).  Under every policy that caches; the
    block is larger than the cap and a page, so no thread's stash keeps it or its head apart.  In a
    fresh interpreter."""
    fresh_python(f"""
        from allocbench import toy
        MIB = 1 << 20
        toy.configure(cache_cap=8 * MIB, policy={policy!r})
        toy.Block(8 * MIB + 8192).free()  # cached whole
        split = toy.Block(3 * MIB)  # its head; the 5 MiB tail stays cached
        split.free()
        s = toy.stats()
        again = toy.Block(8 * MIB + 8192)
        t = toy.stats()
        assert t["mmap_calls"] == s["mmap_calls"] and t["mremap_calls"] == s["mremap_calls"], (s, t)
        again.free()
    """)


def test_a_cached_mapping_split_after_its_first_page_is_grown_with_its_other_pages():
    """A program that changes its block from the first whole page on (numpy's MADV_HUGEPAGE on its
    arrays; here MADV_DONTFORK, which every kernel has) leaves the block's mapping two mappings to the
    kernel, its first page and the rest, and mremap refuses to grow a range across two (EFAULT).  Grown
    for a larger block, such a cached mapping is grown without its first page, which is let go: two
    mremaps (the refused one, then the rest's), one munmap, no mmap, and what the rest held is still
    there, not faulted in afresh as zeros.  Under keep with a 1 MiB cap, so the 4 MiB block goes to the
    shared cache, not a stash.  In a fresh interpreter, nothing cached."""
    fresh_python("""
        import ctypes
        from allocbench import toy
        MIB, PAGE, MADV_DONTFORK = 1 << 20, 4096, 10
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        toy.configure(cache_cap=MIB, policy="keep")
        old = toy.Block(4 * MIB)
        old.fill(0xAB)
        base = old.address - old.address % PAGE
        mapping = old.usable_size + old.address % PAGE  # 4 MiB and the colour's page
        assert libc.madvise(base + PAGE, mapping - PAGE, MADV_DONTFORK) == 0, ctypes.get_errno()
        old.free()
        s = toy.stats()
        new = toy.Block(6 * MIB)  # the cached 4 MiB and its page, grown by 2 MiB
        t = toy.stats()
        calls = {k: t[k] - s[k] for k in ("mmap_calls", "mremap_calls", "munmap_calls")}
        assert calls == {"mmap_calls": 0, "mremap_calls": 2, "munmap_calls": 1}, calls
        lo = new.address - new.address % PAGE
        hi = lo + new.usable_size + new.address % PAGE
        for line in open("/proc/self/maps"):  # nothing of the old mapping is left outside the new one
            a, b = (int(x, 16) for x in line.split()[0].split("-"))
            if a < base + mapping and b > base:
                assert lo <= a and b <= hi, (line, hex(base), hex(lo), hex(hi))
        mv = new.memoryview()
        assert mv[2 * MIB] == 0xAB and mv[6 * MIB - 1] == 0  # the old pages, then the new tail
        mv.release()
        new.free()
    """)


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "unmap"])
def test_a_new_span_takes_one_granule_from_a_larger_cached_range(policy):
    """A span takes its own length from the head of a larger cached range that starts on a granule, the
    rest staying cached: the cache holds exactly one granule (64 KiB, a span of a class up to 8 KiB)
    less.  Before, a span took a cached range whole if it was at most twice its length (more slots, more
    pages touched), and mapped anew otherwise.  The range is larger than the cap and a page, so no
    stash keeps it.  (The first span also maps a leaf of the granule map: the mmap count cannot tell.)
    In a fresh interpreter: no span exists yet."""
    fresh_python(f"""
        from allocbench import toy
        MIB, GRANULE = 1 << 20, 1 << 16
        toy.configure(cache_cap=8 * MIB, policy={policy!r})
        toy.Block.aligned(GRANULE, 12 * MIB).free()
        s = toy.stats()
        small = toy.Block(5000)  # the first block of its class: a new span
        t = toy.stats()
        assert s["cached_bytes"] - t["cached_bytes"] == GRANULE, (s, t)
        small.free()
    """)


@pytest.mark.parametrize("decay_ms", [100, 600_000])
def test_the_last_large_block_freed_goes_back_once_it_has_waited_the_decay(decay_ms):
    """When a program frees all its large blocks, the last one (above the cap, so only the decay keeps it)
    stays cached, and goes back at the first large call after it has waited the decay, not before:
    RSS after the program frees everything comes back within the decay.  A 100 ms decay, after a 300 ms
    sleep (a sleep is never shorter: this cannot depend on scheduling), and a decay of ten minutes.  The
    large call is a 512 KiB block from the thread's stash, so it takes nothing of the 6 MiB mapping.
    Under keep, the one policy with a stash (under the others a large call either takes the cached
    mapping or, freed, is the last block freed itself).  In a fresh interpreter, the decay from
    TOYALLOC_DECAY_MS."""
    fresh_python(f"""
        import time
        from allocbench import toy
        MIB, KIB, PAGE = 1 << 20, 1 << 10, 4096
        toy.configure(cache_cap=MIB, policy="keep")
        small, a, b = toy.Block(512 * KIB), toy.Block(6 * MIB), toy.Block(6 * MIB)
        small.free()  # stashed
        a.free()
        b.free()  # the last large block freed: kept, and a is not
        stashed = 512 * KIB + PAGE  # and the colour's page
        assert toy.stats()["cached_bytes"] == stashed + 6 * MIB + PAGE, toy.stats()
        time.sleep(0.3)
        again = toy.Block(512 * KIB)  # a large call, from the stash (freed, it would be the last block freed)
        want = 0 if {decay_ms} < 300 else 6 * MIB + PAGE  # past the decay: b gone
        assert toy.stats()["cached_bytes"] == want, (toy.stats(), want)
        again.free()
    """, env={"TOYALLOC_DECAY_MS": str(decay_ms)})


def test_freed_large_blocks_are_kept_up_to_the_peak_and_no_further():
    """With a decay (the default, 1 s), freed large mappings are kept beyond the cap up to what was live at
    the peak, so a block asked for again is not mapped (nor faulted) again; the mappings, live and cached,
    never exceed that peak plus the cap; and once every large block is freed the cache is back within its cap
    and the last block freed.
    In a fresh interpreter: nothing else has used the toy there."""
    fresh_python("""
        import random
        from allocbench import toy
        MIB, CAP = 1 << 20, 1 << 20
        toy.configure(cache_cap=CAP, policy="keep")
        rng, live, peak = random.Random(7), [], 0
        s0 = toy.stats()
        def check():  # the large mappings, live and cached (the toy's own books apart), within the peak + cap
            s = toy.stats()
            assert s["live_bytes"] + s["cached_bytes"] - s0["live_bytes"] - s0["cached_bytes"] <= peak + CAP, (s, peak)
        def mapped():  # a block's mapping: its usable bytes and its colour (the bytes before it)
            return sum(b.usable_size + b.address % 4096 for b in live)
        for _ in range(10):
            live.append(toy.Block(rng.randrange(2, 12) * MIB))
            peak = max(peak, mapped())
            check()
        for _ in range(100):
            live.pop(rng.randrange(len(live))).free()
            live.append(toy.Block(rng.randrange(2, 12) * MIB))
            peak = max(peak, mapped())
            check()
        # a block freed and asked for again, smaller: split from the cached mapping, no new one
        big = max(live, key=lambda b: b.size)
        live.remove(big)
        size = big.size
        before = toy.stats()
        big.free()
        live.append(toy.Block(size - MIB))
        after = toy.stats()
        assert after["mmap_calls"] == before["mmap_calls"] and after["mremap_calls"] == before["mremap_calls"]
        last = live[-1].size
        for b in live:
            b.free()
        # every large block freed: back within the cap at once, but for the last one (a churn asks again)
        assert toy.stats()["cached_bytes"] <= CAP + last
        # larger than anything cached but at least half of it cached: grown by mremap, not mapped anew
        two, three = toy.Block(3 * MIB), toy.Block(5 * MIB)
        two.free()  # 5 MiB live of an 8 MiB peak: room for the 3 MiB mapping
        s = toy.stats()
        four = toy.Block(5 * MIB)
        t = toy.stats()
        assert t["mmap_calls"] == s["mmap_calls"] and t["mremap_calls"] == s["mremap_calls"] + 1
        three.free()
        four.free()
        assert toy.stats()["cached_bytes"] <= CAP + 5 * MIB
    """)
