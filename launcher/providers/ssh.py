"""The `ssh` provider: a machine you own, reached over SSH ([hosts.NAME]).

After buying the card the ledger keeps counting: its hours are recorded as owned hardware at
its running cost (`ledger.ownership.running_usd_per_hour`). The trainer runs directly
(`process` runtime) with the host's Python, in WORKDIR/<job>. It runs no inference fleet.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from launcher.config import HostSettings
from launcher.errors import ConfigError, SpecError
from launcher.output import usd
from launcher.providers.base import JobRef, Plan, RentRequest, Workers, WorkerSpec
from launcher.ssh.client import Ssh, SshTarget
from launcher.ssh.host import SshHost
from launcher.ssh.hostkeys import PinnedHostKey
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
from ledger.ownership import running_usd_per_hour
from ledger.timeutil import utcnow


def target_of(name: str, h: HostSettings) -> SshTarget:
    """The SSH target of a configured host, its host key pinned from the config."""
    try:
        pin = PinnedHostKey.parse(h.host_key)
    except Exception as exc:
        raise ConfigError(f"hosts.{name}.host_key is not an OpenSSH public key ({exc})",
                          "copy the line from the host's /etc/ssh/ssh_host_ed25519_key.pub") from None
    return SshTarget(host=h.host, port=h.port, user=h.user, key_path=Path(h.key_path).expanduser(),
                     host_key=pin, deadline_s=60.0)


@dataclass
class SshMachine:
    host: SshHost
    session_id: int | None
    ledger: Ledger
    description: str
    rent_timings: dict[str, float] = field(default_factory=dict)  # SSH connect

    def interrupted(self, fresh: bool = False) -> bool:
        return False  # your own machine is not taken back

    def ship(self, local: Path, remote: str) -> None:
        self.host.put(local, remote)

    def prepare(self) -> None:
        """The trainer runs directly (`process` runtime): nothing to get ready."""

    def keep(self, local: Path, name: str) -> None:
        """Checkpoints stay in the run directory; nothing else to keep them in."""

    def let_go(self) -> None:
        """Never taken back (interrupted() is False); ended like a user's stop if asked."""
        self.release("user")

    def release(self, reason: str) -> None:
        try:
            if self.host.running("train.pid"):
                self.host.signal("train.pid")
        finally:
            self.host.close()
            if self.session_id is not None:
                self.ledger.end_session(self.session_id, utcnow(), reason)


class SshProvider:
    """Runs jobs on one configured host."""

    name = "ssh"

    def __init__(self, ledger: Ledger, name: str, settings: HostSettings, usd_per_kwh: Decimal,
                 rules: BillingRules) -> None:
        self.ledger, self.host_name, self.settings = ledger, name, settings
        self.gpu = settings.gpu
        self.rate = running_usd_per_hour(settings.watts, usd_per_kwh)
        self.rules = rules

    def plan(self) -> Plan:
        return Plan(self.gpu, "owned",
                    f"{self.host_name} ({self.settings.user}@{self.settings.host}, {self.gpu}) over SSH, "
                    f"at {usd(self.rate, 4)}/h running cost ({self.settings.watts} W)",
                    self.rate, overhead_s=30, machine={"host": self.host_name})

    def trainer_argv(self, args: list[str]) -> list[str]:
        return [*shlex.split(self.settings.python), "-m", "jobs.htr", *args]

    def _host(self, job: str) -> SshHost:
        ssh = Ssh(target_of(self.host_name, self.settings)).connect()
        return SshHost(ssh, f"{self.settings.workdir}/{job}")

    def rent(self, request: RentRequest) -> SshMachine:
        job = request.job
        t = time.monotonic()
        host = self._host(job)
        connect_s = time.monotonic() - t
        session_id = self.ledger.record_session(
            NewSession(provider="ssh", gpu_model=self.gpu, start_at=utcnow(), usd_per_hour=self.rate,
                       job_id=job, state="running", zone=self.host_name,
                       note=f"attempt {request.attempt}"),
            self.rules,
        )
        return SshMachine(host, session_id, self.ledger, f"{self.host_name} ({self.settings.host}, ssh)",
                          {"ssh connect": connect_s})

    def reattach(self, job: JobRef) -> SshMachine | None:
        host = self._host(job.job)
        return SshMachine(host, job.session_id, self.ledger, f"{self.host_name} (ssh)")

    def workers(self, spec: WorkerSpec, gpu: str, state_dir: Path) -> Workers:
        raise SpecError("the ssh provider runs no inference fleet", "use --fleet aws or local")
