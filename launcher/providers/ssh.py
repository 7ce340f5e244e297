"""The `ssh` provider for training: a machine you own, reached over SSH ([hosts.NAME]).

After buying the card the ledger keeps counting: its hours are recorded as owned hardware at
its running cost (watts / 1000 x USD per kWh). The trainer runs directly (`process` runtime)
with the host's Python, in WORKDIR/<job>.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from launcher.config import HostSettings
from launcher.errors import ConfigError
from launcher.output import usd
from launcher.rundir import RunState
from launcher.ssh.client import Ssh, SshTarget
from launcher.ssh.host import SshHost
from launcher.ssh.hostkeys import PinnedHostKey
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
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

    def release(self, reason: str) -> None:
        try:
            if self.host.running("train.pid"):
                self.host.signal("train.pid")
        finally:
            self.host.close()
            if self.session_id is not None:
                self.ledger.end_session(self.session_id, utcnow(), reason)


class SshRenter:
    """Runs jobs on one configured host."""

    provider = "ssh"
    market = "owned"

    def __init__(self, ledger: Ledger, name: str, settings: HostSettings, usd_per_kwh: Decimal,
                 rules: BillingRules) -> None:
        self.ledger, self.name, self.settings = ledger, name, settings
        self.gpu = settings.gpu
        self.rate = settings.watts / Decimal(1000) * usd_per_kwh
        self.rules = rules

    def usd_per_hour(self) -> Decimal:
        return self.rate

    def plan(self) -> str:
        return (f"{self.name} ({self.settings.user}@{self.settings.host}, {self.gpu}) over SSH, "
                f"at {usd(self.rate, 4)}/h running cost ({self.settings.watts} W)")

    def overhead_s(self) -> int:
        return 30

    def trainer_argv(self, args: list[str]) -> list[str]:
        return [*shlex.split(self.settings.python), "-m", "jobs.htr", *args]

    def _host(self, job: str) -> SshHost:
        ssh = Ssh(target_of(self.name, self.settings)).connect()
        return SshHost(ssh, f"{self.settings.workdir}/{job}")

    def rent(self, job: str, attempt: int) -> SshMachine:
        t = time.monotonic()
        host = self._host(job)
        connect_s = time.monotonic() - t
        session_id = self.ledger.record_session(
            NewSession(provider="ssh", gpu_model=self.gpu, start_at=utcnow(), usd_per_hour=self.rate,
                       job_id=job, state="running", zone=self.name, note=f"attempt {attempt}"),
            self.rules,
        )
        return SshMachine(host, session_id, self.ledger, f"{self.name} ({self.settings.host}, ssh)",
                          {"ssh connect": connect_s})

    def reattach(self, state: RunState) -> SshMachine | None:
        host = self._host(state.job)
        return SshMachine(host, state.session_id, self.ledger, f"{self.name} (ssh)")
