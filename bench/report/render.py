"""`segbench report`: plots (PNG + SVG), a self-contained HTML report (plots embedded, opens offline),
a Markdown report, and exports (Chrome trace of the batch timeline, summaries as CSV and Parquet).

The HTML comes from a Jinja2 template with autoescape (`bench/report/templates`), so every value from
a record or a file name is escaped whatever its type; Markdown escapes table and markup characters
(`md`). A report renders from the records alone: it runs, reads or loads nothing a record names.
Example predictions are drawn only from settings this machine's RunSpec accepts, on synthetic images or a
folder the user names (`--examples-from`), with random weights. The CSV summary escapes text that a
spreadsheet would run as a formula.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
from jinja2 import Environment, PackageLoader

from bench.errors import SideFileError
from bench.report.format import fmt
from bench.results.decision import configuration, recommend, with_interval
from bench.results.parity import parity, thread_groups
from bench.results.record import RunRecord
from bench.results.runtime_table import has_runtimes, runtime_rows
from bench.results.sidefiles import opened
from bench.results.store import ResultStore, write_atomic
from bench.results.summary import cell_summary

# autoescape=True for every template: a value from a record is text, whatever the template's name
TEMPLATES = Environment(loader=PackageLoader("bench.report", "templates"), autoescape=True, keep_trailing_newline=True)


@dataclass
class Report:
    out: Path
    plots: dict[str, Path] = field(default_factory=dict)  # name → PNG
    html: Path | None = None
    markdown: Path | None = None
    exports: list[Path] = field(default_factory=list)
    examples_absent: str | None = None  # why there are no example predictions, when there are none
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (record, table or plot; why) left out
    parity_reference: str | None = None  # the cell maps are compared with; None: sequential per model


def build_report(paths: list[Path], out: Path, examples: int = 3, parity_reference: str | None = None,
                 examples_from: Path | None = None) -> Report:
    from bench.report import plots as P

    if not 0 <= examples <= MAX_EXAMPLES:
        raise ValueError(f"examples must be between 0 and {MAX_EXAMPLES} (got {examples})")
    if examples_from is not None and not Path(examples_from).is_dir():
        raise ValueError(f"--examples-from {examples_from} is not a folder")
    store = ResultStore(paths)
    records = list(store.iter_latest())
    if not records:
        raise ValueError("no run records found in " + ", ".join(map(str, paths)))
    repeats = store.frame()
    summary = cell_summary(repeats)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, parity_reference=parity_reference)
    report.unreadable = [(str(path), why) for path, why in store.skipped()] + _drop_unusable_tables(records)
    shown, report.examples_absent = _examples(records, examples, examples_from)
    makers = dict(P.PLOTS)
    if shown:
        makers["example_predictions"] = lambda *_: P.example_predictions(shown, _labels())
    for name, make in makers.items():  # one figure alive at a time: a timeline of many batches is large
        try:
            fig = make(records, summary, repeats)
        except UNUSABLE as err:  # a table past its budget, or rows of the wrong shape, found only as read
            report.unreadable.append((f"plot {name}", f"{type(err).__name__}: {err}"[:300]))
            continue
        if fig is None:
            continue
        fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        fig.savefig(out / f"{name}.svg", bbox_inches="tight")
        P.plt.close(fig)
        report.plots[name] = out / f"{name}.png"
    try:
        report.exports = export(records, summary, out)
    except UNUSABLE as err:
        report.unreadable.append(("exports", f"{type(err).__name__}: {err}"[:300]))
    # Computed once for both renderings: parity reads every record's outputs table.
    tables = _tables(records, repeats, summary, _skipped(paths), report.parity_reference)
    tables["unreadable"] = report.unreadable
    tables["race"] = _race(paths, records)
    report.html = write_atomic(out / "report.html", render_html(tables, report))
    report.markdown = write_atomic(out / "report.md", render_markdown(tables, report))
    return report


def _labels() -> tuple[str, ...]:
    from bench.workload.models import ade20k_labels

    return ade20k_labels()


MAX_EXAMPLES = 12  # example predictions are drawn side by side, one panel each: more would not be seen


def _examples(records: list[RunRecord], n: int, examples_from: Path | None = None) -> tuple[list, str | None]:
    """Maps for the first images of the first ok cell, recomputed here (records keep digests, not maps),
    or why not. A record is data: its model and settings pass this machine's RunSpec checks (bounds
    included) or there are no examples; the images are synthetic, or from `examples_from` (a folder the
    user named, never one a record names); the weights are random (never a folder or hub name a record
    gives); all on the CPU."""
    import numpy as np

    from bench.config import RunSpec
    from bench.errors import ConfigError, SourceUnavailable
    from bench.workload import calibrated
    from bench.workload.images import open_source
    from bench.workload.models import RANDOM_WEIGHTS
    from bench.workload.predictor import Predictor, PredictorSpec, decode

    record = next((r for r in records if r.ok), None)
    if n <= 0:
        return [], "not asked for"
    if record is None:
        return [], "no cell finished ok"
    spec = record.spec if isinstance(record.spec, dict) else {}
    source = record.source if isinstance(record.source, dict) else {}
    weights = record.weights if isinstance(record.weights, dict) else {}
    if examples_from is None and spec.get("source") != "synthetic":
        where = source.get("root") or source.get("name") or spec.get("source")
        return [], (f"the records' images ({source.get('kind')}: {where}) are not read by a report; "
                    "--examples-from DIR draws examples from a folder of yours")
    if not spec.get("weights") == weights.get("kind") == weights.get("name") == RANDOM_WEIGHTS:
        return [], (f"the records' weights ({weights.get('kind')}: {weights.get('name')}) are not loaded: a report "
                    "never fetches them, nor loads a folder a record names (examples use random weights)")
    count = spec.get("images")
    try:
        checked = RunSpec(strategy="sequential", model=spec.get("model"), seed=spec.get("seed", 0),
                          images=count if isinstance(count, int) and 1 <= count < n else n,
                          image_scale=spec.get("image_scale", 1.0), postprocess=spec.get("postprocess", "exact"),
                          source="synthetic" if examples_from is None else f"folder:{examples_from}")
        images = open_source(checked.source, checked.images, checked.seed, checked.image_scale)
    except (ConfigError, SourceUnavailable, TypeError, ValueError) as err:
        return [], f"the records' settings are not accepted here: {err}"
    items = list(images)
    # Maps, not times: a calibrated stand-in's map does not depend on its cost, so it is built without one.
    model = calibrated.build(f"{calibrated.PREFIX}0ms") if calibrated.is_calibrated(checked.model) else None
    predictor = Predictor(PredictorSpec(checked.model, RANDOM_WEIGHTS, checked.seed, "cpu",
                                        postprocess=checked.postprocess, keep_masks=True), model=model)
    result = predictor.predict(items)
    shown = [(r.image_id, np.asarray(decode(item.data)), r.mask) for item, r in zip(items, result.images, strict=True)
             if r.ok]
    return shown, None if shown else "none of the first images could be decoded"


def _skipped(paths: list[Path]) -> list[dict]:
    from bench.results.store import read_json_bounded

    skipped = []
    for p in map(Path, paths):
        for plan in ([p / "plan.json", p.parent / "plan.json"] if p.is_dir() else []):
            try:
                listed = read_json_bounded(plan).get("skipped")
            except ValueError:  # a plan.json that is not one: no skipped cells to list from it
                continue
            skipped.extend(s for s in (listed if isinstance(listed, list) else []) if isinstance(s, dict))
    return skipped


# What a record's tables can still raise once read (a foreign writer can give a sha256-matching table
# columns of the wrong type): the plot or export that met it is left out and listed, never a traceback.
UNUSABLE = (SideFileError, KeyError, TypeError, ValueError, pa.ArrowException)


def _drop_unusable_tables(records: list[RunRecord]) -> list[tuple[str, str]]:
    """Side tables that fail their checks (moved, altered, larger than a reader may take), dropped from
    their records so that every plot, table and export treats them as missing; (which, why) of each."""
    dropped = []
    for record in records:
        for name in list(record.tables or {}):
            try:
                with opened(record, name, whole=name != "outputs"):  # outputs are read in chunks
                    pass
            except SideFileError as err:
                del record.tables[name]
                dropped.append((f"{record.cell_id} r{record.repeat_index}: {name} table", str(err)))
    return dropped


def export(records: list[RunRecord], summary: pd.DataFrame, out: Path) -> list[Path]:
    """Chrome trace (Perfetto / chrome://tracing) of every batch; cell summaries as CSV and Parquet."""
    events = []
    for pid, record in enumerate(records):
        name = f"{record.cell_id} r{record.repeat_index}"
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": name}})
        for b in record.rows("batches"):
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
    summary.map(_csv_cell).to_csv(csv, index=False)
    # Parquet needs one type per column: a record's malformed value (a number given as text) stays text.
    mixed = {c: summary[c].map(lambda v: v if v is None else str(v)) for c in summary.columns
             if summary[c].dtype == object}
    summary.assign(**mixed).to_parquet(parquet, index=False)
    return [trace, csv, parquet]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what makes a spreadsheet read a cell as a formula (OWASP)


def _csv_cell(value):
    """A summary value for the CSV: text a spreadsheet would run as a formula gets a leading quote, shown
    as text; numbers (negative ones too) stay numbers."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_START) else value


DECISION_HEADER = ["model", "device", "recommended", "steady img/s [95% CI]", "runner-up", "margin", "verdict",
                   "not ranked or noisy"]
OPERATOR_COLUMNS = (("tasks", "tasks", 0), ("blocks", "blocks", 0), ("rows", "rows", 0), ("wall_s", "wall s", 2),
                    ("cpu_s", "CPU s", 2), ("udf_s", "UDF s", 2), ("backpressure_s", "backpressure s", 2),
                    ("obj_store_used_bytes", "object store MiB", 2))


def _number(value):
    """A record's number as a number, or None (a string or anything else is not trusted as one)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _operators(records: list[RunRecord]) -> list[tuple[str, str, list[str]]]:
    """(run, operator, formatted figures) for every run whose strategy reported operator stats."""
    rows = []
    for r in records:
        for op in (r.strategy_stats or {}).get("operators") or []:
            values = [_number(op.get(key)) for key, _, _ in OPERATOR_COLUMNS]
            values[-1] = values[-1] / 2**20 if values[-1] is not None else None
            rows.append((f"{r.cell_id} r{r.repeat_index}", str(op.get("name")),
                         [fmt(v, digits) for v, (_, _, digits) in zip(values, OPERATOR_COLUMNS, strict=True)]))
    return rows


def _flags(row) -> str:
    """Why a cell's figure is not ranked (invalid) or should be read with care (noisy)."""
    flags = [] if row.valid else [f"invalid: {row.invalid_reason}"]
    return "; ".join(flags + (["noisy"] if row.noisy else []))


RUNTIME_HEADER = ["model", "device", "runtime", "strategy", "batch", "actors", "steady img/s", "× eager sequential",
                  "pixel agreement with eager (images)", "max |Δ logit|", "workers", "export s", "session s",
                  "compile s", "export cache hits", "first batch s", "not ranked"]


RUNTIME_NOTE = ("Steady throughput against the best eager sequential cell at the same model and device. Pixel "
                "agreement: the cell's first inputs through eager and through its runtime after the window, at the "
                "workers' thread count; below 99.9% the cell fails. Runtimes reorder float arithmetic, so maps are "
                "not promised bit-identical. Cold costs are medians over the cell's workers (each task, for tasks); "
                "the first batch is each worker's first service time.")


def _runtimes(records: list[RunRecord], summary: pd.DataFrame) -> list[list[str]]:
    """The runtime × strategy table, fastest first per model and device (cold costs: medians over workers)."""
    if not has_runtimes(records):
        return []
    rows = []
    for r in runtime_rows(records, summary):
        agreement = "eager itself" if r["runtime"] == "eager" else (
            f"{fmt(r['pixel_agreement'], 4, 100, '%')} ({r['probe_images']})" if r["pixel_agreement"] is not None
            else "-")
        rows.append([str(r["model"]), str(r["device"]), str(r["runtime"]), str(r["strategy"]), str(r["batch_size"]),
                     str(r["actors"]), fmt(r["throughput"]), fmt(r["vs_eager_sequential"], 2),
                     agreement, "-" if r["max_logit_abs_diff"] is None else f"{r['max_logit_abs_diff']:.1e}",
                     str(r["workers"]), fmt(r["export_s"], 1), fmt(r["session_s"], 2), fmt(r["compile_s"], 1),
                     f"{r['cache_hits']}/{r['workers']}" if r["workers"] else "-", fmt(r["first_batch_s"], 2),
                     str(r["not_ranked"] or "")])
    return rows


PARITY_HEADER = ["cell", "reference", "torch threads (cell / reference)", "images", "same map", "differing",
                 "pixels differing, worst image (at least)", "likely cause"]


def _parity(records: list[RunRecord], reference: str | None) -> tuple[list[list[str]], list[str]]:
    """Parity rows and one explaining line per group of cells whose thread count differs."""
    rows = parity(records, reference)
    table = [[str(r["cell_id"]), str(r["reference"]), f"{r['threads']} / {r['reference_threads']}", str(r["images"]),
              fmt(r["equal_share"], 1, 100, "%"), str(r["differing"]),
              fmt(r["min_pixels_differing_share"], 3, 100, "%"),
              ("ERROR: " if r["error"] else "") + (r["cause"] or "-")] for r in rows]
    lines = [f"Workers with {threads} torch thread(s) against the reference's {ref}: {', '.join(cells)}. A "
             "different thread count changes the order of float reductions, so an image whose top two classes "
             "nearly tie can flip a few pixels; that is rounding, not a different computation."
             for (threads, ref), cells in thread_groups(rows).items() if threads != ref]
    reshaped = [r["cell_id"] for r in rows if r["differing_forward_size"] and not r["error"]]
    if reshaped:
        lines.append(f"Cells that computed some differing images in a forward pass of another size than the "
                     f"reference's: {', '.join(reshaped)}. CPU kernels are chosen by the batch shape (another batch "
                     "size, a partial batch, Ray Data regrouping rows between stages), so near-tie pixels can round "
                     "the other way; that is rounding, not a different computation.")
    errors = sum(r["error"] for r in rows)
    if errors:
        lines.append(f"{errors} cell(s) differ from the reference with the same threads, device, runtime and "
                     "forward size: they computed something else (ERROR rows).")
    return table, lines


def _tables(records: list[RunRecord], frame: pd.DataFrame, summary: pd.DataFrame, skipped: list[dict],
            reference: str | None = None) -> dict:
    """Every table of the report as rows of values (strings or numbers formatted here), for both formats."""
    env = records[0].environment or {}
    decisions = [[str(d["model"]), str(d["device"]), configuration(d["recommended"]), with_interval(d["recommended"]),
                  configuration(d["runner_up"]), fmt(d["margin"], 0, 100, "%") if d["margin"] is not None else "-",
                  str(d["verdict"]),
                  "; ".join([f"{c['cell_id']} ({c['why']})" for c in d["excluded"]]
                            + [f"{c} (noisy)" for c in d["noisy"]]) or "-"]
                 for d in recommend(frame, summary)]
    cells = [[str(r.cell_id), str(r.status), fmt(r.throughput), fmt(r.cv * 100 if r.cv is not None else None, 1),
              _flags(r), str(r.error or "")] for r in summary.itertuples()]
    memory = _number(env.get("memory_bytes"))
    parity_rows, parity_notes = _parity(records, reference)
    return {
        "env": {"cpu_model": str(env.get("cpu_model")), "cpu_logical": str(env.get("cpu_logical")),
                "memory_gib": fmt(memory / 2**30 if memory else None, 1),
                "gpus": ", ".join(map(str, env.get("gpus") or [])) or "none", "python": str(env.get("python")),
                "packages": [(str(k), str(v)) for k, v in (env.get("packages") or {}).items()],
                "commit": str((env.get("git") or {}).get("commit"))
                + (" (dirty: uncommitted changes)" if (env.get("git") or {}).get("dirty") else ""),
                "fingerprint": str(env.get("fingerprint"))},
        "decisions": decisions, "cells": cells,
        "runtime_header": RUNTIME_HEADER, "runtimes": _runtimes(records, summary),
        "decision_header": DECISION_HEADER, "operators": _operators(records),
        "parity_header": PARITY_HEADER, "parity": parity_rows, "parity_notes": parity_notes,
        "operator_labels": [label for _, label, _ in OPERATOR_COLUMNS],
        "skipped": [(json.dumps(s.get("values")), str(s.get("reason"))) for s in skipped],
        # Every cell of a sweep reads the same inputs: each bad or skipped file is listed once.
        "bad": sorted({(str(b.get("id")), str(b.get("reason"))) for r in records for b in r.bad_images or []}),
        "skipped_files": sorted({(str(f.get("path")), str(f.get("reason")))
                                 for r in records for f in r.skipped_files or []}),
        "specs": "\n".join(sorted({json.dumps(r.spec, sort_keys=True) for r in records})),
    }


def _race(paths: list[Path], records: list[RunRecord]) -> list[str]:
    """The answer of each `segbench decide` folder among the inputs (its decision.json), as lines."""
    from bench.results import race
    from bench.results.store import read_json_bounded

    names = {r.cell_id: f"{r.spec.get('strategy')} {r.spec.get('model')} bs{r.spec.get('batch_size')} "
                        f"a{r.spec.get('actors')}" for r in records}
    lines = []
    for path in paths:
        try:
            decision = read_json_bounded(Path(path) / "decision.json") if Path(path).is_dir() else {}
            if decision.get("kind") != "segbench.decision":
                continue
            cells = decision.get("cells") or []
            out = ", ".join(f"{names.get(c.get('cell_id'), c.get('cell_id'))} in round {c['eliminated_round']}"
                            for c in cells if isinstance(c, dict) and c.get("eliminated_round"))
            lines.append(f"Race: {race.verdict(decision, names)}. Spent {fmt(decision.get('spent_s'), 0)} of "
                         f"{fmt(decision.get('budget_s'), 0)} s over {len(decision.get('rounds') or [])} round(s); "
                         f"eliminated: {out or 'none'}.")
        except (ValueError, TypeError, KeyError, AttributeError) as err:  # a decision.json is data
            lines.append(f"Race: {path}/decision.json is not readable ({type(err).__name__})")
    return lines


def render_html(tables: dict, report: Report) -> str:
    figures = [(name, base64.b64encode(path.read_bytes()).decode()) for name, path in report.plots.items()]
    return TEMPLATES.get_template("report.html.j2").render(**tables, figures=figures, runtime_note=RUNTIME_NOTE,
                                                           examples_absent=report.examples_absent)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#+!|<>~])")  # what can start markup, a link or a cell


def md(value) -> str:
    """A value as inert Markdown text: markup and table characters escaped, one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(md(v) for v in row) + " |" for row in rows]


def render_markdown(t: dict, report: Report) -> str:
    env = t["env"]
    lines = ["# segbench report", "", "## Environment", "",
             md(f"{env['cpu_model']}, {env['cpu_logical']} logical CPUs, GPUs: {env['gpus']}, commit "
                f"{env['commit']}, fingerprint {env['fingerprint']}"), "",
             "## Decision", ""]
    lines += [md(line) for line in t["race"]] + ([""] if t["race"] else [])
    lines += _md_table(DECISION_HEADER, t["decisions"])
    if t["runtimes"]:
        lines += ["", "## Runtimes × strategies", "", md(RUNTIME_NOTE), ""]
        lines += _md_table(RUNTIME_HEADER, t["runtimes"])
    lines += ["", "## Parity with the reference", ""]
    lines += _md_table(PARITY_HEADER, t["parity"]) if t["parity"] else ["no reference cell (sequential) to compare"]
    lines += [""] + [md(note) for note in t["parity_notes"]]
    lines += ["", "## All cells", ""]
    lines += _md_table(["cell", "status", "steady img/s", "CV %", "flag", "error"], t["cells"])
    if t["operators"]:
        lines += ["", "## Ray Data operators", ""]
        lines += _md_table(["run", "operator", *t["operator_labels"]],
                           [[run, name, *values] for run, name, values in t["operators"]])
    lines += ["", "## Skipped cells", ""] + (_md_table(["cell values", "reason"], [list(s) for s in t["skipped"]])
                                              if t["skipped"] else ["none"])
    lines += ["", "## Bad inputs", ""] + ([f"- {md(i)}: {md(reason)}" for i, reason in t["bad"]] or ["none"])
    lines += ["", "## Skipped files", ""] + ([f"- {md(p)}: {md(why)}" for p, why in t["skipped_files"]] or ["none"])
    lines += ["", "## Records and tables not read", ""] + ([f"- {md(w)}: {md(why)}" for w, why in t["unreadable"]]
                                                          or ["none"])
    lines += ["", "## Plots", ""] + [f"![{md(name)}]({quote(path.name)})" for name, path in report.plots.items()]
    if report.examples_absent:
        lines += ["", md(f"Example predictions: {report.examples_absent}")]
    return "\n".join(lines) + "\n"
