"""`--json`, taken by every command that prints a table: one JSON document on stdout and nothing else
there, so a script can read it whole; notes and progress go to stderr, exit codes stay as they are."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from typing import Annotated

import typer

Json = Annotated[bool, typer.Option(
    "--json", help="Print the output as one JSON document on stdout, numbers raw (notes go to stderr)")]


def print_json(data: object) -> None:
    """Print `data` as indented JSON: NaN and infinities as null (JSON has neither, and a reader chokes
    on them), numpy scalars as numbers, paths and other objects as their text."""
    typer.echo(json.dumps(_plain(data), indent=2, default=str, allow_nan=False))


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {key if isinstance(key, str) else str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, set | frozenset):
        return [_plain(item) for item in sorted(value, key=str)]
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        value = value.item()  # a numpy scalar (a pandas frame's cell) as Python's own number
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While a `--json` command works, whatever else would reach stdout (its notes, a sub-step's table, a
    child process's or a native library's output) goes to stderr: the document printed afterwards is then
    the only thing on stdout. Redirects file descriptor 1 too, for the child processes."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
