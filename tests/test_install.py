"""`pip install` gives a working allocbench: a wheel built from this tree, installed into a fresh
venv, finds every helper it needs (setup.py builds them all in its build step) and runs a cell."""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import venv

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_wheel_installed_in_a_fresh_venv_runs_a_cell(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", wheels,
                    ROOT], check=True, timeout=600, capture_output=True)
    (wheel,) = glob.glob(f"{wheels}/allocbench-*.whl")
    venv.create(tmp_path / "v", with_pip=True)
    bin_ = tmp_path / "v" / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_PRELOAD", "VIRTUAL_ENV")}
    subprocess.run([bin_ / "pip", "install", "-q", wheel], check=True, timeout=600, capture_output=True, env=env)
    away = tmp_path / "elsewhere"  # not the source tree: the package must come from the venv
    away.mkdir()
    run = lambda *args: subprocess.run([bin_ / "allocbench", *args], capture_output=True, text=True, env=env,
                                       cwd=away, timeout=300)
    info = run("info", "--json")
    assert info.returncode == 0, info.stderr
    where = json.loads(info.stdout)
    assert str(tmp_path / "v") in where["package"], where["package"]
    cell = run("run", "--pattern", "churn", "--size", "132K", "--ops", "200", "--json")
    assert cell.returncode == 0, cell.stderr
    rec = json.loads(cell.stdout)
    assert rec["status"] == "ok" and rec["ops"] == 200
    traced = run("record", "--out", str(away / "t.trace"), "--", "true")
    assert traced.returncode == 0, traced.stderr
