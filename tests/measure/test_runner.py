"""One cell end to end with the sequential strategy: the record, bad input, huge images."""

from __future__ import annotations

import json

from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.results.record import SCHEMA_VERSION
from bench.workload import speed_probe
from tests.conftest import BAD_FILES, GOOD_IN_MIXED, SKIPPED_FILES


def tiny(**kw) -> RunSpec:
    base = {"strategy": "sequential", "model": "tiny", "batch_size": 4, "images": 10, "image_scale": 0.2}
    return RunSpec(**{**base, **kw})


def test_sequential_cell_writes_a_complete_record(tmp_path):
    record, path = run_cell(tiny(), tmp_path, sample_interval=0.05)
    assert record.status == "ok", record.error
    on_disk = json.loads(path.read_text())
    assert on_disk["schema_version"] == SCHEMA_VERSION and on_disk["cell_id"] == tiny().cell_id
    m = on_disk["metrics"]
    assert m["images"] == 10 and m["batches"] == 3 and m["warmup_batches"] == 1 and m["steady_images"] == 6
    assert not m["valid"] and m["invalid_reasons"]  # 2 steady batches: too few to rank
    assert m["throughput_steady"] > 0 and m["throughput_end_to_end"] > 0
    assert m["latency_s"]["p50"] <= m["latency_s"]["p99"]
    assert set(m["stage_ms_per_image"]) == {"decode", "preprocess", "forward", "postprocess", "waiting"}
    assert on_disk["cold"]["model_load_s"][0] > 0 and on_disk["cold"]["time_to_first_batch_s"] > 0
    assert not {"outputs", "batches", "samples"} & set(on_disk)  # they are the side tables
    outputs = record.rows("outputs")
    assert len(outputs) == on_disk["tables"]["outputs"]["rows"] == 10 and all(len(o["digest"]) == 32 for o in outputs)
    assert on_disk["tables"]["batches"]["rows"] == 3 and on_disk["tables"]["samples"]["rows"] >= 1
    assert on_disk["counts"] == {"inputs_expected": 10, "inputs_seen": 10, "ok": 10, "bad": 0, "duplicates": 0,
                                 "exactly_once": True}
    env = on_disk["environment"]
    assert env["packages"]["torch"] and env["cpu_logical"] >= 1 and env["fingerprint"]
    assert on_disk["weights"] == {"kind": "random", "name": "random", "seed": 0, "hub_id": None}
    assert on_disk["utilisation"]["tree_rss_bytes"]["peak"] > 0 and record.rows("samples")
    assert on_disk["plan"]["threads"] >= 1
    assert not list(path.parent.glob(".*"))  # no temporary or partial table left behind


def test_each_record_carries_the_machine_speed_probe_taken_after_its_cell(tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("SEGBENCH_SPEED_PROBE", "1")  # the suite turns it off elsewhere
    threads = torch.get_num_threads()
    record, _ = run_cell(tiny(), tmp_path, write=False)
    probe = record.machine_probe
    assert probe["version"] == speed_probe.VERSION and probe["threads"] >= 1
    assert min(probe["matmul_s"], probe["matmul_1thread_s"], probe["b0_forward_s"]) > 0  # figures, never judged here
    assert torch.get_num_threads() == threads  # the probe leaves the process's thread count as it found it
    monkeypatch.setenv("SEGBENCH_SPEED_PROBE", "0")
    assert run_cell(tiny(), tmp_path, write=False)[0].machine_probe is None


def test_same_inputs_same_digests_across_runs(tmp_path):
    first, _ = run_cell(tiny(batch_size=3), tmp_path, write=False)
    second, _ = run_cell(tiny(batch_size=5), tmp_path, write=False)
    digests = lambda r: {o["id"]: o["digest"] for o in r.rows("outputs")}  # noqa: E731
    assert digests(first) == digests(second)


def test_bad_images_are_recorded_and_good_ones_processed(tmp_path, mixed_folder):
    spec = RunSpec(strategy="sequential", model="tiny", batch_size=4, images=None, source=str(mixed_folder))
    record, _ = run_cell(spec, tmp_path)
    assert record.status == "ok"
    bad = {b["id"]: b["reason"] for b in record.bad_images}
    assert set(bad) == set(BAD_FILES)
    for name, words in BAD_FILES.items():
        assert words in bad[name]
    assert record.counts.ok == GOOD_IN_MIXED
    readable = {o["id"] for o in record.rows("outputs") if o["ok"]}
    assert readable >= {"cmyk.jpg", "deep16.png", "one_pixel.png", "sub/rgba.png", "anim.gif", "scan.tif", "UPPER.PNG",
                        "sub/no_extension", "link.jpg"}
    assert {o["id"]: o["reason"] for o in record.rows("outputs") if not o["ok"]} == bad  # every bad one, in the table
    skipped = {s["path"]: s["reason"] for s in record.skipped_files}
    assert set(skipped) == set(SKIPPED_FILES) and all(w in skipped[p] for p, w in SKIPPED_FILES.items())
    assert record.counts.inputs_seen == record.counts.ok + record.counts.bad
    one = next(o for o in record.rows("outputs") if o["id"] == "one_pixel.png")
    assert (one["width"], one["height"]) == (1, 1) and sum(one["histogram"].values()) == 1


def test_huge_image_is_processed(tmp_path, huge_image):
    spec = RunSpec(strategy="sequential", model="tiny", batch_size=1, images=None, source=str(huge_image),
                   warmup_batches=0)
    record, _ = run_cell(spec, tmp_path, write=False)
    (out,) = record.rows("outputs")
    assert (out["width"], out["height"]) == (6000, 4000)
    assert sum(out["histogram"].values()) == 24_000_000


def test_inputs_past_the_prefetch_budget_stream_and_the_bounds_are_recorded(tmp_path):
    record, _ = run_cell(tiny(images=12, prefetch_mb=0.001), tmp_path, write=False)  # ~1 KB: the first batch
    assert record.status == "ok", record.error
    bounds = record.memory_bounds
    assert bounds.prefetch_budget_bytes == 1048 and bounds.prefetched_images == 4 < 12
    assert bounds.prefetched_bytes > 0 and bounds.in_flight_batches_peak == 1
    assert record.counts.inputs_seen == 12 and record.row_count("outputs") == 12


def test_a_cell_cut_short_keeps_the_rows_it_got_in_its_tables(tmp_path):
    # 5,000 calibrated sleeps of 5 ms (25 s or more on any host) against a 4 s timeout
    record, path = run_cell(tiny(model="calibrated:5ms", images=5000, batch_size=1, timeout_s=4, prefetch_mb=0.01),
                            tmp_path)
    assert record.status == "timeout"
    got = record.row_count("outputs")
    assert 0 < got < 5000 and len({o["id"] for o in record.rows("outputs")}) == got
    assert not list(path.parent.glob(".*"))
