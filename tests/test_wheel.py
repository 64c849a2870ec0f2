"""`pip install edgeff` without torch: the wheel built from this tree, installed into a fresh virtual environment
with only its own (NumPy) dependencies, runs the gateway's commands: `edgeff eval` on an int8 model, `edgeff
profile` on a board shipped in the package, and a short `edgeff board train` against a virtual board."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(cmd, cwd, status=0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    res = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == status, f"{cmd}:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}"
    return res


def test_the_wheel_runs_the_runtime_profiler_and_board_link_without_torch(small_model, tmp_path):
    int_path, data_dir = small_model
    source = tmp_path / "source"       # built from a copy, so the build leaves nothing in the checkout
    for item in ("edgeff", "firmware_bridge"):
        shutil.copytree(REPO / item, source / item, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for item in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / item, source / item)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
          source], tmp_path)
    wheel = next((tmp_path / "dist").glob("edgeff-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path)
    python, edgeff = venv / "bin" / "python", venv / "bin" / "edgeff"
    _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], tmp_path)

    probe = _run([python, "-c", "import importlib.util, edgeff; print(importlib.util.find_spec('torch') is None, "
                                "edgeff.__file__)"], tmp_path).stdout.split()
    assert probe[0] == "True" and str(venv) in probe[1], probe    # no torch, and edgeff is the installed wheel

    work = tmp_path / "work"
    work.mkdir()
    evaluated = json.loads(_run([edgeff, "eval", int_path, "--data-dir", data_dir, "--json"], work).stdout)
    here = json.loads(_run([sys.executable, "-m", "edgeff", "eval", int_path, "--data-dir", data_dir, "--json"],
                           REPO).stdout)
    assert evaluated["arithmetic"] == "int8 (integer runtime)" and evaluated["multi_pass"] == here["multi_pass"]

    profiled = json.loads(_run([edgeff, "profile", int_path, "--board", "nrf52840", "--out", work / "profile",
                                "--json"], work).stdout)
    assert profiled["board"] == "nrf52840" and all(Path(p).is_file() for p in profiled["plots"])
    refused = _run([edgeff, "profile", int_path, "--board", "nrf52840", "--measure"], work, status=2).stderr
    assert "torch is not installed" in refused and "edgeff[train]" in refused and "Traceback" not in refused

    trained = json.loads(_run([edgeff, "board", "train", "--port", f"virtual://?storage={work / 'flash'}",
                               "--model", int_path, "--out", work / "trained.safetensors", "--samples", 20,
                               "--data-dir", data_dir, "--lr-shift", 16, "--json"], work).stdout)
    assert trained["samples"] == 20 and (work / "trained.safetensors").is_file()
