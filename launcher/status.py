"""What runs now, on every provider, and stopping it: `gpuhire status` and `gpuhire stop`.

    rows, note = running_jobs(ledger, settings, aws_provider_or_None)
    stop_owned_job(ledger, settings, "train-...")   # a local or ssh job: no AWS needed

The ledger knows every job's open sessions (local, ssh, aws) and their cost so far; for AWS
the tags decide what runs (`AwsProvider.instances()`), so the AWS part needs AWS, the rest
does not. A local job's process is checked through its run directory (`runs/<job>/box`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.rundir import RunDir, RunState
from ledger.book import Ledger, SessionView
from ledger.errors import InputError, NotFoundError
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.providers.aws.provider import AwsProvider

ENDED = frozenset({"done", "failed", "stopped", "partial"})  # partial: an infer job with dead pages


@dataclass(frozen=True)
class RunningJob:
    """One machine working for a job now (docs/aws.md, `status --format json`)."""

    job: str | None
    provider: str  # aws | local | ssh | ...
    gpu: str
    instance_id: str | None  # aws only
    instance_type: str | None  # aws only
    zone: str  # aws zone; the [hosts.NAME] of an ssh job
    market: str  # spot | on-demand | owned
    state: str  # the provider's state (aws), or running / process gone (local)
    launched_at: datetime | None
    public_ip: str | None
    session_id: int | None
    usd_per_hour: Decimal | None
    usd_so_far: Decimal | None  # None: no ledger session (aws; run `gpuhire gc`)


def job_provider(ledger: Ledger, job: str) -> str | None:
    """The provider a job runs on: from its ledger row, else its open sessions."""
    try:
        provider = ledger.get_job(job).spec.get("provider")
    except NotFoundError:
        provider = None
    if isinstance(provider, str) and provider:
        return provider
    open_rows = ledger.sessions(open_only=True, job_id=job)
    return open_rows[0].session.provider if open_rows else None


def run_dir_of(ledger: Ledger, job: str, base: Path | None = None) -> RunDir | None:
    """The job's run directory (where the ledger says, or under `base`), if it can be found."""
    try:
        spec = ledger.get_job(job).spec
    except NotFoundError:
        spec = {}
    known = Path(spec["run_dir"]) if spec.get("run_dir") else None
    try:
        return RunDir.find(job, base, known)
    except (NotFoundError, InputError):  # none, or its state file is damaged (RunDir.find)
        return None


def _local_state(ledger: Ledger, view: SessionView) -> str:
    run = run_dir_of(ledger, view.session.job_id or "")
    if run is None or not (run.path / "box").is_dir():
        return "running"
    from launcher.providers.hosts import LocalHost

    alive = LocalHost(run.path / "box").running("train.pid")
    return "running" if alive else "process gone (gpuhire resume JOB)"


def _owned_row(ledger: Ledger, view: SessionView) -> RunningJob:
    s = view.session
    state = _local_state(ledger, view) if s.provider == "local" else "running"
    market = "owned" if s.owned else (s.market or "")
    return RunningJob(s.job_id, s.provider, s.gpu_model, None, None, s.zone or "", market,
                      state, s.start_at, None, s.id, view.usd_per_hour, view.cost.total_usd)


def _aws_rows(ledger: Ledger, provider: AwsProvider) -> list[RunningJob]:
    sessions = {
        v.session.instance_id: v for v in ledger.sessions(open_only=True)
        if v.session.provider == "aws" and v.session.instance_id
    }
    rows = []
    for i in provider.instances():
        if i.state.gone:
            continue
        view = sessions.get(i.instance_id)
        rows.append(RunningJob(
            i.job_id, "aws", view.session.gpu_model if view else "", i.instance_id, i.instance_type,
            i.zone, str(i.market), str(i.state), i.launched_at, i.public_ip,
            view.session.id if view else None, view.usd_per_hour if view else None,
            view.cost.total_usd if view else None,
        ))
    return rows


def running_jobs(ledger: Ledger, aws: AwsProvider | None) -> tuple[list[RunningJob], str | None]:
    """Every provider's running jobs with their cost so far, and a note when AWS could not be
    asked (its open sessions are then listed from the ledger, state unknown)."""
    from launcher.errors import GpuhireError

    open_views = ledger.sessions(open_only=True)
    rows = [_owned_row(ledger, v) for v in open_views if v.session.provider != "aws" and v.session.job_id]
    note = None
    aws_rows: list[RunningJob] = []
    if aws is not None:
        try:
            aws_rows = _aws_rows(ledger, aws)
        except GpuhireError as exc:
            note = (f"AWS could not be reached: {exc.message}; {exc.fix}. "
                    "Its jobs are listed from the ledger")
            aws = None
    if aws is None:  # what the ledger says runs on AWS (nothing to ask, or no answer)
        aws_rows = [
            RunningJob(s.job_id, "aws", s.gpu_model, s.instance_id, s.instance_type, s.zone or "",
                       s.market or "", "unknown (AWS not asked)", s.start_at, None, s.id,
                       v.usd_per_hour, v.cost.total_usd)
            for v in open_views if (s := v.session).provider == "aws" and s.instance_id
        ]
    return aws_rows + rows, note


def stop_owned_job(ledger: Ledger, settings: Settings, job: str, runs: Path | None = None) -> str:
    """Stop a local or ssh job without AWS: SIGTERM its process (it checkpoints), close its
    open sessions (reason `user`) and mark the job stopped. Returns what was done, in words."""
    run = run_dir_of(ledger, job, runs)
    state = run.load() if run is not None else None
    signalled = False
    if run is not None and state is not None:
        signalled = _signal(ledger, settings, state, run)
    closed = 0
    for view in ledger.sessions(open_only=True, job_id=job):
        if view.session.id is not None:
            ledger.end_session(view.session.id, utcnow(), "user")
            closed += 1
    mark_stopped(ledger, job, run)
    what = "process signalled" if signalled else "no process found"
    return f"{job}: {what}, {closed} session(s) closed"


def _signal(ledger: Ledger, settings: Settings, state: RunState, run: RunDir) -> bool:
    if state.provider == "local":
        from launcher.providers.hosts import LocalHost

        box = run.path / "box"
        if not box.is_dir():
            return False
        host = LocalHost(box)
        alive = host.running("train.pid")
        host.signal("train.pid")
        return alive
    if state.provider == "ssh":
        from launcher.providers.ssh import SshRenter

        name = state.machine.get("host") or settings.train.host
        if not name or name not in settings.hosts:
            return False
        renter = SshRenter(ledger, name, settings.hosts[name], settings.ownership.usd_per_kwh,
                           settings.billing_rules("ssh"))
        machine = renter.reattach(state)
        if machine is None:
            return False
        alive = machine.host.running("train.pid")
        machine.release("user")  # signals a running job, closes the link and the session
        return alive
    return False


def mark_stopped(ledger: Ledger, job: str, run: RunDir | None = None) -> None:
    """The job ended by the user's hand: in the ledger and in its run state (so a launcher
    still following it settles instead of relaunching)."""
    try:
        current = ledger.get_job(job)
    except NotFoundError:
        current = None
    if current is not None and current.status not in ENDED:
        ledger.update_job(job, status="stopped", ended_at=utcnow())
    if run is not None:
        state = run.load()
        if state.status not in ENDED:
            state.status = "stopped"
            run.save(state)


def stopped_elsewhere(ledger: Ledger, job: str) -> bool:
    """Whether `gpuhire stop` ended the job from another process."""
    try:
        return ledger.get_job(job).status == "stopped"
    except NotFoundError:
        return False
