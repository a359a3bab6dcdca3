"""Comparison plots (matplotlib, Agg). Each function takes loaded records (and their per-cell summary)
and returns a Figure, or None when the data has nothing to show for it (e.g. one actor count only)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

import strategies
from bench.report.answer import not_ranked_kind
from bench.results.record import RunRecord
from bench.results.runtime_table import mixes_runtimes, pareto_front, runtime_rows
from bench.results.summary import measured

# Labels and titles come from records (worker, model, operator, cell names): a '$' in one is text, never
# mathtext, and no text goes through LaTeX, whatever a matplotlibrc says.
matplotlib.rcParams.update({"text.parse_math": False, "text.usetex": False})
# SVG text stays text (searchable, sharp, escaped by matplotlib), not glyph paths; the page names the fonts.
matplotlib.rcParams["svg.fonttype"] = "none"

STAGE_COLOURS = {"read": "#b3de69", "decode": "#8dd3c7", "preprocess": "#ffffb3", "forward": "#bebada",
                 "postprocess": "#fb8072", "waiting": "#d9d9d9"}


def colour(strategy: str) -> str:
    """One colour per strategy, the same in every plot (registry order, matplotlib's tab10)."""
    names = strategies.names()
    return plt.get_cmap("tab10")(names.index(strategy) % 10 if strategy in names else 9)


def _best_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (model, device, strategy): the valid cell with the highest median throughput."""
    ok = measured(summary)
    return ok.loc[ok.groupby(["model", "device", "strategy"])["throughput"].idxmax()]


NOT_RANKED_FACE, NOT_RANKED_EDGE = "0.9", "0.45"  # a cell not ranked: grey, hatched by why
NOT_RANKED_HATCHES = {"invalid": "//", "failed": "xx", "below the quality floor": "..", "quality unknown": "\\\\",
                      "not ranked": "++"}
LABEL_CHARS, NOTE_CHARS = 120, 140  # a cell id beyond this is cut (with …); notes wrap at this width


def throughput_by_cell(records, summary, repeats, decisions: list[dict]):
    """Every cell's median steady throughput, one bar each, a panel per model and device: ranked cells in
    their strategy's colour (whiskers: the 95% interval of the median, with 2 repeats or more), the
    recommended one starred; cells not ranked (invalid, failed, below their floor) grey and hatched, never
    left out, each with a numbered note saying why (a cell with no throughput: a stub at 0)."""
    from bench.results.decision import interval

    if summary.empty:
        return None
    why = {c["cell_id"]: str(c["why"]) for d in decisions for c in d["excluded"]}
    chosen = {d["recommended"]["cell_id"] for d in decisions if d["recommended"]}
    ok = repeats[repeats["status"] == "ok"] if "status" in repeats else repeats.iloc[0:0]
    groups = [(f"{model} on {device}", _ranked_first(cells, why))
              for (model, device), cells in summary.groupby(["model", "device"], sort=True, dropna=False)]
    notes: dict[str, int] = {}
    for _, cells in groups:
        for cell in cells.itertuples():
            if cell.cell_id in why:
                notes.setdefault(why[cell.cell_id], len(notes) + 1)
    note_lines = [line for text, n in notes.items()
                  for line in textwrap.wrap(f"[{n}] {text}", NOTE_CHARS, subsequent_indent="     ")]
    heights = [len(cells) + 1.2 for _, cells in groups] + ([0.35 * len(note_lines) + 0.4] if note_lines else [])
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, 0.3 * sum(heights) + 1.2), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    kinds: set[str] = set()
    for ax, (title, cells) in zip(axes[:, 0], groups, strict=False):
        values = [_or_zero(cell.throughput) for cell in cells.itertuples()]
        stub = 0.012 * (max(values) or 1.0)
        for y, cell in enumerate(cells.itertuples()):
            value, reason = values[y], why.get(cell.cell_id)
            samples = [float(v) for v in ok.loc[ok["cell_id"] == cell.cell_id, "throughput_steady"].dropna()]
            low, high = interval(samples) if value else (None, None)
            error = None if low is None or high is None else [[max(0.0, value - low)], [max(0.0, high - value)]]
            if reason is None:
                ax.barh(y, value, 0.7, xerr=error, capsize=3, color=colour(str(cell.strategy)))
                text = f"{value:.2f}" + ("  ★ recommended" if cell.cell_id in chosen else "")
                text += "  (noisy)" if cell.noisy else ""
            else:
                kinds.add(kind := not_ranked_kind(reason))
                ax.barh(y, value or stub, 0.7, xerr=error, capsize=3, color=NOT_RANKED_FACE,
                        edgecolor=NOT_RANKED_EDGE, hatch=NOT_RANKED_HATCHES[kind], linewidth=0.6)
                text = (f"{value:.2f}" if value else "no throughput") + f"  not ranked [{notes[reason]}]"
            ax.annotate(text, (max(value, stub) if high is None else high, y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=7,
                        fontweight="bold" if cell.cell_id in chosen else "normal",
                        color="k" if reason is None else NOT_RANKED_EDGE)
        ax.set_yticks(range(len(cells)), [_cut(str(c)) for c in cells["cell_id"]], fontsize=7)
        for label, cell in zip(ax.get_yticklabels(), cells.itertuples(), strict=True):
            label.set_color(NOT_RANKED_EDGE if cell.cell_id in why else "k")
            label.set_fontweight("bold" if cell.cell_id in chosen else "normal")
        ax.set_ylim(len(cells) - 0.5, -0.5)  # the first cell on top
        ax.set_xlim(0, max(values) * 1.45 or 1.0)
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_xlabel("steady images/s (median over repeats; whiskers: 95% interval)", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    if note_lines:
        notes_ax = axes[-1, 0]
        notes_ax.axis("off")
        notes_ax.text(0, 1, "Not ranked:\n" + "\n".join(note_lines), va="top", fontsize=7, color="0.25",
                      transform=notes_ax.transAxes)
    keys = [Patch(color=colour(name), label=name) for name in sorted({str(s) for s in summary["strategy"]})]
    keys += [Patch(facecolor=NOT_RANKED_FACE, edgecolor=NOT_RANKED_EDGE, hatch=NOT_RANKED_HATCHES[k],
                   label=f"not ranked: {k}") for k in sorted(kinds)]
    axes[0, 0].legend(handles=keys, loc="lower right", bbox_to_anchor=(1, 1), ncols=min(len(keys), 4), fontsize=7,
                      frameon=False, borderaxespad=0.2)
    fig.suptitle("Steady throughput of every cell (★ recommended; grey, hatched: not ranked, why in the notes)",
                 fontsize=10)
    return fig


def _ranked_first(cells: pd.DataFrame, why: dict[str, str]) -> pd.DataFrame:
    """A group's cells, ranked ones first, each part fastest first (no throughput last)."""
    order = cells.assign(_unranked=cells["cell_id"].isin(why), _value=pd.to_numeric(cells["throughput"],
                                                                                   errors="coerce"))
    return order.sort_values(["_unranked", "_value"], ascending=[True, False], na_position="last")


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def _or_zero(value) -> float:
    return float(value) if isinstance(value, int | float) and value == value and value > 0 else 0.0


def scaling_with_actors(records, summary, repeats):
    ok = measured(summary)
    ray = ok[[strategies.get(name).scales_with_workers for name in ok["strategy"]]]
    if ray.empty or ray["actors"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (strategy, model, device), rows in ray.groupby(["strategy", "model", "device"]):
        best_bs = rows.groupby("batch_size")["throughput"].max().idxmax()
        line = rows[rows["batch_size"] == best_bs].sort_values("actors")
        (drawn,) = ax.plot(line["actors"], line["throughput"], marker="o", color=colour(strategy),
                           label=f"{strategy} {model} {device} bs{best_bs}")
        base = line["throughput"].iloc[0] / line["actors"].iloc[0]
        ax.plot(line["actors"], base * line["actors"], linestyle=":", color=drawn.get_color())  # its ideal
        for actors, tput in zip(line["actors"], line["throughput"], strict=True):
            ax.annotate(f"{tput / (base * actors):.0%}", (actors, tput), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.plot([], [], "k:", label="ideal linear (dotted, per line)")
    ax.set_xlabel("actors (workers)")
    ax.set_ylabel("steady images/s")
    ax.set_title("Scaling with actor count (labels: parallel efficiency)")
    ax.legend(fontsize=7)
    return fig


def throughput_vs_batch_size(records, summary, repeats):
    ok = measured(summary)
    if ok.empty or ok["batch_size"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for (strategy, actors, model, device), rows in ok.groupby(["strategy", "actors", "model", "device"]):
        rows = rows.sort_values("batch_size")
        ax.plot(rows["batch_size"], rows["throughput"], marker="o", color=colour(strategy),
                linestyle=["-", "--", ":", "-."][(int(actors) - 1) % 4], label=f"{strategy} a{actors} {model} {device}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("steady images/s")
    ax.set_title("Throughput against batch size")
    ax.legend(fontsize=7)
    return fig


def _best_records(records: list[RunRecord], summary) -> dict[str, RunRecord]:
    """strategy → one ok record of its best cell."""
    best = _best_cells(summary)
    chosen = {}
    for row in best.itertuples():
        for r in records:
            if r.cell_id == row.cell_id and r.ok and row.strategy not in chosen:
                chosen[row.strategy] = r
    return chosen


def latency_distributions(records, summary, repeats):
    chosen = _best_records(records, summary)
    if not chosen:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = sorted(chosen)
    # A strategy that cannot pair results with submissions records no latency (bench.measure.metrics).
    names = [n for n in names if chosen[n].metrics.latency_defined is not False]
    if not names:
        return None
    data = {}
    for n in names:
        batches = chosen[n].frame("batches", ["submitted", "completed"]).dropna()  # unpaired: no latency
        if len(batches):  # a record whose table holds no paired batch has no distribution to draw
            data[n] = (batches["completed"] - batches["submitted"]).to_numpy()
    names, data = list(data), list(data.values())
    if not names:
        return None
    boxes = ax.boxplot(data, tick_labels=names, whis=(5, 95), patch_artist=True)
    for box, name in zip(boxes["boxes"], names, strict=True):
        box.set_facecolor(colour(name))
    ax.set_xlabel("strategy (best configuration)")
    for i, values in enumerate(data, start=1):
        for q, marker in ((50, "o"), (95, "^"), (99, "v")):
            ax.plot(i, np.percentile(values, q), marker, color="k", markersize=4)
    ax.set_ylabel("batch latency, submit → result (s)")
    ax.set_title("Latency distribution per strategy (box: p5–p95 whiskers; ○ p50 △ p95 ▽ p99)")
    return fig


def pareto(records, summary, repeats):
    ok = measured(summary)
    ok = ok[ok["latency_p95_s"].notna()]
    if ok.empty:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for strategy, rows in ok.groupby("strategy"):
        ax.scatter(rows["latency_p95_s"], rows["throughput"], label=strategy, color=colour(strategy))
    points = ok.sort_values(["latency_p95_s", "throughput"], ascending=[True, False])
    front, best = [], -np.inf
    for row in points.itertuples():
        if row.throughput > best:
            front.append((row.latency_p95_s, row.throughput))
            best = row.throughput
    xs, ys = zip(*front, strict=True)
    ax.step(xs, ys, where="post", color="k", linestyle="--", label="Pareto front")
    ax.set_xlabel("p95 batch latency (s)")
    ax.set_ylabel("steady images/s")
    ax.set_title("Throughput against p95 latency")
    ax.legend(fontsize=7)
    return fig


PRECISION_MARKERS = {"fp32": "o", "bf16": "s", "bf16-weights": "D", "int8": "^"}
BELOW_FLOOR = "0.6"  # the edge of a hollow point: a cell below its floor


def what_it_would_take(records, summary, repeats, projections: list[dict]):
    """The recommended configuration's projected throughput against nodes (bench.results.projection), one
    panel per projection: solid where measured, dashed where projected, its interval as a band, the
    measured points on it, and the first resource to saturate where it is within the axis."""
    if not projections:
        return None
    fig, axes = plt.subplots(1, len(projections), figsize=(6 * len(projections), 4), squeeze=False)
    for ax, shown in zip(axes[0], projections, strict=True):
        curve, config = shown["curve"], shown["configuration"]
        nodes = np.array([c["nodes"] for c in curve])
        rate = np.array([c["images_per_s"] for c in curve])
        projected = np.array([c["projected"] for c in curve])
        ax.fill_between(nodes, [c["low"] for c in curve], [c["high"] for c in curve], alpha=0.2, color="C0",
                        label="95% interval")
        last = int(np.argmax(projected)) if projected.any() else len(nodes)
        ax.plot(nodes[:max(last, 1)], rate[:max(last, 1)], "-", color="C0", label="within the measurements")
        if projected.any():
            ax.plot(nodes[max(last - 1, 0):], rate[max(last - 1, 0):], "--", color="C0", label="projected")
        measured = shown["measured"]
        ax.plot([m["nodes"] for m in measured], [m["throughput"] for m in measured], "ko", label="measured")
        if (saturation := shown.get("saturation")) and saturation["nodes"] <= nodes[-1]:
            ax.axvline(saturation["nodes"], color="C3", linestyle=":",
                       label=f"{saturation['resource']} saturates ({saturation['nodes']} nodes)")
        ax.set_xscale("log", base=2)  # log-log: linear scaling is a straight line, a cap bends it
        ax.set_yscale("log")
        ax.set_xticks(nodes[np.isin(nodes, [1, 2, 4, 8, 16, 32, 64])])
        plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")  # no mathtext: it is off here
        ax.xaxis.set_major_formatter(plain)
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("nodes")
        ax.set_ylabel("images/s")
        ax.set_title("\n".join(textwrap.wrap(
            f"{config.get('strategy')} {config.get('model')} on {config.get('device')} ({config.get('runtime')}, "
            f"{config.get('precision')}), batch {config.get('batch_size')}", 60)), fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("What it would take: throughput against nodes (projected beyond what was measured)")
    fig.tight_layout()
    return fig


def throughput_vs_agreement(records, summary, repeats, min_agreement: float | None = None):
    """Steady throughput (median over repeats) against agreement with fp32 eager, one point per valid cell
    and one panel per model and device: what a runtime or precision buys in speed for what it costs in
    quality. The Pareto front joins the cells no other beats on both; the floor is drawn (the user's
    `min_agreement`, else one line per default floor of the precisions present); cells below it are hollow."""
    if not mixes_runtimes(records):
        return None
    rows = runtime_rows(records, summary, min_agreement)
    drawn = [r for r in rows if r["throughput"] is not None and r["agreement"] is not None]
    if not drawn:
        return None
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in drawn:
        groups.setdefault((str(r["model"]), str(r["device"])), []).append(r)
    fig, axes = plt.subplots(1, len(groups), figsize=(7 * len(groups), 4.8), squeeze=False)
    for ax, ((model, device), cells) in zip(axes[0], groups.items(), strict=True):
        for r in cells:
            below, fill = r["below_floor"] is not None, colour(str(r["strategy"]))
            ax.scatter(r["agreement"], r["throughput"], marker=PRECISION_MARKERS.get(str(r["precision"]), "P"), s=45,
                       facecolors="none" if below else fill, edgecolors=BELOW_FLOOR if below else fill, zorder=3)
            ax.annotate(f"{r['runtime']} {r['precision']} bs{r['batch_size']} a{r['actors']}",
                        (r["agreement"], r["throughput"]), textcoords="offset points", xytext=(4, 3), fontsize=6)
        points = [(r["agreement"], r["throughput"]) for r in cells]
        front = sorted(points[i] for i in pareto_front(points))
        ax.plot(*zip(*front, strict=True), color="k", linestyle="--", linewidth=1, label="Pareto front")
        floors: dict[float, set[str]] = {}
        for r in cells:
            floors.setdefault(r["floor"], set()).add(str(r["precision"]))
        for value, precisions in sorted(floors.items()):
            ax.axvline(value, color="#c44e52", linestyle=":", linewidth=1,
                       label=f"floor {value:.2%} ({', '.join(sorted(precisions))})")
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("pixel agreement with fp32 eager (probe images)")
        ax.set_ylabel("steady images/s (median over repeats)")
        ax.set_title(f"{model} {device}", fontsize=9)
        keys = [Line2D([], [], linestyle="", marker="o", color=colour(name), label=name)
                for name in sorted({str(r["strategy"]) for r in cells})]
        keys += [Line2D([], [], linestyle="", marker=PRECISION_MARKERS.get(name, "P"), color="k", label=name)
                 for name in sorted({str(r["precision"]) for r in cells})]
        keys += [Line2D([], [], linestyle="", marker="o", markerfacecolor="none", markeredgecolor=BELOW_FLOOR,
                        label="hollow: below its floor (ranked nowhere)")]
        ax.legend(handles=keys + ax.get_legend_handles_labels()[0], fontsize=6)
    left_out = len(rows) - len(drawn)
    fig.suptitle("Throughput against agreement with fp32 eager (colour: strategy; shape: precision)"
                 + (f"; {left_out} cell(s) without a valid throughput or a probe not drawn" if left_out else ""),
                 fontsize=10)
    fig.tight_layout()
    return fig


def stage_breakdown(records, summary, repeats):
    chosen = _best_records(records, summary)
    if not chosen:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = sorted(chosen)
    bottom = np.zeros(len(names))
    for stage, colour in STAGE_COLOURS.items():
        values = np.array([(chosen[n].metrics.stage_ms_per_image or {}).get(stage) or 0.0 for n in names])
        ax.bar(names, values, bottom=bottom, color=colour, label=stage)
        bottom += values
    ax.set_xlabel("strategy (best configuration)")
    ax.set_ylabel("ms per image (steady batches)")
    ax.set_title("Where the time goes")
    ax.legend()
    return fig


def utilisation_over_time(records, summary, repeats):
    chosen = _best_records(records, summary)
    if not chosen:
        return None
    has_gpu = any(s.get("gpus") for r in chosen.values() for s in r.rows("samples"))
    fig, axes = plt.subplots(2 if has_gpu else 1, 1, figsize=(8, 6 if has_gpu else 4), squeeze=False)
    for name, record in sorted(chosen.items()):
        samples = record.rows("samples")
        t = [s["t"] for s in samples]
        axes[0][0].plot(t, [s["tree_cpu_percent"] for s in samples], label=f"{name} (process tree)",
                        color=colour(name))
        if has_gpu:
            axes[1][0].plot(t, [_or_nan(s["gpus"][0]["util_percent"]) if s.get("gpus") else np.nan for s in samples],
                            label=name, color=colour(name))
    axes[0][0].set_ylabel("CPU % (100 = one core)")
    axes[0][0].set_title("Utilisation during the measured window")
    axes[0][0].legend(fontsize=7)
    if has_gpu:
        axes[1][0].set_ylabel("GPU 0 util %")
    axes[-1][0].set_xlabel("seconds since the sampler started (measured window)")
    return fig


TIMELINE_BATCHES = 2000


def timelines(records, summary, repeats):
    chosen = _best_records(records, summary)
    if not chosen:
        return None
    names = sorted(chosen)
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.5), squeeze=False, sharey=False)
    for ax, name in zip(axes[0], names, strict=True):
        every = chosen[name].frame("batches", ["worker", "started", "ended"])
        batches = every.nsmallest(TIMELINE_BATCHES, "started")  # a bar a batch: more would not be seen
        workers = sorted(batches["worker"].unique())
        for row, worker in enumerate(workers):
            mine = batches[batches["worker"] == worker]
            spans = list(zip(mine["started"], mine["ended"] - mine["started"], strict=True))
            ax.broken_barh(spans, (row - 0.4, 0.8), facecolors=colour(name), edgecolors="white")
        # Ray Data's operators: each one's span, from its first task's start to its last task's end
        operators = _operator_spans(chosen[name])
        for row, (_, start, length) in enumerate(operators, start=len(workers)):
            ax.broken_barh([(start, length)], (row - 0.4, 0.8), facecolors="#dd8452", edgecolors="white")
        ax.set_yticks(range(len(workers) + len(operators)), workers + [label for label, _, _ in operators], fontsize=7)
        ax.set_xlabel("seconds since run start")
        ax.set_ylabel("worker / operator")
        shown = f" (first {len(batches):,} of {len(every):,} batches)" if len(batches) < len(every) else ""
        ax.set_title(name + shown, fontsize=9)
    fig.suptitle("Which worker ran which batch when (gaps: idle)")
    fig.tight_layout()
    return fig


def _operator_spans(record: RunRecord) -> list[tuple[str, float, float]]:
    """(label, start, length) per Ray Data operator, in seconds since the run start."""
    spans = []
    for op in (record.strategy_stats or {}).get("operators") or []:
        if op.get("start") is not None and op.get("end") is not None and record.run_start_wall:
            start = op["start"] - record.run_start_wall
            spans.append((f"op {op['name']}"[:40], start, max(0.0, op["end"] - op["start"])))
    return spans


def speedup_vs_sequential(records, summary, repeats):
    best = _best_cells(summary)
    reference = strategies.REFERENCE
    if best.empty or reference not in set(best["strategy"]):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    labels, values, colours = [], [], []
    for (model, device), rows in best.groupby(["model", "device"]):
        seq = rows[rows["strategy"] == reference]["throughput"]
        if seq.empty:
            continue
        for row in rows.itertuples():
            labels.append(f"{row.strategy}\n{model} {device}")
            values.append(row.throughput / seq.iloc[0])
            colours.append(colour(row.strategy))
    ax.bar(labels, values, color=colours)
    ax.set_xlabel("strategy, model and device (best configuration)")
    ax.axhline(1.0, color="k", linestyle="--")
    ax.set_ylabel(f"× {reference} (best configurations)")
    ax.set_title(f"Speed-up against {reference}")
    ax.tick_params(axis="x", labelsize=7)
    return fig


PLOTS = {
    "scaling_with_actors": scaling_with_actors,
    "throughput_vs_batch_size": throughput_vs_batch_size,
    "latency_distributions": latency_distributions,
    "throughput_vs_p95_latency": pareto,
    "stage_breakdown": stage_breakdown,
    "utilisation_over_time": utilisation_over_time,
    "worker_timelines": timelines,
    "speedup_vs_sequential": speedup_vs_sequential,
}


def palette(n: int = 150) -> np.ndarray:
    """A fixed, well-separated colour per class (golden-ratio hues), uint8 (n, 3)."""
    import colorsys

    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb((i * 0.618034) % 1, 0.75, 0.95)]
                     for i in range(n)], dtype=np.uint8)


def example_predictions(images: list[tuple[str, np.ndarray, np.ndarray]], labels: tuple[str, ...]):
    """images: (name, RGB uint8 (H, W, 3), map (H, W)). Blends each map over its image, with a legend."""
    if not images:
        return None
    colours = palette(len(labels))
    fig, axes = plt.subplots(1, len(images), figsize=(4.5 * len(images), 4.2), squeeze=False)
    for ax, (name, rgb, seg) in zip(axes[0], images, strict=True):
        blended = (0.5 * rgb + 0.5 * colours[seg]).astype(np.uint8)
        ax.imshow(blended)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
        counts = np.bincount(seg.ravel(), minlength=len(labels))
        top = np.argsort(counts)[::-1][:6]
        handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c] / 255) for c in top if counts[c]]
        ax.legend(handles, [labels[c] for c in top if counts[c]], fontsize=6, loc="lower left")
    fig.suptitle("Example predictions (ADE20K classes, top 6 by area)")
    fig.tight_layout()
    return fig


def history(cells: dict, found: dict[str, list[dict]], max_cells: int = 12):
    """Each cell's steady throughput per run (median, 95% interval) in time order, steps marked."""
    from bench.results.decision import interval

    names = list(cells)[:max_cells]
    if not names:
        return None
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        runs = cells[name]
        x = np.arange(len(runs))
        medians = np.array([run.median for run in runs])
        bounds = [interval(run.samples) for run in runs]
        low = np.array([m - (b[0] if b[0] is not None else m) for m, b in zip(medians, bounds, strict=True)])
        high = np.array([(b[1] if b[1] is not None else m) - m for m, b in zip(medians, bounds, strict=True)])
        ax.errorbar(x, medians, yerr=[low, high], fmt="o-", capsize=3)
        for step in found.get(name, []):
            ax.axvline(step["after_index"] - 0.5, color="#c44e52", linestyle="--")
            ax.annotate(f"{step['ratio']:.2f}×", (step["after_index"] - 0.5, medians.max()), color="#c44e52",
                        fontsize=8, ha="center")
        ax.set_xticks(x, [(run.commit or "?")[:7] for run in runs], rotation=45, fontsize=7)
        ax.set_ylabel("steady images/s")
        ax.set_xlabel("commit (runs in date order)")
        ax.set_title(name, fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    fig.suptitle("Steady throughput per run, 95% intervals; dashed: detected steps")
    fig.tight_layout()
    return fig


def _or_nan(value) -> float:
    return np.nan if value is None else value
