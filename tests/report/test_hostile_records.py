"""Records from elsewhere are data: a report runs, reads and loads nothing they name beyond what this
machine's own checks accept, and what it writes (CSV, plots, printed commands) carries nothing active."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report import render, sections
from bench.results.store import ResultStore
from bench.workload import calibrated, images

GOLDEN = Path(__file__).parents[1] / "data" / "golden"
HUB_NAME = "nvidia/segformer-b0-finetuned-ade-512-512"


def _records(tmp_path: Path, edit: Callable[[dict], None], name: str = "runs") -> Path:
    """The golden records with `edit` applied to each."""
    runs = tmp_path / name
    shutil.copytree(GOLDEN / "runs", runs)
    for path in runs.rglob("r*_*.json"):
        record = json.loads(path.read_text())
        edit(record)
        path.write_text(json.dumps(record))
    return runs


def _examples(runs: Path, n: int = 2):
    return render._examples(list(ResultStore([runs]).iter_latest()), n)


@pytest.fixture
def spent(monkeypatch) -> list[float]:
    """Every calibrated cost spent in this process, in seconds."""
    seconds = []
    monkeypatch.setattr(calibrated, "spend", lambda s, spin: seconds.append(s))
    return seconds


@pytest.fixture
def built_with(monkeypatch) -> list[str]:
    """The weights of every model built in this process."""
    from bench.workload import predictor

    weights, build = [], predictor.build_model
    monkeypatch.setattr(predictor, "build_model", lambda m, w="random", s=0: weights.append(w) or build(m, w, s))
    return weights


@pytest.fixture
def listed(monkeypatch) -> list[Path]:
    """Every folder an image source listed in this process."""
    roots, listing = [], images._listing
    monkeypatch.setattr(images, "_listing", lambda root: roots.append(Path(root)) or listing(root))
    return roots


def test_a_calibrated_cost_beyond_the_bound_is_refused_not_slept(tmp_path, spent):
    runs = _records(tmp_path, lambda r: r["spec"].update(model="calibrated:999999999999ms"))
    shown, why = _examples(runs)
    assert spent == []
    assert shown == [] and "calibrated cost must be at most" in why


def test_a_calibrated_model_draws_its_maps_without_its_cost(tmp_path, spent):
    runs = _records(tmp_path, lambda r: r["spec"].update(model="calibrated:40ms:first=500ms"))
    shown, why = _examples(runs)
    assert why is None and len(shown) == 2
    assert spent and set(spent) == {0.0}


@pytest.mark.parametrize("where", ["source", "spec"])
def test_an_unbounded_image_scale_is_never_drawn(tmp_path, monkeypatch, where):
    """`source.scale = 1e6` once took 24 GB: examples come from the spec's scale, within RunSpec's bound."""
    from bench.config import MAX_IMAGE_SCALE

    scales, make = [], images.synthetic_jpeg

    def synthetic_jpeg(index, seed=0, scale=1.0, quality=88):
        scales.append(scale)
        assert scale <= MAX_IMAGE_SCALE, "an image beyond the bound was generated"
        return make(index, seed, scale, quality)

    monkeypatch.setattr(images, "synthetic_jpeg", synthetic_jpeg)

    def edit(record):
        record["source"]["scale"] = 1e6
        if where == "spec":
            record["spec"]["image_scale"] = 1e6

    shown, why = _examples(_records(tmp_path, edit))
    if where == "source":
        assert why is None and len(shown) == 2 and set(scales) == {0.15}
    else:
        assert shown == [] and "image-scale" in why and scales == []


def test_a_folder_a_record_names_is_never_read(tmp_path, listed):
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "photo.jpg").write_bytes(images.synthetic_jpeg(0, scale=0.1))

    def edit(record):
        record["spec"]["source"] = f"folder:{folder}"
        record["source"] = {"kind": "folder", "root": str(folder), "count": 1, "scale": 1e6}

    shown, why = _examples(_records(tmp_path, edit))
    assert listed == []
    assert shown == [] and "not read by a report" in why and "--examples-from" in why


@pytest.mark.parametrize("name", ["hub", HUB_NAME, "local-checkpoint"])
def test_random_weights_with_a_name_never_load_by_name(tmp_path, built_with, name):
    if name == "local-checkpoint":
        name = str(tmp_path / name)
        Path(name).mkdir()
        (Path(name) / "config.json").write_text("{}")
    runs = _records(tmp_path, lambda r: r["weights"].update(kind="random", name=name))
    shown, why = _examples(runs)
    assert built_with == []
    assert shown == [] and "are not loaded" in why


@pytest.mark.parametrize("examples_from", [False, True])
def test_report_on_hostile_records_runs_reads_and_loads_nothing_they_name(tmp_path, listed, spent, built_with,
                                                                          examples_from):
    """The CLI end to end on records that name a folder of images, a huge scale, hub weights under a random
    kind, and (without --examples-from) a calibrated cost of years: the report finishes, reads, loads and
    sleeps none of it, and draws examples only from --examples-from, with random weights."""
    named, mine = tmp_path / "named", tmp_path / "mine"
    for folder in (named, mine):
        folder.mkdir()
        (folder / "photo.jpg").write_bytes(images.synthetic_jpeg(1, scale=0.1))

    def edit(record):
        record["spec"]["source"] = f"folder:{named}"
        record["source"] = {"kind": "folder", "root": str(named), "count": 1, "scale": 1e6}
        if not examples_from:
            record["spec"]["model"] = "calibrated:999999999999ms"
            record["weights"] = {"kind": "random", "name": HUB_NAME}

    runs = _records(tmp_path, edit)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs), "--out", str(out), "--examples", "1",
              *(["--examples-from", str(mine)] if examples_from else [])])
    assert exit_info.value.code == 0
    assert (out / "example_predictions.png").exists() is examples_from
    assert listed == ([mine] if examples_from else [])
    assert built_with == (["random"] if examples_from else []) and spent == []


def test_examples_beyond_the_bound_are_a_configuration_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(GOLDEN), "--out", str(tmp_path), "--examples", str(10**9)])
    assert exit_info.value.code == 2 and "examples must be between 0 and" in capsys.readouterr().err


def test_summary_csv_escapes_formulas_and_keeps_numbers(tmp_path):
    summary = pd.DataFrame({
        "cell_id": ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "plain"],
        "error": [None, -3, "-3", "ok", 2.5, "a=b"],  # a record's value: numbers stay numbers, text is text
        "throughput": [-1.5, 2.0, 3.0, 4.0, 5.0, 6.0],
    })
    render.export([], summary, tmp_path)
    with open(tmp_path / "summary.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["cell_id"] for r in rows] == ["'=HYPERLINK(\"http://x\")", "'+1+1", "'-2+3", "'@SUM(A1)", "'\tcmd",
                                            "plain"]
    assert [r["error"] for r in rows] == ["", "-3", "'-3", "ok", "2.5", "a=b"]
    assert rows[0]["throughput"] == "-1.5"


def _nights(tmp_path: Path, commits: list[str], factors: list[float]) -> list[Path]:
    runs = []
    for night, (commit, factor) in enumerate(zip(commits, factors, strict=True)):
        def edit(record, commit=commit, factor=factor, night=night):
            record["environment"]["git"] = {"commit": commit, "dirty": False}
            record["started_at"] = f"2026-11-{10 + night:02d}" + record["started_at"][10:]
            if record.get("metrics", {}).get("throughput_steady"):
                record["metrics"]["throughput_steady"] *= factor

        runs.append(_records(tmp_path, edit, f"night-{night}"))
    return runs


@pytest.mark.parametrize(("good", "printed"), [
    ("$(touch /tmp/pwned)", "no bisect command (a commit in the records is not a hex id)"),
    ("HEAD~1; rm -rf ~", "no bisect command (a commit in the records is not a hex id)"),
    ("0123abc", "git bisect good 0123abc; git bisect bad " + "f" * 40),
    ("x\ngit bisect good 0000000", "no bisect command (a commit in the records is not a hex id)"),
])
def test_history_prints_bisect_commands_only_for_hex_commits(tmp_path, capsys, good, printed):
    runs = _nights(tmp_path, ["a" * 40, good, "f" * 40], [1.0, 1.0, 0.7])
    with pytest.raises(SystemExit) as exit_info:
        main(["history", *map(str, runs), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert printed in " ".join(out.split())
    assert f"git bisect good {good}" not in out or good == "0123abc"
    assert not any(line.startswith("git bisect") for line in out.splitlines())  # a newline forges no line


def test_a_dollar_in_a_label_is_text_not_mathtext(tmp_path):
    """`$\\frac$` as mathtext is a syntax error at savefig: in a model or worker name it is text."""
    import io

    from bench.report import plots
    from bench.results.summary import cell_summary

    def edit(record):
        record["spec"]["model"] = "tiny$\\frac$"
        for batch in record.get("batches") or []:
            batch["worker"] = f"w$\\frac${batch['worker']}"

    store = ResultStore([_records(tmp_path, edit)])
    records, repeats = list(store.iter_latest()), store.frame()
    summary = cell_summary(repeats)
    for make in (plots.scaling_with_actors, plots.timelines):
        fig = make(records, summary, repeats)
        fig.savefig(io.BytesIO(), format="png")
        texts = [t.get_text() for t in fig.findobj(plots.matplotlib.text.Text)]
        assert any("$\\frac$" in t for t in texts)
        plots.plt.close(fig)


def test_a_report_lists_unreadable_records_and_tables_and_renders_the_rest(tmp_path):
    """A malformed record beside good ones, and a side table altered after it was written: the report
    renders, leaves both out, and says which and why (it stopped with one line before)."""
    from bench.config import RunSpec
    from bench.measure.runner import run_cell

    runs = tmp_path / "results"
    for seed in (0, 1):
        run_cell(RunSpec(model="tiny", images=4, batch_size=2, image_scale=0.1, seed=seed), runs)
    altered = sorted(runs.rglob("*batches*.parquet"))[0]
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the sha256 can tell
    altered.write_bytes(bytes(data))
    (runs / "runs" / "broken.json").write_text(json.dumps({"kind": "segbench.run", "cell_id": "x", "spec": [],
                                                           "started_at": "t", "environment": {}}))
    report = render.build_report([runs], tmp_path / "out", examples=0)
    listed = dict(report.unreadable)
    assert any(what.endswith("broken.json") for what in listed)
    assert any("batches table" in what and "sha256" in why for what, why in listed.items())
    html = report.html.read_text()
    assert "Records and tables not read" in html and "broken.json" in html
    trace = json.loads((report.out / "timeline.trace.json").read_text())["traceEvents"]
    assert len({e["pid"] for e in trace if e["ph"] == "X"}) == 1  # the other cell's batches are still there


def test_rows_that_lack_what_a_plot_or_export_reads_leave_it_out_listed_not_a_traceback(tmp_path, capsys):
    """An inline batch without its start time passes the shape check (a value may be absent) but cannot be
    drawn or exported: the report leaves out what met it, lists it, and renders the rest."""
    def edit(record):
        for row in record.get("batches") or []:
            row.pop("started", None)

    runs = _records(tmp_path, edit)
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs), "--out", str(tmp_path / "out"), "--examples", "0"])
    assert exit_info.value.code == 0 and "Traceback" not in capsys.readouterr().err
    listed = (tmp_path / "out" / "report.md").read_text().split("## Records and tables not read")[1]
    assert "exports" in listed and "TypeError" in listed


def test_malformed_precision_fields_render_as_text_or_dashes(tmp_path):
    """A probe, the workers' cold costs and the environment's ISA as a foreign writer might leave them: text
    where numbers go, markup in names, another shape than a dict or a list. The report renders: a probe
    figure the record's shape check refuses leaves that record out, listed; the rest is escaped text or '-',
    and the agreement plot is still drawn from what is sound."""
    script, img = "<script>alert(1)</script>", "<img src=x onerror=alert(1)>"

    def edit(record):
        record["environment"]["cpu_isa"] = {"avx512_bf16": script, "amx_bf16": True, "amx_int8": False}
        record["environment"]["gpu_compute_capability"] = [script, None, "9.0"]
        if record["cell_id"].startswith("actors-tiny-cpu-bs2-a2"):
            record["spec"]["precision"] = "bf16"
            record["runtime_parity"] = {"pixel_agreement": 0.995, "images": 4, "max_logit_abs_diff": 0.5,
                                        "worst_image_agreement": 0.99, "mean_iou": 0.98, "threads": {"n": img},
                                        "cell_digests_matched": script, "runtime_cold": script}
            record["cold"]["runtime"] = [{"execution_precision": img, "export_s": "slow", "cache_hit": "yes"},
                                         {"execution_precision": 5, "session_s": [1.0]}]
        elif record["cell_id"].startswith("actors-tiny-cpu-bs2-a1"):
            record["spec"]["precision"] = "int8"
            record["runtime_parity"] = {"pixel_agreement": 0.995, "images": 4, "worst_image_agreement": "0.5",
                                        "mean_iou": script}
        elif record["cell_id"].startswith("actors-tiny-cpu-bs4-a1"):
            record["spec"]["precision"] = {"bits": img}  # not a name: read as fp32

    report = render.build_report([_records(tmp_path, edit)], tmp_path / "out", examples=0)
    html, md = report.html.read_text(), report.markdown.read_text()
    assert "throughput_vs_agreement" in report.plots
    refused = [what for what, why in report.unreadable if "worst_image_agreement" in why]
    assert len(refused) == 2 and all("actors-tiny-cpu-bs2-a1" in what for what in refused)
    for raw in (script, img):
        assert raw not in html and raw not in md
    assert "avx512_bf16 ?, amx_bf16 yes, avx512_vnni ?, amx_int8 no" in html
    assert "GPU compute capability: &lt;script&gt;alert(1)&lt;/script&gt;, None, 9.0" in html
    row = next(line for line in md.splitlines() if line.startswith("| tiny | cpu | eager | actors | bf16 |"))
    cells = [cell.strip() for cell in row.split(" | ")]
    assert cells[10:15] == ["99.5000% (8)", "99.00%", "0.9800", "5.0e-01", r"\<img src=x onerror=alert(1)\>"]
    assert "<td>&lt;img src=x onerror=alert(1)&gt;</td>" in html and "| fp32 | 4 | 1 |" in md
    cold = next(line for line in md.splitlines() if line.startswith("| actors-tiny-cpu-bs2-a2"))
    assert "| 4 | - | - | - | 0/4 |" in cold  # two workers a repeat; no figure from text, no hit from "yes"
    # Another shape than a dict of flags or a list of capabilities: left out, not guessed at.
    (line,) = sections._environment({"cpu_isa": script, "gpu_compute_capability": "8.0"})[1].lines
    assert "ISA" not in line and "compute capability" not in line


def test_a_hostile_cell_id_reaches_the_inline_figure_as_text(tmp_path):
    """A cell id is drawn in the throughput figure, whose SVG sits in the page unescaped by the template:
    markup in it arrives as text, in the SVG and in the page."""
    script = "<script>alert(1)</script>"

    def edit(record):
        if record["cell_id"].startswith("sequential-tiny-cpu-bs2-a1"):
            record["cell_id"] = script

    report = render.build_report([_records(tmp_path, edit)], tmp_path / "out", examples=0)
    html = report.html.read_text()
    assert script not in html and "<script" not in html.lower()
    figure = html.split('<figure id="figure-throughput">', 1)[1].split("</figure>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;</text>" in figure


def test_inline_svg_keeps_drawing_and_text_and_drops_anything_active(tmp_path):
    """What `svg.inline` lets through, from an SVG holding everything a page must not run or fetch."""
    from bench.report import svg

    path = tmp_path / "evil.svg"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
        '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">'
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" onload="alert(1)">'
        '<metadata><title>https://matplotlib.org/</title></metadata><style>*{x:y}</style><script>alert(2)</script>'
        '<defs><clipPath id="p1"><rect x="0" y="0" width="1" height="1"/></clipPath></defs>'
        '<g id="a" clip-path="url(#p1)" style="fill: url(https://example.com/x)"><path d="M 0 0" onclick="alert(3)"/>'
        '<text x="1">&lt;img src=x onerror=alert(4)&gt; &amp; "q"</text>'
        '<use xlink:href="#a"/><use xlink:href="https://example.com/x.svg#a"/>'
        '<image xlink:href="data:image/png;base64,AAAA"/><image xlink:href="javascript:alert(5)"/>'
        '<foreignObject><div xmlns="http://www.w3.org/1999/xhtml">x</div></foreignObject></g></svg>')
    out = svg.inline(path, "plot-x")
    for gone in ("alert(1)", "alert(2)", "alert(3)", "alert(5)", "https://", "http://", "<style", "<metadata",
                 "<foreignObject", "<div", "xmlns", "DOCTYPE", "<?xml", "onclick", "onload"):
        assert gone not in out, gone
    assert '<g id="plot-x-a" clip-path="url(#plot-x-p1)">' in out and '<clipPath id="plot-x-p1">' in out
    assert '<use href="#plot-x-a"></use>' in out and '<image href="data:image/png;base64,AAAA"></image>' in out
    assert "<text x=\"1\">&lt;img src=x onerror=alert(4)&gt; &amp; \"q\"</text>" in out
    with pytest.raises(ValueError):
        svg.inline(path, '"><script>')
