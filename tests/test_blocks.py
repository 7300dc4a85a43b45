"""The owning block handle's contract, one body for every kind of block:
glibc.Block (glibc's malloc in this process) and toy.Block (the toy allocator)."""
import pytest

from allocbench import glibc, toy


@pytest.fixture(params=[glibc.Block, toy.Block], ids=["glibc", "toy"])
def Block(request):
    return request.param


def test_basics_and_buffer(Block):
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


def test_zero_size_and_calloc(Block):
    b = Block(0)
    assert b.size == 0 and len(b.memoryview()) == 0
    c = Block.calloc(100, 1000)
    assert c.size == 100_000 and bytes(c.memoryview()) == bytes(100_000)
    b.realloc(0)  # the handle stays live (glibc's realloc(p, 0) would free p)
    assert b.size == 0 and not b.freed
    z1, z2 = Block(0), Block(0)
    assert z1.address != z2.address


def test_misuse_raises_instead_of_crashing(Block):
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
    ((2**62,), MemoryError), ((2**63,), MemoryError), ((2**64 - 1,), MemoryError),
])
def test_bad_sizes(Block, args, exc):
    with pytest.raises(exc):
        Block(*args)


def test_calloc_overflow_and_enomem(Block):
    with pytest.raises(OverflowError, match="overflows"):
        Block.calloc(2**33, 2**33)
    with pytest.raises(MemoryError):
        Block.calloc(2**31, 2**31)
    with pytest.raises(ValueError):
        Block.calloc(-1, 8)


def test_fill_rejects_bad_bytes(Block):
    b = Block(8)
    for bad in (-1, 256, "a", 1.0):
        with pytest.raises(ValueError):
            b.fill(bad)
