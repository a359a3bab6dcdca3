"""The `segbench` command: one module per command group, registered on `app` here. Configuration
errors, and a record whose side file is missing or changed, print one line and exit with code 2."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from bench.errors import ConfigError, SideFileError, SourceUnavailable, WeightsUnavailable

# Completion is typer's (`segbench --install-completion`, `--show-completion`).
app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark SegFormer batch-inference architectures on Ray.")
calibration_app = typer.Typer(help="segbench measuring itself (heavy; `nox -s bench` runs them).", no_args_is_help=True)
app.add_typer(calibration_app, name="bench")

USAGE_ERROR = 2


def _version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        typer.echo(f"segbench {version('segbench')}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                   help="Print the version and exit")] = False) -> None:
    """Benchmark SegFormer batch-inference architectures on Ray."""


ALLOW_OPEN_ENV = "SEGBENCH_ALLOW_OPEN_CLUSTER"  # also how an A/B job passes the flag to its sides' own CLIs
AllowOpenCluster = Annotated[bool, typer.Option(
    "--allow-open-cluster", envvar=ALLOW_OPEN_ENV,
    help="Start a local Ray without token authentication on the host network (RAY_AUTH_MODE=disabled where no "
         "private network namespace can be made): anyone who can reach this machine can then run code in it")]


def isolate_local_ray(names: list[str], ray_address: str | None, weights: str, source: str,
                      allow_open: bool = False) -> None:
    """Before a local Ray instance starts: keep it on loopback (see bench.platform.netns). Not for a given
    cluster, nor when the run needs the internet (hub weights, HF datasets). Where it stays on the host
    network, Ray listens on every interface: refuse it without token authentication unless `allow_open`."""
    import strategies
    from bench.platform.netns import local_auth_mode, loopback_only, private_network

    if ray_address or not any(strategies.get(name).uses_ray for name in names):
        return
    if weights == "hub" or source.startswith("hf:"):
        reason = None if loopback_only() else "the run needs the internet: hub weights or an HF dataset"
    else:
        reason = private_network()
    if not reason:
        return
    mode = local_auth_mode()
    if mode != "token" and not allow_open:
        raise ConfigError(f"local Ray would listen on every interface of the host network ({reason}) with "
                          f"authentication {mode!r}: anyone who can reach this machine could run code in it. "
                          "Set RAY_AUTH_MODE=token (or leave it unset) or pass --allow-open-cluster")
    open_note = " (OPEN: --allow-open-cluster)" if mode != "token" else ""
    print(f"segbench: note: local Ray stays on the host network ({reason}); Ray authentication: {mode}{open_note}",
          file=sys.stderr)


def one_line(text: str) -> str:
    """`text` with every unprintable character (a newline, a terminal escape) shown as "?": for what a record
    or a file name puts on a plain line."""
    return "".join(c if c.isprintable() else "?" for c in text)


def unreadable_line(skipped: list[tuple[Path, str]]) -> str:
    """One line for the files a command could not read as records (their cells count as missing)."""
    path, why = skipped[0]
    more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
    return f"not read as records: {len(skipped)} file(s), their cells count as missing ({path}: {why}{more})"


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)  # standalone: typer reports its own usage errors with exit code 2
    except (ConfigError, SourceUnavailable, WeightsUnavailable, SideFileError) as err:
        print(f"segbench: error: {err}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


# The commands, one module each, register themselves on `app` and `calibration_app` when imported.
from bench.cli import (  # noqa: E402,F401
    ab,
    calibration,
    compare,
    decide,
    export_model,
    history,
    images,
    models,
    nightly,
    plan,
    recommend,
    reference,
    report,
    run,
    sweep,
)
