"""Following a job on its machine: events home, checkpoints copied off the box, the provider's
word, reconnects, the heartbeat and the budget (the watch step of launcher/train/flow.py).

The job runs detached on the box, so the launcher only ever looks: `follow()` polls every
POLL_S until the job is done, failed, interrupted or stopped, and comes back with that word
(`ctrl-c`: the user stopped it here).

Ctrl-C: the first asks "detach or stop?"; a second one at that question, or one without a
terminal to ask on, means stop. Stopping sends the trainer SIGTERM, waits (up to DRAIN_S, more
Ctrl-Cs do not cut it short) for its checkpoint and brings that home.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.ctrl_c import check, handled, never_lost
from launcher.errors import BudgetError, InputError, SshError
from launcher.output import usd
from launcher.status import stopped_elsewhere
from launcher.train.events import EventReader, JobProgress, status_line
from ledger.book import Ledger
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from launcher.providers.base import Host, Machine
    from launcher.rundir import RunDir, RunState
    from launcher.train.types import TrainDeps

POLL_S = 0.5
MAX_UTIL_SAMPLES = 720  # GPU utilisation samples kept on the job (an hour of 5-second progress)
HEARTBEAT_S = 30.0  # the box's dead-man switch waits [aws] deadman_minutes (15) by default
RECONNECT_S = 600.0  # keep trying to reach a box this long before giving the job up
RECONNECT_TRY_S = 20.0  # one turn of reconnecting; the provider is asked between turns
DRAIN_S = 20.0  # how long a stopping job gets to write its checkpoint and last events


def events_file(state: RunState) -> str:
    """Each attempt writes its own event file on the host, so offsets never mix."""
    return f"events-{state.attempt}.jsonl"


def follow(state: RunState, run: RunDir, deps: TrainDeps, machine: Machine,
           progress: JobProgress) -> str:
    """Stream events until the job ends; return done | interrupted | failed | stopped | ctrl-c.

    A dropped connection is not the end of the job (it runs detached on the box): polling
    goes on, reconnecting in turns of RECONNECT_TRY_S for up to RECONNECT_S before giving up.
    Between turns the provider is asked: a box it took back without a notice (or whose notice
    never reached us) is an interruption, so the job is relaunched, not failed.
    """
    reader = EventReader()
    beat = [0.0]
    lost_since: float | None = None
    with never_lost():
        return _follow(state, run, deps, machine, progress, reader, beat, lost_since)


def _follow(state: RunState, run: RunDir, deps: TrainDeps, machine: Machine, progress: JobProgress,
            reader: EventReader, beat: list[float], lost_since: float | None) -> str:
    try:
        while True:
            check()  # a Ctrl-C that Python swallowed (launcher/ctrl_c.py)
            try:
                # A link that dropped between two polls is retried here, briefly, rather
                # than for the whole SSH deadline inside the next call.
                machine.host.reconnect(RECONNECT_TRY_S)
                outcome = _poll(state, run, deps, machine, progress, reader, beat)
                lost_since = None
            except SshError as exc:
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    deps.say(f"connection lost ({exc.message}); reconnecting")
                if machine.interrupted(fresh=True):
                    deps.say("the provider took the machine back while it was unreachable")
                    return "interrupted"
                if stopped_elsewhere(deps.ledger, state.job):
                    return "stopped"  # `gpuhire stop` took the machine away
                if now - lost_since > RECONNECT_S:
                    raise
                time.sleep(min(10.0, 1.0 + (now - lost_since) / 4))
                continue
            if outcome is not None:
                return outcome
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        handled()
        if _detach_wanted(deps):
            raise Detached from None
        deps.say(f"stopping job {state.job}: the trainer writes a checkpoint, and it comes home")
        machine.host.signal("train.pid", signal.SIGTERM)  # it checkpoints: bring that home
        deadline = time.monotonic() + DRAIN_S
        while True:
            try:
                _drain(machine.host, state, run, deps, machine, progress, reader, deadline)
                break
            except KeyboardInterrupt:  # more Ctrl-C: the checkpoint is on its way, keep waiting
                deps.say("still stopping: waiting for the trainer's checkpoint")
        run.save(state)
        return "ctrl-c"


def _detach_wanted(deps: TrainDeps) -> bool:
    """After one Ctrl-C: whether the user wants to detach. No terminal to ask on, a second
    Ctrl-C at the question, or no answer (end of input) all mean stop."""
    if not deps.interactive():
        deps.say("interrupted: no terminal to ask detach-or-stop on, so the job stops")
        return False
    try:
        return deps.confirm("Detach and leave the job running? (no = stop it now)")
    except (KeyboardInterrupt, EOFError, InputError):
        return False


def _poll(state: RunState, run: RunDir, deps: TrainDeps, machine: Machine,
          progress: JobProgress, reader: EventReader, beat: list[float]) -> str | None:
    """One look at the job: new events, its process, the provider's word, the budget."""
    host = machine.host
    data, state.event_offset = host.tail(events_file(state), state.event_offset)
    if data:
        run.append_events(data)
        for ev in reader.feed(data):
            _on_event(ev, state, run, deps, machine, progress)
        run.save(state)
    if progress.done:
        return "done"
    if progress.error:
        return "failed"
    if machine.interrupted():
        host.signal("train.pid", signal.SIGTERM)  # checkpoint now
        _drain(host, state, run, deps, machine, progress, reader)
        return "interrupted"
    if not host.running("train.pid"):
        _drain(host, state, run, deps, machine, progress, reader)
        outcome = _outcome(progress)
        # Gone without a word: the provider may have taken the box (ask now, not in 15 s).
        return "interrupted" if outcome == "failed" and machine.interrupted(fresh=True) else outcome
    check_budget(state, deps)
    now = time.monotonic()
    if now - beat[0] > HEARTBEAT_S:
        host.heartbeat()
        beat[0] = now
    return None


def _outcome(progress: JobProgress) -> str:
    if progress.done:
        return "done"
    return "interrupted" if progress.interrupted else "failed"


class Detached(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The user chose to detach with Ctrl-C."""


def _drain(host: Host, state: RunState, run: RunDir, deps: TrainDeps, machine: Machine,
           progress: JobProgress, reader: EventReader, deadline: float | None = None) -> None:
    """Read what the job wrote in its last moments (up to DRAIN_S, or until `deadline`)."""
    deadline = time.monotonic() + DRAIN_S if deadline is None else deadline
    while time.monotonic() < deadline:
        data, state.event_offset = host.tail(events_file(state), state.event_offset)
        if data:
            run.append_events(data)
            for ev in reader.feed(data):
                _on_event(ev, state, run, deps, machine, progress)
        if progress.done or progress.interrupted or progress.error:
            return
        if not host.running("train.pid") and not data:
            return
        time.sleep(POLL_S)


def _on_event(ev: dict[str, object], state: RunState, run: RunDir, deps: TrainDeps,
              machine: Machine, progress: JobProgress) -> None:
    progress.apply(ev)
    kind = ev.get("event")
    util = ev.get("gpu_util")
    if kind in ("progress", "epoch") and isinstance(util, int | float):
        record_gpu_util(deps.ledger, state.job, float(util), str(ev.get("time") or ""))
    if kind == "checkpoint" and isinstance(ev.get("path"), str):
        rel = _relative_to_run(str(ev["path"]))
        machine.host.get(f"run/{rel}", run.run / rel)  # keep a copy off the box
        machine.keep(run.run / rel, rel)
    elif kind == "epoch":
        deps.say(status_line(progress, deps.ledger.job_usd(state.job)))
    elif kind == "error":
        deps.say(f"trainer error: {ev.get('message')}")


def _relative_to_run(path: str) -> str:
    parts = Path(path).parts
    if "run" in parts:
        return str(Path(*parts[parts.index("run") + 1 :]))
    return Path(path).name


def record_gpu_util(ledger: Ledger, job: str, util: float, at: str = "") -> None:
    """Keep the job's GPU utilisation as it runs (`Job.metrics["gpu_util_samples"]`, the last
    MAX_UTIL_SAMPLES) and its mean so far (`Job.gpu_util`): the idle-GPU alert judges a running
    machine by them."""
    when = at or utcnow().isoformat()
    metrics = dict(ledger.get_job(job).metrics or {})
    samples = [*metrics.get("gpu_util_samples", []), [when, round(util, 4)]][-MAX_UTIL_SAMPLES:]
    metrics["gpu_util_samples"] = samples
    ledger.update_job(job, metrics=metrics, gpu_util=sum(s[1] for s in samples) / len(samples))


def check_budget(state: RunState, deps: TrainDeps) -> None:
    if state.max_usd is None:
        return
    spent = deps.ledger.job_usd(state.job)
    if spent > Decimal(state.max_usd):
        raise BudgetError(
            f"job {state.job} has spent {usd(spent, 4)}, above --max-usd {state.max_usd}; "
            "it was stopped and the machine released",
            f"the checkpoints are in runs/{state.job}/run; `gpuhire resume {state.job} "
            "--max-usd X` continues with a higher cap",
        )


@contextlib.contextmanager
def beating(host: Host, every_s: float) -> Iterator[None]:
    """Touch the host's heartbeat from a thread every `every_s` while the caller works.

    Shipping data (SFTP, or the box fetching it from S3) can take longer than the box's
    dead-man switch waits. The heartbeat goes over its own exec channel, so it runs beside a
    transfer (tests/ssh/test_ssh_transfer.py). A failed beat is not the caller's problem:
    the transfer in the main thread notices a dead link itself.
    """
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):
                host.heartbeat()
            if stop.wait(every_s):
                return

    thread = threading.Thread(target=beat, name="gpuhire-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every_s)  # a beat stuck on a dead link must not hold us up
