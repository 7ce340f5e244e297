"""The `local` provider for training: this machine, the embedded default without AWS.

Its hours go into the ledger as owned hardware (not rent), at the machine's running cost:
watts / 1000 x USD per kWh, from `[local]` and `[ownership]` in the config.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from launcher.output import usd
from launcher.providers.hosts import LocalHost
from launcher.rundir import RunState
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
from ledger.timeutil import utcnow


@dataclass
class LocalMachine:
    """This machine, for one attempt; its ledger session closes on release."""

    host: LocalHost
    session_id: int | None
    ledger: Ledger
    description: str = "this machine (local provider)"
    rent_timings: dict[str, float] = field(default_factory=dict)  # nothing to launch

    def interrupted(self, fresh: bool = False) -> bool:
        return False  # nobody takes a local machine away

    def ship(self, local: Path, remote: str) -> None:
        self.host.put(local, remote)

    def prepare(self) -> None:
        """The trainer runs directly (`process` runtime): nothing to get ready."""

    def keep(self, local: Path, name: str) -> None:
        """Checkpoints stay in the run directory; nothing else to keep them in."""

    def release(self, reason: str) -> None:
        self.host.signal("train.pid")
        if self.session_id is not None:
            self.ledger.end_session(self.session_id, utcnow(), reason)


class LocalRenter:
    """Runs the trainer as a detached process on this machine (the `process` runtime)."""

    provider = "local"
    market = "owned"

    def __init__(self, ledger: Ledger, run_root: Path, gpu: str, watts: Decimal,
                 usd_per_kwh: Decimal, rules: BillingRules) -> None:
        self.ledger = ledger
        self.run_root = run_root
        self.gpu = gpu
        self.watts = watts
        self.usd_per_kwh = usd_per_kwh
        self.rules = rules

    def usd_per_hour(self) -> Decimal:
        return self.watts / Decimal(1000) * self.usd_per_kwh

    def plan(self) -> str:
        return (f"this machine ({self.gpu}), the trainer as a local process, at "
                f"{usd(self.usd_per_hour(), 4)}/h running cost ({self.watts} W)")

    def overhead_s(self) -> int:
        return 10  # starting python and torch

    def trainer_argv(self, args: list[str]) -> list[str]:
        return [sys.executable, "-m", "jobs.htr", *args]

    def reattach(self, state: RunState) -> LocalMachine | None:
        box = self.run_root / "box"
        if not box.exists():
            return None
        return LocalMachine(LocalHost(box), state.session_id, self.ledger)

    def rent(self, job: str, attempt: int) -> LocalMachine:
        host = LocalHost(self.run_root / "box")
        session_id = self.ledger.record_session(
            NewSession(provider="local", gpu_model=self.gpu, start_at=utcnow(),
                       usd_per_hour=self.usd_per_hour(), job_id=job, state="running",
                       note=f"attempt {attempt}"),
            self.rules,
        )
        return LocalMachine(host, session_id, self.ledger)
