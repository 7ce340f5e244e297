"""The `local` provider: this machine, the embedded default without AWS.

Its hours go into the ledger as owned hardware (not rent), at the machine's running cost
(`ledger.ownership.running_usd_per_hour`: watts and USD per kWh from `[local]` and
`[ownership]` in the config). The trainer is a detached process (the `process` runtime); an
inference fleet is worker processes here, through the same queue and bucket as on AWS (for
trying the fleet path without renting, and the loopback tests).

`--gpus N` (launcher/train/gpus.py): N trainer processes under torchrun, one per CUDA GPU, or
N gloo processes on the CPU. A session records the devices the machine lends the job: N GPUs,
or one CPU however many processes share it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from launcher.output import usd
from launcher.providers.base import JobRef, Plan, RentRequest, WorkerSpec
from launcher.train.gpus import torchrun_args
from ledger.book import Ledger, NewSession
from ledger.catalogue import BillingRules
from ledger.ownership import running_usd_per_hour
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

    def let_go(self) -> None:
        """Never taken back (interrupted() is False); ended like a user's stop if asked."""
        self.release("user")

    def release(self, reason: str) -> None:
        self.host.signal("train.pid")
        if self.session_id is not None:
            self.ledger.end_session(self.session_id, utcnow(), reason)


class LocalProvider:
    """Runs the trainer as a detached process on this machine (the `process` runtime)."""

    name = "local"

    def __init__(self, ledger: Ledger, run_root: Path, gpu: str, watts: Decimal,
                 usd_per_kwh: Decimal, rules: BillingRules, gpus: int = 1,
                 device: str = "auto") -> None:
        self.ledger = ledger
        self.gpus = gpus  # trainer processes (torchrun when > 1)
        self.device = device  # auto | cuda | cpu (N gloo processes): launcher.train.gpus.local_device
        self.run_root = run_root
        self.gpu = gpu
        self.watts = watts
        self.usd_per_hour = running_usd_per_hour(watts, usd_per_kwh)
        self.rules = rules

    def use_gpus(self, gpus: int, device: str) -> None:
        """Train with `gpus` processes on `device` (launcher.train.gpus.local_device decided)."""
        self.gpus, self.device = gpus, device

    @property
    def gpu_count(self) -> int:
        """The devices a session of this machine records: N GPUs, or one CPU."""
        return self.gpus if self.device == "cuda" else 1

    def plan(self) -> Plan:
        what = "the trainer as a local process"
        if self.gpus > 1:
            kind = "GPUs" if self.device == "cuda" else "CPU processes (gloo)"
            what = f"the trainer under torchrun, {self.gpus} {kind}"
        return Plan(self.gpu, "owned",
                    f"this machine ({self.gpu}), {what}, at "
                    f"{usd(self.usd_per_hour, 4)}/h running cost ({self.watts} W)",
                    self.usd_per_hour, overhead_s=10,  # starting python and torch
                    machine={"gpus": self.gpus, "device": self.device})

    def trainer_argv(self, args: list[str]) -> list[str]:
        if self.gpus <= 1:
            return [sys.executable, "-m", "jobs.htr", *args]
        device = ["--device", self.device] if self.device in ("cpu", "cuda") else []
        return [sys.executable, *torchrun_args(self.gpus), *args, *device]

    def reattach(self, job: JobRef) -> LocalMachine | None:
        box = self.run_root / "box"
        if not box.exists():
            return None
        return LocalMachine(LocalHost(box), job.session_id, self.ledger)

    def rent(self, request: RentRequest) -> LocalMachine:
        host = LocalHost(self.run_root / "box")
        session_id = self.ledger.record_session(
            NewSession(provider="local", gpu_model=self.gpu, gpu_count=self.gpu_count,
                       start_at=utcnow(), usd_per_hour=self.usd_per_hour, job_id=request.job,
                       state="running", note=f"attempt {request.attempt}"),
            self.rules,
        )
        return LocalMachine(host, session_id, self.ledger)

    def workers(self, spec: WorkerSpec, gpu: str, state_dir: Path) -> LocalFleet:
        return LocalFleet(spec, self.ledger, state_dir, self.usd_per_hour, self.rules, device="cpu")


@dataclass
class _Proc:
    proc: subprocess.Popen[bytes]
    session_id: int


@dataclass
class LocalFleet:
    """Worker processes on this machine (see the module docstring)."""

    spec: WorkerSpec
    ledger: Ledger
    log_dir: Path
    usd_per_hour: Decimal
    rules: BillingRules
    gpu: str = "cpu"
    device: str = "cpu"
    description: str = "worker processes on this machine (local fleet)"
    started: int = 0
    procs: list[_Proc] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _one(self) -> None:
        n = self.started
        self.started += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"worker-{n}.log").open("ab")
        argv = [sys.executable, "-m", "jobs.fleet.worker", *self.spec.argv(),
                "--device", self.device, "--name", f"local-{n}"]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        session = self.ledger.record_session(
            NewSession(provider="local", gpu_model=self.gpu, start_at=utcnow(),
                       usd_per_hour=self.usd_per_hour, job_id=self.spec.job,
                       note=f"fleet worker {n}"), self.rules)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        log.close()
        self.procs.append(_Proc(proc, session))

    def start(self, count: int) -> None:
        for _ in range(count):
            self._one()

    def alive(self) -> int:
        left = []
        for p in self.procs:
            code = p.proc.poll()
            if code is None:
                left.append(p)
            else:  # exit 0: the queue drained; anything else: lost (killed, crashed)
                self.ledger.end_session(p.session_id, utcnow(), "completed" if code == 0 else "unknown")
        self.procs = left
        return len(left)

    def top_up(self, wanted: int) -> int:
        missing = max(0, wanted - self.alive())
        self.start(missing)
        return missing

    def stop(self, reason: str) -> None:
        for p in self.procs:
            if p.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.proc.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.proc.pid, signal.SIGKILL)
                p.proc.wait()
            self.ledger.end_session(p.session_id, utcnow(), reason)
        self.procs = []


class LocalHost:
    """This machine: files are copied, the job is a detached local process."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = str(workdir)
        workdir.mkdir(parents=True, exist_ok=True)

    def _path(self, remote: str) -> Path:
        p = Path(remote)
        return p if p.is_absolute() else Path(self.workdir) / p

    def put(self, local: Path, remote: str) -> None:
        target = self._path(remote)
        if local.resolve() == target.resolve():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        if local.is_dir():
            shutil.copytree(local, target, dirs_exist_ok=True)
        else:
            shutil.copy2(local, target)

    def get(self, remote: str, local: Path) -> None:
        source = self._path(remote)
        if source.resolve() == local.resolve():
            return
        local.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, local, dirs_exist_ok=True)
        else:
            tmp = local.with_name(local.name + ".part")
            shutil.copy2(source, tmp)
            os.replace(tmp, local)

    def exists(self, remote: str) -> bool:
        return self._path(remote).exists()

    def start(self, argv: list[str], log: str, pid_file: str, env: dict[str, str]) -> int:
        log_path = self._path(log)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                cwd=self.workdir, env={**os.environ, **env}, start_new_session=True,
            )
        self._path(pid_file).write_text(str(proc.pid))
        self._child = proc  # reaped in running(); a detached job outlives us otherwise
        return proc.pid

    def _pid(self, pid_file: str) -> int | None:
        try:
            return int(self._path(pid_file).read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self, pid_file: str) -> bool:
        child = getattr(self, "_child", None)
        if child is not None and child.poll() is not None:
            return False
        pid = self._pid(pid_file)
        return pid is not None and pid_alive(pid)

    def tail(self, remote: str, offset: int) -> tuple[bytes, int]:
        path = self._path(remote)
        if not path.exists():
            return b"", offset
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read()
        return data, offset + len(data)

    def signal(self, pid_file: str, sig: int = signal.SIGTERM) -> None:
        pid = self._pid(pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def heartbeat(self, lease_s: float = 0.0) -> None:
        """Nothing to keep alive: this machine is not rented."""

    def reconnect(self, deadline_s: float) -> None:
        """Always reachable."""

    def close(self) -> None:
        """Nothing to close."""


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a zombie, killed but not yet reaped, is dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
