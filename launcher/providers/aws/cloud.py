"""The EC2 layer under the aws provider: offers, launch, describe, release, the books kept straight.

    cloud = AwsCloud(settings, ledger)
    offers = cloud.offers("t4")                          # live spot prices, cheapest first
    launched = cloud.launch(LaunchRequest("train-...", "t4", tuple(offers)))
    cloud.ssh_endpoint(launched.instance)                # host, key file, pinned host key
    cloud.release("train-...", "completed")              # terminate, close session, clean up
    cloud.let_go("train-...", instance_id, notice_at)    # spot notice: EC2 ends it (reclaim.py)

Tags decide what runs (`gpuhire:job`, `gpuhire:owner`, `gpuhire:session`); the ledger records
what happened, `close_sessions()` records how instances ended (EC2's own word: only EC2 can
call an end a spot interruption, which AWS bills as free in the first hour), and `gpuhire gc`
(launcher/providers/aws/gc.py) removes what no live job owns.
boto3 is imported only inside this package's AWS modules, never at `gpuhire --help`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from launcher.errors import NotFoundError, ProviderError
from launcher.providers.aws import offers as aws_offers
from launcher.providers.aws import setup as aws_setup
from launcher.providers.aws.cleanup import cleanup_job
from launcher.providers.aws.client import aws_errors, client, make_session
from launcher.providers.aws.launch import TAG_SESSION, LaunchPlan, launch_offers
from launcher.providers.aws.reclaim import Reclaims
from launcher.providers.aws.setup import TAG_JOB, TAG_OWNER
from launcher.providers.aws.types import (
    END_UNKNOWN,
    END_USER,
    SPOT_TERMINATION,
    Instance,
    InstanceState,
    InterruptionNotice,
    Launched,
    LaunchRequest,
    Market,
    Offer,
    SshEndpoint,
    end_reason_for,
    refine_reason,
)
from launcher.providers.aws.userdata import (
    HEARTBEAT_PATH,
    NOTICE_FILE,
    PID_FILE,
    SafetySettings,
    build_user_data,
)
from launcher.ssh.keys import job_keys
from ledger.models import Job, RentalSession
from ledger.timeutil import as_utc, utcnow

if TYPE_CHECKING:
    import boto3

    from launcher.config import Settings
    from ledger.book import Ledger

# "User initiated (2026-11-22 08:22:00 GMT)" (AWS says GMT, moto UTC).
_WHEN = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


class AwsCloud:
    """EC2 spot (and on-demand) instances for gpuhire jobs. See the module docstring."""

    name = "aws"

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        *,
        session: boto3.Session | None = None,
        detect_cidr: Callable[[], str] = aws_setup.detect_public_cidr,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.aws = settings.aws
        self.ledger = ledger
        self.detect_cidr = detect_cidr  # injectable: tests never reach the internet
        self.now = now
        self._session = session
        self._clients: dict[str, Any] = {}
        self._caller: str | None = None
        self.cleanup_problems: list[str] = []  # what the last release() could not delete yet
        self.reclaims = Reclaims()  # instances let go to EC2 after a spot notice (reclaim.py)
        self.running_poll_s = 5.0  # how often a launch asks EC2 whether its instance runs yet

    # -- clients ----------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        """The boto3 client for `service` (ec2, ssm, sts), made once."""
        if service not in self._clients:
            if self._session is None:
                self._session = make_session(self.aws)
            with aws_errors(f"connect to AWS {service} in {self.aws.region}"):
                self._clients[service] = client(self._session, service)
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    # -- offers -----------------------------------------------------------------------------
    def _types(self, gpu: str, gpus: int = 1) -> tuple[list[str], dict[str, aws_offers.TypeInfo]]:
        gpu = gpu.lower()
        if gpu not in self.aws.instance_types:
            raise NotFoundError(f"no instance types for GPU {gpu!r}", "use --gpu t4 or --gpu l4")
        table = aws_offers.type_table(self.aws.on_demand_usd_per_hour, gpus=None)
        return aws_offers.types_for(gpu, gpus, self.aws.instance_types[gpu], table), table

    def offers(self, gpu: str, gpus: int = 1) -> list[Offer]:
        """Live spot offers for `gpu` (instance types with `gpus` of them) in the configured
        region, cheapest first."""
        types, table = self._types(gpu, gpus)
        return aws_offers.spot_offers(self.ec2, self.aws.region, gpu.lower(), types, table, self.now())

    def on_demand_offers(self, gpu: str, gpus: int = 1) -> list[Offer]:
        """On-demand offers (bundled or configured prices), cheapest first."""
        types, table = self._types(gpu, gpus)
        return aws_offers.on_demand_offers(self.ec2, self.aws.region, gpu.lower(), types, table)

    def refresh_price(self, session_id: int) -> Decimal | None:
        """Store the spot price now in force for a running spot session if it changed
        (costs are piecewise over stored price points); returns the new price, or None."""
        row = self.ledger.get_session(session_id)
        if row.market != "spot" or row.end_at is not None:
            return None
        prices = aws_offers.latest_spot_prices(self.ec2, [row.instance_type], self.now())
        point = prices.get((row.zone, row.instance_type))
        views = self.ledger.sessions(job_id=row.job_id)
        current = next(v.usd_per_hour for v in views if v.session.id == session_id)
        if point is None or point[0] == current:
            return None
        self.ledger.record_price(session_id, point[0], max(point[1], row.start_at))
        return point[0]

    # -- launch -----------------------------------------------------------------------------
    def launch(self, request: LaunchRequest) -> Launched:
        """Launch the first offer with capacity (spot offers, then on-demand if allowed)."""
        offers, plan = self.prepare_launch(request)
        return self.launch_prepared(request.job_id, offers, plan)

    def prepare_launch(self, request: LaunchRequest) -> tuple[list[Offer], LaunchPlan]:
        """What every instance of a request shares, made once: the offers in rank order, the
        job row, the key pair, the security group, the AMI (a fleet launches many from it)."""
        offers = list(request.offers)
        self.reclaim(request.job_id)  # a box let go by the last attempt: closed or ended, no wait
        allow = self.aws.fallback_on_demand if request.allow_on_demand is None else request.allow_on_demand
        if allow and not any(o.market == Market.on_demand for o in offers):
            offers += self.on_demand_offers(request.gpu, request.gpus)
        self._ensure_job(request)
        return offers, self._plan(request, {o.zone for o in offers})

    def launch_prepared(self, job_id: str, offers: list[Offer], plan: LaunchPlan,
                        cancelled: threading.Event | None = None) -> Launched:
        """Launch one instance of a prepared request and wait until it runs. Safe to call from
        several threads at once (the clients exist once prepare_launch ran); `cancelled` set
        by another thread ends the wait, and the instance is terminated."""
        with aws_errors(f"launch an instance for job {job_id}"):
            described, session_id, offer, attempts = launch_offers(
                self.ec2, self.ledger, plan, offers, self.now
            )
        try:  # from here an instance exists: whatever goes wrong (Ctrl-C too), it goes
            instance = self._wait_running(self.to_instance(described), cancelled=cancelled)
            endpoint = self.ssh_endpoint(instance)
        except BaseException:
            self._abandon(job_id, str(described["InstanceId"]))
            raise
        return Launched(instance, session_id, offer, endpoint, attempts)

    def _abandon(self, job_id: str, instance_id: str) -> None:
        """Terminate an instance the launch cannot hand over and close its session (user).

        Best effort: the error that got us here matters more; what is left (a terminate that
        failed) carries its tags and session id, so `gpuhire gc` finds it."""
        try:
            self.terminate([instance_id])
            self.close_sessions(job_id=job_id, default_reason=END_USER)
        except Exception as exc:  # reported; the original error is raised
            self.cleanup_problems = [f"{instance_id} may still run ({exc}); run `gpuhire gc`"]

    def _wait_running(self, instance: Instance, wait_s: int = 600,
                      cancelled: threading.Event | None = None) -> Instance:
        """Poll until EC2 says running (the public address exists from then on), every
        `running_poll_s`; an instance EC2 does not know yet (eventual consistency) is pending."""
        stop = cancelled or threading.Event()
        deadline = time.monotonic() + wait_s
        while True:
            with aws_errors(f"wait for {instance.instance_id} to run"):
                found = self._describe_known(instance.instance_id)
            if found is not None and found.state == InstanceState.running:
                return found
            failed = found is not None and found.state not in (InstanceState.pending, InstanceState.unknown)
            if failed or time.monotonic() >= deadline:
                now = found or self.describe(instance.instance_id)
                if now.state.gone:
                    self.close_sessions(job_id=instance.job_id)
                why = now.state_reason or "no reason given"
                raise ProviderError(
                    f"{instance.instance_id} did not start ({now.state}, {why})",
                    "run the command again; if it repeats, try another zone or region",
                )
            if stop.wait(self.running_poll_s):
                raise ProviderError(f"the launch of {instance.instance_id} was called off",
                                    "another launch of the same fleet failed; see its error")

    def _describe_known(self, instance_id: str) -> Instance | None:
        """The instance now, or None while EC2 answers InvalidInstanceID.NotFound."""
        import botocore.exceptions as bex

        try:
            found = self._describe(InstanceIds=[instance_id])
        except bex.ClientError as exc:
            if "InvalidInstanceID.NotFound" in str(exc):
                return None
            raise
        return self.to_instance(found[0]) if found else None

    def _ensure_job(self, request: LaunchRequest) -> None:
        try:
            self.ledger.get_job(request.job_id)
        except NotFoundError:
            self.ledger.create_job(Job(id=request.job_id, kind=request.job_kind, gpu_model=request.gpu,
                                       status="launching"))

    def _plan(self, request: LaunchRequest, zones: set[str]) -> LaunchPlan:
        owner = self.caller()  # fails early without credentials
        cidrs = aws_setup.operator_cidrs(self.aws.operator_cidrs, self.detect_cidr)
        image_id, root = aws_setup.resolve_ami(
            self.client("ssm"), self.ec2, self.aws.ami_parameter, self.aws.ami_id
        )
        keys = job_keys(request.job_id)
        key_name = aws_setup.ensure_key_pair(self.ec2, request.job_id, keys.public_key, owner)
        subnets = aws_setup.subnets_by_zone(self.ec2, zones)
        groups = {
            vpc: aws_setup.ensure_security_group(self.ec2, request.job_id, vpc, cidrs, owner)
            for vpc in sorted({v for _, v in subnets.values()})
        }
        lifetime_s = request.max_lifetime_s or self.aws.max_lifetime_hours * 3600
        safety = SafetySettings(self.aws.deadman_minutes * 60, lifetime_s, self.aws.ssh_user,
                                keys.host_private_key)
        return LaunchPlan(
            job_id=request.job_id, image_id=image_id, root_device=root, key_name=key_name,
            group_ids=groups, subnets=subnets,
            user_data=build_user_data(safety, request.extra_user_data),
            volume_gb=request.volume_gb or self.aws.volume_gb, owner=owner,
            instance_profile=self.aws.instance_profile, billing=self.settings.billing_rules("aws"),
        )

    # -- describe ---------------------------------------------------------------------------
    def to_instance(self, d: dict[str, Any]) -> Instance:
        """Our view of an EC2 instance description."""
        tags = {t["Key"]: t["Value"] for t in d.get("Tags", [])}
        try:
            state = InstanceState(d.get("State", {}).get("Name", "unknown"))
        except ValueError:
            state = InstanceState.unknown
        code = str(d.get("StateReason", {}).get("Code", ""))
        end_reason, ended_at = None, None
        if state.gone:
            end_reason = end_reason_for(code)
            match = _WHEN.search(str(d.get("StateTransitionReason", "")))
            ended_at = datetime.fromisoformat(match.group(1) + "+00:00") if match else None
        launched = d.get("LaunchTime")
        return Instance(
            provider="aws", instance_id=d["InstanceId"], job_id=tags.get(TAG_JOB),
            region=self.aws.region, zone=d.get("Placement", {}).get("AvailabilityZone", ""),
            instance_type=d.get("InstanceType", ""),
            market=Market.spot if d.get("InstanceLifecycle") == "spot" else Market.on_demand,
            state=state, launched_at=as_utc(launched) if launched else None,
            public_ip=d.get("PublicIpAddress"), state_reason=code, end_reason=end_reason,
            ended_at=ended_at, session_id=_int(tags.get(TAG_SESSION)), owner=tags.get(TAG_OWNER, ""),
        )

    def describe(self, instance_id: str) -> Instance:
        """The instance now; one AWS no longer knows is reported terminated (reason unknown)."""
        import botocore.exceptions as bex

        try:
            with aws_errors(f"describe {instance_id}"):
                found = self._describe(InstanceIds=[instance_id])
        except ProviderError as exc:
            if "InvalidInstanceID.NotFound" not in str(exc):
                raise
            found = []
        except bex.ParamValidationError:
            found = []
        if not found:
            return Instance("aws", instance_id, None, self.aws.region, "", "", Market.spot,
                            InstanceState.terminated, None, end_reason=END_UNKNOWN)
        return self.to_instance(found[0])

    def _describe(self, **kwargs: Any) -> list[dict[str, Any]]:
        out = []
        for page in self.ec2.get_paginator("describe_instances").paginate(**kwargs):
            for reservation in page["Reservations"]:
                out.extend(reservation["Instances"])
        return out

    def instances(self, job_id: str | None = None) -> list[Instance]:
        """gpuhire-tagged instances (all jobs, or one), including recently terminated ones."""
        flt = [{"Name": f"tag:{TAG_JOB}", "Values": [job_id]}] if job_id else [
            {"Name": "tag-key", "Values": [TAG_JOB]}
        ]
        with aws_errors("list gpuhire instances"):
            found = self._describe(Filters=flt)
        return [self.to_instance(d) for d in found]

    def ssh_endpoint(self, instance: Instance) -> SshEndpoint:
        """How to reach the instance; [aws] ssh_targets overrides host:port (bastions, tests)."""
        if instance.job_id is None:
            raise ProviderError(f"{instance.instance_id} has no {TAG_JOB} tag", "it is not gpuhire's")
        keys = job_keys(instance.job_id)
        target = self.aws.ssh_targets.get(instance.instance_id) or self.aws.ssh_targets.get("*")
        host, port = instance.public_ip or "", 22
        if target:
            host, _, port_text = target.rpartition(":") if ":" in target else (target, "", "22")
            port = int(port_text or 22)
        if not host:
            raise ProviderError(
                f"{instance.instance_id} has no public address ({instance.state})",
                'wait until it runs, or reach it another way: [aws] ssh_targets = {"*" = "host:port"}',
            )
        return SshEndpoint(host=host, port=port, user=self.aws.ssh_user, key_path=keys.private_key_path,
                           host_key=keys.host_public_key, heartbeat_path=HEARTBEAT_PATH, pid_file=PID_FILE,
                           notice_path=NOTICE_FILE)

    def interruption(self, instance_id: str) -> InterruptionNotice | None:
        """EC2's own word after the fact (StateReason). The two-minute notice is read on the box
        by the spot watcher, which writes it to SshEndpoint.notice_path."""
        instance = self.describe(instance_id)
        if instance.state_reason != SPOT_TERMINATION:
            return None
        return InterruptionNotice(instance_id, "terminate", instance.ended_at, "state-reason")

    # -- ending -----------------------------------------------------------------------------
    def terminate(self, instance_ids: list[str]) -> None:
        """Terminate instances (already-gone ones are fine)."""
        if instance_ids:
            with aws_errors("terminate " + ", ".join(instance_ids)):
                self.ec2.terminate_instances(InstanceIds=instance_ids)

    def let_go(self, job_id: str, instance_id: str, notice_at: datetime | None) -> None:
        """Leave an instance EC2 gave notice on (`notice_at`: when it takes it) to EC2, so an
        interruption in the first hour stays free; still running [aws] notice_grace_s after
        that, it is terminated (billed). `notice_at` None: no notice, ended at the next look.
        Returns at once: `reclaim()` (launch, the next attempt's checks, release) finishes it."""
        self.reclaims.add(self, job_id, instance_id, notice_at)
        self.reclaim(job_id)

    def reclaim(self, job_id: str | None = None, *, wait: bool = False) -> None:
        """One look at the instances let go (all, or `job_id`'s): sessions of those EC2 took
        are closed, those past their deadline terminated; `wait`: until none is left."""
        if wait:
            self.reclaims.wait(self, job_id)
        else:
            self.reclaims.look(self, job_id)

    def release(self, job_id: str, reason: str) -> list[Instance]:
        """Terminate the job's instances, close their sessions, delete its key pair and group.

        The session of an instance EC2 already took keeps EC2's reason (spot-interruption);
        an instance let go to EC2 (a spot notice) is waited for until its deadline first.
        """
        self.reclaim(job_id, wait=True)
        alive = [i for i in self.instances(job_id) if not i.state.gone]
        self.terminate([i.instance_id for i in alive])
        closed = {i.instance_id: i for i in self.close_sessions(job_id=job_id, default_reason=reason)}
        # A group still in use by a dying instance stays until `gpuhire gc`: say so.
        self.cleanup_problems = cleanup_job(self.ec2, job_id)
        return [closed.get(i.instance_id, replace(i, state=InstanceState.shutting_down)) for i in alive]

    def close_sessions(self, job_id: str | None = None, default_reason: str | None = None) -> list[Instance]:
        """Close open aws sessions (all, or `job_id`'s) whose instance is gone, with EC2's end
        time and reason. `default_reason` (why we ended it) may refine EC2's plain user/unknown
        into e.g. `completed`, never into `spot-interruption` (types.refine_reason), and never
        applies to an instance let go to EC2. Returns the instances whose sessions were closed."""
        closed = []
        for view in self.ledger.sessions(open_only=True, job_id=job_id):
            row = view.session
            if not self.owns(row) or row.instance_id is None or row.id is None:
                continue
            instance = self.describe(row.instance_id)
            if not instance.state.gone:
                continue  # still billed: its session stays open
            ours = None if row.instance_id in self.reclaims.ever else default_reason
            reason = refine_reason(instance.end_reason, ours)
            end = instance.ended_at or self.now()
            self.ledger.end_session(row.id, end, reason)
            closed.append(replace(instance, end_reason=reason, ended_at=end))
        return closed

    def caller(self) -> str:
        """The gpuhire:owner name of whoever runs this (the IAM identity's name), asked once."""
        if self._caller is None:
            self._caller = aws_setup.caller_owner(self.client("sts"))
        return self._caller

    def owns(self, row: RentalSession) -> bool:
        """A ledger session this provider launched in its region (not one recorded by hand,
        not one in another region, whose instance this region cannot see)."""
        return (
            row.provider == "aws"
            and row.region in ("", self.aws.region)
            and (row.instance_id is not None or row.state == "launching")
        )


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None
