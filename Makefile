# allocbench: every target sets up what it needs (.venv, PyPI packages, Debian packages, build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
# csrc/: lib/ (libraries and headers), programs/ (one main each), preload/ (shims), tests/ (C tests)
LIB := csrc/lib
HEADERS := $(wildcard $(LIB)/*.h)
TOYLIB := allocbench/libtoyalloc.so
TOY_TESTS := csrc/build/toy_stress csrc/build/toy_contract csrc/build/toy_remote csrc/build/toy_books
# plain malloc API: run against glibc and against any preloaded allocator
MALLOC_TESTS := csrc/build/malloc_promises csrc/build/malloc_footprint csrc/build/malloc_loop
OVERHEAD := csrc/build/counter_overhead
CC ?= gcc
CFLAGS ?= -O2 -Wall -Wextra
# the lists live in the tables: the allocators' Debian packages (allocbench/backends.py)
# and the toy's policies (csrc/lib/toyalloc.h), asked of allocbench itself
ASK = $(PY) -m allocbench info --field

.PHONY: help system build lint debug asan glibc-tests mimalloc-stress counter-overhead trace-overhead latency-overhead exec-overhead inspect-overhead toy-churn toy-speed test test-fast bench bench-quick clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

# libc6-dbg: the debug file of this libc by build-id, from which allocbench inspect reads glibc's layouts;
# valgrind: its cachegrind counts instructions and cache misses for scripts/toy-ab --instructions
system: build ## install missing Debian packages (strace, libc6-dbg, valgrind, the allocators) and mount tracefs (root; otherwise warns)
	@scripts/setup-system strace libc6-dbg valgrind $$($(ASK) debian_packages)

$(DEPS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=64" "Cython>=3.1"
	ALLOCBENCH_LINK_ONLY=1 $(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $@

# the extension, the C programs, the preload shims and the toy library have one recipe, setup.py's
# (pip install and a wheel build them the same way); the C tests below are built only here
build: $(DEPS) $(TOY_TESTS) $(MALLOC_TESTS) $(OVERHEAD) ## build the extension, the C programs, the preload shims, C tests
	$(PY) setup.py -q build_ext --inplace

csrc/build/%: csrc/tests/%.c csrc/tests/tagged.h $(LIB)/toyalloc.c $(LIB)/toyalloc.h
	@mkdir -p csrc/build
	$(CC) $(CFLAGS) -I$(LIB) -o $@ $< $(LIB)/toyalloc.c -lpthread

# toy_books includes toyalloc.c itself, to reach its static functions
csrc/build/toy_books: csrc/tests/toy_books.c $(LIB)/toyalloc.c $(LIB)/toyalloc.h
	@mkdir -p csrc/build
	$(CC) $(CFLAGS) -I$(LIB) -o $@ $< -lpthread

$(MALLOC_TESTS): csrc/build/%: csrc/tests/%.c
	@mkdir -p csrc/build
	$(CC) $(CFLAGS) -fno-builtin-malloc -o $@ $< -lpthread

$(OVERHEAD): csrc/tests/counter_overhead.c $(LIB)/counters.c $(HEADERS)
	@mkdir -p csrc/build
	$(CC) $(CFLAGS) -fno-builtin-malloc -I$(LIB) -o $@ $< $(LIB)/counters.c

counter-overhead: build ## what the counters cost (a benchmark, not a test)
	$(OVERHEAD)

trace-overhead: build ## what recording and replaying cost (a benchmark, not a test)
	$(PY) scripts/trace-overhead

latency-overhead: build ## what exec --latency's shim adds to each allocation call (a benchmark, not a test)
	$(PY) scripts/latency-overhead

exec-overhead: build ## what allocbench exec adds to a program's wall time, paired against a plain timer
	$(PY) scripts/exec-overhead

inspect-overhead: build ## what allocbench inspect costs on 1 GiB of heap, 64 arenas, 105,000 free chunks
	$(PY) scripts/inspect-overhead

# the toy's C tests built with AddressSanitizer and UndefinedBehaviorSanitizer
ASAN_CC = $(CC) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -I$(LIB)
asan: build ## build and run the toy's C tests (stress, contract, remote frees, books) under ASan + UBSan, every policy
	@mkdir -p csrc/build
	$(ASAN_CC) -o csrc/build/toy_stress_asan csrc/tests/toy_stress.c $(LIB)/toyalloc.c -lpthread
	$(ASAN_CC) -o csrc/build/toy_contract_asan csrc/tests/toy_contract.c $(LIB)/toyalloc.c -lpthread
	$(ASAN_CC) -o csrc/build/toy_remote_asan csrc/tests/toy_remote.c $(LIB)/toyalloc.c -lpthread
	$(ASAN_CC) -o csrc/build/toy_books_asan csrc/tests/toy_books.c -lpthread
	csrc/build/toy_books_asan
	for p in $$($(ASK) toy_policies); do csrc/build/toy_contract_asan $$p && csrc/build/toy_stress_asan 4 500000 $$p \
	    && csrc/build/toy_remote_asan 8 100000 $$p || exit 1; done

glibc-tests: build ## glibc 2.36's own malloc tests (Debian's glibc-source) on glibc and the preloaded toy
	scripts/glibc-malloc-tests $(TOYLIB)

mimalloc-stress: build ## mimalloc's stress and API tests (Debian's mimalloc source) on glibc and the preloaded toy
	scripts/mimalloc-stress $(TOYLIB)

debug: $(DEPS) ## rebuild with bounds checks and -O0 -g
	ALLOCBENCH_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

lint: $(DEPS) ## ruff over the Python (pyproject.toml [tool.ruff]); make test runs it first
	$(PY) -m ruff check allocbench tests scripts

test: system lint ## lint, then the test suite
	$(PY) -m pytest -q

test-fast: system lint ## lint, then the test suite without the tests marked slow
	$(PY) -m pytest -q -m "not slow"

RESULTS ?= results/default.jsonl
PROGRAMS ?= results/programs.jsonl
REPLAYS ?= results/replays.jsonl
QUICK_RESULTS ?= results/quick.jsonl

# A sweep exits 1 when a cell failed (recorded with its reason, the rest measured): the bench goes on
# to report it; 2 (bad input) and anything else stop it.
SWEPT = || test $$? -eq 1

bench: system build ## the default sweep and the probes, then plots/ and plots/REPORT.md (resumable)
	$(PY) -m allocbench info
	$(PY) -m allocbench sweep --preset default --out $(RESULTS) $(SWEPT)
	$(PY) -m allocbench probe all --out results/probes.json
	$(PY) -m allocbench calibrate --runs 3 --out results/calibration.json
	@scripts/setup-system $$($(PY) scripts/bench-programs --debian)
	$(PY) scripts/bench-programs results
	$(PY) -m allocbench sweep --config results/traces/grid.json --out $(REPLAYS) $(SWEPT)
	$(PY) -m allocbench report $(RESULTS) --probes results/probes.json \
	    --calibration results/calibration.json --programs $(PROGRAMS) --replays $(REPLAYS) \
	    $$(test -f results/fidelity.jsonl && echo --fidelity results/fidelity.jsonl) \
	    $$(test -f results/inspect.jsonl && echo --inspect results/inspect.jsonl) \
	    $$(ls results/advice/*/advice.json >/dev/null 2>&1 && echo --advice results/advice/*/advice.json) \
	    $$(test -f results/toy_peers.jsonl && echo --peers results/toy_peers.jsonl) \
	    --out plots/REPORT.md --html
	@echo "results: $(RESULTS)"; echo "plots:   plots/*.png"; echo "report:  plots/REPORT.md (and plots/REPORT.html: one page, figures inline)"

# The toy against glibc, jemalloc, tcmalloc and mimalloc on benchmarks/peers' programs (the shapes of the
# public allocator suites), every allocator in turns; then a report of the peer table alone.
toy-churn: build ## the toy against glibc's dynamic threshold on 4 MiB churn, 20 pairs in turns, sign test
	$(PY) scripts/toy-churn

toy-speed: system build ## the toy against the other allocators, program by program (benchmarks/peers, about 3 minutes)
	$(PY) scripts/toy-peers results/toy_peers.jsonl || test $$? -eq 1
	$(PY) -m allocbench report results/toy_peers.jsonl --out results/toy_speed/REPORT.md
	@echo "report:  results/toy_speed/REPORT.md"

bench-quick: system build ## a small sweep (about a minute): results/quick.jsonl, report in results/quick/
	$(PY) -m allocbench sweep --preset quick --out $(QUICK_RESULTS) $(SWEPT)
	$(PY) -m allocbench probe boundary --out results/quick/probes.json
	$(PY) -m allocbench calibrate --runs 3 --out results/quick/calibration.json
	$(PY) -m allocbench report $(QUICK_RESULTS) --probes results/quick/probes.json \
	    --calibration results/quick/calibration.json --out results/quick/REPORT.md
	@echo "results: $(QUICK_RESULTS)"; echo "report:  results/quick/REPORT.md (figures beside it)"

clean: ## remove build products (keeps .venv and results/)
	rm -rf build csrc/build *.egg-info allocbench/*.c allocbench/*.so allocbench/*.html allocbench/allocbench-*
