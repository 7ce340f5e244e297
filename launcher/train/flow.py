"""`gpuhire train`: check, quote, rent, ship, follow, recover, settle.

The flow talks to a `Provider` (which machine, at what price; launcher/providers/base.py) and
the `Machine` it rents, so the local machine, an SSH host and a spot instance go through the
same steps.
A machine is always released: on success, failure, Ctrl-C-and-stop, or an exception; only an
explicit detach leaves the job running (and then its dead-man switch still guards the bill).
The watch step (events, checkpoints home, reconnects, the provider's word, the budget) is
launcher/train/follow.py.

Ctrl-C (docs/train.md): the first one asks detach-or-stop; a second one at that question, or
one without a terminal to ask on, stops the job: the trainer checkpoints, the checkpoint comes
home, the job is `stopped`, and `gpuhire resume JOB` continues it from that checkpoint.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from launcher.errors import BudgetError, SpecError, SshError
from launcher.providers.base import Host, Machine, RentRequest
from launcher.rundir import RunDir, RunState, new_job_id
from launcher.status import stopped_elsewhere
from launcher.train.engine import engine_args, model_files
from launcher.train.events import EventReader, JobProgress
from launcher.train.follow import (
    HEARTBEAT_S,
    RECONNECT_TRY_S,
    Detached,
    beating,
    check_budget,
    events_file,
    follow,
)
from launcher.train.prepare import dry_run, job_quote, prepare
from launcher.train.quote import device_of, host_name
from launcher.train.types import TrainDeps, TrainOptions, TrainResult
from ledger.models import Job
from ledger.timeutil import utcnow

DETACH_LEASE_S = 24 * 3600.0  # a detached job's heartbeat lease (max lifetime still applies)
REFUSED = ("done", "failed")  # `resume` goes on from any other state, `stopped` included


def _ship_preset(preset: str, run: RunDir) -> str:
    """A preset file of the user's own travels inside the dataset folder (shipped to the box
    with it); the trainer finds it there. Preset names need nothing."""
    if not preset.endswith(".toml"):
        return preset
    shutil.copyfile(preset, run.dataset / "preset.toml")
    return "dataset/preset.toml"


def train(opts: TrainOptions, deps: TrainDeps) -> TrainResult:
    """Run the whole flow for a new job; see the module docstring."""
    job = opts.job or new_job_id()
    run = RunDir(opts.out or Path.cwd() / "runs" / job)
    epochs = 50 if opts.epochs is None else opts.epochs
    if epochs < 1 or opts.max_restarts < 0:
        raise SpecError(f"epochs {epochs} / max restarts {opts.max_restarts} cannot run",
                        "give --epochs 1 or more and --max-restarts 0 or more")
    if opts.dry_run:
        return dry_run(job, run, epochs, opts, deps)
    fresh, had_dataset = run.create(job), run.dataset.exists()
    try:
        lines = prepare(opts, deps, run.dataset)
        q, choice = job_quote(job, lines, epochs, opts, deps, run.dataset)
        preset = _ship_preset(opts.preset, run)
        plan = deps.provider.plan()
        confirmed = opts.yes or deps.confirm(f"Rent {plan.gpu} for about ${q.usd}?")
    except BaseException:  # nothing recorded yet: leave nothing behind either
        _discard(run, fresh, had_dataset)
        raise
    result = TrainResult(job, "dry-run", q, run.path, gpu_choice=choice,
                         quoted_s=float(q.seconds), quoted_usd=q.usd, engine=opts.engine)
    if not confirmed:
        _discard(run, fresh, had_dataset)
        result.status = "stopped"
        result.message = "not confirmed; nothing rented"
        return result
    deps.ledger.create_job(Job(
        id=job, kind="train", status="launching", gpu_model=plan.gpu, max_usd=opts.max_usd,
        spec={"data": [str(p) for p in opts.data], "preset": opts.preset, "epochs": epochs,
              "provider": deps.provider.name, "lines": lines, "run_dir": str(run.path),
              "host": host_name(), "gpus": q.gpus, "engine": opts.engine,
              **({"kraken_spec": opts.kraken_spec} if opts.kraken_spec else {})},
        model_size=q.model_size, device=device_of(plan.gpu), quoted_s=float(q.seconds),
        quoted_usd=q.usd,
    ))
    state = RunState(job=job, provider=deps.provider.name, gpu=plan.gpu,
                     data=[str(p) for p in opts.data], preset=preset, epochs=epochs,
                     max_restarts=opts.max_restarts, market=plan.market,
                     max_usd=None if opts.max_usd is None else str(opts.max_usd),
                     machine=dict(plan.machine),  # e.g. which configured host, for `resume`
                     engine=opts.engine, kraken_spec=opts.kraken_spec)
    run.save(state)
    return drive(state, run, deps, result, opts.detach)


def _discard(run: RunDir, fresh: bool, had_dataset: bool) -> None:
    """Remove what a new job made before anything was recorded: its folder if it made it,
    else the dataset it compiled there."""
    if fresh:
        shutil.rmtree(run.path, ignore_errors=True)
    elif not had_dataset:
        shutil.rmtree(run.dataset, ignore_errors=True)


def drive(state: RunState, run: RunDir, deps: TrainDeps, result: TrainResult,
          detach: bool = False, machine: Machine | None = None) -> TrainResult:
    """Attempts until done, failed or out of restarts; shared by `train` and `resume`."""
    started = time.monotonic()
    progress = result.progress
    try:
        while True:
            if machine is None:
                result.attempt_timings.append({})
                t = time.monotonic()
                machine = deps.provider.rent(RentRequest(state.job, state.attempt))
                for stage, seconds in machine.rent_timings.items():  # launch, SSH connect
                    result.add(stage, seconds)
                if not machine.rent_timings:
                    result.time("rent", t)
                state.session_id = machine.session_id
                state.event_offset = 0
                state.log_offset = 0
                _ship_and_start(state, run, deps, machine, result)
            deps.ledger.update_job(state.job, status="running", ended_at=None)  # resumed: not ended
            state.status = "running"
            run.save(state)
            deps.say(f"running on {machine.description}")
            if detach:
                return _detach(state, deps, machine, result, started)
            outcome = follow(state, run, deps, machine, progress)
            if outcome == "ctrl-c":  # the user stopped it: settle as stopped, exit 130
                result.interrupted, outcome = True, "stopped"
            if progress.started_at and progress.first_step_at:  # this attempt's, once
                result.add("start to first step seen", progress.first_step_at - progress.started_at)
                progress.started_at = None
            if outcome == "interrupted" and stopped_elsewhere(deps.ledger, state.job):
                outcome = "stopped"  # `gpuhire stop` signalled it: do not relaunch
            if outcome == "interrupted" and state.attempt < state.max_restarts:
                deps.say("interrupted by the provider: resuming from the last checkpoint")
                # The checkpoint is home (follow drained it). The provider ends the old box
                # itself: one we terminated would be billed; the relaunch does not wait for it.
                machine.let_go()
                machine = None
                state.attempt += 1
                state.status = "interrupted"
                run.save(state)
                continue
            return _settle(state, run, deps, machine, result, outcome, started)
    except Detached:
        assert machine is not None
        result.interrupted = True  # Ctrl-C, then "detach": the run was interrupted all the same
        return _detach(state, deps, machine, result, started)
    except BaseException as exc:
        if machine is not None:  # never leave a machine running by accident
            _release_on(exc, state, run, deps, machine)
        raise


def _release_on(exc: BaseException, state: RunState, run: RunDir, deps: TrainDeps,
                machine: Machine) -> None:
    """Release the machine after `exc` and record how the job ended: stopped at its cap or by a
    Ctrl-C (while staging or settling; `resume` goes on from either), else failed."""
    machine.release("user")
    over = isinstance(exc, BudgetError)  # stopped at the cap: `resume --max-usd` goes on
    user = isinstance(exc, KeyboardInterrupt)
    deps.ledger.update_job(state.job, status="stopped" if over or user else "failed", ended_at=utcnow())
    state.status = "over-budget" if over else "stopped" if user else "failed"
    run.save(state)
    if user:
        deps.say(f"stopped: `gpuhire resume {state.job}` continues it from its last checkpoint")
    _alerts_after(deps, state.job)  # a job stopped at its cap or failed is news too


def _alerts_after(deps: TrainDeps, job: str) -> None:
    """Run the alert checks; their own trouble must not hide why the job ended."""
    try:
        deps.after_job(job)
    except Exception as exc:
        deps.say(f"alert checks failed: {exc}")


def _detach(state: RunState, deps: TrainDeps, machine: Machine, result: TrainResult,
            started: float) -> TrainResult:
    """Leave the job running without a launcher: the dead-man switch gets a lease (the box's
    maximum lifetime still ends it), and `attach`/`resume` pick it up. The summary counts what
    ran so far: this attempt, the time and the USD."""
    machine.host.heartbeat(lease_s=DETACH_LEASE_S)
    result.status = "detached"
    result.attempts = state.attempt + 1
    result.seconds = time.monotonic() - started
    result.usd = deps.ledger.job_usd(state.job)
    deps.say(f"detached: the job keeps running; `gpuhire attach {state.job}` follows it again")
    return result


def trainer_args(state: RunState) -> list[str]:
    args = ["train", "dataset", "--out", "run", "--preset", state.preset,
            "--events", events_file(state), "--job", state.job]
    if state.epochs:
        args += ["--epochs", str(state.epochs)]
    return args + engine_args(state.engine, state.kraken_spec)  # on every attempt: resume too


def _ship_and_start(state: RunState, run: RunDir, deps: TrainDeps, machine: Machine,
                    result: TrainResult) -> None:
    host = machine.host
    with beating(host, HEARTBEAT_S):  # staging may outlast the box's dead-man switch
        t = time.monotonic()
        machine.ship(run.dataset, "dataset")
        if run.run.exists():  # checkpoints of an earlier attempt: the trainer resumes from them
            host.put(run.run, "run")
        result.time("ship data and checkpoints", t)
        t = time.monotonic()
        machine.prepare()
        result.time("prepare runtime (image pull)", t)
        t = time.monotonic()
        argv = [a.replace("{workdir}", host.workdir)
                for a in deps.provider.trainer_argv(trainer_args(state))]
        host.start(argv, f"train-{state.attempt}.log", "train.pid", {"GPUHIRE_JOB": state.job})
        result.time("start detached", t)
    result.progress.started_at = time.monotonic()
    result.progress.first_step_at = None
    state.machine["workdir"] = host.workdir


def _settle(state: RunState, run: RunDir, deps: TrainDeps, machine: Machine,
            result: TrainResult, outcome: str, started: float) -> TrainResult:
    host = machine.host
    p = result.progress
    t = time.monotonic()
    if p.done_at:
        result.add("done seen to settle", t - p.done_at)
    try:
        _fetch(host, state, run, deps, outcome)
        result.time("fetch model and logs", t)
    finally:
        if p.done_at:
            result.add("done seen to terminate called", time.monotonic() - p.done_at)
        t = time.monotonic()
        machine.release("completed" if outcome == "done" else "user")
        result.time("terminate and close session", t)
    for name in model_files(state.engine):  # crnn: model.pt; kraken: safetensors and CoreML
        if (run.run / name).exists():
            shutil.copy2(run.run / name, run.path / name)
    result.models = run.models(model_files(state.engine))
    status = {"done": "done", "stopped": "stopped"}.get(outcome, "failed")
    result.status, result.attempts = status, state.attempt + 1
    result.seconds = time.monotonic() - started
    result.usd = deps.ledger.job_usd(state.job)
    if outcome == "interrupted":  # out of restarts: the checkpoints are home, resume goes on
        result.message = (f"interrupted {state.attempt + 1} time(s), more than --max-restarts "
                          f"{state.max_restarts} allows; `gpuhire resume {state.job}` continues "
                          "from the last checkpoint")
    elif status == "failed":
        result.message = p.error or f"the trainer stopped without finishing; see {run.log}"
    elif status == "stopped":
        result.message = f"`gpuhire resume {state.job}` continues it from its last checkpoint"
    _actuals(state.job, deps, result)
    spec = deps.ledger.get_job(state.job).spec
    if p.world_size and spec.get("gpus", 1) != p.world_size:  # the processes the trainer ran
        spec = {**spec, "gpus": p.world_size}  # (fewer after --gpus-fallback, or a resume's N)
    deps.ledger.update_job(
        state.job, status=status, ended_at=utcnow(), best_cer=p.best_cer, spec=spec,
        lines_per_s=p.mean(p.lines_per_s_all), data_wait_fraction=p.mean(p.data_waits),
        gpu_util=p.mean(p.gpu_utils),
        metrics={"epochs": p.epoch, "attempts": result.attempts, "usd": str(result.usd)},
        actual_s=result.actual_s, actual_usd=result.actual_usd,
    )
    state.status = "interrupted" if outcome == "interrupted" else status
    run.save(state)
    deps.after_job(state.job)
    return result


def _actuals(job: str, deps: TrainDeps, result: TrainResult) -> None:
    """What the whole job took (every attempt's session: a resumed job counts its earlier
    attempts too) and cost, beside what it was quoted (from the ledger: `resume` has no quote)."""
    row = deps.ledger.get_job(job)
    sessions = deps.ledger.sessions(job_id=job)
    took = sum((float(v.cost.duration_s) for v in sessions), 0.0)
    result.actual_s = took if sessions else result.seconds
    result.actual_usd = result.usd
    result.quoted_s, result.quoted_usd = row.quoted_s, row.quoted_usd


def _fetch(host: Host, state: RunState, run: RunDir, deps: TrainDeps, outcome: str) -> None:
    """Bring the model (when done) and the log home. Without a model to fetch, a box that
    cannot be reached (taken back, say) costs a short try and a note, not the SSH deadline."""
    try:
        if outcome != "done":
            host.reconnect(RECONNECT_TRY_S)
        if outcome == "done" and host.exists("run"):
            host.get("run", run.run)
        if host.exists(f"train-{state.attempt}.log"):
            host.get(f"train-{state.attempt}.log", run.log)
    except SshError as exc:
        if outcome == "done":
            raise
        deps.say(f"could not fetch the trainer's log ({exc.message})")


def resume(state: RunState, run: RunDir, deps: TrainDeps, *, attach_only: bool = False) -> TrainResult:
    """Pick up a job whose launcher died or detached, from the run directory and the ledger.

    A job still running is followed again (`attach`); one whose machine or process is gone
    starts a new attempt that resumes from the last checkpoint copied home (`resume`).
    """
    result = TrainResult(state.job, "running", None, run.path, engine=state.engine)
    if state.status in REFUSED:  # a stopped job (Ctrl-C, `gpuhire stop`) goes on
        raise SpecError(f"job {state.job} already ended ({state.status})",
                        "start a new job with `gpuhire train`")
    check_budget(state, deps)  # over the cap already: say so before renting anything
    machine = deps.provider.reattach(state.ref())
    _replay(state, run, result.progress)
    if machine is not None:
        # What the job wrote while nobody was watching: it may even have finished.
        data, state.event_offset = machine.host.tail(events_file(state), state.event_offset)
        if data:
            run.append_events(data)
            for ev in EventReader().feed(data):
                result.progress.apply(ev)
            run.save(state)
        if result.progress.done:
            deps.say(f"job {state.job} finished while the launcher was away: settling")
            return _settle(state, run, deps, machine, result, "done", time.monotonic())
        if machine.host.running("train.pid"):
            deps.say(f"reattached to job {state.job} on {machine.description}")
            return drive(state, run, deps, result, machine=machine)
    if attach_only:
        raise SpecError(f"job {state.job} is not running any more",
                        f"`gpuhire resume {state.job}` continues it from its last checkpoint")
    if machine is not None:
        machine.release("unknown")  # the process died with the launcher: close its session
    deps.say(f"resuming job {state.job} from its last checkpoint")
    state.attempt += 1
    return drive(state, run, deps, result)


def _replay(state: RunState, run: RunDir, progress: JobProgress) -> None:
    """Fold the events already copied home, so the summary covers the whole job."""
    if run.events.exists():
        for ev in EventReader().feed(run.events.read_bytes()):
            progress.apply(ev)
        progress.done = progress.interrupted = False
        progress.error = None
