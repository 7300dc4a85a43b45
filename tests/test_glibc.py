"""The glibc bindings: mallopt validation, mallinfo2, trim, info, Block."""
import os
import xml.etree.ElementTree as ET

import pytest
from conftest import fresh_json

from allocbench import glibc
from allocbench.glibc import MALLOPT_PARAMS

KIB, MIB = 1024, 1024 * 1024


@pytest.mark.parametrize("name", sorted(MALLOPT_PARAMS))
def test_mallopt_accepts_each_parameter_at_both_ends_of_its_range(name):
    p = MALLOPT_PARAMS[name]
    out = fresh_json(f"""
        import json
        from allocbench import _native, glibc
        glibc.mallopt({name!r}, {p.lo})
        glibc.mallopt(glibc.M_{name.upper()}, {p.hi})
        glibc.mallopt("M_{name.upper()}", {p.lo})
        print(json.dumps([_native.mallopt_raw({p.value}, v) for v in ({p.lo}, {p.hi})]))
    """)
    assert out == [1, 1]  # glibc's own answer at both ends: 1 is accepted


@pytest.mark.parametrize("param", [-1000, 0, 2, 99, "bogus", "", None, 1.5, True])
def test_mallopt_rejects_unknown_parameters(param):
    with pytest.raises(ValueError, match="unknown mallopt parameter"):
        glibc.mallopt(param, 1)


@pytest.mark.parametrize("name,value", [
    ("mmap_threshold", 32 * MIB + 1), ("mmap_threshold", -1), ("mxfast", 161),
    ("mxfast", -1), ("arena_max", 0), ("arena_test", -5), ("perturb", 256),
    ("check_action", 8), ("trim_threshold", -1), ("top_pad", 2**31), ("mmap_max", -1),
])
def test_mallopt_rejects_out_of_range_values_naming_the_range(name, value):
    p = MALLOPT_PARAMS[name]
    with pytest.raises(ValueError, match=rf"M_{name.upper()} must be in \[{p.lo}, {p.hi}\]"):
        glibc.mallopt(name, value)


@pytest.mark.parametrize("value", ["1", 1.0, None, True])
def test_mallopt_rejects_non_int_values(value):
    with pytest.raises(TypeError):
        glibc.mallopt("mmap_threshold", value)


@pytest.mark.parametrize("threshold,size,expect", [
    (128 * KIB, MIB, True), (128 * KIB, KIB, False), (4 * MIB, MIB, False),
])
def test_mmap_threshold_decides_which_blocks_are_mmapped(threshold, size, expect):
    out = fresh_json(f"""
        import json
        from allocbench import glibc
        glibc.mallopt("mmap_threshold", {threshold})
        b = glibc.Block({size})
        print(json.dumps(b.is_mmapped))
    """)
    assert out is expect


def test_mallinfo2_counts_one_more_mmapped_chunk():
    out = fresh_json("""
        import json
        from allocbench import glibc
        glibc.mallopt("mmap_threshold", 128 * 1024)
        before = glibc.mallinfo2()
        b = glibc.Block(1 << 20)
        during = glibc.mallinfo2()
        b.free()
        after = glibc.mallinfo2()
        print(json.dumps([before._asdict(), during._asdict(), after._asdict()]))
    """)
    before, during, after = out
    # glibc's struct mallinfo2, in its order (malloc.h): the C list must not lose one
    assert list(before) == ["arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                            "fsmblks", "uordblks", "fordblks", "keepcost"]
    assert during["hblks"] == before["hblks"] + 1
    assert during["hblkhd"] - before["hblkhd"] >= MIB
    assert after["hblks"] == before["hblks"]


def test_malloc_trim_releases_free_heap_pages():
    """64 heap blocks of 64 KiB (below the threshold) freed below a pinned block:
    4 MiB of free chunks that free() cannot trim, so malloc_trim must release
    their pages (madvise) and return True, whatever the pad (which only limits
    trimming the top)."""
    out = fresh_json("""
        import json
        from allocbench import glibc
        glibc.mallopt("mmap_threshold", 1 << 20)
        glibc.mallopt("trim_threshold", 1 << 30)
        blocks = [glibc.Block(64 << 10) for _ in range(64)]
        for b in blocks:
            b.fill(1)
        pin = glibc.Block(64)
        for b in blocks:
            b.free()
        print(json.dumps([glibc.malloc_trim(0), glibc.malloc_trim(4096)]))
    """)
    assert out == [True, True]
    with pytest.raises(ValueError):
        glibc.malloc_trim(-1)


def test_malloc_info_heap_top_and_version():
    root = ET.fromstring(glibc.malloc_info())
    assert root.tag == "malloc" and root.find("heap") is not None
    # the kernel maps [heap] up to the program break rounded up to a page
    # (reading the file allocates, so read until the break stood still around it)
    page = os.sysconf("SC_PAGE_SIZE")
    for _ in range(10):
        top = glibc.heap_top()
        with open("/proc/self/maps") as f:
            heap = [line for line in f if line.rstrip().endswith("[heap]")]
        if glibc.heap_top() == top:
            break
    # the brk area may be more than one mapping (a brk that cannot extend the last one adds another,
    # and every mapping it overlaps is named [heap]): they stand end to end, the last ends at the break
    spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in heap]
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    start, end = spans[0][0], spans[-1][1]
    assert start < top <= end and end == -(-top // page) * page
    assert glibc.glibc_version() == os.confstr("CS_GNU_LIBC_VERSION").split()[1]
