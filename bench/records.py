"""Run records: versioned JSON, one file per run, written atomically, never overwritten; a loader
that returns a pandas DataFrame. JSON only — reading a record never executes anything."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

SCHEMA_VERSION = 1
RECORD_KIND = "segbench.run"


def write_atomic(path: Path, data: dict) -> Path:
    """Write JSON to a temporary file in the same folder, fsync, then rename over the target:
    a crash at any moment leaves either the old file or the complete new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, sort_keys=True, separators=(",", ":"), allow_nan=False, default=_jsonable)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _jsonable(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def new_record_path(folder: Path, cell_id: str) -> Path:
    """results/runs/<UTC time>_<cell id>.json, unique even for runs started in the same second."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return folder / "runs" / f"{stamp}_{cell_id}.json"


def read_record(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    if data.get("kind") != RECORD_KIND:
        raise ValueError(f"{path} is not a segbench run record")
    if data.get("schema_version", 0) > SCHEMA_VERSION:
        raise ValueError(f"{path} has schema {data['schema_version']}, newer than this segbench reads")
    return data


def iter_record_paths(paths: Iterable[Path]) -> list[Path]:
    found = []
    for p in map(Path, paths):
        found.extend(sorted(p.rglob("*.json")) if p.is_dir() else [p])
    return [p for p in found if not p.name.startswith(".")]


def load_records(paths: Iterable[Path]):
    """One row per record: spec fields, headline metrics and status — a pandas DataFrame."""
    import pandas as pd

    rows = []
    for path in iter_record_paths(paths):
        try:
            record = read_record(path)
        except (ValueError, json.JSONDecodeError):
            continue  # other JSON files (sweep plans, exports) live alongside records
        metrics = record.get("metrics") or {}
        util = record.get("utilisation") or {}
        rows.append({
            "path": str(path),
            "cell_id": record["cell_id"],
            "status": record["status"],
            "error": record.get("error"),
            "sweep": record.get("sweep"),
            "repeat": record.get("repeat", 0),
            "started_at": record.get("started_at"),
            **{f"spec.{k}": v for k, v in record["spec"].items()},
            **{k: v for k, v in metrics.items() if not isinstance(v, (dict, list))},
            "invalid_reason": "; ".join(metrics.get("invalid_reasons") or []) or None,
            "cpu_tree_mean": (util.get("tree_cpu_percent") or {}).get("mean"),
            "cpu_system_mean": (util.get("system_cpu_percent") or {}).get("mean"),
            "rss_tree_peak": (util.get("tree_rss_bytes") or {}).get("peak"),
            "gpu_util_mean": (util.get("gpu0") or {}).get("util_percent", {}).get("mean"),
            "fingerprint": record["environment"].get("fingerprint"),
        })
    return pd.DataFrame(rows)


def environment() -> dict:
    """What produced a record: versions, CPU, memory, GPUs, git commit. Cheap and failure-tolerant."""
    import psutil

    from bench.samplers import Nvml

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_logical": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "packages": {name: _version(name) for name in ("torch", "transformers", "ray", "numpy", "pillow")},
        "git": _git(),
    }
    nvml = Nvml()
    env["gpus"] = nvml.names()
    env["gpu_driver"] = nvml.driver()
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.version.cuda
    except ImportError:
        pass
    env["fingerprint"] = machine_fingerprint(env)
    return env


def machine_fingerprint(env: dict) -> str:
    """Same hardware class ⇒ same fingerprint: CPU model, logical cores, RAM (GiB), GPU names."""
    key = json.dumps([env.get("cpu_model"), env.get("cpu_logical"), round((env.get("memory_bytes") or 0) / 2**30),
                      env.get("gpus") or []])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain")) if commit else None}
