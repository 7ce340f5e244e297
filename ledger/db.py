"""Opening the ledger: engine, SQLite pragmas, and schema migrations on open.

`open_engine(url)` returns an engine whose schema is at the newest revision: a new database is
created, an old one upgraded (alembic, ledger/migrations). SQLite runs in WAL mode with foreign
keys on and a busy timeout, and write transactions take the write lock up front
(`BEGIN IMMEDIATE`) so that two processes recording at once wait for each other instead of
failing; PostgreSQL serialises migrations with an advisory lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import platformdirs
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ledger.errors import LedgerError

HEAD = "0003"  # newest revision in ledger/migrations/versions; checked by a test
_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x67707568  # "gpuh": one advisory lock for schema upgrades


def default_url() -> str:
    """SQLite in the user's data directory."""
    path = Path(platformdirs.user_data_dir("gpuhire")) / "ledger.db"
    return f"sqlite:///{path}"


def masked(url: str | URL) -> str:
    """A URL safe to show: the password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def _normalise(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise LedgerError(
            f"{url!r} is not a database URL",
            "use e.g. sqlite:///path/to/ledger.db or postgresql://user@host/dbname",
        ) from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """An engine on the ledger at `url` (default SQLite), schema brought up to date."""
    parsed = _normalise(url or default_url())
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db_path = Path(parsed.database)
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                f"cannot create the ledger's folder {db_path.parent}: {exc.strerror}",
                "pass --db with a writable path or set GPUHIRE_DB",
            ) from exc
    try:
        engine = create_engine(parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite")
    except (SQLAlchemyError, ImportError) as exc:
        raise LedgerError(
            f"cannot open the ledger at {masked(parsed)}: {_one_line(exc)}",
            "check the --db URL (e.g. postgresql://user@host/dbname) and that its driver is installed",
        ) from exc
    if engine.dialect.name == "sqlite":
        _sqlite_pragmas(engine)
    if migrate:
        upgrade(engine)
    return engine


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema. Cheap when already at HEAD (no alembic import)."""
    try:
        if revision == "head" and current_revision(engine) == HEAD:
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
            try:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                conn.commit()
            finally:
                if engine.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                    conn.commit()
    except SQLAlchemyError as exc:
        raise LedgerError(
            f"cannot open or upgrade the ledger at {masked(engine.url)}: "
            f"{exc.__class__.__name__}: {_one_line(exc.orig if hasattr(exc, 'orig') else exc)}",
            "check the --db URL, that the server is running and that you may write to it",
        ) from exc


def _one_line(exc: object, limit: int = 300) -> str:
    """A driver's message on one line: psycopg's spans lines ("...refused\n\tIs the server
    running on that host...?"), and an error must be one line on stderr."""
    flat = " ".join(str(exc).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
