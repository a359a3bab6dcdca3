"""What produced a record: versions, CPU, memory, GPUs, git commit, and the machine fingerprint that
compare uses to tell hardware changes from code changes. Cheap and failure-tolerant."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from pathlib import Path

from bench.platform.host import Nvml, cpu_isa, cpu_model, visible_gpus


def environment() -> dict:
    """What produced a record: versions, CPU, memory, GPUs, git commit. Cheap and failure-tolerant."""
    import psutil

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_isa(),  # what a precision runs on natively (bf16, int8 units)
        "cpu_logical": os.cpu_count(),
        "cpu_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "packages": {name: _version(name) for name in ("torch", "transformers", "ray", "numpy", "pillow")},
        "git": _git(),
    }
    nvml = Nvml()
    env["gpus"] = visible_gpus(nvml)
    env["gpu_driver"] = nvml.driver()
    env["gpu_compute_capability"] = nvml.compute_capabilities()
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        env["cuda"] = torch.version.cuda
    except ImportError:
        pass
    env["fingerprint"] = machine_fingerprint(env)
    if slowdown := os.environ.get("SEGBENCH_CALIBRATED_SLOWDOWN"):  # a planted regression leaves a trace
        env["calibrated_slowdown"] = slowdown
    return env


def machine_fingerprint(env: dict) -> str:
    """Same hardware class ⇒ same fingerprint: CPU model, logical cores, RAM (GiB), GPU names."""
    key = json.dumps([env.get("cpu_model"), env.get("cpu_logical"), round((env.get("memory_bytes") or 0) / 2**30),
                      env.get("gpus") or []])
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def _version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _git() -> dict:
    root = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    # Dirty: anything changed or added outside results/ (records being written there, or a baseline not
    # yet committed, do not change the code that runs; a new, unadded module does).
    dirty = git("status", "--porcelain", "--", ".", ":(exclude)results")
    return {"commit": commit, "dirty": bool(dirty) if commit else None}
