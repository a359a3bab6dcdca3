"""Reports and the comparison gate, against the golden records in tests/data/golden (a tiny sweep:
sequential and actors, batch 2 and 4, 1 and 2 actors, two repeats)."""

from __future__ import annotations

import html as html_text
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from bench.cli import main
from bench.report import render
from bench.report.plots import PLOTS
from bench.report.render import build_report
from bench.workload import speed_probe

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
EXPECTED_PLOTS = {*PLOTS, "throughput", "what_it_would_take", "example_predictions"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report([GOLDEN], tmp_path_factory.mktemp("report"))


def test_every_plot_is_rendered_as_valid_images(report):
    assert set(report.plots) == EXPECTED_PLOTS and len(report.plots) == 11
    for name, png in report.plots.items():
        with Image.open(png) as image:
            image.verify()
        svg = png.with_suffix(".svg").read_text()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg, name


def _golden_cells() -> set[str]:
    from bench.results.store import ResultStore

    return {r.cell_id for r in ResultStore([GOLDEN]).iter_latest()}


def test_html_and_markdown_reports(report):
    html = report.html.read_text()
    assert html.count("<svg") == 11 and "<img" not in html  # every plot inline, as SVG
    assert "<h2>Decision</h2>" in html and "Skipped cells" in html
    assert "actor counts are meaningless for sequential" in html  # from the sweep's plan.json
    md = report.markdown.read_text()
    assert all(f"![{render.md(name)}]({name}.png)" in md for name in EXPECTED_PLOTS)


def test_the_decision_comes_first_and_every_section_is_in_the_contents(report):
    html, md = report.html.read_text(), report.markdown.read_text()
    ids = re.findall(r'<section id="([^"]+)">', html)
    assert ids[:3] == ["decision", "throughput", "cells-not-ranked"] and ids[-2:] == ["environment", "specs"]
    contents = html.split("<nav", 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'href="#([^"]+)"', contents) == ids
    assert next(line for line in md.splitlines() if line.startswith("## ")) == "## Decision"
    assert "@media print" in html and "nav{display:none}" in html


def test_the_html_is_self_contained(report):
    """Nothing is fetched when the page opens: no script, stylesheet, font or image from elsewhere."""
    html = report.html.read_text()
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html, flags=re.IGNORECASE)
    assert references and not [r for r in references if not r.startswith(("#", "data:image/png;base64,"))]
    assert not re.search(r"<(script|link|iframe|object|embed)\b|@import|url\(\s*['\"]?(https?:)?//", html,
                         flags=re.IGNORECASE)


def test_the_decision_says_why_it_wins_what_it_costs_and_what_was_left_out(report):
    md = report.markdown.read_text()
    decision = md.split("## Decision", 1)[1].split("\n## ", 1)[0]
    assert "### tiny on cpu" in decision
    assert "**sequential, batch 4, 1 actor(s)**: 334.13 img/s, 95% interval 331.86 to 336.41 over 2 repeats" in decision
    assert "- **Runner-up:** actors, batch 4, 1 actor(s), 307.89 img/s; the recommended is 9% faster" in decision
    assert "- **Verdict:** no significant difference (95% intervals overlap)" in decision
    # Medians over repeats of the records' stage ms per image: forward 1.95 against 2.51 ms
    assert ("- **Why it wins:** forward makes the difference, 2.0 against 2.5 ms per image (in all 2.9 vs 3.8"
            in decision)
    assert ("- **What it costs:** 458 MiB peak memory, the RSS of its process tree (runner-up 1.22 GiB); 1.51 cores "
            "busy on average, 75% of the machine's 2 logical CPUs (runner-up 1.56 cores)") in decision
    assert "- **Not ranked:** [1 cell (invalid: 1); 2 ranked cells noisy](#cells-not-ranked)" in decision
    left_out = md.split("## Cells not ranked", 1)[1].split("\n## ", 1)[0]
    assert "- actors-tiny-cpu-bs4-a2-d9601328e5: invalid: fewer than 2 steady batches" in left_out
    assert "noisy" in left_out and "actors-tiny-cpu-bs4-a1-4a375add65" in left_out
    html = report.html.read_text()
    link = '<a href="#cells-not-ranked">1 cell (invalid: 1); 2 ranked cells noisy</a>'
    assert f"<li><b>Not ranked:</b> {link}</li>" in html


def _svg_texts(svg: str) -> list[str]:
    return [html_text.unescape(t) for t in re.findall(r"<text\b[^>]*>([^<]*)</text>", svg)]


def test_every_cell_is_in_the_throughput_figure_the_invalid_one_hatched_with_its_reason(report):
    svg = (report.out / "throughput.svg").read_text()
    texts = _svg_texts(svg)
    assert _golden_cells() <= set(texts)
    assert "286.19  not ranked [1]" in texts and any(t.startswith("[1] invalid: fewer than 2 steady") for t in texts)
    assert "334.13  ★ recommended" in texts and "<pattern" in svg  # the hatching
    figure = report.html.read_text().split('<figure id="figure-throughput">', 1)[1].split("</figure>", 1)[0]
    assert _golden_cells() <= set(_svg_texts(figure))


def test_a_failed_cell_is_drawn_at_zero_with_its_reason(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    for path in runs.glob("sequential-tiny-cpu-bs2-a1-*/r*_*.json"):
        record = json.loads(path.read_text())
        record.update(status="failed", error="worker died: out of memory")
        path.write_text(json.dumps(record))
    report = build_report([runs], tmp_path / "out", examples=0)
    texts = _svg_texts((report.out / "throughput.svg").read_text())
    assert _golden_cells() <= set(texts)
    (label,) = [t for t in texts if t.startswith("no throughput")]
    note = label.rsplit("[", 1)[1].rstrip("]")
    assert f"[{note}] failed: worker died: out of memory" in texts
    assert "sequential-tiny-cpu-bs2-a1-c9ac4bda80: failed: worker died: out of memory" in report.markdown.read_text()


def test_exports(report):
    trace = json.loads((report.out / "timeline.trace.json").read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert spans and all(e["dur"] >= 0 and "tid" in e for e in spans)
    csv = pd.read_csv(report.out / "summary.csv")
    parquet = pd.read_parquet(report.out / "summary.parquet")
    assert len(csv) == len(parquet) == 6 and set(csv["strategy"]) == {"sequential", "actors"}


def _scaled_copy(tmp_path: Path, factor: float, fingerprint: str | None = None) -> Path:
    """A copy of the golden records whose throughput is `factor` × the original (durations / factor)."""
    out = tmp_path / f"candidate-{factor}"
    shutil.copytree(GOLDEN, out)
    for path in out.rglob("r*_*.json"):
        record = json.loads(path.read_text())
        if record["status"] == "ok":
            for b in record["batches"]:
                b["ended"] = b["started"] + (b["ended"] - b["started"]) / factor
            m = record["metrics"]
            m["throughput_steady"] *= factor
        if fingerprint:
            record["environment"]["fingerprint"] = fingerprint
        path.write_text(json.dumps(record))
    return out


def _compare(capsys, *args) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(GOLDEN), *args])
    return exit_info.value.code, capsys.readouterr().out


def test_compare_flags_a_20_percent_regression(tmp_path, capsys):
    code, out = _compare(capsys, "-c", str(_scaled_copy(tmp_path, 0.8)))
    assert code == 1 and "regression" in out and "no regression" not in out


def test_compare_never_passes_a_cell_it_cannot_clear(tmp_path, capsys):
    # The golden sweep has an invalid cell, and 2 repeats a side: too few to show any cell within the
    # threshold, so a 1% change is not flagged, but no cell passes either: each is unknown (exit 3).
    code, out = _compare(capsys, "-c", str(_scaled_copy(tmp_path, 0.99)))
    assert code == 3 and "baseline invalid: fewer than 2 steady batches" in out and "not gated:" in out
    assert "unknown: needs more rounds" in out and "regression" not in out.split("not gated:")[0].split("\n", 1)[1]
    code, out = _compare(capsys, "-c", str(_scaled_copy(tmp_path / "again", 0.99)), "--allow-ungated")
    assert code == 0 and "nothing was gated" in out


def test_compare_reports_an_improvement(tmp_path, capsys):
    code, out = _compare(capsys, "-c", str(_scaled_copy(tmp_path, 1.25)), "--allow-ungated")
    assert code == 0 and "improvement" in out


def test_compare_refuses_another_machines_records_unless_asked(tmp_path, capsys):
    other = _scaled_copy(tmp_path, 1.0, fingerprint="another-machine")
    for extra, message in (([], "machines differ"), (["--across-machines"], "no machine-speed probe")):
        # Asked, every record needs a probe: the golden records predate probes.
        with pytest.raises(SystemExit) as exit_info:
            main(["compare", str(GOLDEN), "-c", str(other), *extra])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_compare_across_machines_prints_normalised_ratios_and_what_they_cannot_remove(tmp_path, capsys):
    """A fixture pair from two machines: the candidate's is 1.5× faster on its probe and on every cell."""
    def with_probe(folder: Path, probe_s: float, fingerprint: str, cores: int) -> Path:
        for path in folder.rglob("r*_*.json"):
            record = json.loads(path.read_text())
            record["machine_probe"] = {"version": speed_probe.VERSION, "b0_forward_s": probe_s}
            record["environment"].update(fingerprint=fingerprint, cpu_logical=cores)
            path.write_text(json.dumps(record))
        return folder

    base = with_probe(_scaled_copy(tmp_path / "a", 1.0), 0.30, "machine-a", 2)
    cand = with_probe(_scaled_copy(tmp_path / "b", 1.5), 0.20, "machine-b", 16)
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", str(base), "-c", str(cand), "--across-machines", "--allow-ungated"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "unknown" in out and "improvement" not in out  # 2 repeats clear nothing
    assert "machine speed c/b" in out and "1.500" in out and "1.000" in out  # the machines differ, the code does not
    assert "normalisation cannot remove" in out and "cores 2 vs 16" in out


SCRIPT, IMG = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize("field_class", ["text", "number-as-string", "file-name"])
def test_report_renders_markup_from_records_as_text(tmp_path, field_class):
    """Markup in any field a record carries reaches neither the HTML nor the Markdown as markup."""
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    path = next(runs.rglob("r0_*.json"))
    record = json.loads(path.read_text())
    if field_class == "text":
        record.update(status="failed", error=SCRIPT)
        record["environment"]["cpu_model"] = IMG
    elif field_class == "number-as-string":
        record["spec"]["batch_size"] = SCRIPT
        record["environment"]["cpu_logical"] = IMG
    else:
        record["bad_images"] = [{"id": f"{IMG}.jpg", "reason": f"corrupt {SCRIPT}"}]
        record["skipped_files"] = [{"path": f".{IMG}", "reason": f"hidden file {SCRIPT}"}]
        record["strategy_stats"] = {"operators": [{"name": f"ReadFiles({IMG})", "rows": SCRIPT}]}
    path.write_text(json.dumps(record))
    report = build_report([runs], tmp_path / "out", examples=0)
    html, md = report.html.read_text(), report.markdown.read_text()
    for raw in (SCRIPT, IMG):
        assert raw not in html and raw not in md
    assert "&lt;script&gt;" in html or "&lt;img src=x" in html  # rendered, as text
    if field_class != "number-as-string":  # the Markdown has no spec dump: there it is only absent
        assert r"\<script\>" in md or r"\<img src=x onerror=alert(1)\>" in md
    if field_class == "file-name":  # listed once, under its own heading, as text
        assert html.count("hidden file &lt;script&gt;") == 1 and "## Skipped files" in md


@pytest.mark.parametrize("missing", ["folder", "hub-weights"])
def test_report_renders_from_records_alone(tmp_path, missing):
    """No image folder or weights of the records on this machine: the report renders, says why there are
    no example predictions, and never validates the spec or fetches anything."""
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    for path in runs.rglob("r*_*.json"):
        record = json.loads(path.read_text())
        if missing == "folder":
            record["spec"]["source"] = "folder:/nowhere/images"
            record["source"] = {"kind": "folder", "root": "/nowhere/images", "count": 12}
        else:
            record["spec"]["weights"] = "hub"
            record["weights"] = {"kind": "hub", "name": "hub", "seed": 0}
        path.write_text(json.dumps(record))
    report = build_report([runs], tmp_path / "out", examples=3)
    assert "example_predictions" not in report.plots
    reason = "/nowhere/images" if missing == "folder" else "a report never fetches them"
    assert reason in report.examples_absent and reason in report.html.read_text()


def test_what_it_would_take_projects_the_recommended_cell_and_marks_what_is_projected(report):
    """The projection section (bench.results.projection): the recommended golden cell is sequential, which
    runs in the driver's process, so more nodes add nothing, and every row past one node is projected."""
    md = report.markdown.read_text()
    section = md.split("## What it would take", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [row.split(" | ")[0] for row in rows] == ["| 1", "| 2", "| 4", "| 8", "| 16", "| 32"]
    assert rows[0].endswith("| measured |") and all(row.endswith("| projected |") for row in rows[1:])
    assert "in-process worker saturates first, at 1 node(s)" in section and "no GPU measured" in section


def test_markdown_escape_keeps_tables_intact():
    assert render.md("a|b\nc *d* [e](f) <g>") == r"a\|b c \*d\* \[e\](f) \<g\>"


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium (.ci/run and nox -s browser install it)")
def test_report_loads_in_a_real_browser_with_every_plot(report, tmp_path):
    """Headless chromium: no script element and no console error on the report as written, every image
    decoded (a probe appended to a copy counts them), and a screenshot for a human to look at."""
    page = report.html.as_uri()
    dom = _chromium(tmp_path, "--dump-dom", "--enable-logging=stderr", "--v=0", page)
    assert "<h2>Decision</h2>" in dom.stdout and "<h2>Parity with the reference</h2>" in dom.stdout
    assert "<script" not in dom.stdout.lower()
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and ":ERROR:" in line]
    assert not console_errors, console_errors
    probe = tmp_path / "probe.html"
    # Measured in a copy: how many figures are drawn, where the decision sits on a 1300 × 900 laptop
    # screen, and which texts the throughput figure holds (as the DOM has them: SVG text, not pixels).
    check = ("<script>window.addEventListener('load', () => {"
             "const figures = [...document.querySelectorAll('figure svg')];"
             "const drawn = figures.filter(s => s.getBoundingClientRect().width > 0 && s.querySelector('text'));"
             "const below = e => e.getBoundingClientRect().bottom + scrollY;"
             "document.title = JSON.stringify({figures: figures.length, drawn: drawn.length,"
             " decision: document.getElementById('decision').getBoundingClientRect().top + scrollY,"
             " answer: below(document.querySelector('#decision .pick')), width: innerWidth,"
             " texts: [...document.querySelectorAll('#throughput svg text')].map(t => t.textContent),"
             " plan: [...document.querySelectorAll('#what-it-would-take svg text')].map(t => t.textContent),"
             " planRows: document.querySelectorAll('#what-it-would-take table tr').length}); });</script>")
    probe.write_text(report.html.read_text().replace("</body>", check + "</body>"))
    out = _chromium(tmp_path, "--dump-dom", "--window-size=1300,900", probe.as_uri())
    found = re.search(r"<title>(.*?)</title>", out.stdout, flags=re.DOTALL)
    assert found, out.stderr[-2000:]
    seen = json.loads(html_text.unescape(found[1]))
    assert seen["figures"] == seen["drawn"] == 11 and seen["width"] == 1300
    assert "nodes" in seen["plan"] and seen["planRows"] == 1 + 6  # the projection's figure and its table
    assert seen["decision"] < 900 and seen["answer"] < 900, seen  # the answer is above the fold
    assert _golden_cells() <= set(seen["texts"])
    screenshot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,4000", page)
    with Image.open(screenshot) as image:
        assert image.size == (1200, 4000)
    print(f"screenshot: {screenshot}")


def test_ray_data_operator_stats_reach_the_report_the_gantt_and_the_trace(tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    path = next(runs.rglob("r0_*.json"))
    record = json.loads(path.read_text())
    t0 = record["run_start_wall"]
    record["strategy_stats"] = {"operators": [
        {"name": "ReadBinary", "tasks": 3, "blocks": 3, "rows": 12, "wall_s": 0.1, "cpu_s": 0.05, "udf_s": None,
         "backpressure_s": 0.0, "obj_store_used_bytes": 2**20, "start": t0 + 0.1, "end": t0 + 0.4},
        {"name": "MapBatches(<script>x</script>)", "tasks": 4, "blocks": 4, "rows": 12, "wall_s": 2.5, "cpu_s": 2.4,
         "udf_s": 2.3, "backpressure_s": 0.2, "obj_store_used_bytes": None, "start": t0 + 0.2, "end": t0 + 3.0}]}
    path.write_text(json.dumps(record))
    report = build_report([runs], tmp_path / "out", examples=0)
    html = report.html.read_text()
    assert "Ray Data operators" in html and "<script>x</script>" not in html
    assert "MapBatches(&lt;script&gt;x&lt;/script&gt;)" in html and "<td>ReadBinary</td><td>3</td>" in html
    assert "| ReadBinary | 3 | 3 | 12 | 0.10 | 0.05 | - | 0.00 | 1.00 |" in report.markdown.read_text()
    trace = json.loads((report.out / "timeline.trace.json").read_text())["traceEvents"]
    ops = [e for e in trace if e.get("tid") == "Ray Data operators"]
    assert [e["name"] for e in ops] == ["ReadBinary", "MapBatches(<script>x</script>)"]
    assert ops[1]["ts"] == pytest.approx(0.2e6) and ops[1]["dur"] == pytest.approx(2.8e6)


def _golden_with_changed_map(tmp_path: Path, cell_prefix: str, moved: int) -> Path:
    """Golden records where the first image of one cell's every repeat got a different map (a digest
    and `moved` pixels moved from one class to another in its histogram)."""
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    for path in runs.rglob("r*_*.json"):
        record = json.loads(path.read_text())
        if record["cell_id"].startswith(cell_prefix):
            first = record["outputs"][0]
            first["digest"] = "0" * len(first["digest"])
            (a, count), b = next(iter(first["histogram"].items())), "149"
            first["histogram"][a] = count - moved
            first["histogram"][b] = first["histogram"].get(b, 0) + moved
            path.write_text(json.dumps(record))
    return runs


@pytest.mark.parametrize(("cell", "moved", "cause"), [
    ("actors-tiny-cpu-bs2-a2", 3, "torch threads 1 vs 2: float reduction order"),  # 0.04% of its pixels
    ("actors-tiny-cpu-bs2-a1", 3, "unexplained: 1 differ with the same threads"),  # same threads as sequential
    ("actors-tiny-cpu-bs2-a2", 300, "unexplained: at least 3.82% of one image's pixels differ"),  # not rounding
])
def test_parity_names_the_cause_or_flags_an_error(tmp_path, cell, moved, cause):
    from bench.results.parity import cells_against_reference
    from bench.results.store import ResultStore

    explained = not cause.startswith("unexplained")
    runs = _golden_with_changed_map(tmp_path, cell, moved)
    rows = {r["cell_id"]: r for r in cells_against_reference(list(ResultStore([runs]).iter_latest()))}
    (row,) = [r for cell_id, r in rows.items() if cell_id.startswith(cell)]
    first = json.loads(next(runs.rglob(f"{cell}*/r0_*.json")).read_text())["outputs"][0]
    assert row["differing"] == 1 and row["equal"] == row["images"] - 1
    assert row["min_pixels_differing_share"] == pytest.approx(moved / (first["width"] * first["height"]))
    assert row["error"] is (not explained) and row["cause"].startswith(cause)
    assert all(r["differing"] == 0 for cell_id, r in rows.items() if not cell_id.startswith(cell))
    report = build_report([runs], tmp_path / "out", examples=0)
    md, html = report.markdown.read_text(), report.html.read_text()
    assert ("ERROR: unexplained" in md) is (not explained)
    # One cell differs: the parity table is shown, not folded away, and its summary says how it differs.
    summary = "1 of 5 cells differ from the reference on some images: "
    assert f"<details open><summary>{summary}" in html
    assert summary + ("each with its likely cause named" if explained else "1 unexplained (ERROR rows)") in md


def test_parity_folds_to_one_line_when_every_cell_matches(report):
    html, md = report.html.read_text(), report.markdown.read_text()
    assert "<details><summary>All 5 cells produced the reference&#39;s maps (120 images compared).</summary>" in html
    parity = md.split("## Parity with the reference", 1)[1].split("\n## ", 1)[0]
    assert parity.lstrip().startswith("All 5 cells produced the reference's maps (120 images compared).")
    assert "<details><summary>details</summary>" in parity and "| actors-tiny-cpu-bs2-a2-8c5bd5a120 |" in parity


def _golden_with_precisions(tmp_path: Path) -> Path:
    """Golden records where the actors cells at batch 2 ran other precisions: 2 actors in bf16 (agreeing
    on 99.5% of the probe's pixels, twice as fast), 1 actor in int8 on OpenVINO (90%: below its floor)."""
    runs = tmp_path / "runs"
    shutil.copytree(GOLDEN / "runs", runs)
    changed = {"actors-tiny-cpu-bs2-a2": ("eager", "bf16", 0.995, "bfloat16 autocast"),
               "actors-tiny-cpu-bs2-a1": ("openvino", "int8", 0.9, "i8")}
    for path in runs.rglob("r*_*.json"):
        record = json.loads(path.read_text())
        for prefix, (runtime, precision, agreement, computes_in) in changed.items():
            if record["cell_id"].startswith(prefix):
                record["spec"].update(runtime=runtime, precision=precision)
                record["metrics"]["throughput_steady"] *= 2
                record["runtime_parity"] = {"runtime": runtime, "precision": precision, "images": 4,
                                            "pixel_agreement": agreement, "worst_image_agreement": agreement - 0.01,
                                            "mean_iou": 0.97, "max_logit_abs_diff": 0.25}
                record["cold"]["runtime"] = [{"runtime": runtime, "precision": precision,
                                              "execution_precision": computes_in, "session_s": 0.5}]
        path.write_text(json.dumps(record))
    return runs


def test_one_precision_and_runtime_draws_no_agreement_plot(report):
    assert "throughput_vs_agreement" not in report.plots
    assert "Runtimes × strategies" not in report.html.read_text()


def test_precisions_draw_throughput_against_agreement_with_the_front_and_the_floors(tmp_path):
    from bench.report import plots
    from bench.results.store import ResultStore
    from bench.results.summary import cell_summary

    runs = _golden_with_precisions(tmp_path)
    report = build_report([runs], tmp_path / "out", examples=0)
    assert "throughput_vs_agreement" in report.plots
    html, md = report.html.read_text(), report.markdown.read_text()
    assert html.count("<svg") == len(report.plots)
    assert "![throughput\\_vs\\_agreement](throughput_vs_agreement.png)" in md
    bf16 = next(line for line in md.splitlines() if line.startswith("| tiny | cpu | eager | actors | bf16 | 2 | 2 |"))
    assert "99.5000% (8)" in bf16 and "98.50%" in bf16 and "0.9700" in bf16 and "bfloat16 autocast" in bf16
    int8 = next(line for line in md.splitlines() if line.startswith("| tiny | cpu | openvino | actors | int8 |"))
    assert "below the floor 99.00%" in int8 and "90.0000% (8)" in int8
    assert '<tr class="alert"><td>tiny</td><td>cpu</td><td>openvino</td>' in html  # below its floor: red
    decision = md.split("## Decision", 1)[1].split("\n## ", 1)[0]
    assert "**actors at bf16, batch 2, 2 actor(s)**" in decision
    assert "- **Against fp32:** bf16: 1.16× the best fp32 (sequential, batch 4" in decision
    assert "agreement 99.50%" in decision and "below the quality floor: 1" in decision
    left_out = md.split("## Cells not ranked", 1)[1].split("\n## ", 1)[0]
    assert "- actors-tiny-cpu-bs2-a1-4d9baccd9b: agreement with fp32 eager 90.00%" in left_out

    store = ResultStore([runs])
    records, repeats = list(store.iter_latest()), store.frame()
    summary = cell_summary(repeats)

    def drawn(min_agreement):
        fig = plots.throughput_vs_agreement(records, summary, repeats, min_agreement)
        (ax,) = fig.axes
        labels = ax.get_legend_handles_labels()[1]
        hollow = [c for c in ax.collections if not c.get_facecolor().any()]
        plots.plt.close(fig)
        return labels, len(ax.collections), len(hollow)

    labels, points, hollow = drawn(None)
    assert points == 5 and hollow == 1  # the golden's invalid cell is not drawn; int8 is below its floor
    assert {"Pareto front", "floor 99.90% (fp32)", "floor 99.00% (bf16, int8)"} <= set(labels)
    labels, _, hollow = drawn(0.8)
    assert "floor 80.00% (bf16, fp32, int8)" in labels and hollow == 0
    strict = build_report([runs], tmp_path / "strict", examples=0, min_agreement=0.999).markdown.read_text()
    assert "Floor: 99.90% of the probe's pixels, for every cell (--min-agreement)" in strict
    assert "**sequential, batch 4, 1 actor(s)**" in strict  # bf16 is below that floor: not ranked
    assert "below the floor 99.90%" in next(line for line in strict.splitlines()
                                            if line.startswith("| tiny | cpu | eager | actors | bf16 |"))
