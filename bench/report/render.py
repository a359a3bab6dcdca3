"""`segbench report`: plots (PNG + SVG), a self-contained HTML report (plots embedded, opens offline),
a Markdown report, and exports (Chrome trace of the batch timeline, summaries as CSV and Parquet).

Every string that comes from outside — file names, labels, spec values, error messages — is escaped
before it enters the HTML.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.report.format import fmt
from bench.results.record import RunRecord
from bench.results.store import ResultStore, write_atomic
from bench.results.summary import cell_summary, measured

e = html.escape


@dataclass
class Report:
    out: Path
    plots: dict[str, Path] = field(default_factory=dict)  # name → PNG
    html: Path | None = None
    markdown: Path | None = None
    exports: list[Path] = field(default_factory=list)


def build_report(paths: list[Path], out: Path, examples: int = 3) -> Report:
    from bench.report import plots as P

    store = ResultStore(paths)
    records = list(store.iter_latest())
    if not records:
        raise ValueError("no run records found in " + ", ".join(map(str, paths)))
    repeats = store.frame()
    summary = cell_summary(repeats)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    figures = {name: fn(records, summary, repeats) for name, fn in P.PLOTS.items()}
    figures["example_predictions"] = P.example_predictions(_examples(records, examples), _labels())
    for name, fig in figures.items():
        if fig is None:
            continue
        fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        fig.savefig(out / f"{name}.svg", bbox_inches="tight")
        P.plt.close(fig)
        report.plots[name] = out / f"{name}.png"
    report.exports = export(records, summary, out)
    skipped = _skipped(paths)
    report.html = write_atomic(out / "report.html", render_html(records, summary, skipped, report))
    report.markdown = write_atomic(out / "report.md", render_markdown(records, summary, skipped, report))
    return report


def _labels() -> tuple[str, ...]:
    from bench.workload.models import ade20k_labels

    return ade20k_labels()


def _examples(records: list[RunRecord], n: int) -> list:
    """Recompute maps for the first images of the first ok cell (records keep digests, not maps)."""
    import numpy as np

    from bench.config import ConfigError, RunSpec
    from bench.workload.images import SourceUnavailable, open_source
    from bench.workload.predictor import Predictor, PredictorSpec, decode

    record = next((r for r in records if r.ok), None)
    if record is None or n <= 0:
        return []
    try:  # the record may come from another machine or version: no examples rather than no report
        spec = RunSpec.from_dict(record.spec)
        source = open_source(spec.source, spec.images, spec.seed, spec.image_scale)
    except (ConfigError, SourceUnavailable):
        return []
    items = [item for _, item in zip(range(n), iter(source), strict=False)]
    predictor = Predictor(PredictorSpec(spec.model, spec.weights, spec.seed, "cpu", keep_masks=True))
    result = predictor.predict(items)
    return [(r.image_id, np.asarray(decode(item.data)), r.mask) for item, r in zip(items, result.images, strict=True)
            if r.ok]


def _skipped(paths: list[Path]) -> list[dict]:
    skipped = []
    for p in map(Path, paths):
        for plan in ([p / "plan.json", p.parent / "plan.json"] if p.is_dir() else []):
            if plan.is_file():
                skipped.extend(json.loads(plan.read_text()).get("skipped", []))
    return skipped


def export(records: list[RunRecord], summary: pd.DataFrame, out: Path) -> list[Path]:
    """Chrome trace (Perfetto / chrome://tracing) of every batch; cell summaries as CSV and Parquet."""
    events = []
    for pid, record in enumerate(records):
        name = f"{record.cell_id} r{record.repeat_index}"
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}})
        for b in record.batches or []:
            events.append({"ph": "X", "name": f"batch {b['index']}", "pid": pid, "tid": b["worker"],
                           "ts": b["started"] * 1e6, "dur": max(0.0, b["ended"] - b["started"]) * 1e6,
                           "args": {"images": b["images"], **{k: round(v, 4) for k, v in b["stages"].items()}}})
        for op in (record.strategy_stats or {}).get("operators") or []:
            if op.get("start") is not None and op.get("end") is not None and record.run_start_wall:
                events.append({"ph": "X", "name": op["name"], "pid": pid, "tid": "Ray Data operators",
                               "ts": (op["start"] - record.run_start_wall) * 1e6,
                               "dur": max(0.0, op["end"] - op["start"]) * 1e6,
                               "args": {k: op.get(k) for k in ("tasks", "rows", "wall_s", "cpu_s")}})
    trace = write_atomic(out / "timeline.trace.json", {"traceEvents": events, "displayTimeUnit": "ms"})
    csv, parquet = out / "summary.csv", out / "summary.parquet"
    summary.to_csv(csv, index=False)
    summary.to_parquet(parquet, index=False)
    return [trace, csv, parquet]


OPERATOR_COLUMNS = (("tasks", "tasks", 0), ("blocks", "blocks", 0), ("rows", "rows", 0), ("wall_s", "wall s", 2),
                    ("cpu_s", "CPU s", 2), ("udf_s", "UDF s", 2), ("backpressure_s", "backpressure s", 2),
                    ("obj_store_used_bytes", "object store MiB", 2))


def _operators(records: list[RunRecord]) -> list[tuple[str, str, list[str]]]:
    """(run, operator, formatted figures) for every run whose strategy reported operator stats."""
    rows = []
    for r in records:
        for op in (r.strategy_stats or {}).get("operators") or []:
            values = [op.get(key) for key, _, _ in OPERATOR_COLUMNS]
            values[-1] = values[-1] / 2**20 if values[-1] is not None else None
            rows.append((f"{r.cell_id} r{r.repeat_index}", str(op.get("name")),
                         [fmt(v, digits) for v, (_, _, digits) in zip(values, OPERATOR_COLUMNS, strict=True)]))
    return rows


def _best_table(summary: pd.DataFrame) -> pd.DataFrame:
    ok = measured(summary)
    if ok.empty:
        return ok
    return ok.loc[ok.groupby(["model", "device"])["throughput"].idxmax()]


def _flags(row) -> str:
    """Why a cell's figure is not ranked (invalid) or should be read with care (noisy)."""
    flags = [] if row.valid else [f"invalid: {row.invalid_reason}"]
    return "; ".join(flags + (["noisy"] if row.noisy else []))


def render_html(records: list[RunRecord], summary: pd.DataFrame, skipped: list[dict], report: Report) -> str:
    env = records[0].environment
    specs = {json.dumps(r.spec, sort_keys=True) for r in records}
    rows = "".join(
        f"<tr><td>{e(str(r.model))}</td><td>{e(str(r.device))}</td><td>{e(str(r.strategy))}</td>"
        f"<td>{r.batch_size}</td><td>{r.actors}</td><td>{fmt(r.throughput)}</td><td>{fmt(r.latency_p95_s)}</td>"
        f"<td>{fmt(r.cpu_tree_mean, 0)}</td></tr>" for r in _best_table(summary).itertuples())
    cells = "".join(
        f"<tr><td>{e(str(r.cell_id))}</td><td>{e(str(r.status))}</td><td>{fmt(r.throughput)}</td>"
        f"<td>{fmt(r.cv * 100 if r.cv is not None else None, 1)}</td><td>{e(_flags(r))}</td>"
        f"<td>{e(str(r.error or ''))}</td></tr>" for r in summary.itertuples())
    skips = "".join(f"<li>{e(json.dumps(s['values']))}: {e(s['reason'])}</li>" for s in skipped)
    bad = "".join(f"<li>{e(b['id'])}: {e(b['reason'])}</li>" for r in records for b in r.bad_images or [])
    figures = "".join(
        f"<figure><img alt=\"{e(name)}\" src=\"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}\">"
        f"<figcaption>{e(name.replace('_', ' '))}</figcaption></figure>" for name, path in report.plots.items())
    packages = ", ".join(f"{e(k)} {e(str(v))}" for k, v in env.get("packages", {}).items())
    operators = "".join(f"<tr><td>{e(run)}</td><td>{e(name)}</td>" + "".join(f"<td>{e(v)}</td>" for v in values)
                        + "</tr>" for run, name, values in _operators(records))
    operator_head = "".join(f"<th>{e(label)}</th>" for _, label, _ in OPERATOR_COLUMNS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>segbench report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}img{{max-width:100%}}figure{{margin:1em 0}}</style>
</head><body>
<h1>segbench report</h1>
<h2>Environment</h2>
<p>{e(str(env.get('cpu_model')))} · {env.get('cpu_logical')} logical CPUs ·
{fmt((env.get('memory_bytes') or 0) / 2**30, 1)} GiB · GPUs: {e(', '.join(env.get('gpus') or []) or 'none')} ·
Python {e(str(env.get('python')))} · {packages} ·
commit {e(str((env.get('git') or {}).get('commit')))} · machine fingerprint {e(str(env.get('fingerprint')))}</p>
<h2>Best strategy per model and device</h2>
<table><tr><th>model</th><th>device</th><th>strategy</th><th>batch</th><th>actors</th><th>steady img/s</th>
<th>p95 batch latency s</th><th>CPU % (tree)</th></tr>{rows}</table>
<h2>All cells</h2>
<table><tr><th>cell</th><th>status</th><th>steady img/s (median)</th><th>CV %</th><th></th><th>error</th></tr>
{cells}</table>
<h2>Ray Data operators</h2>
<table><tr><th>run</th><th>operator</th>{operator_head}</tr>{operators or '<tr><td>none</td></tr>'}</table>
<h2>Skipped cells</h2><ul>{skips or '<li>none</li>'}</ul>
<h2>Bad images</h2><ul>{bad or '<li>none</li>'}</ul>
<h2>Plots</h2>{figures}
<h2>Specs</h2><pre>{e(chr(10).join(sorted(specs)))}</pre>
</body></html>
"""


def render_markdown(records: list[RunRecord], summary: pd.DataFrame, skipped: list[dict], report: Report) -> str:
    env = records[0].environment
    lines = ["# segbench report", "", "## Environment", "",
             f"{env.get('cpu_model')}, {env.get('cpu_logical')} logical CPUs, "
             f"GPUs: {', '.join(env.get('gpus') or []) or 'none'}, "
             f"commit {(env.get('git') or {}).get('commit')}, fingerprint {env.get('fingerprint')}", "",
             "## Best strategy per model and device", "",
             "| model | device | strategy | batch | actors | steady img/s | p95 latency s | CPU % |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.device} | {r.strategy} | {r.batch_size} | {r.actors} | {fmt(r.throughput)} | "
              f"{fmt(r.latency_p95_s)} | {fmt(r.cpu_tree_mean, 0)} |" for r in _best_table(summary).itertuples()]
    lines += ["", "## All cells", "", "| cell | status | steady img/s | CV % | flag | error |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r.cell_id} | {r.status} | {fmt(r.throughput)} | "
              f"{fmt(r.cv * 100 if r.cv is not None else None, 1)} | {_flags(r)} | {r.error or ''} |"
              for r in summary.itertuples()]
    operators = _operators(records)
    if operators:
        lines += ["", "## Ray Data operators", "",
                  "| run | operator | " + " | ".join(label for _, label, _ in OPERATOR_COLUMNS) + " |",
                  "|---|---|" + "---|" * len(OPERATOR_COLUMNS)]
        lines += [f"| {run} | {name} | " + " | ".join(values) + " |" for run, name, values in operators]
    lines += ["", "## Skipped cells", ""] + ([f"- {s['values']}: {s['reason']}" for s in skipped] or ["none"])
    lines += ["", "## Plots", ""] + [f"![{name}]({path.name})" for name, path in report.plots.items()]
    return "\n".join(lines) + "\n"
