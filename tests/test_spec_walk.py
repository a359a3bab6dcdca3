"""The route a cell's spec takes, from the runner's entry to the written record, stays short: few modules,
none entered again after it was left (issue 29: it was 49 stops in 17 files, the runner entered 7 times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

WALK = Path(__file__).with_name("spec_walk.py")


def test_the_spec_passes_each_module_once():
    # -P: tests/ is not put first on the path (its platform/ would shadow the standard library's).
    result = subprocess.run([sys.executable, "-P", str(WALK)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    walk = json.loads(result.stdout.strip().splitlines()[-1])
    assert walk["status"] == "ok" and walk["written"]
    assert walk["walk"][0] == "bench.measure.runner"
    assert len(set(walk["walk"])) <= 12, walk["walk"]
    assert walk["reentered"] == [], walk["stops"]
