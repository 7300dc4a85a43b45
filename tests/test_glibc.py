"""The glibc bindings: mallopt validation, mallinfo2, trim, info, Block."""
import os
import xml.etree.ElementTree as ET

import pytest

from allocbench import glibc
from allocbench.glibc import Block, MALLOPT_PARAMS

from conftest import fresh_json

KIB, MIB = 1024, 1024 * 1024


@pytest.mark.parametrize("name", sorted(MALLOPT_PARAMS))
def test_mallopt_accepts_each_parameter_at_both_ends_of_its_range(name):
    p = MALLOPT_PARAMS[name]
    out = fresh_json(f"""
        import json
        from allocbench import glibc
        glibc.mallopt({name!r}, {p.lo})
        glibc.mallopt(glibc.M_{name.upper()}, {p.hi})
        glibc.mallopt("M_{name.upper()}", {p.lo})
        print(json.dumps("ok"))
    """)
    assert out == "ok"


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
    assert set(before) == {"arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                           "fsmblks", "uordblks", "fordblks", "keepcost"}
    assert during["hblks"] == before["hblks"] + 1
    assert during["hblkhd"] - before["hblkhd"] >= MIB
    assert after["hblks"] == before["hblks"]


def test_malloc_trim_info_heap_top_and_version():
    assert isinstance(glibc.malloc_trim(), bool)
    assert isinstance(glibc.malloc_trim(4096), bool)
    with pytest.raises(ValueError):
        glibc.malloc_trim(-1)
    root = ET.fromstring(glibc.malloc_info())
    assert root.tag == "malloc" and root.find("heap") is not None
    assert glibc.heap_top() > 0
    assert glibc.glibc_version() == os.confstr("CS_GNU_LIBC_VERSION").split()[1]


def test_block_basics_and_buffer():
    with Block(1000) as b:
        assert b.size == 1000
        assert b.usable_size >= 1000
        assert b.address % 16 == 0
        b.fill(0xAB)
        view = b.memoryview()
        assert len(view) == 1000 and not view.readonly
        assert view[0] == 0xAB and view[-1] == 0xAB
        view[10] = 7
        view.release()
        b.realloc(5000)
        with memoryview(b) as v:
            assert len(v) == 5000 and v[10] == 7 and v[999] == 0xAB
    assert b.freed


def test_block_zero_size_and_calloc():
    b = Block(0)
    assert b.size == 0 and len(b.memoryview()) == 0
    c = Block.calloc(100, 1000)
    assert c.size == 100_000 and bytes(c.memoryview()) == bytes(100_000)
    b.realloc(0)
    assert b.size == 0 and not b.freed


def test_block_misuse_raises_instead_of_crashing():
    b = Block(64)
    view = memoryview(b)
    with pytest.raises(BufferError):
        b.free()
    with pytest.raises(BufferError):
        b.realloc(128)
    view.release()
    b.free()
    with pytest.raises(ValueError, match="double free"):
        b.free()
    for action in (lambda: b.address, lambda: b.size, lambda: b.usable_size,
                   lambda: b.fill(1), lambda: memoryview(b), lambda: b.realloc(10),
                   lambda: b.is_mmapped):
        with pytest.raises(ValueError, match="already freed"):
            action()
    with pytest.raises(RuntimeError):
        Block(8).__init__(8)


@pytest.mark.parametrize("args,exc", [
    ((-1,), ValueError), (("10",), TypeError), ((2**64,), OverflowError),
    ((2**62,), MemoryError), ((2**64 - 1,), MemoryError),
])
def test_block_bad_sizes(args, exc):
    with pytest.raises(exc):
        Block(*args)


def test_calloc_overflow_and_enomem():
    with pytest.raises(OverflowError, match="overflows"):
        Block.calloc(2**33, 2**33)
    with pytest.raises(MemoryError):
        Block.calloc(2**31, 2**31)
    with pytest.raises(ValueError):
        Block.calloc(-1, 8)


def test_fill_rejects_bad_bytes():
    b = Block(8)
    for bad in (-1, 256, "a", 1.0):
        with pytest.raises(ValueError):
            b.fill(bad)
