"""The linter is part of the test command: ruff with the project's rules (pyproject.toml) over the tree."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], capture_output=True,
                         text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout + res.stderr


def test_ruff_fails_on_a_finding(tmp_path):
    """The check above can fail: the same rules flag an unused import."""
    (tmp_path / "bad.py").write_text("import os\n")
    res = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config", str(ROOT / "pyproject.toml"),
                          str(tmp_path / "bad.py")], capture_output=True, text=True)
    assert res.returncode == 1 and "F401" in res.stdout, res.stdout + res.stderr
