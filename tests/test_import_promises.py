"""Import-time promises: the modules that plan and probe (read a sweep file, look at the host, name a
strategy or a runtime) load neither torch nor Ray, checked in a fresh interpreter, where nothing the test
session imported earlier can hide an import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray")


@pytest.mark.parametrize("module", ["bench.platform.host", "bench.sweep.spec", "strategies", "bench.workload.runtimes"])
def test_a_light_module_loads_neither_torch_nor_ray(module):
    probe = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [], f"importing {module} loaded {result.stdout.strip()}"
