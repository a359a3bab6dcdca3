"""Bad configuration: one clear line on stderr, exit code 2, nothing run and nothing written."""

from __future__ import annotations

import pytest

from bench.cli import main


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "b9"], "unknown model 'b9'"),
    (["--strategy", "magic"], "unknown strategy 'magic'"),
    (["--batch-size", "0"], "batch-size must be 1 or more"),
    (["--source", "/no/such/folder"], "does not exist"),
    (["--device", "cuda"], "no CUDA device"),
    (["--weights", "/no/such/ckpt"], "no config.json"),
    (["--prefetch-mb", "-1"], "prefetch-mb must be 0 or more"),
])
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, message):
    if "cuda" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--model", "tiny", "--images", "2", "--results", str(tmp_path), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_unknown_option_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--no-such-option"])
    assert exit_info.value.code == 2


def test_models_command_lists_every_size(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(size in out for size in ("b0", "b1", "b2", "b3", "b4", "b5", "tiny"))


def test_a_long_cells_progress_line_gives_rate_and_eta(monkeypatch):
    import io

    from bench.cli import progress

    clock = iter([0.0, 10.0, 12.0, 20.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    line = progress.LineProgress(every_s=10.0, stream=out)
    for done in (0, 5_000, 6_000, 10_000):  # at 0 s, 10 s, 12 s (too soon: no line), 20 s
        line(done, 100_000)
    assert out.getvalue().splitlines() == ["images 5000/100000 · 500 img/s · ETA 3m10s",
                                           "images 10000/100000 · 500 img/s · ETA 3m00s"]


def test_a_side_file_gone_from_beside_its_record_is_listed_and_the_report_renders(tmp_path, capsys):
    """A report does not stop for one record's missing table: it renders the rest and says which and why."""
    from bench.config import RunSpec
    from bench.measure.runner import run_cell

    _, path = run_cell(RunSpec(model="tiny", batch_size=4, images=4, image_scale=0.15), tmp_path)
    next(path.parent.glob("*.batches.parquet")).unlink()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path), "--out", str(tmp_path / "report"), "--examples", "0"])
    assert exit_info.value.code == 0 and "Traceback" not in capsys.readouterr().err
    listed = (tmp_path / "report" / "report.md").read_text().split("## Records and tables not read")[1]
    assert "batches table" in listed and "batches.parquet is missing" in listed
