"""Committed baselines, one folder per machine, as asv and pytest-benchmark keep theirs.

    results/baselines/nightly/            a baselines root
        <fingerprint>/machine.json        what the fingerprint stands for (CPU, cores, memory, GPUs, versions)
        <fingerprint>/plan.json, runs/…   that machine's records

The fingerprint (bench.results.environment.machine_fingerprint) is the hardware class: CPU model,
logical cores, memory in GiB and GPU names. A gate picks the folder of the machine it runs on and
never judges one machine's figures against another's unless asked (`compare --across-machines`).
"""

from __future__ import annotations

from pathlib import Path

from bench.errors import ConfigError
from bench.results.store import read_json_bounded, write_atomic

MACHINE_FILE = "machine.json"


def machine_description(env: dict) -> dict:
    """The fingerprint's parts, and what else was true of the machine when its baseline was recorded."""
    return {"fingerprint": env.get("fingerprint"), "cpu_model": env.get("cpu_model"),
            "cpu_logical": env.get("cpu_logical"), "cpu_physical": env.get("cpu_physical"),
            "memory_gib": round((env.get("memory_bytes") or 0) / 2**30), "gpus": env.get("gpus") or [],
            "gpu_driver": env.get("gpu_driver"), "platform": env.get("platform"), "python": env.get("python"),
            "packages": env.get("packages") or {}}


def gpu_names(gpus: list | None) -> str:
    listed = gpus if isinstance(gpus, list) else []  # a machine.json is data: anything else names no GPU
    return ", ".join(str(g.get("name", "?")) if isinstance(g, dict) else str(g) for g in listed) or "no GPU"


def describe(machine: dict) -> str:
    """One line: `a047c78eaf86 (Intel(R) Xeon(R) Processor, 2 cores, 24 GiB, no GPU)`."""
    if machine.get("unreadable"):
        return f"{machine.get('fingerprint')} ({MACHINE_FILE} unreadable: {machine['unreadable']})"
    gpus = gpu_names(machine.get("gpus"))
    return (f"{machine.get('fingerprint')} ({machine.get('cpu_model')}, {machine.get('cpu_logical')} cores, "
            f"{machine.get('memory_gib')} GiB, {gpus})")


def is_root(path: Path) -> bool:
    """A baselines root holds machine folders (and no records of its own)."""
    return path.is_dir() and any((child / MACHINE_FILE).is_file() for child in path.iterdir() if child.is_dir())


def machines(root: Path) -> dict[str, dict]:
    """fingerprint → machine description, for every complete machine folder under `root` (one whose
    machine.json cannot be read says why, under `unreadable`)."""
    if not root.is_dir():
        return {}
    found = {}
    for child in sorted(root.iterdir()):
        if lookup(root, child.name):
            try:
                found[child.name] = read_json_bounded(child / MACHINE_FILE)
            except ValueError as err:
                found[child.name] = {"fingerprint": child.name, "unreadable": str(err)}
    return found


def folder(root: Path, fingerprint: str) -> Path:
    return root / fingerprint


def has_records(path: Path) -> bool:
    return (path / "runs").is_dir() and any((path / "runs").rglob("*.json"))


def lookup(root: Path, fingerprint: str) -> Path | None:
    """The machine's baseline folder, if it is complete: its machine.json and records."""
    path = folder(root, fingerprint)
    return path if (path / MACHINE_FILE).is_file() and has_records(path) else None


def write_machine(path: Path, env: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return write_atomic(path / MACHINE_FILE, machine_description(env))


def for_machine(root: Path, fingerprint: str, whose: str, across_machines: bool = False,
                hint: str = "`segbench nightly` records one") -> Path:
    """The baseline folder of machine `fingerprint` under `root`. Where it has none: with `across_machines`,
    the root's only machine's; else refused (exit 2), saying what `root` holds and, in `hint`, what to do."""
    if found := lookup(root, fingerprint):
        return found
    known = machines(root)
    if across_machines and len(known) == 1:
        return folder(root, next(iter(known)))
    listed = "; ".join(describe(m) for m in known.values()) or "none"
    raise ConfigError(f"{root} has no baseline for {whose} ({fingerprint}); it has: {listed}. {hint}")
