"""The walk of a cell's spec (issue 29), run as a script by tests/test_spec_walk.py in a fresh interpreter
so that its profile hook sees nothing of the test session: from `bench.measure.runner.run_cell` to the
written record, the project modules in whose frames the RunSpec (or what is made from it: its to_dict(),
a PredictorSpec) is a local, in call order. Prints one JSON object: the stops and the walk."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["SEGBENCH_SPEED_PROBE"] = "0"

from bench.config import RunSpec
from bench.measure import runner
from bench.workload.predictor import PredictorSpec

PROJECT = ("bench", "strategies")


def walk(spec: RunSpec) -> dict:
    tracked, kept, stops = {id(spec)}, [], []

    def profile(frame, event, arg):
        if event == "return" and frame.f_locals.get("self") is spec and frame.f_code.co_name == "to_dict":
            tracked.add(id(arg))
            kept.append(arg)  # held, so that its id is never another object's
        name = frame.f_globals.get("__name__", "")
        if event != "call" or name.split(".")[0] not in PROJECT:
            return
        if frame.f_code.co_flags & 0x20 and frame.f_lasti > 0:  # a generator resumed: the same call going on
            return
        if any(id(v) in tracked or isinstance(v, PredictorSpec) for v in frame.f_locals.values()):
            caller, on_stack = frame.f_back, False
            while caller is not None:
                on_stack = on_stack or caller.f_globals.get("__name__") == name
                caller = caller.f_back
            stops.append((name, frame.f_code.co_name, on_stack))

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        record, path = runner.run_cell(spec, Path(tempfile.mkdtemp()))
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    modules = [m for i, (m, _, _) in enumerate(stops) if i == 0 or stops[i - 1][0] != m]
    # Entered again after it was left: a stop in a module seen before, none of whose frames is on the stack,
    # that does not follow a stop in the same module (consecutive stops are one visit).
    seen, reentered = set(), []
    for i, (module, _, on_stack) in enumerate(stops):
        if module in seen and not on_stack and stops[i - 1][0] != module and module not in reentered:
            reentered.append(module)
        seen.add(module)
    return {"status": record.status, "written": bool(path and path.exists()), "stops": stops, "walk": modules,
            "reentered": reentered}


if __name__ == "__main__":
    print(json.dumps(walk(RunSpec(strategy="sequential", model="tiny", images=4, image_scale=0.25))))
