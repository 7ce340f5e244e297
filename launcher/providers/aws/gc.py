"""Garbage collection: nothing gpuhire made outlives its job, and the books match the tags.

A ledger session is *live* when
- it is `launching` (no instance id yet) and the launcher process that wrote it still runs
  (same host, pid alive); a launch from another host is trusted for an hour; or
- it has an instance that is not gone and its job has not ended (done, failed, stopped).
Everything else gpuhire made is a leftover: instances no live session claims (by instance id
or by the `gpuhire:session` tag), open sessions that are not live, and key pairs, security
groups and local key files of jobs with no live session. `collect()` terminates or deletes
them and closes (or, when no machine was ever rented, discards) their sessions.

Inference fleets whose launcher died leave SQS queues and staged S3 objects besides: gc_fleet.py
says when a fleet is dead (never while a worker or its launcher may still use them).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from launcher.errors import ProviderError
from launcher.providers.aws import gc_fleet
from launcher.providers.aws.cleanup import delete, tagged_resources
from launcher.providers.aws.client import aws_errors
from launcher.providers.aws.launch import TAG_LAUNCHER
from launcher.providers.aws.types import END_USER, Instance, Leftover
from launcher.providers.local import pid_alive
from launcher.ssh.keys import job_ids_with_keys
from ledger.models import RentalSession

if TYPE_CHECKING:
    from launcher.providers.aws.cloud import AwsCloud

ENDED_JOB_STATUSES = frozenset({"done", "failed", "stopped", "partial"})  # partial: infer, dead pages
FOREIGN_LAUNCH_TRUST = timedelta(hours=1)


@dataclass
class GcPlan:
    """What gc found; `leftovers` is what it will remove."""

    leftovers: list[Leftover] = field(default_factory=list)
    instances: dict[str, Instance] = field(default_factory=dict)  # all gpuhire instances by id
    sessions: list[RentalSession] = field(default_factory=list)  # dead open sessions
    live_jobs: set[str] = field(default_factory=set)
    fleets: gc_fleet.FleetLeftovers = field(default_factory=gc_fleet.FleetLeftovers)


def _launcher_alive(row: RentalSession, p: AwsCloud) -> bool:
    host, _, pid = str(row.tags.get(TAG_LAUNCHER, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        return pid_alive(int(pid))
    return p.now() - row.start_at < FOREIGN_LAUNCH_TRUST


def _job_ended(p: AwsCloud, job_id: str | None) -> bool:
    if job_id is None:
        return False
    try:
        return p.ledger.get_job(job_id).status in ENDED_JOB_STATUSES
    except Exception:  # no job row: the session alone decides
        return False


def _live(row: RentalSession, instance: Instance | None, p: AwsCloud) -> bool:
    if row.instance_id is None and row.state == "launching":
        return _launcher_alive(row, p)
    if instance is None or instance.state.gone:
        return False
    return not _job_ended(p, row.job_id)


def plan(p: AwsCloud, all_owners: bool = False) -> GcPlan:
    """Find leftovers (reads only; nothing is changed).

    Only what the current IAM identity launched (tag gpuhire:owner) is considered, unless
    `all_owners`: a colleague sharing the account keeps their own ledger, and their live jobs
    would look like leftovers from here.
    """
    owner = None if all_owners else p.caller()
    everyone = p.instances()
    out = GcPlan(instances={i.instance_id: i for i in everyone if owner is None or i.owner == owner})
    by_session = {i.session_id: i for i in out.instances.values() if i.session_id is not None}
    claimed: set[str] = set()
    for view in p.ledger.sessions(open_only=True):
        row = view.session
        if not p.owns(row):
            continue
        instance = out.instances.get(row.instance_id or "") or by_session.get(row.id or -1)
        if _live(row, instance, p):
            claimed.add(instance.instance_id if instance else "")
            if row.job_id:
                out.live_jobs.add(row.job_id)
            continue
        out.sessions.append(row)
        out.leftovers.append(Leftover("session", str(row.id), row.job_id, row.state))
    for iid, inst in sorted(out.instances.items()):
        if not inst.state.gone and iid not in claimed:
            out.leftovers.append(Leftover("instance", iid, inst.job_id,
                                          f"{inst.instance_type} {inst.zone} {inst.state}"))
    for kind, ident, job, made_by in tagged_resources(p.ec2):
        if job not in out.live_jobs and (owner is None or made_by == owner):
            out.leftovers.append(Leftover(kind, ident, job))
    # Local key folders: never those of a job with any open session (another provider's too).
    busy = {v.session.job_id for v in p.ledger.sessions(open_only=True) if not p.owns(v.session)}
    for job in job_ids_with_keys():
        if job not in out.live_jobs and job not in busy:
            out.leftovers.append(Leftover("local-keys", job, job))
    out.fleets = gc_fleet.find(p, everyone)  # any owner's live instance keeps a fleet alive
    out.leftovers.extend(out.fleets.leftovers)
    return out


def collect(p: AwsCloud, found: GcPlan, wait_s: int = 300) -> list[str]:
    """Remove the leftovers of `found`; returns what could not be removed yet (retry later)."""
    p.close_sessions()  # sessions of instances that are already gone take EC2's end reason
    doomed = [x.ident for x in found.leftovers if x.kind == "instance"]
    for row in found.sessions:  # the instance of a dead session goes too, whatever claims it
        inst = found.instances.get(row.instance_id or "") or next(
            (i for i in found.instances.values() if i.session_id == row.id), None)
        if inst is not None and not inst.state.gone and inst.instance_id not in doomed:
            doomed.append(inst.instance_id)
    p.terminate(doomed)
    _close_dead_sessions(p, found)
    if doomed and wait_s > 0:
        _wait_terminated(p, doomed, wait_s)  # security groups stay in use until then
    problems = []
    kept: set[str | None] = set()  # fleet jobs with something left: stay `running` for the next gc
    for x in found.leftovers:
        try:
            if x.kind not in gc_fleet.KINDS:
                delete(p.ec2, x)
            elif x.kind != "fleet-job" or x.job_id not in kept:
                gc_fleet.remove(p, found.fleets, x)
        except ProviderError as exc:
            kept.add(x.job_id)
            problems.append(f"{x.kind} {x.ident}: {exc.message}")
    return problems


def _close_dead_sessions(p: AwsCloud, found: GcPlan) -> None:
    for row in found.sessions:
        assert row.id is not None
        current = p.ledger.get_session(row.id)
        if current.end_at is not None:
            continue
        inst = found.instances.get(row.instance_id or "") or next(
            (i for i in found.instances.values() if i.session_id == row.id), None)
        if inst is None and row.instance_id is None:
            p.ledger.discard_launch(row.id)  # the launch never got a machine: nothing to bill
            continue
        if row.instance_id is None and inst is not None:
            p.ledger.set_instance(row.id, inst.instance_id)
        reason = inst.end_reason if inst is not None and inst.state.gone and inst.end_reason else END_USER
        end = inst.ended_at if inst is not None and inst.ended_at else p.now()
        p.ledger.end_session(row.id, end, reason)


def _wait_terminated(p: AwsCloud, ids: list[str], wait_s: int) -> None:
    import botocore.exceptions as bex

    try:
        with aws_errors("wait for the instances to terminate"):
            p.ec2.get_waiter("instance_terminated").wait(
                InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": max(1, wait_s // 5)}
            )
    except bex.WaiterError:
        pass  # the security group deletes below report what is still in use


