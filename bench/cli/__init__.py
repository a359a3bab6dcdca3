"""The `segbench` command: one module per command group, registered on `app` here. Configuration
errors, and a record whose side file is missing or changed, print one line and exit with code 2."""

import sys

import typer

from bench.config import ConfigError
from bench.results.tables import SideFileError
from bench.workload.images import SourceUnavailable
from bench.workload.models import WeightsUnavailable

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark SegFormer batch-inference architectures on Ray.")
bench_app = typer.Typer(help="segbench measuring itself (heavy; `nox -s bench` runs them).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

USAGE_ERROR = 2


def isolate_local_ray(names: list[str], ray_address: str | None, weights: str, source: str) -> None:
    """Before a local Ray instance starts: keep it on loopback (see bench.platform.netns). Not for a given
    cluster, nor when the run needs the internet (hub weights, HF datasets)."""
    import strategies
    from bench.platform.netns import private_network

    uses_ray = any(strategies.get(name).uses_ray for name in names)
    if uses_ray and not ray_address and weights != "hub" and not source.startswith("hf:"):
        reason = private_network()
        if reason:
            from bench.platform.netns import local_auth_mode

            print(f"segbench: note: local Ray stays on the host network ({reason}); Ray authentication: "
                  f"{local_auth_mode()}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv)  # standalone: typer reports its own usage errors with exit code 2
    except (ConfigError, SourceUnavailable, WeightsUnavailable, SideFileError) as err:
        print(f"segbench: error: {err}", file=sys.stderr)
        sys.exit(USAGE_ERROR)


# The commands register themselves on `app` and `bench_app` when imported.
from bench.cli import decide, nightly, report, run, selfbench, sweep  # noqa: E402,F401
