"""Opening the ledger: engine, SQLite pragmas, and schema migrations on open.

`open_engine(url)` returns an engine whose schema is at the newest revision: a new database is
created, an old one upgraded (alembic, ledger/migrations). SQLite runs in WAL mode with foreign
keys on and a busy timeout, and write transactions take the write lock up front
(`BEGIN IMMEDIATE`) so that two processes recording at once wait for each other instead of
failing; PostgreSQL serialises migrations with an advisory lock.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from ledger.errors import LedgerError

HEAD = "0004"  # newest revision in ledger/migrations/versions; checked by a test
_MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x67707568  # "gpuh": one advisory lock for schema upgrades
BUSY_TIMEOUT_S = 30  # a SQLite writer waits this long for another writer before failing


def default_url() -> str:
    """SQLite in the user's data directory."""
    path = Path(platformdirs.user_data_dir("gpuhire")) / "ledger.db"
    return f"sqlite:///{path}"


def masked(url: str | URL) -> str:
    """A URL safe to show: the password replaced by ***."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "<unparseable database URL>"
    if parsed.get_backend_name() == "sqlite":  # no password; keep `file:` readable, not %3A
        query = "&".join(f"{k}={v if isinstance(v, str) else ','.join(v)}"
                         for k, v in parsed.query.items())
        return f"{parsed.drivername}:///{parsed.database or ''}" + (f"?{query}" if query else "")
    return parsed.render_as_string(hide_password=True)


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


def _sqlite_pragmas(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL (None for `:memory:`); an empty path is refused, since the
    ledger would live in memory and every row recorded would be lost on exit."""
    database = parsed.database or ""
    if not database:
        raise LedgerError(
            f"the database URL {masked(parsed)!r} names no file (SQLite would keep the ledger "
            "in memory and lose it)",
            "give a path, e.g. --db sqlite:///ledger.db or sqlite:////home/me/ledger.db",
        )
    if database == ":memory:":
        return None
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):  # sqlite:///file:PATH?uri=true
        path = urlsplit(database).path if database.startswith("file:") else database
        return Path(path) if path and path != ":memory:" else None
    return Path(database)


def open_engine(
    url: str | None = None, *, migrate: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> Engine:
    """An engine on the ledger at `url` (default SQLite), schema brought up to date.

    A SQLite writer waits `busy_timeout_s` for another one to finish before failing."""
    parsed = _normalise(url or default_url())
    db_path = _sqlite_file(parsed) if parsed.get_backend_name() == "sqlite" else None
    if db_path is not None and url is not None and not db_path.parent.is_dir():
        # A URL the user gave: a missing folder is a typo far more often than a wish, and
        # creating it would show a mistyped path as a real, empty ledger.
        raise LedgerError(
            f"the ledger's folder {db_path.parent} does not exist (is the --db or GPUHIRE_DB "
            "path mistyped?)",
            "check the path, create the folder first, or pass --db with a writable path or "
            "set GPUHIRE_DB",
        )
    if db_path is not None:  # the default ledger: its data folder is made on first use
        try:
            db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise disk_full(parsed, "open") from exc
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
        _sqlite_pragmas(engine, busy_timeout_s)
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
        if isinstance(exc, OperationalError) and (known := _known_failure(exc, engine.url, "open")):
            raise known from exc  # read-only, locked, disk full, cannot open: say which
        raise LedgerError(
            f"cannot open or upgrade the ledger at {masked(engine.url)}: "
            f"{exc.__class__.__name__}: {_one_line(exc.orig if hasattr(exc, 'orig') else exc)}",
            "check the --db URL, that the server is running and that you may write to it",
        ) from exc


Action = Literal["open", "read", "write"]

# What could not happen, per action: a read must not say "nothing was recorded".
_NOT_DONE: dict[str, str] = {
    "open": "so it cannot be opened",
    "read": "so it cannot be read",
    "write": "so nothing was recorded",
}


def write_error(exc: OperationalError, url: URL, action: Action = "write") -> LedgerError:
    """What a failed read or write of the ledger means, and the fix, as a LedgerError.

    SQLite reports a read-only file, a lock held past the busy timeout, a full disk and a file
    it cannot open as OperationalErrors; so does PostgreSQL for a lost connection or a full
    disk. `action` says what failed, so a read is not told that nothing was recorded."""
    detail = _one_line(exc.orig if exc.orig is not None else exc)
    return _known_failure(exc, url, action) or LedgerError(
        f"cannot use the ledger at {masked(url)}: {detail}",
        "check the --db URL, that the server is running and that you may write to it",
    )


def disk_full(url: str | URL, action: Action = "write") -> LedgerError:
    """The disk under the ledger is full (SQLite's "database or disk is full", ENOSPC)."""
    return LedgerError(
        f"the disk holding the ledger at {masked(url)} is full, {_NOT_DONE[action]}",
        "free space on that disk (or pass --db with a ledger on another disk), then run this "
        "again",
    )


def _known_failure(exc: OperationalError, url: URL, action: Action = "write") -> LedgerError | None:
    """The failures a user can fix themselves, or None."""
    where = masked(url)
    low = str(exc.orig if exc.orig is not None else exc).lower()
    if "readonly database" in low or "read-only" in low:
        if action == "write":
            return LedgerError(
                f"the ledger at {where} is read-only, so nothing was recorded",
                "make the file and its folder writable (and drop mode=ro from the URL), "
                "or pass --db with a ledger you may write to",
            )
        return LedgerError(
            f"the ledger at {where} is read-only, {_NOT_DONE[action]} (SQLite writes its -wal "
            "and -shm files next to it even to read)",
            "make the file and its folder writable (and drop mode=ro from the URL), "
            "or pass --db with a ledger you may write to",
        )
    if "database or disk is full" in low or "no space left on device" in low or (
        "disk full" in low
    ):
        return disk_full(url, action)
    if "database is locked" in low or "database table is locked" in low:
        return LedgerError(
            f"the ledger at {where} stayed locked by another process past the busy timeout, "
            f"{_NOT_DONE[action]}",
            "wait for the other gpuhire command to finish (or stop it), then run this again",
        )
    if "unable to open database file" in low:
        return LedgerError(
            f"cannot open the ledger file at {where}",
            "check that its folder exists and that you may write to it (SQLite writes "
            "-wal and -shm files next to it), or pass --db with another path",
        )
    return None


def _one_line(exc: object, limit: int = 300) -> str:
    """A driver's message on one line: psycopg's spans lines ("...refused\n\tIs the server
    running on that host...?"), and an error must be one line on stderr."""
    flat = " ".join(str(exc).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
