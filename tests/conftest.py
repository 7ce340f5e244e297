"""Shared fixtures: a fresh ledger on real SQLite (and real PostgreSQL), and the CLI runner.

PostgreSQL: `scripts/test-services` starts a server on loopback and exports
GPUHIRE_TEST_PG_URL (an admin URL); each test gets a database of its own. Without it the
PostgreSQL tests are skipped locally, and fail under CI (CI=true), where they must run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger.book import Ledger
from ledger.db import open_engine

PG_ENV = "GPUHIRE_TEST_PG_URL"


@pytest.fixture(autouse=True)
def _isolate_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the real user's ledger or config: point XDG dirs and GPUHIRE_* away."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "cache"))
    for key in list(os.environ):
        if key.startswith("GPUHIRE_") and key != PG_ENV:
            monkeypatch.delenv(key)
    for key in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_db(tmp_path: Path) -> str:
    """URL of a new, empty SQLite ledger file."""
    return sqlite_url(tmp_path / "ledger.db")


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: scripts/test-services must start PostgreSQL in CI")
        pytest.skip(f"{PG_ENV} not set (run scripts/test-services)")
    return url


@pytest.fixture
def pg_db() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database on the loopback server; dropped afterwards."""
    import psycopg

    admin = _pg_admin_url()
    name = f"gpuhire_test_{uuid.uuid4().hex[:12]}"
    conninfo = admin.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = conninfo.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on a fresh SQLite file and on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "ledger.db")
    return str(request.getfixturevalue("pg_db"))


@pytest.fixture
def ledger(db_url: str) -> Ledger:
    """A fresh Ledger, on SQLite and on PostgreSQL."""
    return Ledger(open_engine(db_url))


class Cli:
    """Runs `gpuhire` in-process through typer's runner, with its own database and config."""

    def __init__(self, db: str, config: Path | None = None) -> None:
        self.db = db
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None):
        from launcher.cli import app

        full = ["--db", self.db]
        if self.config is not None:
            full += ["--config", str(self.config)]
        return self.runner.invoke(app, [*full, *args], input=input, env=env, catch_exceptions=False)


@pytest.fixture
def cli(sqlite_db: str) -> Cli:
    """`cli("ledger", "list")` -> click Result (exit_code, stdout, stderr) on a fresh SQLite."""
    return Cli(sqlite_db)
