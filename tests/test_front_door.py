"""The README is the front door: at most 200 lines, every link in it leads to a file of the repository, CI
runs its test command verbatim, and every docs page is in the site's navigation (mkdocs --strict would
build a page it does not list, unreachable)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_the_readme_is_at_most_200_lines():
    assert len(README.splitlines()) <= 200


def test_every_relative_link_in_the_readme_leads_to_a_file():
    links = [link for link in _LINK.findall(README) if "://" not in link]
    missing = [link for link in links if not (ROOT / link).exists()]
    assert links and not missing, missing


def test_ci_runs_the_readmes_test_command_verbatim():
    command = "bash scripts/setup.sh && .venv/bin/nox -s tests"
    assert command in README and command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_docs_page_is_in_the_navigation():
    def pages(nav) -> set[str]:
        if isinstance(nav, str):
            return {nav}
        items = nav.values() if isinstance(nav, dict) else nav
        return set().union(*(pages(item) for item in items))

    yaml = pytest.importorskip("yaml")  # mkdocs's own dependency (the docs extra)
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    listed = pages(config["nav"])
    present = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert present == listed
