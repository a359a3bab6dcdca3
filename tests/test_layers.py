"""The layers contract (pyproject.toml, import-linter): kept by the tree, and broken by an import that
points up, so the contract is not one that cannot fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copy's packages, ahead of the installed ones
    return subprocess.run([str(LINT), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_the_tree_keeps_its_layers():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Layers point down KEPT" in result.stdout


def test_an_import_that_points_up_breaks_the_contract(tmp_path):
    for package in ("bench", "strategies"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "bench" / "stats.py").open("a") as stats:  # the ground floor reaching the top
        stats.write("\nfrom bench.report import format  # noqa\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "bench.stats is not allowed to import bench.report" in result.stdout
