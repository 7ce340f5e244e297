"""A job's run directory, `runs/<job>/`, and the state that lets `gpuhire resume` pick it up.

    runs/<job>/state.json     what the launcher knows: provider, machine, remote paths, offsets
    runs/<job>/dataset/       the compiled ground truth that was shipped
    runs/<job>/run/           the trainer's output mirrored back (checkpoints, model, metrics)
    runs/<job>/events.jsonl   every event the trainer emitted, in order
    runs/<job>/train.log      the trainer's own log
    runs/<job>/model.pt       the final model, once fetched (crnn engine); a kraken-engine job
                              brings model.safetensors and model.mlmodel (CoreML) instead
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from launcher.providers.base import JobRef
from ledger.errors import InputError, NotFoundError


def new_job_id(kind: str = "train") -> str:
    """A readable, sortable, unique job id: train-20261122-140233-a3f9c1 (two jobs started in
    the same second differ by the random part)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(3)}"


@dataclass
class RunState:
    """Everything needed to reattach to or resume a job after the launcher died."""

    job: str
    provider: str
    gpu: str
    data: list[str]
    preset: str
    epochs: int | None
    max_restarts: int
    max_usd: str | None = None
    market: str = "spot"  # spot | on-demand | owned: `resume` rents the same way again
    attempt: int = 0
    # created | running | interrupted | over-budget | done | failed | stopped; `resume` goes on
    # from any but the last three (interrupted: out of restarts; over-budget: past --max-usd)
    status: str = "created"
    session_id: int | None = None
    machine: dict[str, Any] = field(default_factory=dict)  # provider-specific: instance id, ssh
    workdir: str = ""  # on the host
    event_offset: int = 0
    log_offset: int = 0
    engine: str = "crnn"  # crnn | kraken: a state file without it is a CRNN job's
    kraken_spec: str | None = None  # --kraken-spec, passed again on every attempt

    def ref(self) -> JobRef:
        """What a provider needs to find the job's machine again."""
        return JobRef(self.job, self.session_id, dict(self.machine))


class RunDir:
    """The folder of one job on the operator's machine."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def find(cls, job: str, base: Path | None = None, known: Path | None = None) -> RunDir:
        """The run directory of `job`: where the ledger says (`known`), BASE/<job>, BASE
        itself, or any BASE/*/ holding that job's state.json."""
        root = base or Path.cwd() / "runs"
        candidates = [p for p in (known, root / job, root) if p is not None]
        if root.is_dir():
            candidates += sorted(root.glob("*/state.json"))
        damaged: list[tuple[Path, str]] = []
        for candidate in candidates:
            folder = candidate.parent if candidate.name == "state.json" else candidate
            try:
                if job_of(folder) == job:
                    return cls(folder)
            except InputError as exc:
                damaged.append((folder, exc.message))
        # A damaged state file where this job's should be is the answer, not "no directory".
        for folder, why in damaged:
            if folder.name == job or folder == known:
                raise InputError(why, f"repair it (JSON, see docs/train.md), or end the job with "
                                      f"`gpuhire stop {job}`")
        if damaged:
            maybe = ", ".join(str(f / "state.json") for f, _ in damaged[:3])
            raise NotFoundError(f"no run directory for job {job!r} under {root} "
                                f"(unreadable, it may be one of: {maybe})",
                                "repair that state file (JSON, see docs/train.md)")
        raise NotFoundError(
            f"no run directory for job {job!r} under {root}",
            "run the command from the folder you started the job in, or pass --runs DIR",
        )

    def check_new(self, job: str) -> None:
        """Refuse a folder the new job `job` cannot use: a file, or another job's folder
        (reusing it would replace that job's state and replay its events and model as the
        new job's)."""
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"the run folder {self.path} is a file",
                             "pick another --out (a new or empty folder)")
        try:
            other = job_of(self.path)
        except InputError as exc:
            raise InputError(exc.message, "pick another --out (or repair that file)") from None
        if other is not None and other != job:
            status = _status_of(self.path)
            if status in ("done", "failed"):  # `resume` refuses those: do not send the user there
                raise InputError(f"the run folder {self.path} holds job {other}, which ended ({status})",
                                 "pick another --out (a new or empty folder)")
            raise InputError(f"the run folder {self.path} holds job {other}",
                             f"pick another --out, or `gpuhire resume {other}` to continue that job")

    def create(self, job: str) -> bool:
        """Make the folder for the new job `job` (see `check_new`); True when it is new."""
        self.check_new(job)
        try:
            self.path.mkdir(parents=True)
        except FileExistsError:
            return False
        except OSError as exc:
            raise InputError(f"cannot create the run folder {self.path}: {exc.strerror}",
                             "pick another --out") from None
        return True

    @property
    def dataset(self) -> Path:
        return self.path / "dataset"

    @property
    def run(self) -> Path:
        return self.path / "run"

    @property
    def events(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log(self) -> Path:
        return self.path / "train.log"

    @property
    def model(self) -> Path:
        return self.path / "model.pt"

    def models(self, names: tuple[str, ...]) -> list[Path]:
        """The final model files `names` (launcher/train/engine.py MODEL_FILES) that are here."""
        return [self.path / n for n in names if (self.path / n).is_file()]

    def save(self, state: RunState) -> None:
        tmp = self.path / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.path / "state.json")

    def load(self) -> RunState:
        path = self.path / "state.json"
        why: str | None
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
        except OSError as exc:
            why = exc.strerror or str(exc)
        except UnicodeDecodeError as exc:
            why = f"not UTF-8 text, byte {exc.start}"
        except (ValueError, RecursionError) as exc:  # JSONDecodeError; a file nested too deep
            why = f"not JSON: {' '.join(str(exc).split())}"
        else:
            why = _state_problem(raw)
            if why is None:
                return RunState(**raw)
        raise InputError(
            f"{path} is unreadable ({why})",
            "the run directory is damaged; check `gpuhire status` and the ledger",
        )

    def log_path(self) -> Path | None:
        """The log to print: the settled copy, else the newest attempt's log on this machine."""
        candidates = [self.log, *sorted((self.path / "box").glob("train-*.log"), reverse=True)]
        return next((p for p in candidates if p.exists()), None)

    def empty_log_note(self, path: Path) -> str:
        """What to say when the trainer's log is empty: where the job's events are instead."""
        from launcher.train.events import EventReader

        events = EventReader().feed(self.events.read_bytes()) if self.events.exists() else []
        if not events:
            return f"note: {path} is empty and the job has sent no events yet ({self.events})"
        last = events[-1]
        return (f"note: {path} is empty; the job's {len(events)} event(s) are in {self.events} "
                f"(the last: {last.get('event', '?')} at {last.get('time', '?')})")

    def append_events(self, data: bytes) -> None:
        with self.events.open("ab") as fh:
            fh.write(data)


def _state_problem(raw: object) -> str | None:
    """What is wrong with a parsed state.json (a key missing, unknown or of the wrong type);
    None when it makes a RunState."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    wanted = {f.name: f for f in fields(RunState)}
    unknown = sorted(set(raw) - set(wanted))
    if unknown:
        return f"unknown key(s): {', '.join(unknown)[:100]}"
    missing = [n for n, f in wanted.items()
               if n not in raw and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        return f"missing key(s): {', '.join(missing)}"
    for name, value in raw.items():
        kinds = _STATE_TYPES.get(name, (object,))  # a field added later: any JSON value
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if ok and name == "data":
            ok = all(isinstance(v, str) for v in value)
        if not ok:
            return f"{name!r} has the wrong type"
    return None


# The JSON types each RunState field may hold (None where the field is optional).
_STATE_TYPES: dict[str, tuple[type, ...]] = {
    "job": (str,), "provider": (str,), "gpu": (str,), "data": (list,), "preset": (str,),
    "epochs": (int, type(None)), "max_restarts": (int,), "max_usd": (str, type(None)),
    "market": (str,), "attempt": (int,), "status": (str,), "session_id": (int, type(None)),
    "machine": (dict,), "workdir": (str,), "event_offset": (int,), "log_offset": (int,),
    "engine": (str,), "kraken_spec": (str, type(None)),
}


def _status_of(folder: Path) -> str | None:
    """The status word in `folder`'s state.json (whose job `job_of` already read), if any."""
    try:
        raw = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    status = raw.get("status") if isinstance(raw, dict) else None
    return status if isinstance(status, str) else None


def job_of(folder: Path) -> str | None:
    """The job whose state.json `folder` holds; None when it holds none. InputError when
    the state file is there but unreadable (so no caller mistakes it for a free folder)."""
    path = folder / "state.json"
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InputError(f"the state file {path} is unreadable ({exc.strerror})",
                         "check its permissions") from None
    try:
        raw = json.loads(data.decode("utf-8"))
        job = raw.get("job") if isinstance(raw, dict) else None
        if not isinstance(job, str):
            raise ValueError("no job id in it")
    except UnicodeDecodeError as exc:
        raise InputError(f"the state file {path} is unreadable (not UTF-8 text, byte {exc.start})",
                         "repair it (JSON, see docs/train.md)") from None
    except (ValueError, RecursionError) as exc:
        why = " ".join(str(exc).split())
        raise InputError(f"the state file {path} is unreadable ({why})",
                         "repair it (JSON, see docs/train.md)") from None
    return job
