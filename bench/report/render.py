"""`segbench report`: plots (PNG + SVG), a self-contained HTML report (plots inline as SVG, opens offline:
no script, font or style from elsewhere), a Markdown report (plots as links to the PNGs), and exports
(Chrome trace of the batch timeline, summaries as CSV and Parquet).

Both renderings walk the one list of sections (`bench.report.sections`). The HTML comes from a Jinja2
template with autoescape (`bench/report/templates`), so every value from a record or a file name is
escaped whatever its type; the plots' SVG, the one markup the template does not escape, is rewritten from
an allow-list first (`bench.report.svg`). Markdown escapes table and markup characters (`md`). A report
renders from the records alone: it runs, reads or loads nothing a record names.
Example predictions are drawn only from settings this machine's RunSpec accepts, on synthetic images or a
folder the user names (`--examples-from`), with random weights. The CSV summary escapes text that a
spreadsheet would run as a formula.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
from jinja2 import Environment, PackageLoader
from markupsafe import Markup

import strategies
from bench.errors import ConfigError, SideFileError
from bench.report import svg
from bench.report.sections import (
    MARKDOWN,
    THROUGHPUT,
    WHAT_IT_WOULD_TAKE,
    Answer,
    Details,
    Figures,
    Items,
    Paragraphs,
    Preformatted,
    Section,
    Table,
    report_sections,
    subtitle,
)
from bench.results.decision import recommend
from bench.results.record import RunRecord
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
    parity_reference: str | None = None  # the cell maps are compared with; None: the reference strategy's per model


def build_report(paths: list[Path], out: Path, examples: int = 3, parity_reference: str | None = None,
                 examples_from: Path | None = None, *, min_agreement: float | None = None) -> Report:
    """The report of the records under `paths`, written to `out`. `min_agreement`: the quality floor every
    cell is held to in the runtime table and the agreement plot (None: each record's own, else its
    precision's default, `bench.results.quality`)."""
    from bench.report import plots

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
    # One ranking for the decision and the figure of every cell (it reads records it is not given again).
    decisions = recommend(repeats, summary, min_agreement, store.records_by_path())
    projections, unprojected = _projections(records, decisions)
    report.unreadable += unprojected
    makers = {THROUGHPUT: functools.partial(plots.throughput_by_cell, decisions=decisions), **plots.PLOTS,
              WHAT_IT_WOULD_TAKE: functools.partial(plots.what_it_would_take, projections=projections),
              "throughput_vs_agreement": functools.partial(plots.throughput_vs_agreement, min_agreement=min_agreement)}
    if shown:
        makers["example_predictions"] = lambda *_: plots.example_predictions(shown, _labels())
    for name, make in makers.items():  # one figure alive at a time: a timeline of many batches is large
        try:
            fig = make(records, summary, repeats)
        except UNUSABLE as err:  # a table past its budget, or rows of the wrong shape, found only as read
            report.unreadable.append((f"plot {name}", f"{type(err).__name__}: {err}"[:300]))
            continue
        if fig is None:
            continue
        fig.savefig(out / f"{name}.png", dpi=110, bbox_inches="tight")
        fig.savefig(out / f"{name}.svg", bbox_inches="tight", metadata={"Date": None})
        plots.plt.close(fig)
        report.plots[name] = out / f"{name}.png"
    try:
        report.exports = export(records, summary, out)
    except UNUSABLE as err:
        report.unreadable.append(("exports", f"{type(err).__name__}: {err}"[:300]))
    # Computed once for both renderings: parity reads every record's outputs table.
    sections = report_sections(records, repeats, summary, paths, plots=report.plots, unreadable=report.unreadable,
                               examples_absent=report.examples_absent, parity_reference=report.parity_reference,
                               min_agreement=min_agreement, decisions=decisions, projections=projections)
    report.html = write_atomic(out / "report.html", render_html(sections, subtitle(records)))
    report.markdown = write_atomic(out / "report.md", render_markdown(sections, subtitle(records)))
    return report


def _projections(records: list[RunRecord], decisions: list[dict]) -> tuple[list[dict], list[tuple[str, str]]]:
    """Each recommended configuration projected to 1–32 nodes (bench.results.projection), and (what, why) of
    those that could not be."""
    from bench.results.projection import UNPROJECTABLE, projection_section_rows

    shown, failed = [], []
    for decision in decisions:
        if not decision.get("recommended"):
            continue
        cell_id = decision["recommended"]["cell_id"]
        try:
            shown.append(projection_section_rows(records, cell_id))
        except (ConfigError, *UNUSABLE, *UNPROJECTABLE) as err:
            failed.append((f"what it would take: {cell_id}", f"{type(err).__name__}: {err}"[:300]))
    return shown, failed


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
        checked = RunSpec(strategy=strategies.REFERENCE, model=spec.get("model"), seed=spec.get("seed", 0),
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


def render_html(sections: list[Section], headline: str = "") -> str:
    """The report as one self-contained page, its plots inline as SVG (sharp at any zoom, their text
    searchable), each rewritten by `svg.inline` before it is marked safe."""
    inline = {name: Markup(svg.inline(path.with_suffix(".svg"), prefix=f"plot-{name}"))
              for section in sections for block in section.blocks if isinstance(block, Figures)
              for name, path in block.plots.items()}
    return TEMPLATES.get_template("report.html.j2").render(sections=sections, inline=inline, headline=headline)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]#+!|<>~])")  # what can start markup, a link or a cell


def md(value) -> str:
    """A value as inert Markdown text: markup and table characters escaped, one line."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(value).split()))


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(md(h) for h in header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(md(v) for v in row) + " |" for row in rows]


def render_markdown(sections: list[Section], headline: str = "") -> str:
    lines = ["# segbench report", *(["", md(headline)] if headline else [])]
    for section in sections:
        if MARKDOWN in section.formats:
            lines += ["", f"## {section.title}"]
            for block in section.blocks:
                body = _md_block(block) if MARKDOWN in block.formats else []
                lines += ["", *body] if body else []
    return "\n".join(lines) + "\n"


def _md_block(block) -> list[str]:
    """A block's Markdown lines; none for an empty one (no paragraph, no plot)."""
    match block:
        case Paragraphs():
            return [md(line) for line in block.lines]
        case Table():
            return [md(block.empty)] if block.empty and not block.rows else _md_table(block.header, block.rows)
        case Items():
            return [f"- {md(what)}: {md(why)}" for what, why in block.items] or [md(block.empty)]
        case Figures():
            return [f"![{md(name)}]({quote(path.name)})" for name, path in block.plots.items()]
        case Preformatted():
            return ["```", block.text, "```"]
        case Answer():
            link = [f"- **{md(block.link[0])}:** [{md(block.link[1])}](#{block.link[2]})"] if block.link else []
            return [f"### {md(block.heading)}", "", f"**{md(block.recommended)}**: {md(block.figure)}", "",
                    *[f"- **{md(label)}:** {md(text)}" for label, text in block.facts], *link]
        case Details():
            inner = [line for b in block.blocks if MARKDOWN in b.formats and (body := _md_block(b))
                     for line in ["", *body]]
            return [md(block.summary), *(inner if block.open else
                                         ["", "<details><summary>details</summary>", *inner, "", "</details>"])]
    raise TypeError(f"no Markdown for {type(block).__name__}")
