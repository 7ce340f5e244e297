"""Letting EC2 take back a spot instance it gave notice on, instead of terminating it ourselves.

AWS bills a spot instance that EC2 interrupts within its first instance-hour as free, and one
that anybody else stops or terminates for the seconds it ran
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/billing-for-interrupted-spot-instances.html).
So on the two-minute notice the train flow lets the machine go (`AwsMachine.let_go`): the
launcher stops using the box and leaves its end to EC2, with a bound.

    cloud.let_go(job, instance_id, notice_at)   EC2 said it takes the box at `notice_at`
    cloud.reclaim(job)                          one look: close what EC2 took, terminate what
                                                is still running [aws] notice_grace_s after
                                                the notice's time (billed: reason `user`)
    cloud.reclaim(job, wait=True)               ... until nothing is pending (release does it,
                                                so no box is left running when a job settles)

A machine let go without a notice (EC2 took it without one, or the job stopped for another
reason) has no grace: it is terminated at the first look unless EC2 already took it.
The pending list lives in the launcher's process: if the launcher dies before EC2 acts, the
box's dead-man switch (no heartbeat, [aws] deadman_minutes) still shuts it down.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from launcher.providers.aws.types import Instance

if TYPE_CHECKING:
    from launcher.config_sections import AwsSettings

NOTICE_S = 120  # EC2 gives two minutes' notice; a notice further ahead is not believed
LOOK_EVERY_S = 5.0  # how often release() asks EC2 while it waits for a box it let go


class AwsCloud(Protocol):
    """What this module needs of launcher.providers.aws.cloud.AwsCloud (which imports it)."""

    aws: AwsSettings  # notice_grace_s

    def now(self) -> datetime: ...

    def describe(self, instance_id: str) -> Instance: ...

    def terminate(self, instance_ids: list[str]) -> None: ...

    def close_sessions(self, job_id: str | None = None,
                       default_reason: str | None = None) -> list[Instance]: ...


@dataclass(frozen=True)
class LetGo:
    """An instance the launcher has stopped using and leaves to EC2 until `deadline`."""

    job_id: str
    instance_id: str
    deadline: datetime  # the notice's time + [aws] notice_grace_s (UTC); now without a notice


class Reclaims:
    """The instances one launcher has let go, until each is gone and its session closed."""

    def __init__(self) -> None:
        self.pending: dict[str, LetGo] = {}
        self.ever: set[str] = set()  # every instance let go: no caller's reason applies to them

    def add(self, cloud: AwsCloud, job_id: str, instance_id: str, notice_at: datetime | None) -> LetGo:
        now = cloud.now()
        if notice_at is None:
            deadline = now  # nothing announced: ours to end, at once
        else:
            deadline = min(notice_at, now + timedelta(seconds=NOTICE_S)) + timedelta(
                seconds=cloud.aws.notice_grace_s)
        self.pending[instance_id] = LetGo(job_id, instance_id, deadline)
        self.ever.add(instance_id)
        return self.pending[instance_id]

    def look(self, cloud: AwsCloud, job_id: str | None = None) -> list[LetGo]:
        """Close the sessions of let-go instances that are gone (EC2's end reason), terminate
        those past their deadline; returns the ones still left to EC2."""
        waiting, overdue, jobs = [], [], set()
        for g in [g for g in self.pending.values() if job_id in (None, g.job_id)]:
            if cloud.describe(g.instance_id).state.gone:
                del self.pending[g.instance_id]
                jobs.add(g.job_id)
            elif cloud.now() >= g.deadline:
                overdue.append(g)
            else:
                waiting.append(g)
        if overdue:  # EC2 never took it: ours to end, and billed (EC2 records it user-initiated)
            cloud.terminate([g.instance_id for g in overdue])
            jobs.update(g.job_id for g in overdue)
        for job in sorted(jobs):
            cloud.close_sessions(job_id=job)  # EC2's own reason, never one of ours
        return waiting

    def wait(self, cloud: AwsCloud, job_id: str | None = None) -> None:
        """Look until nothing of `job_id` is left to EC2 (bounded by the deadlines)."""
        try:
            while waiting := self.look(cloud, job_id):
                left_s = (min(g.deadline for g in waiting) - cloud.now()).total_seconds()
                time.sleep(min(LOOK_EVERY_S, max(0.05, left_s)))
        except KeyboardInterrupt:  # the user will not wait for EC2: end them now (billed)
            for g in [g for g in self.pending.values() if job_id in (None, g.job_id)]:
                self.pending[g.instance_id] = replace(g, deadline=cloud.now())
            with contextlib.suppress(Exception):
                self.look(cloud, job_id)
            raise
        overdue = [g for g in self.pending.values() if job_id in (None, g.job_id)]
        if overdue:  # terminated above, not yet reported gone: one more look closes them
            self.look(cloud, job_id)
