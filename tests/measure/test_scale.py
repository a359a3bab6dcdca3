"""At scale (`nox -s slow`): 200,000 tiny images through sequential and through Ray actors. The driver's
peak RSS stays within 50 MB of a 2,000-image run, the JSON record under 100 KB whatever the image count,
and report (with parity) and compare over the 200,000-image records within 50 MB of the same over
20,000-image ones.

Each run is its own `segbench` process (peak RSS is a process's lifetime maximum), with the machine-
speed probe off: its b0 forward is the driver's largest allocation and would hide growth below it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.store import ResultStore

MB = 2**20
# Runs segbench and prints this process's peak RSS (KiB on Linux) to stderr, whatever the exit.
PEAK = ("import resource, runpy, sys\nsys.argv = ['segbench', *sys.argv[1:]]\ntry:\n"
        "    runpy.run_module('bench', run_name='__main__')\nfinally:\n"
        "    print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def segbench(*args: str, check: bool = True) -> tuple[int, str]:
    """Run a segbench command in a fresh process; (its peak RSS in bytes, its stderr)."""
    done = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True,
                          env={**os.environ, "SEGBENCH_SPEED_PROBE": "0"}, timeout=3000)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return int(re.search(r"peak_rss_kib (\d+)", done.stderr).group(1)) * 1024, done.stderr


def run(strategy: str, images: int, results: Path):
    actors = ["--actors", "2"] if strategy != "sequential" else []
    segbench("run", "--strategy", strategy, "--model", "tiny", "--batch-size", "32", "--images", str(images),
             "--image-scale", "0.1", "--results", str(results), "--quiet", *actors)
    return next((p, r) for p, r in ResultStore([results]).records() if r.spec["strategy"] == strategy)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_two_hundred_thousand_images_keep_the_driver_and_the_record_flat(tmp_path):
    figures = {}
    for strategy in ("sequential", "actors"):
        runs = {images: run(strategy, images, tmp_path / str(images)) for images in (2_000, 20_000, 200_000)}
        for images, (path, record) in runs.items():
            assert record.status == "ok", record.error
            assert record.counts.inputs_seen == record.counts.ok == record.row_count("outputs") == images
            assert record.counts.duplicates == 0
            assert path.stat().st_size < 100_000, f"{path.stat().st_size} bytes of JSON for {images} images"
            assert set(record.tables) == {"outputs", "batches", "samples"}
        small, large = runs[2_000][1], runs[200_000][1]
        grown = large.driver_peak_rss_bytes - small.driver_peak_rss_bytes
        assert grown < 50 * MB, f"{strategy}: driver peak RSS grew {grown / MB:.0f} MiB from 2,000 to 200,000 images"
        bounds = large.memory_bounds
        assert bounds.prefetched_bytes <= bounds.prefetch_budget_bytes + 32 * 5_000  # one batch past it
        assert bounds.in_flight_batches_peak <= (4 if strategy == "actors" else 1)
        figures[strategy] = {images: {"driver_peak_rss_mib": round(r.driver_peak_rss_bytes / MB, 1),
                                      "record_bytes": p.stat().st_size,
                                      "outputs_table_bytes": r.tables["outputs"]["bytes"],
                                      "throughput_steady": round(r.metrics.throughput_steady),
                                      "prefetched_images": r.memory_bounds.prefetched_images}
                             for images, (p, r) in runs.items()}

    # Report (parity included: actors against sequential on every image) and compare, at each size. The
    # 2,000-image cells are too short to be valid, so their report draws fewer plots: the reading side is
    # compared from 20,000 images (valid, every plot drawn) to 200,000.
    peaks = {}
    for images in (2_000, 20_000, 200_000):
        folder = tmp_path / str(images)
        report_peak, _ = segbench("report", str(folder), "--out", str(tmp_path / f"report-{images}"), "--examples", "0")
        # --allow-ungated: the 2,000-image cells are too short to be gated, which is not what is measured here
        compare_peak, _ = segbench("compare", str(folder), "-c", str(folder), "--allow-ungated")
        peaks[images] = {"report": report_peak, "compare": compare_peak}
    parity = (tmp_path / "report-200000" / "report.md").read_text()
    assert "| 200000 |" in parity and "ERROR" not in parity
    for what in ("report", "compare"):
        grown = peaks[200_000][what] - peaks[20_000][what]
        assert grown < 50 * MB, f"{what}: peak RSS grew {grown / MB:.0f} MiB from 20,000 to 200,000 images"
    figures["reading_peak_rss_mib"] = {n: {k: round(v / MB, 1) for k, v in p.items()} for n, p in peaks.items()}
    print(json.dumps(figures))
