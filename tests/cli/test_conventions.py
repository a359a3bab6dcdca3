"""CLI conventions: `--version`, typer's shell completion."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version


def _segbench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, timeout=120)


def test_version_prints_the_package_version_and_exits_0():
    out = _segbench("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"segbench {version('segbench')}"


def test_shell_completion_is_offered():
    out = _segbench("--help")
    assert out.returncode == 0 and "--install-completion" in out.stdout and "--version" in out.stdout
