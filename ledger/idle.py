"""USD spent on an idle GPU: rent x (1 - mean GPU utilisation), per session and per job.

The rule of the monthly report (ledger/report.py, docs/reports.md), applied to one job or one
session: a session's utilisation is its own mean (`RentalSession.gpu_util_mean`, stored when
it closed), else its job's (`Job.gpu_util`: the mean of the utilisation samples the trainer's
progress events carried, kept by the launcher as the job runs, launcher/train/follow.py);
a session with neither is unknown and left out, never guessed. A running session is costed up
to now, so a running job's idle USD grows with it.

    job_idle(ledger, "train-...")   -> JobIdle(idle_usd, known_usd, util, sessions_known, ...)

A box of N GPUs (`gpuhire train --gpus N`): its rent pays for every GPU, and the utilisation
is the mean over all of them (the trainer's `gpu_util` under torchrun averages every rank's
GPU), so one idle GPU among four makes a quarter of the rent idle dollars. GPU-hours (reports,
the buy signal) are the session's duration x its gpu_count (ledger/costs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.book import Ledger
from ledger.models import Job, RentalSession

ZERO = Decimal(0)


def idle_usd(cost_usd: Decimal, util: float) -> Decimal:
    """The part of `cost_usd` paid while the GPU did nothing, at mean utilisation `util` (0..1).

    Utilisation is stored as a float; it goes through str so the Decimal stays short (0.4, not
    0.40000000000000002220446...)."""
    return cost_usd * (1 - Decimal(str(util)))


def session_util(session: RentalSession, job: Job | None) -> float | None:
    """The utilisation a session is judged by: its own mean, else its job's; None: unknown."""
    if session.gpu_util_mean is not None:
        return session.gpu_util_mean
    return job.gpu_util if job is not None else None


@dataclass(frozen=True)
class JobIdle:
    """What a job's GPU time cost while it sat idle."""

    job: str
    idle_usd: Decimal  # over the sessions whose utilisation is known
    known_usd: Decimal  # what those sessions cost (idle and busy together)
    util: float | None  # the job's mean utilisation (Job.gpu_util), when known
    sessions_known: int
    sessions_unknown: int  # sessions of unknown utilisation: their cost is in neither sum


def job_idle(ledger: Ledger, job_id: str) -> JobIdle:
    """The idle-GPU USD of one job over all its sessions (owned ones too, running ones to now).
    NotFoundError when the ledger has no such job."""
    job = ledger.get_job(job_id)
    idle = known_usd = ZERO
    known = unknown = 0
    for view in ledger.sessions(job_id=job_id):
        util = session_util(view.session, job)
        if util is None:
            unknown += 1
            continue
        known += 1
        known_usd += view.cost.total_usd
        idle += idle_usd(view.cost.total_usd, util)
    return JobIdle(job_id, idle, known_usd, job.gpu_util, known, unknown)
