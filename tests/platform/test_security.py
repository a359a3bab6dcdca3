"""Nothing exposed: loopback-only Ray, data files that are only data, escaped reports."""

from __future__ import annotations

import json
import pickle

import psutil
import pytest

from bench.config import RunSpec
from bench.measure.runner import run_cell
from bench.platform.host import ray_processes
from bench.report.render import build_report
from bench.results.store import ResultStore, read_record
from bench.sweep.spec import SweepSpec
from bench.workload.images import synthetic_jpeg

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


class _Payload:
    """Unpickling this would create a file: proof that no pickle was ever loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_reading_records_and_sweep_files_never_executes_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "runs" / "evil.json"
    evil.parent.mkdir()
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    assert ResultStore([tmp_path]).frame().empty
    with pytest.raises(ValueError):
        read_record(evil)
    toml = tmp_path / "evil.toml"
    toml.write_text('label = "__import__(\'os\').system(\'touch pwned\')"\n')
    assert SweepSpec.from_toml(toml).label.startswith("__import__")  # a string, nothing more
    assert not marker.exists() and not (tmp_path / "pwned").exists()


def test_report_escapes_a_hostile_file_name_and_label(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "<img src=x onerror=alert(1)>.jpg").write_bytes(b"not really a jpeg")
    (folder / "good.jpg").write_bytes(synthetic_jpeg(0, scale=0.1))
    spec = RunSpec(strategy="sequential", model="tiny", batch_size=2, images=None, source=str(folder),
                   label="<script>alert(1)</script>")
    run_cell(spec, tmp_path / "results")
    html = build_report([tmp_path / "results"], tmp_path / "report", examples=0).html.read_text()
    assert "<img src=x onerror" not in html and "&lt;img src=x onerror=alert(1)&gt;.jpg" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _ray_listeners() -> list[tuple[str, str, int]]:
    pids = {p.pid for p in ray_processes(exclude=set())}
    return [(psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


@pytest.fixture
def harness_ray():
    """A Ray instance started the way the harness starts one (not the tests' shared instance)."""
    import ray

    from bench.platform.ray_session import ray_session

    ray.shutdown()
    with ray_session(None) as cluster:
        yield cluster, ray


def test_harness_ray_serves_no_dashboard(harness_ray):
    cluster, _ = harness_ray
    assert cluster.address == "local"
    names = {name for name, _, _ in _ray_listeners()}
    assert names and not any("dashboard" in n for n in names)
    assert not any(port == 8265 for _, _, port in _ray_listeners())  # no dashboard HTTP server


@pytest.mark.extended  # CI runs it; the default run leaves it out: 15 s, a CLI run in its own Ray
def test_cli_keeps_its_local_ray_on_loopback(tmp_path):
    """`python -m bench run` with a Ray strategy starts Ray inside a loopback-only network namespace, and the
    record lists what Ray listened on and its authentication. Where the namespace cannot be made, the CLI
    says so in one line and the record says 'host'."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SEGBENCH_NETWORK"}  # the tests' opt-out, not here
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--strategy", "actors", "--model", "tiny", "--images",
                          "4", "--batch-size", "2", "--image-scale", "0.1", "--results", str(tmp_path), "--quiet"],
                         check=True, timeout=300, capture_output=True, text=True, env=env)
    assert "throughput" in out.stdout and "record:" in out.stdout  # `python -m bench` is the CLI
    (path,) = tmp_path.rglob("*.json")
    cluster = read_record(path).cluster
    assert cluster["auth"] == "token"
    if cluster["network"] == "host":
        assert "stays on the host network" in out.stderr
        pytest.skip("no private network namespace here (no CAP_SYS_ADMIN); the CLI and the record say 'host'")
    assert cluster["network"] == "private" and "host network" not in out.stderr
    assert cluster["listening"] and all(a.rsplit(":", 1)[0] in LOOPBACK for a in cluster["listening"]), cluster


def test_without_cap_sys_admin_the_cli_says_ray_stays_on_the_host_network():
    """The capability is probed, not the uid: root without CAP_SYS_ADMIN (as in many containers) cannot
    make the namespace, and is told so in one line with the authentication that guards Ray instead."""
    import os
    import shutil
    import subprocess
    import sys

    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_ADMIN")
    env = {k: v for k, v in os.environ.items() if k not in ("SEGBENCH_NETWORK", "RAY_AUTH_MODE")}
    code = ("from bench.cli import isolate_local_ray; from bench.platform.netns import loopback_only;"
            "isolate_local_ray(['actors'], None, 'random', 'synthetic'); print(loopback_only())")
    out = subprocess.run(["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", code], env=env,
                         capture_output=True, text=True, timeout=120)
    if out.returncode != 0 and "setpriv" in out.stderr:
        pytest.skip(f"setpriv cannot drop capabilities here: {out.stderr.strip()}")
    assert out.stdout.strip() == "False"
    (line,) = [line for line in out.stderr.splitlines() if line.startswith("segbench:")]
    assert "stays on the host network" in line and "CAP_SYS_ADMIN" in line and "authentication: token" in line


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("strategy", ["sequential", "tasks", "actors", "actor_pool", "ray_data"])
def test_ten_thousand_images_with_bounded_driver_memory(strategy, tmp_path):
    spec = RunSpec(strategy=strategy, model="tiny", batch_size=32, images=10_000, image_scale=0.1,
                   actors=1 if strategy == "sequential" else 2, timeout_s=3000)
    record, _ = run_cell(spec, tmp_path)
    assert record.status == "ok", record.error
    assert record.counts.inputs_seen == 10_000 and record.counts.duplicates == 0
    assert record.driver_peak_rss_bytes < 1.5 * 2**30
    print(json.dumps({"strategy": strategy, "driver_peak_rss_mib": record.driver_peak_rss_bytes / 2**20,
                      "throughput_steady": record.metrics.throughput_steady}))
