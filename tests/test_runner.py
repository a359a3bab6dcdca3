"""One cell end to end with the sequential strategy: the record, bad input, the loader, atomicity."""

from __future__ import annotations

import json

import pytest

from bench import records
from bench.config import RunSpec
from bench.metrics import BatchEvent, summarise
from bench.runner import run_cell
from tests.conftest import BAD_FILES, GOOD_IN_MIXED


def tiny(**kw) -> RunSpec:
    base = {"strategy": "sequential", "model": "tiny", "batch_size": 4, "images": 10, "image_scale": 0.2}
    return RunSpec(**{**base, **kw})


def test_sequential_cell_writes_a_complete_record(tmp_path):
    record, path = run_cell(tiny(), tmp_path, sample_interval=0.05)
    assert record["status"] == "ok", record.get("error")
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == records.SCHEMA_VERSION and on_disk["cell_id"] == tiny().cell_id
    m = on_disk["metrics"]
    assert m["images"] == 10 and m["batches"] == 3 and m["warmup_batches"] == 1 and m["steady_images"] == 6
    assert not m["valid"] and m["invalid_reasons"]  # 2 steady batches: too few to rank
    assert m["throughput_steady"] > 0 and m["throughput_end_to_end"] > 0
    assert m["latency_s"]["p50"] <= m["latency_s"]["p99"]
    assert set(m["stage_ms_per_image"]) == {"decode", "preprocess", "forward", "postprocess", "waiting"}
    assert on_disk["cold"]["model_load_s"][0] > 0 and on_disk["cold"]["time_to_first_batch_s"] > 0
    assert len(on_disk["outputs"]) == 10 and all(len(o["digest"]) == 32 for o in on_disk["outputs"])
    env = on_disk["environment"]
    assert env["packages"]["torch"] and env["cpu_logical"] >= 1 and env["fingerprint"]
    assert on_disk["weights"] == {"kind": "random", "name": "random", "seed": 0, "hub_id": None}
    assert on_disk["utilisation"]["tree_rss_bytes"]["peak"] > 0 and on_disk["samples"]
    assert on_disk["plan"]["threads"] >= 1
    assert not list(path.parent.glob(".*.tmp"))  # no temporary left behind


def test_same_inputs_same_digests_across_runs(tmp_path):
    first, _ = run_cell(tiny(batch_size=3), tmp_path, write=False)
    second, _ = run_cell(tiny(batch_size=5), tmp_path, write=False)
    digests = lambda r: {o["id"]: o["digest"] for o in r["outputs"]}  # noqa: E731
    assert digests(first) == digests(second)


def test_bad_images_are_recorded_and_good_ones_processed(tmp_path, mixed_folder):
    spec = RunSpec(strategy="sequential", model="tiny", batch_size=4, images=None, source=str(mixed_folder))
    record, _ = run_cell(spec, tmp_path)
    assert record["status"] == "ok"
    bad = {b["id"]: b["reason"] for b in record["bad_images"]}
    assert set(bad) == set(BAD_FILES)
    for name, words in BAD_FILES.items():
        assert words in bad[name]
    assert record["counts"]["ok"] == GOOD_IN_MIXED
    assert {o["id"] for o in record["outputs"]} >= {"cmyk.jpg", "deep16.png", "one_pixel.png", "sub/rgba.png"}
    assert [s["path"] for s in record["skipped_files"]] == ["README.txt"]
    one = next(o for o in record["outputs"] if o["id"] == "one_pixel.png")
    assert (one["width"], one["height"]) == (1, 1) and sum(one["histogram"].values()) == 1


def test_huge_image_is_processed(tmp_path, huge_image):
    spec = RunSpec(strategy="sequential", model="tiny", batch_size=1, images=None, source=str(huge_image),
                   warmup_batches=0)
    record, _ = run_cell(spec, tmp_path, write=False)
    (out,) = record["outputs"]
    assert (out["width"], out["height"]) == (6000, 4000)
    assert sum(out["histogram"].values()) == 24_000_000


def test_loader_returns_a_dataframe(tmp_path):
    run_cell(tiny(images=8), tmp_path)
    run_cell(tiny(images=8, batch_size=2), tmp_path)
    (tmp_path / "runs" / "not-a-record.json").write_text("{}")
    frame = records.load_records([tmp_path])
    assert len(frame) == 2 and set(frame["spec.batch_size"]) == {2, 4}
    assert frame["throughput_steady"].notna().all()


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "r.json"
    records.write_atomic(target, {"a": 1})
    with pytest.raises(TypeError):
        records.write_atomic(target, {"a": object()})
    assert json.loads(target.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [target]


def _event(i, images, started, completed, worker="w"):
    return BatchEvent(i, worker, 1, "n", images, started, started, completed, completed, {"forward": 0.5})


def test_summarise_excludes_each_workers_warmup_from_steady_state():
    events = [_event(0, 4, 0.0, 10.0), _event(1, 4, 10.0, 11.0), _event(2, 4, 11.0, 12.0)]
    m = summarise(events, warmup_batches=1, run_s=12.0, start_s=3.0, min_steady_batches=2, min_steady_s=1.0)
    assert m["steady_images"] == 8 and m["steady_window_s"] == 2.0 and m["throughput_steady"] == 4.0
    assert m["throughput_run"] == 1.0 and m["throughput_end_to_end"] == 12 / 15 and m["valid"]
    assert m["latency_s"]["max"] == 1.0 and m["stage_ms_per_image"]["forward"] == 125.0


def test_steady_window_opens_when_the_last_worker_finished_its_warmup():
    """Worker b's warm-up result arrives at 5.5: only results after it count, over 5.5 → 7.001."""
    events = [_event(0, 4, 0.0, 5.0, "a"), _event(1, 4, 0.0, 5.5, "b"),
              _event(2, 4, 5.0, 7.0, "a"), _event(3, 4, 5.5, 7.001, "b")]
    m = summarise(events, warmup_batches=1, run_s=7.0, start_s=0.0)
    assert m["steady_from_s"] == 5.5 and m["steady_images"] == 8
    assert m["steady_window_s"] == pytest.approx(1.501) and m["throughput_steady"] == pytest.approx(8 / 1.501)


def test_a_prefetch_that_began_during_warmup_does_not_stretch_the_window():
    """Worker clocks do not set the window: batch 1 'started' (its prefetch) at 0.2 s, inside the
    warm-up batch, yet the steady rate is 4 images per second of driver time after the warm-up."""
    events = [BatchEvent(0, "w", 1, "n", 4, 0.0, 0.0, 2.0, 2.0, {}),
              BatchEvent(1, "w", 1, "n", 4, 0.1, 0.2, 3.0, 3.0, {}),
              BatchEvent(2, "w", 1, "n", 4, 0.2, 2.1, 4.0, 4.0, {})]
    m = summarise(events, warmup_batches=1, run_s=4.0, start_s=0.0)
    assert m["throughput_steady"] == pytest.approx(4.0) and m["steady_window_s"] == pytest.approx(2.0)


def test_validity_needs_enough_steady_batches_per_worker_and_a_long_enough_window():
    events = [_event(i, 2, float(i), float(i + 1), "a") for i in range(7)]
    assert summarise(events, 1, 7.0, 0.0)["valid"]  # 6 steady batches over 6 s
    short = summarise(events, 1, 7.0, 0.0, min_steady_s=10.0)
    assert not short["valid"] and "shorter than 10 s" in short["invalid_reasons"][0]
    few = summarise(events[:4], 1, 4.0, 0.0, min_steady_s=1.0)
    assert not few["valid"] and "fewer than 5 steady batches from a (3)" in few["invalid_reasons"][0]


def test_too_few_batches_give_no_steady_figure_and_say_why():
    m = summarise([_event(0, 2, 0.0, 1.0, "a"), _event(1, 2, 0.0, 1.0, "b")], warmup_batches=1, run_s=1.0,
                  start_s=0.0)
    assert not m["valid"] and m["throughput_steady"] is None and m["steady_images"] == 0
    assert "no batch completed after every worker's 1 warm-up" in m["invalid_reasons"][0]


def test_latency_not_defined_leaves_latency_out():
    events = [_event(i, 2, float(i), float(i + 1)) for i in range(3)]
    m = summarise(events, 1, 3.0, 0.0, latency_defined=False)
    assert m["latency_p95_s"] is None and m["stage_ms_per_image"]["waiting"] is None and not m["latency_defined"]


def test_recovery_counts_only_batches_from_the_restarted_process():
    """A result the killed process had already sent arrives after the fault: it is not the recovery.
    The first batch from a new process (another pid or node) is."""
    from bench.faults import recovery

    def event(worker, node, pid, started, completed):
        return {"worker": worker, "node": node, "pid": pid, "started": started, "completed": completed, "images": 2}

    events = [event("actor-0", "n1", 10, 0.0, 1.0), event("actor-1", "n2", 20, 0.0, 1.0),
              event("actor-0", "n1", 10, 1.0, 2.0), event("actor-1", "n2", 20, 1.0, 2.0),
              event("actor-0", "n1", 10, 2.0, 6.0),  # sent before the kill at 2.5, received late
              event("actor-1", "n2", 20, 2.0, 3.0),
              event("actor-0", "n3", 11, 9.0, 10.5)]  # the restarted actor, on another node
    result = recovery(events, 2.5, "actor-0")
    assert result["recovered"] and result["recovery_s"] == 8.0
    assert result["throughput_before"] == 6.0  # 3 more batches of 2 in the second between the first and last
    assert result["throughput_during_recovery"] == 6 / 8.0
    assert recovery(events[:-1], 2.5, "actor-0")["recovered"] is False
