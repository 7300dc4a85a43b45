# Sourced by scripts/glibc-malloc-tests and scripts/mimalloc-stress: the toy's runs beside glibc's, each
# "LABEL NAME=VALUE...": every policy (from its one list, csrc/lib/toyalloc.h), then its knobs at their
# edges (backends.toy_knob_edges, the label the assignments themselves), all asked of allocbench.
policies=$("${PYTHON:-.venv/bin/python}" -m allocbench info --field toy_policies) \
    || { echo "$(basename "$0"): cannot ask allocbench for the toy's policies (make build)" >&2; exit 2; }
edges=$("${PYTHON:-.venv/bin/python}" -m allocbench info --field toy_knob_edges) \
    || { echo "$(basename "$0"): cannot ask allocbench for the toy's knobs (make build)" >&2; exit 2; }
toy_runs=()
for p in $policies; do toy_runs+=("$p TOYALLOC_POLICY=$p"); done
for k in $edges; do toy_runs+=("$k ${k//,/ }"); done
