"""Options that several commands take, declared once. A run setting's option is built from its RunSpec
field (its help in the field's metadata, bench.config), and the names a choice setting takes are read
from their registries, so the help cannot drift from what a run accepts."""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

import strategies
from bench.config import DEVICES, MODEL_TRANSFERS, RunSpec
from bench.errors import ConfigError
from bench.sweep.spec import PRESETS, SWEPT
from bench.workload import calibrated, runtimes
from bench.workload.models import SIZES
from bench.workload.postprocess_modes import POSTPROCESS_MODES

Command = TypeVar("Command", bound=Callable[..., None])

SweepFile = Annotated[Path | None, typer.Argument(help="Sweep TOML file (or use --preset)")]
Preset = Annotated[str | None, typer.Option(help=f"A preset sweep, instead of a file: {' | '.join(PRESETS)}")]
Threshold = Annotated[float, typer.Option(
    help="Equivalence margin: a cell is unchanged only when shown within ±this (0.05 = 5%); a significant "
         "slowdown over 2% is a regression whatever it is")]
Alpha = Annotated[float, typer.Option(help="Family-wise significance level (Holm over cells × signals)")]
Budget = Annotated[str | None, typer.Option(
    help="Time for the whole A/B (300s, 40m, 1h): after the first rounds, cells still unknown get more rounds "
         "while a pair of runs fits; none: the first rounds only")]
MaxRounds = Annotated[int, typer.Option(
    help="The most rounds a cell still unknown gets, with --budget (one look each; a cell that points to a "
         "slowdown runs 2 pairs a round)")]
MinAgreement = Annotated[float | None, typer.Option(
    help="Quality floor: the least pixel agreement with fp32 eager's maps a cell needs to be ranked, in (0, 1] "
         "(default: the floor each cell ran with, else float rounding for fp32 and 0.99 for lower precisions)")]
AllowUngated = Annotated[bool, typer.Option(
    help="Pass (exit 0) even when a baseline cell could not be gated (else exit 3)")]


def choices() -> dict[str, tuple[str, ...]]:
    """Run setting → the names it takes, each read from its registry."""
    return {
        "strategy": strategies.names(),
        "model": (*SIZES, f"{calibrated.PREFIX}40ms[:spin][:first=500ms]"),
        "device": DEVICES,
        "postprocess": POSTPROCESS_MODES,
        "runtime": runtimes.names(),
        "precision": runtimes.PRECISIONS,
        "model_transfer": MODEL_TRANSFERS,
    }


def run_setting_fields() -> list[dataclasses.Field]:
    """The RunSpec fields that are command-line options: those with a help."""
    return [f for f in dataclasses.fields(RunSpec) if "help" in f.metadata]


def _help(field: dataclasses.Field, text: str) -> str:
    names = choices().get(field.name)
    return f"{text}: {' | '.join(names)}" if names else text


def run_settings(command: Command) -> Command:
    """An option per run setting, before the command's own parameters; they reach it as keywords (its
    **settings). An optional setting left off the command line is None: unset, as RunSpec reads it."""
    hints = typing.get_type_hints(RunSpec)
    return _with_options(command, [
        _option(f.name, hints[f.name], None if type(None) in typing.get_args(hints[f.name]) else f.default,
                f.metadata.get("flag"), _help(f, f.metadata["help"]))
        for f in run_setting_fields()])


def sweep_overrides(command: Command) -> Command:
    """A repeatable option per swept list of SweepSpec, named as the run setting it sweeps; they reach
    the command as keywords (its **overrides), None where not given."""
    hints = typing.get_type_hints(RunSpec)
    fields = {f.name: f for f in dataclasses.fields(RunSpec)}
    return _with_options(command, [
        _option(name, list[hints[name]] | None, None, fields[name].metadata.get("flag"),
                _help(fields[name], f"Override: {key.replace('_', ' ')} (repeatable)"))
        for key, name in SWEPT.items()])


def _option(name: str, annotation: object, default: object, renamed: str | None, help_text: str) -> inspect.Parameter:
    """`renamed`: the option's name where it is not the field's (typer names it, and a bool's --no- form)."""
    option = typer.Option(renamed, help=help_text) if renamed else typer.Option(help=help_text)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[annotation, option])


def _with_options(command: Command, options: list[inspect.Parameter]) -> Command:
    """Typer reads a command's parameters from its signature: give it the built options and its own."""
    own = inspect.signature(command, eval_str=True)
    kept = [p.replace(kind=p.KEYWORD_ONLY) for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    command.__signature__ = own.replace(parameters=[*options, *kept])
    return command


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(s|m|h)?")
MAX_BUDGET_S = 7 * 86400.0


def parse_budget(text: str, option: str = "--budget") -> float:
    """'300', '300s', '5m', '1.5h' → seconds (finite, positive, at most a week)."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ConfigError(f"{option} {text!r}: give a duration such as 300s, 5m or 1h")
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2) or "s"]
    if not 0 < seconds <= MAX_BUDGET_S:
        raise ConfigError(f"{option} {text!r} must be above 0 and at most a week")
    return seconds
