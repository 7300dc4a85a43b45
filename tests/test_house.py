"""The structure's promises, held: the cell prints exactly the schema and
records.build reads every key of it; a new preloaded allocator is one row of
backends.py, end to end; the import graph has no cycle."""
import ast
import json
import os
import re
import sys

import pytest
from cells import cell_json
from conftest import ROOT

from allocbench import machine, records, runner, traces
from allocbench.backends import BACKENDS, Backend


def schema_mismatches(value, schema, path="") -> list[str]:
    """Where a cell's output differs from records.CELL_OUTPUT (a list holds one entry's schema)."""
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return [f"{path}: not an object"]
        out = [f"{path}.{k}: not in the schema" for k in value if k not in schema]
        out += [f"{path}.{k}: missing" for k in schema if k not in value and k not in records.CELL_OUTPUT_OPTIONAL]
        return out + [m for k in value if k in schema for m in schema_mismatches(value[k], schema[k], f"{path}.{k}")]
    if isinstance(schema, list):
        return [m for i, v in enumerate(value) for m in schema_mismatches(v, schema[0], f"{path}[{i}]")]
    return []


class Watched(dict):
    """A dict that notes each key read, by path."""

    def __init__(self, data, path, seen):
        super().__init__(data)
        self.path, self.seen = path, seen

    def __getitem__(self, key):
        self.seen.add(f"{self.path}.{key}")
        return super().__getitem__(key)

    def get(self, key, default=None):
        self.seen.add(f"{self.path}.{key}")
        return super().get(key, default)


def watch(value, path, seen):
    if isinstance(value, dict):
        return Watched({k: watch(v, f"{path}.{k}", seen) for k, v in value.items()}, path, seen)
    if isinstance(value, list):
        return [watch(v, f"{path}[]", seen) for v in value]
    return value


def leaves(value, path=""):
    if isinstance(value, dict) and value:
        for k, v in value.items():
            yield from leaves(v, f"{path}.{k}")
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for v in value:
            yield from leaves(v, f"{path}[]")
    else:
        yield path


def ids_in(value, out=None):
    out = set() if out is None else out
    out.add(id(value))
    if isinstance(value, dict):
        for v in value.values():
            ids_in(v, out)
    elif isinstance(value, list):
        for v in value:
            ids_in(v, out)
    return out


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("t") / "py.trace")
    traces.record([sys.executable, "-c", "x = [list(range(i)) for i in range(500)]"], path)
    return path


@pytest.mark.parametrize("kind", ["glibc", "toy", "trace", "no timeline"])
def test_the_cell_prints_the_schema_and_build_reads_all_of_it(kind, trace_file):
    spec = runner.make_spec(
        allocator="toy" if kind == "toy" else "glibc", pattern="trace" if kind == "trace" else "batch",
        size=0 if kind == "trace" else 8192, trace=trace_file if kind == "trace" else None,
        ops=None if kind == "trace" else 256, repeats=2)
    argv, env = runner.cell_command(spec, ("timeline=0",) if kind == "no timeline" else ())
    raw = cell_json(*argv[1:], env=env)
    assert schema_mismatches(raw, records.CELL_OUTPUT) == []
    seen = set()
    rec = records.build(spec, watch(raw, "", seen), machine.describe())
    # what build keeps whole is used whole: the record holds it as the cell printed it
    kept = [f".{k}" for k, field in records.CELL_OUTPUT_KEPT_WHOLE.items() if k in raw and rec[field] == raw[k]]
    kept += [".repeats[].calls"] if rec["calls"] == raw["repeats"][0]["calls"] else []
    kept += [".repeats[].after.mallinfo2"] if rec["mallinfo2_after"] == raw["repeats"][-1]["after"]["mallinfo2"] \
        else []
    unused = [p for p in leaves(raw) if p not in seen and not any(p == k or p.startswith(k + ".") for k in kept)]
    assert unused == []


MALLOC_DEBUG = next((p for p in (os.path.join(d, "libc_malloc_debug.so.0") for d in ("/usr/lib/x86_64-linux-gnu",
                                                                                      "/lib64", "/usr/lib"))
                     if os.path.exists(p)), None)


@pytest.mark.skipif(MALLOC_DEBUG is None, reason="glibc's libc_malloc_debug.so.0 is not installed")
def test_a_new_preloaded_allocator_is_one_row(tmp_path, monkeypatch, capsys):
    """glibc's own libc_malloc_debug.so as a new row, and nothing else: run,
    sweep, exec and the report take it by name."""
    from allocbench.cli import main

    monkeypatch.setitem(BACKENDS, "mallocdebug", Backend("mallocdebug", "glibc with its debugging malloc preloaded",
                                                         library=MALLOC_DEBUG))
    cells, progs, grid = tmp_path / "cells.jsonl", tmp_path / "progs.jsonl", tmp_path / "grid.json"
    assert main(["run", "--allocator", "mallocdebug", "--size", "4K", "--ops", "100", "--repeats", "1",
                 "--out", str(cells)]) == 0
    grid.write_text(json.dumps({"repeats": 1, "blocks": [
        {"pattern": "churn", "allocators": ["glibc", "mallocdebug"], "sizes": [4096, 135168], "ops": 200}]}))
    assert main(["sweep", "--config", str(grid), "--out", str(cells)]) == 0
    assert main(["exec", "--allocator", "mallocdebug", "--repeats", "1", "--out", str(progs), "--",
                 "sh", "-c", "echo $LD_PRELOAD"]) == 0
    assert main(["report", str(cells), "--programs", str(progs), "--out", str(tmp_path / "REPORT.md")]) == 0
    recs = [json.loads(line) for line in cells.read_text().splitlines()]
    assert sum(r["allocator"] == "mallocdebug" and r["status"] == "ok" for r in recs) == 3
    run = json.loads(progs.read_text())
    assert run["status"] == "ok" and open(run["log"]).read().strip() == MALLOC_DEBUG
    text = (tmp_path / "REPORT.md").read_text()
    assert "| 4 KiB | mallocdebug |" in text and "| mallocdebug | 1 |" in text


def _imports(path: str, module: str) -> set[str]:
    """allocbench modules that `module` imports anywhere (lazy imports inside functions too)."""
    tree = ast.parse(open(path).read())
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(node.level - 1, 0)):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                if full in MODULES:
                    out.add(full)
                elif full not in COMPILED:  # a name the target module defines
                    out.add(target)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m in MODULES and m != module}


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "allocbench")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), ROOT)[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = os.path.join(folder, f)
    return out


MODULES = _modules()
COMPILED = {"allocbench._native"}  # the Cython extension: it imports nothing of allocbench


def test_the_import_graph_has_no_cycle_and_the_report_draws_its_own_figures():
    graph = {m: _imports(p, m) for m, p in MODULES.items()}
    state, cycles = {}, []

    def visit(m, stack):
        state[m] = "open"
        for n in graph[m]:
            if state.get(n) == "open":
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    # a package imports its own modules to list them (commands, report): not a cycle of code
    cycles = [c for c in cycles if not all(x.startswith(c[0] + ".") or x == c[0] for x in c)]
    assert cycles == []
    # the report draws its own figures: matplotlib is imported by report sections alone
    drawing = {m for m, p in MODULES.items() if re.search(r"^\s*(from|import) matplotlib", open(p).read(), re.M)}
    assert drawing and all(m.startswith("allocbench.report.") for m in drawing), drawing
    assert graph["allocbench.children"] == set()  # the bottom layer imports nothing of allocbench
