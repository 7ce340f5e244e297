"""`make test` (the README's test command) fails when scripts/test-services fails, and CI runs it
with CI=true so that the PostgreSQL, sshd and Chromium tests cannot skip silently.

The real Makefile runs in a scratch copy of the checkout where the virtualenv's tools and
scripts/test-services are stand-ins that record their calls.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _stub(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("")
    stamp = tmp_path / ".venv" / ".installed"
    stamp.parent.mkdir()
    stamp.touch()
    os.utime(tmp_path / "pyproject.toml", (0, 0))  # older than the stamp: no install
    log = tmp_path / "calls.log"
    for tool in ("ruff", "mypy"):
        _stub(tmp_path / ".venv" / "bin" / tool, "exit 0")
    _stub(tmp_path / ".venv" / "bin" / "python", f'echo "pytest PG=$GPUHIRE_TEST_PG_URL" >> {log}')
    return tmp_path


def _make_test(checkout: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "GPUHIRE_"))}
    return subprocess.run(["make", "-s", "test"], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=60)


def test_make_test_runs_pytest_with_the_services_exports(checkout: Path) -> None:
    _stub(checkout / "scripts" / "test-services",
          "echo 'export GPUHIRE_TEST_PG_URL=postgresql://gpuhire@127.0.0.1:5999/postgres'")
    r = _make_test(checkout)
    assert r.returncode == 0, r.stderr
    calls = (checkout / "calls.log").read_text()
    assert calls == "pytest PG=postgresql://gpuhire@127.0.0.1:5999/postgres\n"


def test_make_test_fails_when_test_services_fails(checkout: Path) -> None:
    _stub(checkout / "scripts" / "test-services", "echo 'apt-get failed' >&2; exit 1")
    r = _make_test(checkout)
    assert r.returncode != 0
    assert "scripts/test-services failed" in r.stderr
    assert not (checkout / "calls.log").exists()  # pytest never ran


def test_ci_runs_make_test_with_ci_true() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    run = lines.index("make test")
    assert "export CI=true" in lines[:run]
