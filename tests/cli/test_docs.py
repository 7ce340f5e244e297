"""The docs match the code: the CLI reference is the live --help, and every command has docs."""

from __future__ import annotations

from pathlib import Path

from launcher.docgen import render

ROOT = Path(__file__).parents[2]


def test_cli_reference_is_current() -> None:
    assert (ROOT / "docs" / "cli.md").read_text() == render(), "run `make docs` and commit docs/cli.md"


def test_readme_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci


def test_demo_output_does_not_depend_on_today() -> None:
    """The README shows the demo's output: its report and advise pin their dates."""
    lines = [ln.strip() for ln in (ROOT / "scripts" / "demo").read_text().splitlines()]
    report = [ln for ln in lines if ln.startswith("gpuhire report")]
    advise = [ln for ln in lines if ln.startswith("gpuhire advise")]
    assert report and all("--month 2026-10" in ln for ln in report)
    assert advise and all("--as-of 2026-11-01" in ln for ln in advise)
