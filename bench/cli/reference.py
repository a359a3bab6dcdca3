"""`segbench reference`: the docs' reference pages, generated from the code so they cannot drift: the CLI
(from the typer app's click commands), the record schema (from the record's dataclasses and the shapes
its reader checks) and the sweep keys (from SweepSpec and RunSpec). `nox -s docs` writes them before the
site is built; a test fails when the committed pages differ from what this writes.

The pages are rendered here rather than by `typer … utils docs`: its layout changes with typer's version,
and typer is not pinned, so a new release would fail the drift test on unchanged code.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
from pathlib import Path
from typing import Annotated

import typer

from bench.cli import app

PAGES = ("cli.md", "record.md", "sweep.md")
_FIELD = re.compile(r"^\s+(\w+)\s*:")


@app.command(hidden=True)
def reference(
    out: Annotated[Path, typer.Option(help="Folder the pages are written to")] = Path("docs/reference"),
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 if a page differs from the code")] = False,
) -> None:
    """Write (or check) the generated reference pages."""
    stale = []
    for name, text in pages().items():
        path = out / name
        if check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        typer.echo(f"stale reference pages: {', '.join(stale)} (run: segbench reference)", err=True)
        raise typer.Exit(1)


def pages() -> dict[str, str]:
    """Page name → its Markdown."""
    return {"cli.md": cli_page(), "record.md": record_page(), "sweep.md": sweep_page()}


def _cell(text: object) -> str:
    """Text fit for one Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip() or " "


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows), ""]


def cli_page() -> str:
    lines = ["# Command line", "", "Generated from the command definitions (`segbench reference`); "
             "`segbench COMMAND --help` prints the same.", ""]
    root = typer.main.get_command(app)
    for path, command in [(["segbench"], root), *_commands(root, ["segbench"])]:
        # A context in resilient mode: the help records without parsing (and so without requiring) anything.
        ctx = command.make_context(" ".join(path), [], resilient_parsing=True)
        usage = command.get_usage(ctx).removeprefix("Usage:").strip()
        lines += [f"## `{' '.join(path)}`", "", inspect.cleandoc(command.help or "").split("\n\n")[0], "",
                  "```", usage, "```", ""]
        rows = [record for p in command.params if (record := p.get_help_record(ctx))]
        if rows:
            lines += _table(("argument or option", "what it does"), [(f"`{names}`", text) for names, text in rows])
    return "\n".join(lines).rstrip() + "\n"


def _commands(group, path: list[str]) -> list[tuple[list, object]]:
    """Every visible leaf command under `group` (typer's click commands), depth first, in name order."""
    if not hasattr(group, "commands"):
        return [(path, group)]
    found = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if not command.hidden:
            found += _commands(command, [*path, name])
    return found


def _field_notes(cls: type) -> dict[str, str]:
    """Each field's comment on its own line of the class's source (a comment above a field often heads a group
    of fields, so it is not taken as that one's)."""
    source = inspect.getsource(cls)
    comments = {tok.start[0]: tok.string.lstrip("# ").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    notes: dict[str, str] = {}
    for number, line in enumerate(source.splitlines(), 1):
        if (match := _FIELD.match(line)) and number in comments:
            notes.setdefault(match.group(1), comments[number])
    return notes


def _fields_table(cls: type) -> list[str]:
    notes = _field_notes(cls)
    rows = [(f"`{f.name}`", f"`{f.type}`", notes.get(f.name, "")) for f in dataclasses.fields(cls)
            if f.name not in ("extra", "nulls")]
    return _table(("field", "type", "what it holds"), rows)


def record_page() -> str:
    from bench.results import measured, record

    lines = ["# Run record", "", f"A record is JSON of kind `{record.KIND}`, schema version "
             f"{record.SCHEMA_VERSION}, one file per run of a cell. Generated from `bench.results.record` "
             "(`segbench reference`); its module docstring tells the schema's history.", "",
             "## Fields", "", *_fields_table(record.RunRecord)]
    for cls in (measured.Metrics, measured.Cold, measured.Counts, measured.Utilisation, measured.MemoryBounds):
        lines += [f"## `{cls.__name__}`", "", inspect.cleandoc(cls.__doc__ or ""), "", *_fields_table(cls)]
    lines += ["## What the reader checks in the other sections", "",
              "Any value may be null or absent (older records lack sections); what else a section holds is kept "
              "as it is.", ""]
    lines += _table(("section", "shape"), [(f"`{name}`", f"`{_shape(shape)}`")
                                          for name, shape in record.SECTIONS.items()])
    return "\n".join(lines).rstrip() + "\n"


def _shape(shape: object) -> str:
    if isinstance(shape, dict):
        return "{" + ", ".join(f"{k}: {_shape(v)}" for k, v in shape.items()) + "}"
    if isinstance(shape, list):
        return "[" + ", ".join(_shape(v) for v in shape) + "]"
    return getattr(shape, "expected", None) or getattr(shape, "__name__", str(shape))


def sweep_page() -> str:
    from bench.config import BOUNDS, RunSpec
    from bench.sweep import spec

    lines = ["# Sweep file keys", "", "A sweep is a TOML file (or `--preset NAME`: "
             f"{', '.join(f'`{p}`' for p in spec.PRESETS)}). Generated from `bench.sweep.spec` and "
             "`bench.config.RunSpec` (`segbench reference`).", "", "## Top level", ""]
    defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(spec.SweepSpec)}
    rows = [(f"`{key}`", f"list of {getattr(kind, '__args__', (kind,))[0].__name__}", f"`{defaults[key]}`",
             f"sweeps `{spec.SWEPT[key]}`") for key, kind in spec._LIST_KEYS.items()]
    rows += [(f"`{key}`", _type_name(kind), f"`{defaults.get(key)}`", _bound(spec._BOUNDS.get(key)))
             for key, kind in spec._SCALAR_KEYS.items()]
    lines += _table(("key", "type", "default", "bounds"), rows)
    lines += ["## `[cell]`: every cell's other settings", "",
              "Any RunSpec setting that is neither swept nor set at the top level.", ""]
    settable = [f for f in dataclasses.fields(RunSpec) if f.name not in spec._NOT_IN_CELL]
    lines += _table(("key", "type", "default", "bounds", "what it does"), [
        (f"`{f.name}`", f"`{f.type}`", f"`{f.default}`", _bound(BOUNDS.get(f.name)), f.metadata.get("help", ""))
        for f in settable])
    return "\n".join(lines).rstrip() + "\n"


def _type_name(kind: object) -> str:
    if isinstance(kind, tuple):
        return " or ".join(k.__name__ for k in kind)
    return getattr(kind, "__name__", str(kind))


def _bound(bound: object) -> str:
    if bound is None:
        return ""
    low = "(" if not bound.low_ok else "["
    high = ")" if not bound.high_ok else "]"
    return f"{low}{bound.low:g}, {bound.high:g}{high}{', whole' if bound.integer else ''}"
