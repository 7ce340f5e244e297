"""The trainer's event stream: one JSON object per line, on stdout or in `--events FILE`.

Every event carries `event`, `time` (UTC ISO 8601), `job` and `schema` (the version of
events.schema.json). The events and their fields are documented in docs/events.md; the
launcher (launcher/train/events.py) folds them into a job's progress.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("events.schema.json")
EVENTS = ("start", "progress", "epoch", "checkpoint", "interrupted", "done", "error")


def utc_now_iso() -> str:
    """Now in UTC, ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# Not `progress` (every few seconds: too chatty) nor `error` (python -m jobs.htr prints it itself).
LOGGED = ("start", "epoch", "checkpoint", "interrupted", "done")


def log_line(record: dict[str, Any]) -> str:
    """One readable line for the trainer's log: `2026-11-30T04:12:05.120Z epoch: epoch 3, val_cer
    0.12, ...` (the scalar fields, in the order the event has them)."""
    skip = {"event", "time", "job", "schema"}
    values = {k: _plain(v) if hasattr(v, "item") else v for k, v in record.items() if k not in skip}
    shown = [f"{k} {v}" for k, v in values.items() if v is None or isinstance(v, str | int | float)]
    return f"{record['time']} {record['event']}: {', '.join(shown)}"


class EventWriter:
    """Writes events to a file (appended, flushed per line) or stdout; `enabled=False` drops them
    (DDP ranks other than 0). With a file, the events that matter to a reader also go to `log`
    (stderr: the trainer's log, `gpuhire logs JOB`) as one readable line each."""

    def __init__(self, job: str, path: Path | None = None, *, enabled: bool = True,
                 log: IO[str] | None = None) -> None:
        self.job = job
        self.path = path
        self.enabled = enabled
        self.log = log if log is not None else (sys.stderr if path is not None else None)
        self._fh: IO[str] | None = None

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one event; returns it."""
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        record = {"event": event, "time": utc_now_iso(), "job": self.job, "schema": SCHEMA_VERSION, **fields}
        if self.enabled:
            line = json.dumps(record, ensure_ascii=False, allow_nan=False, default=_plain) + "\n"
            fh = self._open()
            fh.write(line)
            fh.flush()
            if self.log is not None and event in LOGGED:
                print(log_line(record), file=self.log, flush=True)
        return record

    def _open(self) -> IO[str]:
        if self._fh is None:
            if self.path is None:
                self._fh = sys.stdout
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        return self._fh

    def close(self) -> None:
        """Close the file (stdout stays open)."""
        if self._fh is not None and self._fh is not sys.stdout:
            self._fh.close()
        self._fh = None


def _plain(value: Any) -> Any:
    """numpy scalars and paths as JSON."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


@cache
def load_schema() -> dict[str, Any]:
    """The JSON schema of one event (events.schema.json)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_event(record: dict[str, Any]) -> list[str]:
    """Problems of one event against the schema ([] = valid). Uses `jsonschema`."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema())
    return [f"{'/'.join(str(p) for p in e.absolute_path) or '(event)'}: {e.message}"
            for e in validator.iter_errors(record)]


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event in a JSON-lines file (lines that are not JSON objects are skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out
