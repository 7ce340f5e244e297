"""What runs now, on every provider, and stopping it: `gpuhire status` and `gpuhire stop`.

    rows, note = running_jobs(ledger, settings, aws_provider_or_None)
    stop_owned_job(ledger, settings, "train-...")   # a local or ssh job: no AWS needed
    JobLog(ledger, settings, "train-...").chunks(follow=True)   # `gpuhire logs JOB -f`

The ledger knows every job's open sessions (local, ssh, aws) and their cost so far; for AWS
the tags decide what runs (`AwsCloud.instances()`), so the AWS part needs AWS, the rest
does not. Open sessions of no job (recorded by hand without an end) are listed too, job
None: the books cost them up to now. A local job's process is checked through its run
directory (`runs/<job>/box`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
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
    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.base import Host

ENDED = frozenset({"done", "failed", "stopped", "partial"})  # partial: an infer job with dead pages
REMOTE_TRY_S = 20.0  # `logs -f`: how long one poll may try to reach a job's box


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


def known_run_dir(ledger: Ledger, job: str) -> Path | None:
    """Where the ledger says the job's run directory is (any folder it was started from)."""
    try:
        spec = ledger.get_job(job).spec
    except NotFoundError:
        return None
    return Path(spec["run_dir"]) if spec.get("run_dir") else None


def find_run_dir(ledger: Ledger, job: str, base: Path | None = None) -> RunDir:
    """The job's run directory: where the ledger says, or under `base` (errors name the fix)."""
    return RunDir.find(job, base, known_run_dir(ledger, job))


def run_dir_of(ledger: Ledger, job: str, base: Path | None = None) -> RunDir | None:
    """The job's run directory (where the ledger says, or under `base`), if it can be found."""
    try:
        return find_run_dir(ledger, job, base)
    except (NotFoundError, InputError):  # none, or its state file is damaged (RunDir.find)
        return None


def _local_state(ledger: Ledger, view: SessionView) -> str:
    run = run_dir_of(ledger, view.session.job_id or "")
    if run is None or not (run.path / "box").is_dir():
        return "running"
    from launcher.providers.local import LocalHost

    alive = LocalHost(run.path / "box").running("train.pid")
    return "running" if alive else "process gone (gpuhire resume JOB)"


def job_ended(run: RunDir) -> bool:
    """Settled by its launcher, or (local) its process gone with no launcher to settle it."""
    from launcher.providers.local import LocalHost

    state = run.load()
    if state.status in ("done", "failed", "stopped"):
        return True
    box = run.path / "box"
    return state.provider == "local" and state.status == "running" and box.is_dir() \
        and not LocalHost(box).running("train.pid")


def _owned_row(ledger: Ledger, view: SessionView) -> RunningJob:
    s = view.session
    state = _local_state(ledger, view) if s.provider == "local" else "running"
    market = "owned" if s.owned else (s.market or "")
    return RunningJob(s.job_id, s.provider, s.gpu_model, None, None, s.zone or "", market,
                      state, s.start_at, None, s.id, view.usd_per_hour, view.cost.total_usd)


def _aws_rows(ledger: Ledger, provider: AwsCloud) -> list[RunningJob]:
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


def running_jobs(ledger: Ledger, aws: AwsCloud | None) -> tuple[list[RunningJob], str | None]:
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
    listed = {r.session_id for r in aws_rows + rows if r.session_id is not None}
    loose = [_loose_row(v) for v in open_views
             if v.session.id not in listed and not v.session.job_id
             and not (aws is not None and v.session.provider == "aws" and v.session.instance_id)]
    return aws_rows + rows + loose, note


LOOSE_STATE = "open in the ledger (no end recorded)"


def _loose_row(view: SessionView) -> RunningJob:
    """An open session of no job (`ledger add` or `ledger import` without an end): it is
    costed up to now, so it is paying as far as the books know, and must not be hidden.
    (AWS machines are listed by AWS when it is asked; this is what it cannot see.)"""
    s = view.session
    market = "owned" if s.owned else (s.market or "")
    return RunningJob(None, s.provider, s.gpu_model, s.instance_id, s.instance_type or None,
                      s.zone or "", market, LOOSE_STATE, s.start_at, None, s.id,
                      view.usd_per_hour, view.cost.total_usd)


def stop_owned_job(ledger: Ledger, settings: Settings, job: str, runs: Path | None = None) -> str:
    """Stop a local or ssh job without AWS: SIGTERM its process (it checkpoints), close its
    open sessions (reason `user`) and mark the job stopped. Returns what was done, in words."""
    run = run_dir_of(ledger, job, runs)
    state = run.load() if run is not None else None
    open_ids = [v.session.id for v in ledger.sessions(open_only=True, job_id=job) if v.session.id is not None]
    signalled = False
    if run is not None and state is not None:
        signalled = _signal(ledger, settings, state, run)
    still_open = {v.session.id for v in ledger.sessions(open_only=True, job_id=job)}
    for session_id in open_ids:
        if session_id in still_open:  # releasing the machine may have closed its own already
            ledger.end_session(session_id, utcnow(), "user")
    mark_stopped(ledger, job, run)
    what = "process signalled" if signalled else "no process found"
    return f"{job}: {what}, {len(open_ids)} session(s) closed"


def _signal(ledger: Ledger, settings: Settings, state: RunState, run: RunDir) -> bool:
    """SIGTERM the job's process through its own provider (it checkpoints), and release the
    machine; False when there is no process to find."""
    from launcher.errors import GpuhireError
    from launcher.providers.factory import make_provider

    try:
        provider = make_provider(settings, ledger, state.provider, gpu=state.gpu, run_root=run.path,
                                 host=state.machine.get("host"))
        machine = provider.reattach(state.ref())
    except GpuhireError:
        return False
    if machine is None:
        return False
    alive = machine.host.running("train.pid")
    machine.release("user")  # signals a running job, closes the link and the session
    return alive


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


def aws_asked_for(settings: Settings, region: str | None = None) -> bool:
    """Whether AWS is set up (`gpuhire init`, a profile) or asked for (--region)."""
    from launcher.providers.factory import aws_configured

    return bool(region or settings.aws.profile or aws_configured(settings))


def aws_if_any(settings: Settings, ledger: Ledger,
               region: str | None = None) -> tuple[AwsCloud | None, str | None]:
    """The AWS layer when [aws] is configured or AWS credentials exist, else None; with a
    one-line note when AWS was expected (configured, or the ledger has AWS jobs) but cannot
    be asked."""
    from launcher.errors import GpuhireError
    from launcher.providers.aws.client import make_session
    from launcher.providers.factory import aws_cloud

    expected = aws_asked_for(settings, region) or any(  # a machine of ours; not one added by hand
        v.session.provider == "aws" and (v.session.instance_id or v.session.job_id)
        for v in ledger.sessions(open_only=True))
    try:
        found = make_session(settings.aws).get_credentials() is not None
        why = "no AWS credentials found (aws configure, or aws sso login)"
    except GpuhireError as exc:
        found, why = False, exc.message
    except Exception as exc:  # a broken AWS config file: say it, list the rest
        found, why = False, f"AWS credentials unreadable ({exc})"
    if found:
        return aws_cloud(settings, ledger, region), None
    return None, (f"note: AWS not asked: {why}" if expected else None)


def provider_of(ledger: Ledger, job: str) -> str | None:
    """Where `job` runs by the ledger, else by its run folder; None when neither knows it."""
    from launcher.errors import GpuhireError

    provider = job_provider(ledger, job)
    run = None if provider else run_dir_of(ledger, job)
    if run is not None:
        try:
            provider = run.load().provider
        except GpuhireError:
            return None
    return provider


def stop_jobs(settings: Settings, ledger: Ledger, jobs: list[str], *, named: bool,
              region: str | None = None) -> Iterator[tuple[str, str | None]]:
    """Stop each job on its own provider (`gpuhire stop`): local and ssh jobs without AWS,
    the rest by AWS tag. Yields what was done per job, and a note for stderr or None.
    NotFoundError for a job `named` by hand that nothing knows."""
    from launcher.providers.factory import aws_cloud

    where = {j: provider_of(ledger, j) for j in jobs}
    # A JOB named by hand and known nowhere here: say so, asking AWS only where it is set up.
    unknown = {j for j, p in where.items() if p is None and named}
    if unknown and not aws_asked_for(settings, region):
        raise NotFoundError(f"no job {sorted(unknown)[0]} in the ledger or under ./runs",
                            "check the id: `gpuhire status` lists the running jobs")
    on_aws = [j for j in jobs if (where[j] or "aws") == "aws"]  # AWS tags may know it
    for name in jobs:  # no AWS needed for these
        if name not in on_aws:
            yield stop_owned_job(ledger, settings, name), None
    cloud = aws_cloud(settings, ledger, region) if on_aws else None
    for name in on_aws:
        assert cloud is not None
        gone = cloud.release(name, "user")
        if name in unknown and not gone:
            raise NotFoundError(f"no job {name} in the ledger, under ./runs or running on AWS",
                                "check the id: `gpuhire status` lists the running jobs")
        mark_stopped(ledger, name, run_dir_of(ledger, name))
        note = (f"note: {name}: {'; '.join(cloud.cleanup_problems)} (still in use while the instance "
                "shuts down: run `gpuhire gc` in a minute)") if cloud.cleanup_problems else None
        yield (f"{name}: {len(gone)} instance(s) terminated" if gone else f"{name}: nothing running"), note


class JobLog:
    """A job's trainer log, wherever it is now (`gpuhire logs JOB [-f]`). A running ssh or aws
    job's is read on its box over SSH (found by the provider's `reattach`, host key pinned, never
    released), with `follow` until its process ends or its launcher settles it; any other from
    the run directory. After `chunks()`, `note` says why nothing came."""

    def __init__(self, ledger: Ledger, settings: Settings, job: str, runs: Path | None = None) -> None:
        self.ledger, self.settings, self.job = ledger, settings, job
        self.run = find_run_dir(ledger, job, runs)
        self.note: str | None = None
        self.read = 0  # bytes given so far

    def chunks(self, follow: bool, poll_s: float = 1.0) -> Iterator[bytes]:
        state = self.run.load()
        if state.provider != "local" and state.status == "running":
            host = self._reattach(state)
            if host is not None:
                yield from self._remote(host, state, follow, poll_s)
                return
        yield from self._local(follow, poll_s)

    def _reattach(self, state: RunState) -> Host | None:
        from launcher.providers.factory import make_provider

        provider = make_provider(self.settings, self.ledger, state.provider, gpu=state.gpu,
                                 run_root=self.run.path, host=state.machine.get("host"),
                                 spot=state.market != "on-demand")
        machine = provider.reattach(state.ref())
        return None if machine is None else machine.host  # None: gone; its copy here, if any

    def _remote(self, host: Host, state: RunState, follow: bool, poll_s: float) -> Iterator[bytes]:
        log, offset = f"train-{state.attempt}.log", 0
        try:
            while True:
                now = self.run.load()
                if follow and now.status == "running" and now.attempt != state.attempt:
                    host.close()  # relaunched on another machine: read that one's log
                    yield from self.chunks(follow, poll_s)
                    return
                if follow and now.status in ENDED and self.run.log.exists():
                    yield self._rest(offset)  # settled: the box's log is home, the box may be gone
                    break
                if follow:
                    host.reconnect(REMOTE_TRY_S)  # a box gone meanwhile: an SshError, not a hang
                ended = follow and not host.running("train.pid")  # before the last read: none missed
                data, offset = host.tail(log, offset)
                self.read += len(data)
                yield data
                if not follow or ended:
                    break
                time.sleep(poll_s)
        finally:
            host.close()
        if not self.read:
            self.note = self.run.empty_log_note(Path(host.workdir) / log)

    def _rest(self, offset: int) -> bytes:
        with self.run.log.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        self.read += len(data)
        return data

    def _local(self, follow: bool, poll_s: float) -> Iterator[bytes]:
        path = self.run.log_path()
        if path is None:
            raise InputError(f"job {self.job} has no log yet", "wait for it to start, then try again")
        offset = 0
        while True:
            ended = follow and job_ended(self.run)  # judged before the last read: nothing missed
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            self.read += len(chunk)
            yield chunk
            if not follow or ended:
                break
            newer = self.run.log_path()
            if newer is not None and newer != path and newer.name != "train.log":
                path, offset = newer, 0  # a relaunch writes its own log
            time.sleep(poll_s)
        if not self.read:  # silence would look like a broken command
            self.note = self.run.empty_log_note(path)
