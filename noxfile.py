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
    session.run(PY, "-m", "pytest", "-m", "not slow and not benchmark and not extended", "--ignore=tests/benchmarks",
                *session.posargs)


@nox.session(default=False)
def extended(session: nox.Session) -> None:
    """The tests CI runs after the default run (CLI runs in their own Ray, kills, redundant variants): a few minutes."""
    session.run(PY, "-m", "pytest", "-m", "extended and not slow and not benchmark", "--ignore=tests/benchmarks",
                *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree, and the layers contract in pyproject.toml (import-linter)."""
    from pathlib import Path

    session.run(PY, "-m", "ruff", "check", ".")
    session.run(str(Path(PY).parent / "lint-imports"), "--no-cache")


@nox.session(default=False)
def docs(session: nox.Session) -> None:
    """The docs site: regenerate the reference pages from the code, then build with --strict (a broken link,
    or a page missing from the navigation, fails it) into site/."""
    session.run(PY, "-m", "bench", "reference", "--out", "docs/reference")
    session.run(PY, "-m", "mkdocs", "build", "--strict", "--site-dir", "site", *session.posargs,
                env={"NO_MKDOCS_2_WARNING": "1"})  # Material's end-of-life banner, printed on every build


@nox.session(default=False)
def demo(session: nox.Session) -> None:
    """The main job on the embedded default: race the `quick` preset (every strategy, b0, synthetic images)
    to a decision within 5 minutes, then render its report."""
    from pathlib import Path

    session.run(PY, "-m", "bench", "decide", "--preset", "quick", "--budget", "5m", "--results", "results",
                *session.posargs)
    decision = max((Path("results") / "decisions" / "quick").iterdir())  # folders are named by UTC time
    session.run(PY, "-m", "bench", "report", str(decision), "--out", "results/reports/quick")
    session.log(f"records: {decision}/runs/; report: results/reports/quick/report.html")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Heavy benchmarks: the predictor against the bare forward pass and the textbook path, the harness's
    own overhead, and the stage micro-benchmarks (a stage whose mean regresses by >15% against the
    previous saved run fails the session)."""
    session.run(PY, "-m", "bench", "bench", "predictor", *session.posargs)
    session.run(PY, "-m", "bench", "bench", "overhead")
    session.run(PY, "-m", "pytest", "tests/benchmarks", "-m", "benchmark", "--benchmark-only",
                "--benchmark-autosave", "--benchmark-compare", "--benchmark-compare-fail=mean:15%")


@nox.session(default=False)
def nightly(session: nox.Session) -> None:
    """The regression gate for this machine (bench/cli/nightly.py): where results/baselines/nightly has no
    folder for this machine's fingerprint, record one and pass; otherwise re-measure that baseline's
    commit beside this tree in alternating rounds and compare, failing on a regression. Figures from
    another machine or another session are never the reference."""
    # 10%: the equivalence margin (a cell is unchanged when shown within it); any significant slowdown over 2%
    # is a regression. Its budget (40 min) gives the cells still unknown after the preset's 3 rounds more rounds.
    session.run(PY, "-m", "bench", "nightly", "--preset", "nightly", "--threshold", "0.10", *session.posargs)


@nox.session(default=False)
def browser(session: nox.Session) -> None:
    """Check the HTML report in Debian's headless chromium (installed here if missing)."""
    import shutil

    if not shutil.which("chromium"):
        session.run("apt-get", "install", "-y", "-q", "chromium", external=True)
    session.run(PY, "-m", "pytest", "tests/report/test_report.py", "-k", "browser")


@nox.session(default=False)
def slow(session: nox.Session) -> None:
    """Long tests (scale runs) left out of the default run."""
    session.run(PY, "-m", "pytest", "-m", "slow", *session.posargs)


@nox.session(default=False, venv_backend="venv")
def floors(session: nox.Session) -> None:
    """The tests at the lowest versions pyproject declares (`>=` floors pinned with `==`), in a venv of its
    own: a floor the code does not work at fails here. torch stays the CPU 2.13.0 build on disk (its floor
    is kept for existing CUDA installs and is not exercised)."""
    import tempfile
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    pins = []
    for text in [*project["dependencies"], *project["optional-dependencies"]["datasets"]]:
        requirement = Requirement(text)
        floor = next((s.version for s in requirement.specifier if s.operator == ">="), None)
        if floor and requirement.name != "torch":
            pins.append(f"{requirement.name}=={floor}")
    # Not session.create_tmp(): it points TMPDIR into the venv, where Ray refuses to put its session.
    constraints = Path(tempfile.mkdtemp(prefix="segbench-floors-")) / "floors.txt"
    constraints.write_text("\n".join(pins) + "\n")
    session.log("floors: " + ", ".join(pins))
    session.install("torch==2.13.0")
    session.install("-c", str(constraints), "-e", ".[test,datasets]")
    session.run("python", "-c", "import transformers, ray, datasets; print('at floors:', transformers.__version__, "
                "ray.__version__, datasets.__version__)")
    session.run("python", "-m", "pytest", "-m", "not slow and not benchmark", "-x", "tests/workload", "tests/cli",
                "tests/strategies/test_strategies.py", "tests/measure/test_runner.py", *session.posargs)
