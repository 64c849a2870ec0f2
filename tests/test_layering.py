"""The package layering of docs/architecture.md, checked by import-linter's contracts in pyproject.toml:
the real tree keeps them, and a copy of it with one wrong import breaks them (so the check can fail)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}   # the tree at root, not an installed copy
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_tree_keeps_every_layering_contract():
    res = _lint_imports(REPO)
    assert res.returncode == 0 and "0 broken" in res.stdout, res.stdout[-3000:] + res.stderr[-2000:]


@pytest.mark.parametrize("module, bad_import, broken", [
    ("firmware_bridge/board.py", "from edgeff.app import options  # noqa", "packages import only the layers"),
    ("edgeff/runtime/goodness.py", "from edgeff.train import network  # noqa", "import no torch"),
    ("edgeff/profiler/hw_profile.py", "import torch  # noqa", "import no torch"),
    ("edgeff/ops/dense/spec.py", "from edgeff.runtime import goodness  # noqa", "op specs are core"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, module, bad_import, broken):
    for item in ("edgeff", "firmware_bridge", "pyproject.toml"):
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
        else:
            shutil.copy(source, tmp_path / item)
    path = tmp_path / module
    path.write_text(path.read_text() + f"\n{bad_import}\n")
    res = _lint_imports(tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout[-3000:]
    assert broken in res.stdout and module.removesuffix(".py").replace("/", ".") in res.stdout, res.stdout[-3000:]
