# allocbench: every target sets up what it needs (.venv, PyPI packages, Debian packages, build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS := $(VENV)/.deps-installed
DEBIAN_PACKAGES := strace libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0
TOYLIB := allocbench/libtoyalloc.so
CC ?= gcc
CFLAGS ?= -O2 -Wall -Wextra

.PHONY: help system build debug test bench clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

system: ## install missing Debian packages and mount tracefs (root; otherwise warns)
	@scripts/setup-system $(DEBIAN_PACKAGES)

$(DEPS): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip "setuptools>=64" "Cython>=3.1"
	$(PY) -m pip install -q --no-build-isolation -e '.[dev]'
	touch $@

build: $(DEPS) ## build the Cython extensions (rebuilt when .pyx/.pxd/.c/.h change)
	$(PY) setup.py -q build_ext --inplace

debug: $(DEPS) ## rebuild with bounds checks and -O0 -g
	ALLOCBENCH_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force

test: system build ## run the test suite
	$(PY) -m pytest -q

bench: system build ## measure: a small real measurement until the sweep lands
	$(PY) -m allocbench info
	$(PY) scripts/placeholder-bench

clean: ## remove build products (keeps .venv and results/)
	rm -rf build *.egg-info allocbench/*.c allocbench/*.so allocbench/*.html
