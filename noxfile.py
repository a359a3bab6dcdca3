"""Developer tasks. They run in the project's .venv (made by scripts/setup.sh), so torch is installed
once, by the one script that knows how to pick the CPU or the CUDA build."""

from __future__ import annotations

import sys

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"
PY = sys.executable  # nox itself runs from .venv


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run (tiny model, small images, one shared Ray instance): under 10 minutes."""
    session.run(PY, "-m", "pytest", "-m", "not slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.run(PY, "-m", "ruff", "check", ".")


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: the `quick` sweep (every strategy, b0, synthetic images)."""
    session.run(PY, "-m", "bench", "sweep", "--preset", "quick", "--results", "results", *session.posargs)
    session.log("records: results/sweeps/quick/runs/ (one JSON file per cell and repeat)")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Heavy benchmarks: the predictor against the bare forward pass and the textbook path."""
    session.run(PY, "-m", "bench", "bench", "predictor", *session.posargs)


@nox.session(default=False)
def slow(session: nox.Session) -> None:
    """Long tests (scale runs) left out of the default run."""
    session.run(PY, "-m", "pytest", "-m", "slow", *session.posargs)
