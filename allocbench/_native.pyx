# cython: language_level=3
"""The compiled core: glibc bindings, owning block handles (glibc and the toy
allocator in this process) and counter windows.  The public modules (glibc,
toy, counters) validate arguments and shape results; this stays thin over csrc/."""

from cpython.buffer cimport PyBuffer_FillInfo
from libc.errno cimport errno
from libc.stdint cimport uint64_t, uintptr_t, SIZE_MAX
from libc.stdio cimport fclose
from libc.stdlib cimport free, malloc
from libc.string cimport memset, strerror

from allocbench.cmalloc cimport (
    RTLD_DEFAULT, RTLD_NOLOAD, RTLD_NOW, dlopen, dlsym,
    c_mallopt, c_malloc_trim, c_malloc_info,
    gnu_get_libc_version, open_memstream, sbrk,
)
# our own C's declarations, each beside its header in csrc/lib
from ccounters cimport *
from clatency cimport *
from ctoyalloc cimport *
from cremote_heap cimport *
from cshimlog cimport *
from ctrace cimport *
from cworkloads cimport *

# The C lists (csrc/lib/counters.h, workloads.h, trace.h): Python keeps no copy of its own.
MALLINFO2_FIELDS = tuple(ab_mallinfo2_names[i].decode() for i in range(AB_NMALLINFO2))
SYSCALLS = tuple(ab_syscall_names[i].decode() for i in range(AB_NSYSCALLS))
# the paths a counted window probes at its edges (and the strace method once strace traces)
MARKS = {"begin": AB_MARK_BEGIN.decode(), "end": AB_MARK_END.decode(), "attached": AB_MARK_ATTACHED.decode()}
PATTERNS = tuple(ab_pattern_names[i].decode() for i in range(AB_NPATTERNS))
PATTERN_DOCS = {PATTERNS[i]: ab_pattern_docs[i].decode() for i in range(AB_NPATTERNS)}
REPLAY_MODES = tuple(ab_replay_mode_names[i].decode() for i in range(AB_NREPLAY_MODES))
REPLAY_WINDOW_DEFAULT = AB_REPLAY_WINDOW_DEFAULT
TIMELINE_COLUMNS = tuple(ab_timeline_columns[i].decode() for i in range(AB_NTLCOLUMNS))
TIMELINE_KINDS = tuple(ab_timeline_kinds[i].decode() for i in range(AB_NTLKINDS))
METHODS = tuple(ab_method_names[ab_method_order[i]].decode() for i in range(AB_NMETHODS))  # best first
TRACE_OPS = {i: ab_trace_op_names[i].decode() for i in range(1, AB_NOPS)}  # op value -> name
TRACE_OP_KINDS = {i: {AB_OPK_ALLOC: "alloc", AB_OPK_FREE: "free", AB_OPK_RESIZE: "resize",
                      AB_OPK_THREAD: "thread"}[ab_trace_op_kinds[i]] for i in range(1, AB_NOPS)}
TRACE_VERSION = AB_TRACE_VERSION
TOY_STATS = tuple(toy_stats_names[i].decode() for i in range(TOY_NSTATS))
TRACE_OWNER_WIDTH = AB_TRACE_OWNER_WIDTH
LAUNCH_MAX_HZ = AB_LAUNCH_MAX_HZ
SHIMLOG_FORMATS = {ab_shimlog_names[i].decode(): ab_shimlog_formats[i].decode() for i in range(AB_NSHIMLOG_FORMATS)}
SHIMLOG_PREFIXES = {"explain": AB_EXPLAIN_PREFIX.decode(), "latency": AB_LATENCY_PREFIX.decode()}
TRACE_HEADER_UNIT, TRACE_HEADER_MAX = AB_TRACE_HEADER, AB_TRACE_HEADER_MAX  # the header: a multiple of the unit
TRACE_HEAD_FIELDS = {ab_trace_head_fields[i].name.decode(): (ab_trace_head_fields[i].offset,
                                                            ab_trace_head_fields[i].size)
                     for i in range(AB_TRACE_HEAD_NFIELDS)}  # name -> (offset, bytes), after the 8-byte magic
TRACE_FLAGS = {"overflow": AB_TRACE_FLAG_OVERFLOW, "cut_at_exit": AB_TRACE_FLAG_CUT_AT_EXIT}
TRACE_EVENT_BYTES = sizeof(ab_event)
LATENCY_KINDS = tuple(ab_latency_kind_names[i].decode() for i in range(AB_NLATENCY_KINDS))
LATENCY_MARK_MIN_NS = AB_MARK_MIN_NS  # a call shorter than this was not switched out (calltime.h)
GLIBC_DEFAULT_BOUNDARY = AB_GLIBC_DEFAULT_BOUNDARY
CELL_DEFAULTS = {
    "ops": ab_cell_defaults.w.ops, "threads": ab_cell_defaults.w.threads,
    "live": ab_cell_defaults.w.live, "touch": bool(ab_cell_defaults.w.touch),
    "seed": ab_cell_defaults.w.seed, "repeats": ab_cell_defaults.repeats,
    "warmup": ab_cell_defaults.warmup,
}


def check_trace(str path, str mode, window):
    """Prepare a trace for replay as the cell will (csrc/lib/replay.c) and let it
    go: ValueError with the cell's message (a thread freeing a block the trace
    never allocated, more threads than a replay runs, ...), or None."""
    cdef ab_replay r
    cdef char err[512]
    if mode not in REPLAY_MODES:
        raise ValueError(f"replay_threads must be one of {', '.join(REPLAY_MODES)}, got {mode!r}")
    memset(&r, 0, sizeof(r))
    rc = ab_replay_load(path.encode(), REPLAY_MODES.index(mode), window, &r, err, sizeof(err))
    ab_replay_free(&r)
    if rc:
        raise ValueError(err.decode(errors="replace"))


def check_cell(str pattern, size_lo, size_hi, ops, threads, live, seed, repeats, warmup):
    """The one validator of a cell (csrc/lib/workloads.c ab_cell_check): ValueError
    with its message, or None.  Python only makes sure each value is an integer."""
    cdef ab_cell_spec s = ab_cell_defaults
    for name, value in (("size_lo", size_lo), ("size_hi", size_hi), ("ops", ops), ("threads", threads),
                        ("live", live), ("seed", seed), ("repeats", repeats), ("warmup", warmup)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    cdef ab_replay some_trace  # pattern trace: the trace file itself is checked by the cell
    memset(&some_trace, 0, sizeof(some_trace))
    some_trace.nthreads = 1  # as a spec says: the cell sets the threads a recorded replay needs
    s.w.pattern = ab_pattern_of(pattern.encode())
    s.w.replay = &some_trace
    if s.w.pattern < 0:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(PATTERNS)}")
    s.w.size_lo, s.w.size_hi, s.w.ops, s.w.seed = size_lo, size_hi, ops, seed
    s.w.threads = min(threads, 2**31 - 1)
    s.w.live = min(live, 2**32 - 1)
    s.repeats, s.warmup = repeats, warmup
    cdef const char *bad = ab_cell_check(&s)
    if bad != NULL:
        raise ValueError(bad.decode())


# ---- glibc <malloc.h> ----

def mallopt_raw(int param, int value):
    return c_mallopt(param, value)


def mallinfo2_raw():
    cdef uint64_t out[AB_NMALLINFO2]
    ab_mallinfo2_read(out)
    return tuple(out[i] for i in range(AB_NMALLINFO2))


def malloc_trim_raw(size_t pad):
    cdef int r
    with nogil:  # trimming walks every arena and may madvise a lot
        r = c_malloc_trim(pad)
    return r


def malloc_info_raw():
    cdef char *buf = NULL
    cdef size_t n = 0
    f = open_memstream(&buf, &n)
    if f == NULL:
        raise OSError(errno, strerror(errno).decode())
    rc = c_malloc_info(0, f)
    fclose(f)
    try:
        if rc != 0:
            raise OSError(errno, "malloc_info: " + strerror(errno).decode())
        return buf[:n].decode()
    finally:
        free(buf)


def heap_top():
    return <uintptr_t>sbrk(0)


def glibc_version():
    return gnu_get_libc_version().decode()


# ---- owning block handles ----

cdef size_t _as_size(object size, str what) except? 0:
    if not isinstance(size, int):
        raise TypeError(f"{what} must be an int, not {type(size).__name__}")
    if size < 0:
        raise ValueError(f"{what} must be >= 0, got {size}")
    if size > SIZE_MAX:
        raise OverflowError(f"{what} {size} does not fit in size_t")
    return size


cdef class Block:
    """One block from glibc's malloc, owned by this handle.

    Freed when the handle is freed, leaves a ``with`` block, or is collected.
    The buffer protocol (``memoryview(block)``) exposes exactly ``size`` bytes;
    freeing or reallocating while such a view exists raises BufferError."""

    cdef void *ptr
    cdef size_t _size
    cdef bint live
    cdef Py_ssize_t exports

    cdef const ab_allocator *allocator(self):
        # Virtual, looked up per call: in __cinit__ a subclass's table is not set yet.
        return &ab_libc_allocator

    def __init__(self, size):
        cdef size_t n = _as_size(size, "size")
        cdef void *p
        cdef const ab_allocator *a = self.allocator()
        if self.live:
            raise RuntimeError("Block is already initialised")
        with nogil:  # a large malloc may mmap and fault
            p = a.malloc(n)
        if p == NULL:
            raise MemoryError(f"malloc({n}) failed: {strerror(errno).decode()}")
        self.ptr, self._size, self.live = p, n, True

    @classmethod
    def calloc(cls, nmemb, size):
        """A zeroed block of nmemb * size bytes, from calloc."""
        cdef size_t n = _as_size(nmemb, "nmemb"), s = _as_size(size, "size")
        cdef void *p
        if s and n > SIZE_MAX // s:
            raise OverflowError(f"calloc({n}, {s}): nmemb * size overflows size_t")
        cdef Block b = cls.__new__(cls)
        cdef const ab_allocator *a = b.allocator()
        with nogil:
            p = a.calloc(n, s)
        if p == NULL:
            raise MemoryError(f"calloc({n}, {s}) failed: {strerror(errno).decode()}")
        b.ptr, b._size, b.live = p, n * s, True
        return b

    cdef check_live(self, str action):
        if not self.live:
            raise ValueError(f"cannot {action}: the block was already freed")

    cdef check_unexported(self, str action):
        if self.exports:
            raise BufferError(f"cannot {action}: {self.exports} memoryview(s) still "
                              "export the block; release them first")

    def realloc(self, size):
        """Resize in place or move; on failure the block stays intact."""
        cdef size_t n = _as_size(size, "size")
        cdef void *q
        self.check_live("realloc")
        self.check_unexported("realloc")
        if n == 0:
            # glibc's realloc(p, 0) frees p and returns NULL; keep a live handle instead
            q = self.allocator().malloc(0)
            if q == NULL:
                raise MemoryError("malloc(0) failed")
            self.allocator().free(self.ptr)
        else:
            q = self.allocator().realloc(self.ptr, n)
            if q == NULL:
                raise MemoryError(f"realloc to {n} bytes failed: {strerror(errno).decode()}")
        self.ptr, self._size = q, n
        return self

    def free(self):
        """Free the block.  A second free raises ValueError, never reaches libc."""
        if not self.live:
            raise ValueError("double free: the block was already freed")
        self.check_unexported("free")
        self.live = False
        cdef const ab_allocator *a = self.allocator()
        with nogil:  # freeing an mmapped chunk is a munmap
            a.free(self.ptr)
        self.ptr = NULL

    def fill(self, byte):
        if not isinstance(byte, int) or not 0 <= byte <= 255:
            raise ValueError(f"fill byte must be an int in 0..255, got {byte!r}")
        self.check_live("fill")
        cdef int b = byte
        with nogil:
            memset(self.ptr, b, self._size)

    @property
    def size(self):
        """Bytes requested."""
        self.check_live("read size")
        return self._size

    @property
    def usable_size(self):
        """Bytes the allocator actually handed out (malloc_usable_size)."""
        self.check_live("read usable_size")
        return self.allocator().usable_size(self.ptr)

    @property
    def address(self):
        self.check_live("read address")
        return <uintptr_t>self.ptr

    @property
    def freed(self):
        return not self.live

    @property
    def is_mmapped(self):
        """True when glibc served the block with its own mmap.

        Reads bit 1 (IS_MMAPPED) of the chunk's size word just before the
        block: a glibc-internal detail, stable for decades but not an API.
        Under another malloc (LD_PRELOAD) there is no such word: RuntimeError."""
        self.check_live("read is_mmapped")
        if not malloc_is_glibcs():
            raise RuntimeError("malloc is not glibc's here (LD_PRELOAD?): blocks have no glibc chunk header")
        return bool((<size_t *>self.ptr - 1)[0] & 2)

    def memoryview(self):
        return memoryview(self)

    def __getbuffer__(self, Py_buffer *view, int flags):
        self.check_live("export a buffer")
        PyBuffer_FillInfo(view, self, self.ptr, <Py_ssize_t>self._size, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    def __enter__(self):
        self.check_live("enter a with block")
        return self

    def __exit__(self, *exc):
        if self.live:
            self.free()
        return False

    def __dealloc__(self):
        if self.live:
            self.allocator().free(self.ptr)

    def __repr__(self):
        if not self.live:
            return f"<{type(self).__name__} freed>"
        return f"<{type(self).__name__} size={self._size} at {<uintptr_t>self.ptr:#x}>"


cdef int _glibc_malloc = -1


cdef bint malloc_is_glibcs():
    """Whether the malloc this process calls is libc.so.6's own (no preloaded allocator)."""
    global _glibc_malloc
    cdef void *libc
    if _glibc_malloc < 0:
        libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD)
        _glibc_malloc = libc != NULL and dlsym(RTLD_DEFAULT, "malloc") == dlsym(libc, "malloc")
    return _glibc_malloc == 1


# ---- the toy allocator, in this process ----

TOY_POLICIES = tuple(toy_policy_names[i].decode() for i in range(TOY_NPOLICIES))  # enum toy_policy order
TOY_MAX_THRESHOLD_BYTES = TOY_MAX_THRESHOLD
TOY_MAX_ALIGN_BYTES = TOY_MAX_ALIGN


cdef class ToyBlock(Block):
    """One block from the toy allocator (csrc/lib/toyalloc.c), same contract as Block."""

    cdef const ab_allocator *allocator(self):
        return &ab_toy_allocator

    @classmethod
    def aligned(cls, alignment, size):
        """A block whose address is a multiple of `alignment` (a power of two)."""
        cdef size_t a = _as_size(alignment, "alignment"), n = _as_size(size, "size")
        cdef void *p
        if a == 0 or a & (a - 1) or a > TOY_MAX_ALIGN:
            raise ValueError(f"alignment must be a power of two up to {TOY_MAX_ALIGN}, got {alignment}")
        cdef ToyBlock b = cls.__new__(cls)
        with nogil:
            p = toy_memalign(a, n)
        if p == NULL:
            raise MemoryError(f"toy memalign({a}, {n}) failed: {strerror(errno).decode()}")
        b.ptr, b._size, b.live = p, n, True
        return b

    @property
    def is_mmapped(self):
        """True when the block has a mapping of its own (above the toy's threshold)."""
        self.check_live("read is_mmapped")
        return bool(toy_is_direct(self.ptr))


def toy_get_config_raw():
    cdef toy_config c
    toy_get_config(&c)
    return {"threshold": c.threshold, "cache_cap": c.cache_cap, "policy": TOY_POLICIES[c.policy]}


def toy_configure_raw(size_t threshold, size_t cache_cap, int policy):
    cdef toy_config c
    c.threshold, c.cache_cap, c.policy = threshold, cache_cap, policy
    if toy_configure(&c) != 0:
        raise ValueError("toy configuration out of range")


def toy_stats_raw():
    cdef toy_stats s
    toy_get_stats(&s)
    cdef uint64_t *values = <uint64_t *>&s  # toyalloc.h: uint64_t fields only, in TOY_STATS_FIELDS' order
    return {toy_stats_names[i].decode(): values[i] for i in range(TOY_NSTATS)}


# ---- counters ----

cdef dict _footprint_dict(ab_footprint *f):
    return {
        "rss_bytes": f.rss_bytes if f.rss_bytes >= 0 else None,
        "anon_bytes": f.anon_bytes if f.anon_bytes >= 0 else None,
        "peak_rss_bytes": f.peak_rss_bytes if f.peak_rss_bytes >= 0 else None,
        "heap_top": f.heap_top,
        "mallinfo2": {MALLINFO2_FIELDS[i]: f.mallinfo2[i] for i in range(AB_NMALLINFO2)},
    }


cdef dict _counts_dict(ab_counts *c):
    return {
        "syscalls": {SYSCALLS[i]: (c.syscalls[i] if c.syscalls[i] >= 0 else None)
                     for i in range(AB_NSYSCALLS)},
        "minor_faults": c.minor_faults,
        "major_faults": c.major_faults,
        "wall_ns": c.wall_ns,
        "cpu_ns": c.cpu_ns,
        "thread_cpu_ns": c.thread_cpu_ns,
    }


def hold_tracepoints():
    """Keep the counted syscalls' tracepoints registered in this process (see
    counters.h ab_tracepoints_hold); None, or why it could not."""
    cdef char err[512]
    if ab_tracepoints_hold(err, sizeof(err)) != 0:
        return err.decode(errors="replace")
    return None


def arena_heaps():
    """(heaps, their read-write bytes): thread-arena heaps in this process's maps, as the cell
    and the recorder count them (counters.c count_heap)."""
    cdef int64_t nbytes = 0
    cdef int n = ab_arena_heaps_sized(&nbytes)
    if n < 0:
        raise OSError("cannot read /proc/self/maps")
    return n, nbytes


def strace_log_counts(str path, bint bounded=True):
    """The counted syscalls' entries in a `strace -f -o` log, read by the cells' own parser
    (counters.c): bounded, only between the window's begin and end markers; a log without
    them, or with an end and no begin (strace began tracing late), raises ValueError."""
    cdef int64_t out[AB_NSYSCALLS]
    cdef char err[512]
    if ab_strace_count_log(path.encode(), bounded, out, err, sizeof(err)) != 0:
        raise ValueError(err.decode(errors="replace"))
    return {SYSCALLS[i]: out[i] for i in range(AB_NSYSCALLS)}


def footprint():
    cdef ab_footprint f
    ab_footprint_read(&f)
    return _footprint_dict(&f)


cdef class Counter:
    """Counters opened once with one method; windows are opened and closed on it."""

    cdef ab_counter c
    cdef ab_window w
    cdef bint in_window
    cdef readonly str open_error

    cdef readonly str method_name
    cdef readonly str note

    def __cinit__(self, str name="auto"):
        """Opened by C's one choice of method (ab_counter_open_named): "auto"
        tries perf, strace, none; a named method is tried alone.  open_error is
        None, or why no method (or the named one) works; note says why better
        methods were passed over."""
        cdef char buf[2048]
        encoded = name.encode()
        cdef const char *got = ab_counter_open_named(&self.c, encoded, buf, sizeof(buf))
        self.note = buf.decode(errors="replace") or None
        self.method_name = got.decode() if got != NULL else None
        self.open_error = None if got != NULL else (self.note or f"counter method {name} unavailable")

    @property
    def method(self):
        return self.c.method

    def begin(self):
        if self.in_window:
            raise RuntimeError("a window is already open on this counter")
        if ab_window_begin(&self.c, &self.w) != 0:
            raise OSError(f"opening the counter window: {self.c.error.decode(errors='replace')}")
        self.in_window = True

    def end(self):
        cdef ab_counts out
        if not self.in_window:
            raise RuntimeError("no window is open on this counter")
        self.in_window = False
        rc = ab_window_end(&self.c, &self.w, &out)
        d = _counts_dict(&out)
        d["error"] = self.c.error.decode(errors="replace") if rc else None
        return d

    def __dealloc__(self):
        ab_counter_close(&self.c)


# ---- another process's free lists (allocbench inspect) ----

def walk_arenas(int pid, arenas, uint32_t fastbins_off, uint32_t bins_off, int nfast, int nbins,
                uint64_t max_chunks, const unsigned char[::1] prior=None):
    """Every free chunk of glibc's arenas (their addresses) in process `pid`
    (csrc/lib/remote_heap.c, every list in lockstep): (the walk as bytes, reads
    made).  The bytes are ab_free_chunk records (address, size word, bin, arena
    index), unpacked after the stop; bin < nfast is a fastbin, nfast + i regular
    bin i.  `prior`, the bytes of an earlier walk of
    the same arenas, is checked rather than walked again (same result, fewer
    round trips).  ValueError names a read that failed or a list that loops."""
    cdef ab_free_chunk *out = NULL
    cdef const ab_free_chunk *before = NULL
    cdef uint64_t n = 0, reads = 0, nprior = 0
    cdef char err[512]
    cdef int rc, k, narenas = len(arenas)
    if prior is not None and prior.shape[0]:
        if prior.shape[0] % sizeof(ab_free_chunk):
            raise ValueError("prior is not a whole number of chunks")
        before, nprior = <const ab_free_chunk *>&prior[0], prior.shape[0] // sizeof(ab_free_chunk)
    cdef uint64_t *where = <uint64_t *>malloc(sizeof(uint64_t) * max(narenas, 1))
    if where == NULL:
        raise MemoryError()
    for k in range(narenas):
        where[k] = arenas[k]
    with nogil:
        rc = ab_walk_arenas(pid, where, narenas, fastbins_off, bins_off, nfast, nbins, before, nprior, max_chunks,
                            &out, &n, &reads, err, sizeof(err))
    free(where)
    if rc:
        raise ValueError(err.decode(errors="replace"))
    try:
        return (<char *>out)[:n * sizeof(ab_free_chunk)] if n else b"", reads
    finally:
        free(out)
