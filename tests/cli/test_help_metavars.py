"""Every --help names its values for people (`--month YYYY-MM`, `DATA...`), never by Python type
(`<str>`, `<list[Path]>`); options with a fixed set of values list them and complete them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from launcher.cli import app

ROOT = Path(__file__).parents[2]

# How typer writes a parameter's Python type when no metavar is given.
TYPE_NAMES = re.compile(
    r"<(?:str|int|float|bool|path|Path|text|file|dir|uuid|datetime|int range|float range)>"
    r"|list\[|tuple\[|<[a-z|]+ range>"
)


def _commands() -> list[tuple[list[str], Any]]:
    found: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append((path, cmd))
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


def _help(path: list[str]) -> str:
    r = CliRunner().invoke(app, [*path, "--help"], prog_name="gpuhire", env={"COLUMNS": "100"})
    assert r.exit_code == 0, (path, r.output)
    return r.stdout


def _params(kind: str) -> list[tuple[str, Any, Any]]:
    """(command path, command, parameter) for every argument or option that takes a value."""
    out = []
    for path, cmd in _commands():
        for p in cmd.params:
            if p.param_type_name == kind and not getattr(p, "is_flag", False) and p.name != "help":
                out.append((" ".join(["gpuhire", *path]), cmd, p))
    return out


def _choices(metavar: str) -> list[str] | None:
    """`t4|l4|auto` -> its values; `DIR`, `YYYY-MM` -> None."""
    return metavar.split("|") if "|" in metavar else None


def _completions(cmd: Any, param: Any, incomplete: str = "") -> list[str]:
    ctx = cmd.make_context(cmd.name, [], resilient_parsing=True)
    return [item.value for item in param.shell_complete(ctx, incomplete)]


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "gpuhire")
def test_help_shows_no_python_types(path: list[str]) -> None:
    text = _help(path)
    found = TYPE_NAMES.findall(text)
    assert not found, f"`gpuhire {' '.join(path)} --help` shows {found}:\n{text}"


def test_every_value_has_a_metavar_for_people() -> None:
    params = _params("option") + _params("argument")
    assert len(params) > 40
    for where, cmd, p in params:
        ctx = cmd.make_context(cmd.name, [], resilient_parsing=True)
        record = p.get_help_record(ctx)
        assert record is not None, (where, p.name)
        shown = record[0]
        assert p.metavar, f"{where} {p.name} has no metavar"
        assert "<" not in shown and "[" not in shown, f"{where}: {shown!r}"
        if p.param_type_name == "argument":
            assert p.metavar.isupper() or "." in p.metavar, f"{where}: {shown!r}"
            assert shown.endswith("...") == (p.nargs != 1), f"{where}: {shown!r}"


@pytest.mark.parametrize(("path", "line"), [
    (["ledger", "list"], "--month YYYY-MM"),
    (["report"], "--month YYYY-MM"),
    (["advise"], "--as-of YYYY-MM-DD"),
    (["train"], "--max-usd USD"),
    (["train"], "--epochs N"),
    (["train"], "--out DIR"),
    (["train"], "DATA..."),
    (["train"], "--gpu t4|l4|auto"),
    (["train"], "--provider auto|local|ssh|aws"),
    (["infer"], "PAGES..."),
    (["infer"], "--gpu none|auto|t4|l4"),
    (["infer"], "--instances N"),
    (["infer"], "--fleet aws|local"),
    (["offers"], "--gpu t4|l4"),
    ([], "--db URL"),
    ([], "--config FILE"),
])
def test_metavars_read_as_meant(path: list[str], line: str) -> None:
    assert re.search(rf"^  {re.escape(line)}(  |$)", _help(path), re.MULTILINE), (path, line)


def test_format_reads_the_same_everywhere() -> None:
    seen = []
    for where, cmd, p in _params("option"):
        if "--format" not in p.opts:
            continue
        seen.append(where)
        choices = _choices(p.metavar)
        assert choices and all(re.fullmatch(r"[a-z]+", c) for c in choices), f"{where}: {p.metavar}"
        assert _completions(cmd, p) == choices, where
        help_line = next(ln for ln in _help(where.split()[1:]).splitlines()
                         if ln.strip().startswith("--format"))
        assert help_line.split()[:2] == ["--format", p.metavar], (where, help_line)
    assert {"gpuhire cards", "gpuhire infer", "gpuhire advise", "gpuhire report",
            "gpuhire ledger list", "gpuhire alerts list", "gpuhire status"} <= set(seen)


def test_every_listed_choice_completes() -> None:
    """An option whose metavar lists its values completes exactly those values."""
    checked = 0
    for where, cmd, p in _params("option"):
        choices = _choices(p.metavar)
        if choices is None:
            continue
        checked += 1
        assert sorted(_completions(cmd, p)) == sorted(choices), f"{where} {p.opts[0]}"
        first = choices[0]
        assert _completions(cmd, p, first[:1]) == [c for c in choices if c.startswith(first[:1])]
    assert checked >= 12


def test_choices_come_from_the_constants_the_code_checks() -> None:
    from launcher.infer.plan import CHOICES
    from launcher.providers.factory import PROVIDERS
    from ledger.catalogue import BUILTIN_CARDS, RENTED_GPUS
    from ledger.costs import END_REASONS, MARKETS

    want = {
        ("gpuhire train", "--provider"): {"auto", *PROVIDERS},
        ("gpuhire train", "--gpu"): {"auto", *RENTED_GPUS},
        ("gpuhire infer", "--gpu"): set(CHOICES),
        ("gpuhire offers", "--gpu"): set(RENTED_GPUS),
        ("gpuhire ledger add", "--market"): set(MARKETS),
        ("gpuhire ledger add", "--end-reason"): set(END_REASONS),
        ("gpuhire advise", "--card"): set(BUILTIN_CARDS),
        ("gpuhire report", "--card"): set(BUILTIN_CARDS),
    }
    got = {(where, p.opts[0]): set(_completions(cmd, p)) for where, cmd, p in _params("option")
           if (where, p.opts[0]) in want}
    assert got == want


def _complete(line: str) -> list[str]:
    """What bash completion offers for `line` (a trailing space: a new, empty word)."""
    words = line.split()
    cword = len(words) if line.endswith(" ") else len(words) - 1
    env = {**os.environ, "_GPUHIRE_COMPLETE": "complete_bash", "COMP_WORDS": line,
           "COMP_CWORD": str(cword)}
    r = subprocess.run([sys.executable, "-m", "launcher"], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


@pytest.mark.parametrize(("line", "offered"), [
    ("gpuhire train --provider ", ["auto", "local", "ssh", "aws"]),
    ("gpuhire train --gpu ", ["t4", "l4", "auto"]),
    ("gpuhire train gt/ --provider l", ["local"]),
    ("gpuhire infer --gpu ", ["none", "auto", "t4", "l4"]),
    ("gpuhire infer --fleet ", ["aws", "local"]),
    ("gpuhire infer --format ", ["text", "json"]),
    ("gpuhire offers --gpu ", ["t4", "l4"]),
    ("gpuhire ledger list --format ", ["table", "json", "csv"]),
])
def test_shell_completion_offers_the_values(line: str, offered: list[str]) -> None:
    assert _complete(line) == offered


def test_completion_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from launcher.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'boto3', 'botocore', 'torch',"
        " 'matplotlib', 'paramiko'})\n"
        "print('HEAVY', heavy)\n"
    )
    env = {**os.environ, "_GPUHIRE_COMPLETE": "complete_bash",
           "COMP_WORDS": "gpuhire train --provider ", "COMP_CWORD": "3"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=env, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert "local" in r.stdout.split()
