"""A fuzz pass over what reads records: the loader, the store, and the `report`, `compare` and `history`
commands. Records come from anywhere, so hypothesis plants hostile values (wrong types, huge and
non-finite numbers, markup, formulas, commands, paths, names of things to load or sleep on) anywhere in
real records, and each command must end within a bound, stay within a memory bound, and either succeed
or refuse with one line (exit 2): never a traceback, never the planted markup in the HTML.
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.results.record import NotARecord, RunRecord
from bench.results.store import ResultStore

GOLDEN = Path(__file__).parents[1] / "data" / "golden" / "runs"
MARKUP = "<script>alert(1)</script>"
COMMAND_S = 60.0  # far above what a report of six tiny cells takes anywhere, far below a sleep of years
GROWTH_BYTES = 2 * 2**30  # a record's planted size never becomes gigabytes of this process

TEXT = st.sampled_from([
    MARKUP, "=HYPERLINK(\"http://x\")", "$\\frac{1}{0}$", "HEAD~1; rm -rf ~", "$(touch /tmp/pwned)",
    "calibrated:999999999999ms", "folder:/etc", "/dev/zero", "../../../../etc/passwd", "hub",
    "nvidia/segformer-b0-finetuned-ade-512-512", "{{ 7 * 7 }}", "| **x** |", "\x00", "x" * 5000,
    "sequential", "actors", "tiny", "b5", "cpu", "cuda", "random",
]) | st.text(max_size=20)
NUMBER = st.sampled_from([0, -1, 1, 10**30, -(10**30), 10**400, 1e300, -1e300, 1e-300, 2**63, 0.5]) | st.floats()
LEAF = st.none() | st.booleans() | NUMBER | TEXT
VALUE = st.recursive(LEAF, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                     max_leaves=8)
TABLE = st.fixed_dictionaries({"file": TEXT, "rows": NUMBER, "bytes": NUMBER, "sha256": TEXT})


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON value: the dict keys and list indices that reach it."""
    places = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            places += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):  # the first few rows stand for the rest
            places += _paths(item, (*prefix, index))
    return places


BASE = json.loads(next(GOLDEN.rglob("r*_*.json")).read_text())
PLACES = [*_paths(BASE), ("tables",), ("tables", "outputs"), ("machine_probe",), ("schema_version",)]


@st.composite
def edits(draw) -> list[tuple[tuple, object]]:
    """One to four (place, new value) pairs; a value of ... deletes the place."""
    return draw(st.lists(st.tuples(st.sampled_from(PLACES), VALUE | TABLE | st.just(...)), min_size=1, max_size=4))


def _apply(record: dict, planted: list[tuple[tuple, object]]) -> dict:
    for place, value in planted:
        holder = record
        for step in place[:-1]:
            try:
                holder = holder[step]
            except (KeyError, IndexError, TypeError):
                break
        else:
            if isinstance(holder, dict) or (isinstance(holder, list) and isinstance(place[-1], int)
                                            and place[-1] < len(holder)):
                if value is ...:
                    if isinstance(holder, list) or place[-1] in holder:
                        holder.pop(place[-1])
                else:
                    holder[place[-1]] = value
    return record


def _dump(record: dict) -> str:
    # As a careless writer would: NaN and Infinity are written as JSON's non-standard tokens.
    return json.dumps(record, allow_nan=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted=edits())
def test_any_record_loads_or_is_not_a_record(planted):
    record = _apply(json.loads(json.dumps(BASE)), planted)
    try:
        loaded = RunRecord.from_dict(json.loads(_dump(record)))
    except NotARecord:
        return
    assert loaded.cell_id == record["cell_id"]


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _command(argv: list[str], capsys) -> tuple[int, str]:
    """Run one CLI command in this process: its exit code and what it wrote, after checking the bounds."""
    started, rss = time.monotonic(), _max_rss()
    try:
        main(argv)
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code if isinstance(exit_info.code, int) else 1
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    assert elapsed < COMMAND_S, f"{argv[0]} took {elapsed:.0f} s"
    assert _max_rss() - rss < GROWTH_BYTES, f"{argv[0]} grew by {(_max_rss() - rss) / 2**30:.1f} GiB"
    assert "Traceback" not in out + err
    if code == 2:
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    return code, out + err


@pytest.mark.extended  # CI runs it; the default run leaves it out: 14 s of generated record sets
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(planted=edits(), spread=st.booleans())
def test_report_compare_and_history_end_bounded_with_one_line_or_a_result(tmp_path_factory, capsys, planted, spread):
    """`spread`: the planted values go into every record, or into one record of the folder."""
    root = tmp_path_factory.mktemp("fuzz")
    runs = root / "runs"
    shutil.copytree(GOLDEN, runs)
    paths = sorted(runs.rglob("r*_*.json"))
    for path in paths if spread else paths[:1]:
        path.write_text(_dump(_apply(json.loads(path.read_text()), planted)))

    code, _ = _command(["report", str(runs), "--out", str(root / "report"), "--examples", "1"], capsys)
    assert code in (0, 2)
    html = root / "report" / "report.html"
    if html.exists():
        assert MARKUP not in html.read_text()
    code, _ = _command(["compare", str(runs), "-c", str(runs), "--allow-ungated"], capsys)
    assert code in (0, 1, 2)  # 1: a failed cell on a side is the gate's own verdict
    code, _ = _command(["history", str(runs), str(runs), "--out", str(root / "history")], capsys)
    assert code in (0, 2)


def test_the_fuzz_plants_what_it_means_to():
    """The generator reaches nested places and writes non-finite numbers as a careless writer would."""
    assert ("spec", "model") in PLACES and ("metrics", "throughput_steady") in PLACES
    assert "NaN" in _dump(_apply(json.loads(json.dumps(BASE)), [(("spec", "seed"), math.nan)]))
    with pytest.raises(NotARecord):
        RunRecord.from_dict(json.loads(_dump(_apply(json.loads(json.dumps(BASE)), [(("spec",), [])]))))
    assert ResultStore([GOLDEN]).frame() is not None
