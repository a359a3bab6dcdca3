"""One side of an A/B job as a long-lived server (bench.sweep.serve): the protocol, its bounds, and the
fall-back for a tree that cannot serve. The real cells it runs are the sweep's (test_sweep; the slow A/B
test in test_gate runs them through real servers)."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from bench.config import TIMEOUT_EXIT
from bench.sweep import interleave, serve
from bench.sweep.executor import SweepOutcome
from bench.sweep.spec import SweepSpec

# A tree whose CLI answers as a server would: a line of noise, "ready", then per request the repeats it was
# asked for as its exit code's source (repeats 7: exit 1; repeats 9: it hangs).
SERVER = textwrap.dedent('''
    import json, sys, time
    print("a library's chatter", flush=True)
    print("segbench-serve " + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["repeats"] == 9:
            time.sleep(600)
        with open("requests.jsonl", "a") as log:
            log.write(line)
        print("segbench-serve not json", flush=True)
        print("segbench-serve " + json.dumps({"exit": 1 if request["repeats"] == 7 else 0}), flush=True)
''')


def _tree(tmp_path: Path, main: str) -> Path:
    tree = tmp_path / "tree"
    (tree / "bench").mkdir(parents=True)
    (tree / "bench" / "__init__.py").write_text("")
    (tree / "bench" / "__main__.py").write_text(main)
    return tree


@pytest.mark.timeout(60)
def test_a_server_answers_each_request_and_its_chatter_is_not_an_answer(tmp_path, capfd):
    tree = _tree(tmp_path, SERVER)
    server = serve.SideServer(["--preset", "nightly"], tree, tmp_path / "out", {"SEGBENCH_PLANT": "x"})
    assert server.start(30)
    assert server.run({"strategies": ["tasks"]}, 1, 30) == 0
    assert server.run({"strategies": ["tasks"]}, 7, 30) == 1
    requests = [json.loads(line) for line in (tree / "requests.jsonl").read_text().splitlines()]
    assert requests == [{"settings": {"strategies": ["tasks"]}, "repeats": 1},
                        {"settings": {"strategies": ["tasks"]}, "repeats": 7}]
    assert "a library's chatter" in capfd.readouterr().err
    assert server.command[-4:] == ["--serve", "--results", str(tmp_path / "out"), "--quiet"]
    with pytest.raises(serve.ServerGone, match="within 1 s") as gone:  # a request that hangs: killed at its bound
        server.run({}, 9, 1.0)
    assert gone.value.timed_out
    with pytest.raises(serve.ServerGone, match="ended"):  # and it stays gone
        server.run({}, 1, 5.0)
    server.close()


@pytest.mark.timeout(60)
def test_a_tree_that_cannot_serve_is_run_a_process_a_cell(tmp_path, monkeypatch):
    # typer refuses an option it lacks with exit code 2 before anything runs
    tree = _tree(tmp_path, "import sys\nif '--serve' in sys.argv:\n    sys.exit(2)\n")
    runs = []
    monkeypatch.setattr(interleave, "_run_process", lambda args, cell, k, side, timeout_s: runs.append(k) or 0)
    side = interleave.Side("baseline", tree, tmp_path / "out")
    interleave.run_rounds(["--preset", "nightly"], [interleave.CellArgs("c", {"strategies": ["tasks"]})],
                          interleave.Rounds(2, 2), [side])
    assert runs == [0, 1]
    assert interleave.CellArgs("c", {"strategies": ["tasks"], "actors": [2]}).args == (
        "--strategy", "tasks", "--actors", "2")


@pytest.mark.timeout(60)
def test_a_server_that_dies_stops_its_side_with_its_code(tmp_path):
    tree = _tree(tmp_path, "import sys, json\nprint('segbench-serve ' + json.dumps({'ready': True}), flush=True)\n"
                           "sys.stdin.readline()\nsys.exit(137)\n")
    side = interleave.Side("candidate", tree, tmp_path / "out")
    with pytest.raises(interleave.SideStopped, match="exit code 137") as stopped:
        interleave.run_rounds(["--preset", "nightly"], [interleave.CellArgs("c", {})], interleave.Rounds(1, 1),
                              [side])
    assert stopped.value.exit_code == 137 and stopped.value.exit_code != TIMEOUT_EXIT


def test_serve_runs_each_request_as_the_sweeps_overrides(tmp_path, monkeypatch):
    ran = []

    def run_sweep(spec, results, ray_address=None):
        ran.append((spec.strategies, spec.actors, spec.repeats, ray_address))
        return SweepOutcome(results, failed=spec.actors == [2])

    monkeypatch.setattr(serve, "run_sweep", run_sweep)
    requests = io.StringIO("\n".join([
        json.dumps({"settings": {"strategies": ["tasks"], "actors": [1]}, "repeats": 2}),
        json.dumps({"settings": {"strategies": ["tasks"], "actors": [2]}, "repeats": 1}),
        json.dumps({"settings": {"strategies": ["no_such"]}, "repeats": 1}),  # refused as the command line is
        json.dumps({"settings": {"images": [3]}, "repeats": 1}),  # not a swept key
        "not json"]) + "\n")
    answers = io.StringIO()
    spec = SweepSpec.preset("nightly")
    assert serve.serve(spec, tmp_path, requests, answers, ray_address="127.0.0.1:1") == 0
    replies = [json.loads(line.removeprefix(serve.PREFIX)) for line in answers.getvalue().splitlines()]
    assert replies[:3] == [{"ready": True}, {"exit": 0}, {"exit": 1}]
    assert [r["exit"] for r in replies[3:]] == [2, 2, 2] and all("bad request" in r["error"] for r in replies[3:])
    assert ran == [(["tasks"], [1], 2, "127.0.0.1:1"), (["tasks"], [2], 1, "127.0.0.1:1")]
