"""The help of `run`, `sweep` and `ab` names what the registries hold (every strategy, runtime, model
size and preset) and has an option for every run setting that is one: the help is built from them, so a
new entry shows up without touching the CLI."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

import strategies
from bench.cli import app
from bench.cli.options import run_setting_fields
from bench.sweep.spec import PRESETS, SWEPT
from bench.workload import runtimes
from bench.workload.models import SIZES


def flag(field: dataclasses.Field) -> str:
    """The option's name: the field's, unless its metadata renames it."""
    return field.metadata.get("flag", "--" + field.name.replace("_", "-"))


def _help(command: str) -> str:
    # Wide and plain, so that no name is wrapped or styled apart.
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "1000", "TERMINAL_WIDTH": "1000"},
                                color=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_registries_hold_what_the_help_must_name():
    assert "onnxruntime-tensorrt" in runtimes.names() and "runtimes" in PRESETS and "tiny" in SIZES


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_run_and_sweep_list_every_strategy_runtime_and_model_size(command):
    text = _help(command)
    for name in (*strategies.names(), *runtimes.names(), *SIZES):
        assert name in text, f"{command} --help does not name {name}"


@pytest.mark.parametrize("command", ["sweep", "ab"])
def test_sweep_and_ab_list_every_preset(command):
    text = _help(command)
    assert all(name in text for name in PRESETS), text


def test_run_has_an_option_for_every_run_setting_with_a_help():
    text = _help("run")
    fields = run_setting_fields()
    assert len(fields) > 30  # every setting but the few kept off the command line
    for field in fields:
        assert flag(field) in text, f"run --help has no {flag(field)} for RunSpec.{field.name}"


def test_sweep_has_an_override_for_every_swept_list():
    text = _help("sweep")
    fields = {f.name: f for f in run_setting_fields()}
    for name in SWEPT.values():
        assert flag(fields[name]) in text
