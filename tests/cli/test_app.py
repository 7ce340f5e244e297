"""The command line as a whole: help, version, completion, errors, and what --help imports."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command

from launcher import __version__
from launcher.cli import app
from tests.conftest import Cli

ROOT = Path(__file__).parents[2]


def _all_commands() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []

    def walk(cmd: object, path: str) -> None:
        out.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, f"{path} {name}".strip())

    walk(get_command(app), "")
    return out


def test_every_command_has_help_with_an_example(cli: Cli) -> None:
    commands = _all_commands()
    assert len(commands) > 5
    for path, _cmd in commands:
        r = cli(*path.split(), "--help")
        assert r.exit_code == 0, path
        assert "Example:" in r.stdout, f"`gpuhire {path} --help` has no Example:"


def test_version(cli: Cli) -> None:
    r = cli("--version")
    assert r.exit_code == 0 and r.stdout == f"gpuhire {__version__}\n"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "launcher", *args], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=60)


def test_help_imports_no_boto3_torch_or_matplotlib() -> None:
    code = (
        "import sys\n"
        "from launcher.cli import app\n"
        "try:\n    app(['--help'], prog_name='gpuhire')\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'torch',"
        " 'matplotlib', 'paramiko'})\n"
        "print('HEAVY', heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_shell_completion_completes_commands() -> None:
    env = {"_GPUHIRE_COMPLETE": "complete_bash", "COMP_WORDS": "gpuhire led", "COMP_CWORD": "1"}
    r = subprocess.run([sys.executable, "-c", "from launcher.cli import main; main()"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, **env})
    assert "ledger" in r.stdout.split()
    env = {"_GPUHIRE_COMPLETE": "complete_bash", "COMP_WORDS": "gpuhire ledger l",
           "COMP_CWORD": "2"}
    r = subprocess.run([sys.executable, "-c", "from launcher.cli import main; main()"],
                       capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, **env})
    assert "list" in r.stdout.split()


def test_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    args = ["--db", f"sqlite:///{tmp_path}/l.db", "advise", "--card", "voodoo2"]
    r = _run(*args)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = _run(*args, env={"GPUHIRE_DEBUG": "1"})
    assert r.returncode != 0 and "Traceback" in r.stderr and "NotFoundError" in r.stderr


@pytest.mark.parametrize(("args", "line"), [
    (["ledger", "add", "--provider", "aws"],
     "error: Missing option '--gpu'; see `gpuhire ledger add --help`"),
    (["ledger", "list", "--format", "xml"],
     "error: Invalid value for '--format': Value error, 'xml' is not one of 'table', 'json', "
     "'csv'; see `gpuhire ledger list --help`"),
    (["legder", "list"], "error: No such command 'legder'. Did you mean 'ledger'? see `gpuhire --help`"),
    (["--bogus"], "error: No such option: --bogus; see `gpuhire --help`"),
])
def test_usage_errors_are_one_line_exit_2(args: list[str], line: str) -> None:
    r = _run(*args)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", line + "\n")


def test_help_still_works_and_bare_groups_show_help() -> None:
    r = _run("ledger", "add", "--help")
    assert r.returncode == 0 and r.stdout.startswith("Usage: gpuhire ledger add [OPTIONS]")
    assert "--on-demand-usd-per-hour" in r.stdout
    r = _run("ledger")
    assert r.returncode == 2 and "Commands:" in r.stdout + r.stderr and "error:" not in r.stderr


def test_unwritable_database_location_names_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = _run("--db", f"sqlite:///{blocker}/sub/l.db", "ledger", "list")
    assert r.returncode == 1
    assert "pass --db with a writable path or set GPUHIRE_DB" in r.stderr


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("jobs", {"launcher", "ledger", "paramiko"}),
    ("jobs/htr", {"boto3"}),  # boto3 only in the box-side fleet worker (jobs/fleet)
    ("ledger", {"launcher", "paramiko", "torch"}),
])
def test_imports_go_one_way(package: str, forbidden: set[str]) -> None:
    assert not (_imports(package) & forbidden)


def test_ledger_imports_boto3_only_lazily() -> None:
    for path in (ROOT / "ledger").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n.split(".")[0] in {"boto3", "botocore", "matplotlib"} for n in names), path
