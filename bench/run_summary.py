"""The short text summary printed after a run."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape


def _fmt(value, unit: str = "", scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}{unit}"


def print_run_summary(record: dict, path: Path | None, console: Console | None = None) -> None:
    console = console or Console(highlight=False)
    spec = record["spec"]
    console.print(f"[bold]{record['cell_id']}[/bold]  status: {record['status']}")
    if record.get("error"):
        console.print(f"  error: {record['error']}")
    m = record.get("metrics")
    if m:
        cold = record["cold"]
        loads = cold["model_load_s"]
        console.print(f"  {spec['strategy']} · {spec['model']} · batch {spec['batch_size']} · {spec['device']} · "
                      f"{record['plan']['workers']} worker(s) × {record['plan']['threads']} thread(s)")
        console.print(f"  throughput: steady {_fmt(m['throughput_steady'])} img/s, end-to-end "
                      f"{_fmt(m['throughput_end_to_end'])} img/s ({m['images']} images, {m['batches']} batches, "
                      f"{m['warmup_batches']} warm-up)")
        if not m.get("valid"):
            reasons = "; ".join(m.get("invalid_reasons") or ["recorded before validity was checked"])
            console.print(f"  [yellow]invalid cell[/yellow] (not ranked or compared): {escape(reasons)}")
        if m.get("latency_defined", True):
            console.print(f"  batch latency: p50 {_fmt(m['latency_p50_s'], ' s')}  p95 {_fmt(m['latency_p95_s'], ' s')}"
                          f"  p99 {_fmt(m['latency_p99_s'], ' s')}")
        else:
            console.print("  batch latency: not defined for this strategy (results cannot be paired with submissions)")
        console.print(f"  cold: ray init {_fmt(cold['ray_init_s'], ' s')}, start {_fmt(cold['strategy_start_s'], ' s')}"
                      f", model load {_fmt(max(loads) if loads else None, ' s')}, first batch "
                      f"{_fmt(cold['time_to_first_batch_s'], ' s')}")
        stages = "  ".join(f"{k} {_fmt(v, ' ms', digits=1)}" for k, v in m["stage_ms_per_image"].items())
        console.print(f"  per image: {stages}")
        util = record["utilisation"]
        console.print(f"  cpu: system mean {_fmt(util['system_cpu_percent']['mean'], '%', digits=0)}, process tree "
                      f"mean {_fmt(util['tree_cpu_percent']['mean'], '%', digits=0)}; peak tree RSS "
                      f"{_fmt(util['tree_rss_bytes']['peak'], ' MiB', 1 / 2**20, 0)}")
        counts = record["counts"]
        console.print(f"  images: {counts['ok']} ok, {counts['bad']} bad, {len(record['skipped_files'])} skipped")
        for f in record.get("faults", []):
            console.print(f"  fault: {f['kind']} of {f['worker']} after batch {f['at_batch']}: recovered "
                          f"{f['recovered']} in {_fmt(f['recovery_s'], ' s')}, "
                          f"throughput dip {_fmt(f['dip'], '%', 100, 0)}")
        for bad in record["bad_images"][:10]:
            console.print(f"    bad: {bad['id']}: {bad['reason']}", markup=False)
    if path:
        console.print(f"  record: {path}")
