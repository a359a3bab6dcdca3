"""The report's sections, in the order they are shown: one list, walked by both renderings (the HTML
template in bench/report/templates and `render.render_markdown`). A section is a title, an anchor id and
blocks of content (paragraphs, a table, a list of (what, why) items, the plots, preformatted text, the
answer per model and device, a collapsible part), each block a kind both renderings know. Adding a section is
one entry in `report_sections`, plus the results module its rows come from where they are new.

The order puts the answer first: the decision, then one figure with every cell (none left out), then
what a reader checks it against (runtimes, parity, every cell's figures), then what was left out, the
other plots and the environment.

Where the two formats say something differently (the Markdown keeps shorter lines and leaves out the
specs), the block or section names the formats it is shown in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pandas as pd

import strategies
from bench.report import answer
from bench.report.format import fmt
from bench.results import quality, race
from bench.results.parity import cells_against_reference, thread_groups
from bench.results.projection import MAX_NODES
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
    note: bool = False  # how a figure was made: in small print where the format has it


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


@dataclass(frozen=True)
class Answer:
    """The decision for one model and device: the pick, its figure, one sentence per fact, and where the
    cells left out are listed."""

    kind: ClassVar[str] = "answer"
    heading: str
    recommended: str
    figure: str
    facts: list[tuple[str, str]]  # (label, sentence)
    link: tuple[str, str, str] | None = None  # (label, text, id of the section it points to)
    formats: frozenset[str] = BOTH


@dataclass(frozen=True)
class Details:
    """A one-line summary, its blocks shown under it when `open`, folded away otherwise (the page only: the
    Markdown shows the summary, then the blocks in a <details> element where they are folded)."""

    kind: ClassVar[str] = "details"
    summary: str
    blocks: list[Paragraphs | Table | Items]
    open: bool = False
    formats: frozenset[str] = BOTH


Block = Paragraphs | Table | Items | Figures | Preformatted | Answer | Details


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)
    formats: frozenset[str] = BOTH


DECISION_NOTE = ("Per model and device: the fastest valid cell at or above its quality floor by median steady "
                 "throughput, with a 95% bootstrap interval over repeats, and its margin over the runner-up (\"no "
                 "significant difference\" where the intervals overlap). Where it runs another precision than fp32, "
                 "the fastest fp32 cell beside it: the speed-up, and the agreement with fp32 eager it costs. Stage "
                 "times are medians over repeats of the records' milliseconds per steady image.")
NOT_RANKED = "cells-not-ranked"  # the section's id, and its anchor in the Markdown as GitHub derives it
THROUGHPUT = "throughput"  # the figure of every cell, shown in its own section rather than among the plots
WHAT_IT_WOULD_TAKE = "what_it_would_take"  # the projection's figure, in its own section
PROJECTION_HEADER = ["nodes", "workers", "img/s [95%]", "images/hour", "limit", ""]
PROJECTION_NOTE = ("The recommended configuration projected to more nodes from its records (`segbench plan`: "
                   "per-worker rates, a USL fit over the measured worker counts or linear scaling where it cannot "
                   "be fitted, one driver's CPU, the cold start). Figures beyond what was measured are marked "
                   "projected. Limits: one machine's measurements; the network between real hosts, shared storage "
                   "and the object store are not modelled; no GPU measured.")
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
                    decisions: list[dict], parity_reference: str | None = None,
                    min_agreement: float | None = None, projections: list[dict] | None = None) -> list[Section]:
    """Every section of the report, in order, its values formatted here for both renderings. `decisions`:
    `bench.results.decision.recommend`'s, made once for these sections and the throughput figure;
    `min_agreement`: the user's quality floor (None: each record's own, else its precision's default);
    `projections`: each recommended configuration projected to more nodes (bench.results.projection)."""
    runtimes, operators = _runtimes(records, summary, min_agreement), _operators(records)
    # Every cell of a sweep reads the same inputs: each bad or skipped file is listed once.
    bad = sorted({(str(b.get("id")), str(b.get("reason"))) for r in records for b in r.bad_images or []})
    skipped_files = sorted({(str(f.get("path")), str(f.get("reason"))) for r in records for f in r.skipped_files or []})
    specs = "\n".join(sorted({json.dumps(r.spec, sort_keys=True) for r in records}))
    others = {name: path for name, path in plots.items() if name not in (THROUGHPUT, WHAT_IT_WOULD_TAKE)}
    return [
        Section("decision", "Decision", [Paragraphs(_race(paths, records), strong=True),
                                         *_answers(decisions, records, summary, repeats),
                                         Paragraphs([DECISION_NOTE], note=True, formats=HTML_ONLY)]),
        *([Section(THROUGHPUT, "Throughput of every cell", [Figures({THROUGHPUT: plots[THROUGHPUT]})])]
          if THROUGHPUT in plots else []),
        Section(NOT_RANKED, "Cells not ranked", _not_ranked(decisions)),
        *([Section("runtimes", "Runtimes × strategies", runtimes)] if runtimes else []),
        *([Section("what-it-would-take", "What it would take", _projection(projections, plots))]
          if projections else []),
        Section("parity", "Parity with the reference", _parity(records, parity_reference)),
        Section("cells", "All cells", _cells(summary)),
        # The Markdown leaves the operators out where no strategy reported them.
        Section("operators", "Ray Data operators", [Table(OPERATOR_HEADER, operators, empty="none")],
                formats=BOTH if operators else HTML_ONLY),
        Section("skipped-cells", "Skipped cells", [Table(["cell values", "reason"], _skipped(paths), empty="none")]),
        Section("bad-inputs", "Bad inputs", [Items(bad)]),
        Section("skipped-files", "Skipped files", [Items(skipped_files)]),
        Section("unreadable", "Records and tables not read", [Items(unreadable)]),
        Section("plots", "Plots", [Figures(others), Paragraphs([f"Example predictions: {examples_absent}"]
                                                               if examples_absent else [])]),
        Section("environment", "Environment", _environment(records[0].environment or {})),
        Section("specs", "Specs", [Preformatted(specs)], formats=HTML_ONLY),
    ]


def _projection(projections: list[dict], plots: dict[str, Path]) -> list[Block]:
    """Per recommended configuration: what limits it and when, and images per hour at 1–32 nodes."""
    blocks: list[Block] = [Figures({WHAT_IT_WOULD_TAKE: plots[WHAT_IT_WOULD_TAKE]})] if WHAT_IT_WOULD_TAKE in plots \
        else []
    for shown in projections:
        config, saturation = shown["configuration"], shown.get("saturation")
        where = (f"{saturation['resource']} saturates first, at {saturation['nodes']} node(s): {saturation['why']}"
                 if saturation else f"nothing saturates up to {MAX_NODES} nodes")
        blocks.append(Paragraphs([f"{config.get('strategy')} {config.get('model')} on {config.get('device')} "
                                  f"({config.get('runtime')}, {config.get('precision')}), batch "
                                  f"{config.get('batch_size')}: {where}.", *shown["notes"]]))
        blocks.append(Table(PROJECTION_HEADER, [
            [str(row["nodes"]), str(row["workers"]), f"{row['throughput']:.2f} [{row['low']:.2f}, {row['high']:.2f}]",
             f"{row['images_per_hour']:,.0f}", row["limit"], "projected" if row["projected"] else "measured"]
            for row in shown["table"]]))
    return [*blocks, Paragraphs([PROJECTION_NOTE], note=True)]


def subtitle(records: list[RunRecord]) -> str:
    """One line under the title: what was measured, on what, from which commit and when."""
    env = records[0].environment or {}
    git = env.get("git") if isinstance(env.get("git"), dict) else {}
    commit = str(git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    days = sorted({str(r.started_at)[:10] for r in records})
    when = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}"
    cells = len({r.cell_id for r in records})
    return (f"{cells} cell(s), {len(records)} record(s) · {env.get('cpu_model')}, {env.get('cpu_logical')} logical "
            f"CPUs, GPUs: {', '.join(map(str, env.get('gpus') or [])) or 'none'} · commit {commit} · {when}")


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


def _answers(decisions: list[dict], records: list[RunRecord], summary: pd.DataFrame,
             repeats: pd.DataFrame) -> list[Answer]:
    """Per model and device: the recommended cell, its interval, the runner-up and the margin, the verdict,
    why it wins and what it costs; the cells left out counted, with a link to where they are listed."""
    shown = []
    for d in decisions:
        best, second = (answer.footprint(c["cell_id"], records, summary, repeats) if c else None
                        for c in (d["recommended"], d["runner_up"]))
        recommended, figure = answer.headline(d)
        shown.append(Answer(f"{d['model']} on {d['device']}", recommended, figure, answer.facts(d, best, second),
                            link=_left_out(d)))
    return shown


def _left_out(decision: dict) -> tuple[str, str, str] | None:
    """How many cells were not ranked, and why in kinds, or how many ranked ones are noisy."""
    kinds: dict[str, int] = {}
    for cell in decision["excluded"]:
        kind = answer.not_ranked_kind(str(cell["why"]))
        kinds[kind] = kinds.get(kind, 0) + 1
    parts = [_count(len(decision["excluded"]), "cell") + " (" + ", ".join(f"{k}: {n}" for k, n in kinds.items())
             + ")"] * bool(kinds)
    parts += [_count(len(decision["noisy"]), "ranked cell") + " noisy"] * bool(decision["noisy"])
    return ("Not ranked", "; ".join(parts), NOT_RANKED) if parts else None


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def _not_ranked(decisions: list[dict]) -> list[Block]:
    """Each cell left out of the ranking with its reason, one line each; then the ranked cells whose
    repeats vary so much that their interval is wide."""
    left_out = [(str(c["cell_id"]), str(c["why"])) for d in decisions for c in d["excluded"]]
    noisy = [str(c) for d in decisions for c in d["noisy"]]
    return [Items(left_out, empty="none: every cell was ranked"),
            Paragraphs([f"Ranked, but noisy (steady throughput varies by more than 10% between repeats, so the "
                        f"interval is wide): {', '.join(noisy)}."] if noisy else [])]


def _cells(summary: pd.DataFrame) -> list[Block]:
    """Every cell's median steady throughput, its spread and why it is not ranked (labelled per format)."""
    rows = [[str(r.cell_id), str(r.status), fmt(r.throughput), fmt(r.cv * 100 if r.cv is not None else None, 1),
             fmt(_number(r.rss_tree_peak), 2, 2**-30), fmt(_number(r.cpu_tree_mean), 2, 0.01), _flags(r),
             str(r.error or "")] for r in summary.itertuples()]
    costs = ["peak RSS GiB (process tree)", "CPU cores busy (mean)"]
    return [Table(["cell", "status", "steady img/s (median)", "CV %", *costs, "", "error"], rows, formats=HTML_ONLY),
            Table(["cell", "status", "steady img/s", "CV %", *costs, "flag", "error"], rows, formats=MARKDOWN_ONLY)]


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
    images = sum(r["images"] for r in rows if isinstance(r["images"], int))
    differing = sum(bool(r["differing"]) for r in rows)
    if not differing:
        said = f"All {len(rows)} cells produced the reference's maps ({images} images compared)."
    else:
        said = (f"{differing} of {len(rows)} cells differ from the reference on some images: "
                + (f"{errors} unexplained (ERROR rows)." if errors else "each with its likely cause named."))
    return [Details(said, [Table(PARITY_HEADER, table, alerts=alerts), Paragraphs(lines)], open=bool(differing))]


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
