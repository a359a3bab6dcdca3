"""The report's sections, in the order they are shown: one list, walked by both renderings (the HTML
template in bench/report/templates and `render.render_markdown`). A section is a title, an anchor id and
blocks of content (paragraphs, a table, a list of (what, why) items, the plots, preformatted text), each
block a kind both renderings know. Adding a section is one entry in `report_sections`, plus the results
module its rows come from where they are new.

Where the two formats say something differently (the Markdown keeps shorter lines and leaves out the
specs), the block or section names the formats it is shown in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

import strategies
from bench.report.format import fmt
from bench.results import quality, race
from bench.results.decision import against_fp32, configuration, recommend, with_interval
from bench.results.parity import cells_against_reference, thread_groups
from bench.results.record import RunRecord
from bench.results.runtime_table import cold_rows, has_runtimes, runtime_rows
from bench.results.store import read_json_bounded

HTML, MARKDOWN = "html", "markdown"
BOTH, HTML_ONLY, MARKDOWN_ONLY = frozenset({HTML, MARKDOWN}), frozenset({HTML}), frozenset({MARKDOWN})


@dataclass(frozen=True)
class Paragraphs:
    kind: ClassVar[str] = "paragraphs"
    lines: list[str]
    strong: bool = False  # a headline: bold where the format has bold
    formats: frozenset[str] = BOTH


@dataclass(frozen=True)
class Table:
    kind: ClassVar[str] = "table"
    header: list[str]
    rows: list[list[str]]
    empty: str | None = None  # said in place of rows when there are none; None: the bare header
    alerts: frozenset[int] = frozenset()  # rows (by index) marked as errors
    formats: frozenset[str] = BOTH


@dataclass(frozen=True)
class Items:
    kind: ClassVar[str] = "items"
    items: list[tuple[str, str]]  # (what, why)
    empty: str = "none"
    formats: frozenset[str] = BOTH


@dataclass(frozen=True)
class Figures:
    kind: ClassVar[str] = "figures"
    plots: dict[str, Path]  # name → PNG
    formats: frozenset[str] = BOTH


@dataclass(frozen=True)
class Preformatted:
    kind: ClassVar[str] = "preformatted"
    text: str
    formats: frozenset[str] = BOTH


Block = Paragraphs | Table | Items | Figures | Preformatted


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    formats: frozenset[str] = BOTH


DECISION_HEADER = ["model", "device", "recommended", "steady img/s [95% CI]", "runner-up", "margin", "verdict",
                   "against the best fp32", "not ranked or noisy"]
DECISION_NOTE = ("Per model and device: the fastest valid cell at or above its quality floor by median steady "
                 "throughput, with a 95% bootstrap interval over repeats, and its margin over the runner-up (\"no "
                 "significant difference\" where the intervals overlap). Where it runs another precision than fp32, "
                 "the fastest fp32 cell beside it: the speed-up, and the agreement with fp32 eager it costs.")
OPERATOR_COLUMNS = (("tasks", "tasks", 0), ("blocks", "blocks", 0), ("rows", "rows", 0), ("wall_s", "wall s", 2),
                    ("cpu_s", "CPU s", 2), ("udf_s", "UDF s", 2), ("backpressure_s", "backpressure s", 2),
                    ("obj_store_used_bytes", "object store MiB", 2))
RUNTIME_HEADER = ["model", "device", "runtime", "strategy", "precision", "batch", "actors", "steady img/s",
                  "× fp32 eager sequential", "× fp32 eager (same configuration)",
                  "agreement with fp32 eager (probe images)", "worst probe image", "mean IoU", "max |Δ logit|",
                  "computes in", "not ranked"]
RUNTIME_NOTE = ("Steady throughput against the best fp32 eager sequential cell at the same model and device, and "
                "against the fp32 eager cell of the same strategy, batch size and actors where the run has it. "
                "Agreement with fp32 eager: the cell's first inputs through fp32 eager and through its own runtime "
                "and precision after the window, at the workers' thread count: the share of all their pixels, the "
                "worst image's share and the mean IoU of the two maps. Runtimes reorder float arithmetic and bf16 "
                "and int8 round by design, so maps are not promised bit-identical: a cell below its floor is measured "
                "but ranked nowhere, and says why under \"not ranked\" (in red on the page). Computes in: what the "
                "workers' runtime reported it computes in.")
COLD_HEADER = ["cell", "workers", "export s", "session s", "compile s", "export cache hits", "first batch s"]
COLD_NOTE = ("What each runtime cost cold: medians over the cell's workers (each task, for tasks); the first batch is "
             "each worker's first service time.")
PRECISION_ISA = ("avx512_bf16", "amx_bf16", "avx512_vnni", "amx_int8")  # bf16 and int8 units, AVX-512 and AMX
OPERATOR_HEADER = ["run", "operator", *[label for _, label, _ in OPERATOR_COLUMNS]]
PARITY_HEADER = ["cell", "reference", "torch threads (cell / reference)", "images", "same map", "differing",
                 "pixels differing, worst image (at least)", "likely cause"]


def report_sections(records: list[RunRecord], repeats: pd.DataFrame, summary: pd.DataFrame, paths: list[Path], *,
                    plots: dict[str, Path], unreadable: list[tuple[str, str]], examples_absent: str | None,
                    parity_reference: str | None = None, min_agreement: float | None = None,
                    by_path: Mapping[str, RunRecord] | None = None) -> list[Section]:
    """Every section of the report, in order, its values formatted here for both renderings. `min_agreement`:
    the user's quality floor (None: each record's own, else its precision's default); `by_path`: path → record,
    as the store read them (the decision reads a record it is not given again)."""
    runtimes, operators = _runtimes(records, summary, min_agreement), _operators(records)
    # Every cell of a sweep reads the same inputs: each bad or skipped file is listed once.
    bad = sorted({(str(b.get("id")), str(b.get("reason"))) for r in records for b in r.bad_images or []})
    skipped_files = sorted({(str(f.get("path")), str(f.get("reason"))) for r in records for f in r.skipped_files or []})
    specs = "\n".join(sorted({json.dumps(r.spec, sort_keys=True) for r in records}))
    return [
        Section("environment", "Environment", _environment(records[0].environment or {})),
        Section("decision", "Decision", [Paragraphs(_race(paths, records), strong=True),
                                         Paragraphs([DECISION_NOTE], formats=HTML_ONLY),
                                         Table(DECISION_HEADER,
                                               _decisions(repeats, summary, min_agreement, by_path or {}))]),
        *([Section("runtimes", "Runtimes × strategies", runtimes)] if runtimes else []),
        Section("parity", "Parity with the reference", _parity(records, parity_reference)),
        Section("cells", "All cells", _cells(summary)),
        # The Markdown leaves the operators out where no strategy reported them.
        Section("operators", "Ray Data operators", [Table(OPERATOR_HEADER, operators, empty="none")],
                formats=BOTH if operators else HTML_ONLY),
        Section("skipped-cells", "Skipped cells", [Table(["cell values", "reason"], _skipped(paths), empty="none")]),
        Section("bad-inputs", "Bad inputs", [Items(bad)]),
        Section("skipped-files", "Skipped files", [Items(skipped_files)]),
        Section("unreadable", "Records and tables not read", [Items(unreadable)]),
        Section("plots", "Plots", [Figures(plots), Paragraphs([f"Example predictions: {examples_absent}"]
                                                              if examples_absent else [])]),
        Section("specs", "Specs", [Preformatted(specs)], formats=HTML_ONLY),
    ]


def _environment(env: dict) -> list[Block]:
    """The machine and software the records ran on: in full on the page, in brief in the Markdown."""
    git = env.get("git") or {}
    memory = _number(env.get("memory_bytes"))
    gpus = ", ".join(map(str, env.get("gpus") or [])) or "none"
    commit = f"{git.get('commit')}" + (" (dirty: uncommitted changes)" if git.get("dirty") else "")
    packages = ", ".join(f"{name} {version}" for name, version in (env.get("packages") or {}).items())
    cpu, fingerprint = f"{env.get('cpu_model')}", f"{env.get('fingerprint')}"
    units = _precision_hardware(env)
    return [Paragraphs([" · ".join([cpu, f"{env.get('cpu_logical')} logical CPUs",
                                    f"{fmt(memory / 2**30 if memory else None, 1)} GiB", f"GPUs: {gpus}", *units,
                                    f"Python {env.get('python')}", packages, f"commit {commit}",
                                    f"machine fingerprint {fingerprint}"])], formats=HTML_ONLY),
            Paragraphs([", ".join([cpu, f"{env.get('cpu_logical')} logical CPUs", f"GPUs: {gpus}", *units,
                                   f"commit {commit}", f"fingerprint {fingerprint}"])], formats=MARKDOWN_ONLY)]


def _precision_hardware(env: dict) -> list[str]:
    """What the hardware offered a lower precision: the CPU's bf16 and int8 ISA flags, each GPU's compute
    capability; nothing for what the record does not say (records from before, or a value of another shape)."""
    parts = []
    isa = env.get("cpu_isa")
    if isinstance(isa, dict):
        said = {True: "yes", False: "no"}
        parts.append("CPU ISA: " + ", ".join(f"{flag} {said.get(isa.get(flag), '?')}" for flag in PRECISION_ISA))
    capability = env.get("gpu_compute_capability")
    if isinstance(capability, list) and capability:
        parts.append("GPU compute capability: " + ", ".join(map(str, capability)))
    return parts


def _decisions(repeats: pd.DataFrame, summary: pd.DataFrame, min_agreement: float | None,
               by_path: Mapping[str, RunRecord]) -> list[list[str]]:
    """Per model and device: the recommended cell, its interval, the runner-up, the margin and what it gains
    over fp32 (cells below their floor are not ranked)."""
    return [[str(d["model"]), str(d["device"]), configuration(d["recommended"]), with_interval(d["recommended"]),
             configuration(d["runner_up"]), fmt(d["margin"], 0, 100, "%") if d["margin"] is not None else "-",
             str(d["verdict"]), against_fp32(d) or "-",
             "; ".join([f"{c['cell_id']} ({c['why']})" for c in d["excluded"]] + [f"{c} (noisy)" for c in d["noisy"]])
             or "-"]
            for d in recommend(repeats, summary, min_agreement, by_path)]


def _cells(summary: pd.DataFrame) -> list[Block]:
    """Every cell's median steady throughput, its spread and why it is not ranked (labelled per format)."""
    rows = [[str(r.cell_id), str(r.status), fmt(r.throughput), fmt(r.cv * 100 if r.cv is not None else None, 1),
             _flags(r), str(r.error or "")] for r in summary.itertuples()]
    return [Table(["cell", "status", "steady img/s (median)", "CV %", "", "error"], rows, formats=HTML_ONLY),
            Table(["cell", "status", "steady img/s", "CV %", "flag", "error"], rows, formats=MARKDOWN_ONLY)]


def _number(value):
    """A record's number as a number, or None (a string or anything else is not trusted as one)."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _operators(records: list[RunRecord]) -> list[list[str]]:
    """(run, operator, formatted figures…) for every run whose strategy reported operator stats."""
    rows = []
    for r in records:
        for op in (r.strategy_stats or {}).get("operators") or []:
            values = [_number(op.get(key)) for key, _, _ in OPERATOR_COLUMNS]
            values[-1] = values[-1] / 2**20 if values[-1] is not None else None
            rows.append([f"{r.cell_id} r{r.repeat_index}", str(op.get("name")),
                         *[fmt(v, digits) for v, (_, _, digits) in zip(values, OPERATOR_COLUMNS, strict=True)]])
    return rows


def _flags(row) -> str:
    """Why a cell's figure is not ranked (invalid) or should be read with care (noisy)."""
    flags = [] if row.valid else [f"invalid: {row.invalid_reason}"]
    return "; ".join(flags + (["noisy"] if row.noisy else []))


def _runtimes(records: list[RunRecord], summary: pd.DataFrame, min_agreement: float | None) -> list[Block]:
    """The runtime × precision × strategy table, fastest first per model and device, cells below their
    floor marked; then what each cell cost cold. Nothing where every cell ran fp32 eager."""
    if not has_runtimes(records):
        return []
    found = runtime_rows(records, summary, min_agreement)
    rows = []
    for r in found:
        agreement = "fp32 eager itself" if r["reference"] else (
            f"{fmt(r['agreement'], 4, 100, '%')} ({r['probe_images']})" if r["agreement"] is not None else "-")
        rows.append([str(r["model"]), str(r["device"]), str(r["runtime"]), str(r["strategy"]), str(r["precision"]),
                     str(r["batch_size"]), str(r["actors"]), fmt(r["throughput"]), fmt(r["vs_eager_sequential"], 2),
                     fmt(r["vs_fp32_eager"], 2), agreement, fmt(r["worst_image_agreement"], 2, 100, "%"),
                     fmt(r["mean_iou"], 4),
                     "-" if r["max_logit_abs_diff"] is None else f"{r['max_logit_abs_diff']:.1e}",
                     str(r["execution_precision"] or "-"), str(r["not_ranked"] or "")])
    cold = [[str(c["cell_id"]), str(c["workers"]), fmt(c["export_s"], 1), fmt(c["session_s"], 2),
             fmt(c["compile_s"], 1), f"{c['cache_hits']}/{c['workers']}" if c["workers"] else "-",
             fmt(c["first_batch_s"], 2)] for c in cold_rows(records, [r["cell_id"] for r in found])]
    alerts = frozenset(i for i, r in enumerate(found) if r["below_floor"])
    return [Paragraphs([RUNTIME_NOTE, _floors(min_agreement)]), Table(RUNTIME_HEADER, rows, alerts=alerts),
            Paragraphs([COLD_NOTE]), Table(COLD_HEADER, cold)]


def _floors(min_agreement: float | None) -> str:
    """The quality floor the cells are held to, in words."""
    if min_agreement is not None:
        return f"Floor: {fmt(min_agreement, 2, 100, '%')} of the probe's pixels, for every cell (--min-agreement)."
    return (f"Floor: each cell's own (--min-agreement when it ran), else "
            f"{fmt(quality.default_floor(quality.FP32), 1, 100, '%')} for fp32 (what float rounding explains) and "
            f"{fmt(quality.default_floor('bf16'), 0, 100, '%')} for bf16 and int8.")


def _parity(records: list[RunRecord], reference: str | None) -> list[Block]:
    """The parity table (error rows marked) and one explaining line per group of cells whose thread count
    differs, or why there is no table."""
    rows = cells_against_reference(records, reference)
    if not rows:
        return [Paragraphs([f"No reference cell ({strategies.REFERENCE} at the same model) to compare with."],
                           formats=HTML_ONLY),
                Paragraphs([f"no reference cell ({strategies.REFERENCE}) to compare"], formats=MARKDOWN_ONLY)]
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
    alerts = frozenset(i for i, r in enumerate(rows) if r["error"])
    return [Table(PARITY_HEADER, table, alerts=alerts), Paragraphs(lines)]


def _skipped(paths: list[Path]) -> list[list[str]]:
    """(cell values, reason) of each cell a sweep's plan.json among the inputs skipped."""
    skipped = []
    for p in map(Path, paths):
        for plan in ([p / "plan.json", p.parent / "plan.json"] if p.is_dir() else []):
            try:
                listed = read_json_bounded(plan).get("skipped")
            except ValueError:  # a plan.json that is not one: no skipped cells to list from it
                continue
            skipped.extend(s for s in (listed if isinstance(listed, list) else []) if isinstance(s, dict))
    return [[json.dumps(s.get("values")), str(s.get("reason"))] for s in skipped]


def _race(paths: list[Path], records: list[RunRecord]) -> list[str]:
    """The answer of each `segbench decide` folder among the inputs (its decision.json), as lines."""
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
