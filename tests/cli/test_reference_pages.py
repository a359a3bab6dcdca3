"""The docs' reference pages are generated from the code (`segbench reference`): the committed pages must be
what the code writes today, so a new option, record field or sweep key that is not in the docs fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import typer

from bench.cli import app, main
from bench.cli import reference as ref
from bench.config import RunSpec
from bench.results.record import RunRecord

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_the_committed_reference_pages_are_what_the_code_writes():
    pages = ref.pages()
    assert set(pages) == set(ref.PAGES)
    for name, text in pages.items():
        assert (DOCS / name).read_text() == text, f"docs/reference/{name} is stale: run `segbench reference`"


def test_the_pages_name_every_command_option_record_field_and_sweep_key():
    pages = ref.pages()
    for path, command in ref._commands(typer.main.get_command(app), ["segbench"]):
        assert f"## `{' '.join(path)}`" in pages["cli.md"]
        for param in command.params:
            if param.param_type_name == "option" and not param.hidden:
                assert param.opts[0] in pages["cli.md"], (path, param.opts)
    assert all(f"`{f.name}`" in pages["record.md"] for f in dataclasses.fields(RunRecord))
    assert "`precisions`" in pages["sweep.md"] and "`calibration_images`" in pages["sweep.md"]
    assert all(f"`{f.name}`" in pages["sweep.md"] or f.name in ("strategy", "model", "batch_size", "actors",
                                                               "device", "runtime", "precision", "ray_address")
               for f in dataclasses.fields(RunSpec))


def _exit_code(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    return stop.value.code


def test_check_mode_fails_on_a_stale_page_and_writes_nothing(tmp_path, capsys):
    assert _exit_code(["reference", "--out", str(tmp_path)]) == 0
    assert _exit_code(["reference", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "cli.md").write_text("# old\n")
    assert _exit_code(["reference", "--out", str(tmp_path), "--check"]) == 1
    assert "stale reference pages" in capsys.readouterr().err and (tmp_path / "cli.md").read_text() == "# old\n"
