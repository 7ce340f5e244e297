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
