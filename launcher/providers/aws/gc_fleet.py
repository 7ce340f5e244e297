"""What `gpuhire gc` collects of an inference fleet whose launcher died (gc.py calls this).

`gpuhire infer` deletes its queues when it ends, whatever the end; a launcher that is killed
(SIGKILL, a lost laptop) leaves its job `running` in the ledger, its three SQS queues
(`gpuhire-<job>-work`, `-dead`, `-done`) and what it staged in the bucket (`jobs/<job>/model.*`, `segment/`,
`jobs/<job>/pages/`). Its instances end themselves (the worker exits when the queue stays
empty, and the box powers off), and gc's instance rules cover them anyway.

A fleet job is *dead*, and gc takes its queues and staged objects, when all of these hold:
- the ledger says it is `running` (a launcher that ended, however, wrote its end and deleted
  its queues itself);
- no instance tagged with the job is alive, whoever launched it (its workers may still
  be reading the queue);
- its launcher is gone: on this host, the pid the job recorded no longer runs; a launcher on
  another host cannot be asked, so its fleet is trusted for FOREIGN_FLEET_TRUST after the job
  began (a fleet of local workers has no instance to look at: the pid decides).
The job's results (`jobs/<job>/results/`) stay: a rerun of the same `gpuhire infer` collects
them (launcher/infer/flow.py), and the bucket's lifecycle rule expires them. The job is marked
`failed`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from launcher.infer.queue import delete_keys, delete_queue_urls, existing_queues, staged_keys
from launcher.providers.aws.types import Instance, Leftover
from launcher.providers.local import pid_alive
from ledger.models import Job

if TYPE_CHECKING:
    from launcher.providers.aws.cloud import AwsCloud

FOREIGN_FLEET_TRUST = timedelta(hours=24)  # a fleet job launched from another host, no instance left
KINDS = ("queue", "staged", "fleet-job")  # the Leftover kinds this module adds


@dataclass
class FleetLeftovers:
    leftovers: list[Leftover] = field(default_factory=list)
    staged: dict[str, tuple[str, list[str]]] = field(default_factory=dict)  # job -> (bucket, keys)


def launcher_gone(job: Job, p: AwsCloud) -> bool:
    """The job's launcher no longer runs (see the module docstring)."""
    host, pid = job.spec.get("host"), job.spec.get("pid")
    if host == socket.gethostname() and isinstance(pid, int):
        return not pid_alive(pid)
    return p.now() - job.created_at >= FOREIGN_FLEET_TRUST


def dead_fleets(p: AwsCloud, instances: Iterable[Instance]) -> list[Job]:
    """Fleet jobs whose queues and staged objects no one will read again."""
    busy = {i.job_id for i in instances if not i.state.gone}
    return [j for j in p.ledger.jobs("infer")
            if j.status == "running" and j.spec.get("fleet") and j.id not in busy and launcher_gone(j, p)]


def find(p: AwsCloud, instances: Iterable[Instance]) -> FleetLeftovers:
    """The queues, staged objects and ledger rows of dead fleets (reads only)."""
    out = FleetLeftovers()
    for job in dead_fleets(p, instances):
        for url in existing_queues(p.client("sqs"), job.id):
            out.leftovers.append(Leftover("queue", url, job.id))
        bucket = str(job.spec.get("bucket") or p.aws.bucket or "")
        if bucket:
            keys = staged_keys(p.client("s3"), bucket, job.id)
            if keys:
                out.staged[job.id] = (bucket, keys)
                out.leftovers.append(Leftover("staged", f"s3://{bucket}/jobs/{job.id}/", job.id,
                                              f"{len(keys)} object(s): model and pages"))
        out.leftovers.append(Leftover("fleet-job", job.id, job.id, "launcher gone: marked failed"))
    return out


def remove(p: AwsCloud, found: FleetLeftovers, x: Leftover) -> None:
    """Delete one leftover of `find` (ProviderError when AWS refuses)."""
    if x.kind == "queue":
        delete_queue_urls(p.client("sqs"), [x.ident])
    elif x.kind == "staged" and x.job_id in found.staged:
        bucket, keys = found.staged[x.job_id]
        delete_keys(p.client("s3"), bucket, keys)
    elif x.kind == "fleet-job":
        p.ledger.update_job(x.ident, status="failed", ended_at=p.now())
