"""Generate docs/cli.md from the live `--help` of every command (`make docs`).

A test regenerates it and compares, so the reference can never drift from the code.
"""

from __future__ import annotations

import os
from typing import Any

from typer.main import get_command
from typer.testing import CliRunner

from launcher.cli import app


def _paths(cmd: Any, prefix: list[str]) -> list[list[str]]:
    found = [prefix]
    for name in getattr(cmd, "commands", {}):
        found += _paths(cmd.commands[name], [*prefix, name])
    return found


def render() -> str:
    """The whole CLI reference as Markdown."""
    os.environ["COLUMNS"] = "100"  # stable wrapping
    runner = CliRunner()
    parts = [
        "# Command-line reference\n\n",
        "Generated from the live `--help` by `make docs`; a test checks it is current.\n",
    ]
    for path in _paths(get_command(app), []):
        result = runner.invoke(app, [*path, "--help"], prog_name="gpuhire", env={"COLUMNS": "100"})
        title = " ".join(["gpuhire", *path])
        parts.append(f"\n## `{title}`\n\n```text\n{result.stdout.rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    print(render(), end="")
