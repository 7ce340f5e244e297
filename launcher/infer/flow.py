"""`gpuhire infer`: plan, then recognise pages on this CPU or across a fleet of spot GPUs.

1. List the pages (jobs.htr.pages); the output folder's manifest says which are done already
   (same page, same size and mtime, outputs present): those are skipped, so a rerun sends
   nothing that is done. A fleet job into the same folder that never ended as it should (its
   launcher died; its workers went on) may have finished more: those results are collected
   from the bucket first (launcher/infer/manifest.py, FleetRecords), and only the rest is sent.
2. Plan (launcher/infer/plan.py): CPU throughput measured on this machine (past runs, or a
   quick calibration on a few of the pages), GPU throughput from past fleet jobs (defaults
   otherwise), GPU prices from live spot offers (the bundled on-demand table without AWS).
3. CPU: recognise in-process with a progress bar. Fleet: model and pages to S3, batches to
   SQS, N workers (`Provider.workers`: launcher/providers/), results collected as they finish, lost workers
   replaced while work remains, every worker stopped at the end whatever happens.
4. Record the job (throughput, pages, USD) and print the summary; a page that could not be
   recognised (e.g. a corrupt image) is named in OUT/dead-letter.json.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.ctrl_c import check, never_lost
from launcher.errors import GpuhireError, ProviderError, SpecError
from launcher.infer.manifest import FleetRecords, Manifest
from launcher.infer.measure import host_name, model_engine, plan_inputs, record_segmentation, scan_frames
from launcher.infer.plan import Plan, plan
from launcher.infer.queue import Collected
from launcher.infer.types import InferDeps, InferOptions, InferResult
from launcher.rundir import new_job_id
from ledger.book import NewSession
from ledger.models import Job
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from jobs.htr.pages import Page
    from launcher.infer.manifest import FleetRecord
    from launcher.infer.queue import Fleet
    from launcher.providers.base import Workers

DEAD_LETTER = "dead-letter.json"
MEASURE_MIN_LINES = 500  # a CPU run this long measures throughput for later plans
POLL_S = 1.0
USD_REFRESH_S = 5.0  # the progress bar's USD so far is read from the ledger this often


def duration(seconds: float) -> str:
    """Seconds for people: `42 s`, `17.9 min`, `3.9 h`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3 * 3600 else f"{seconds / 3600:.1f} h"


def describe(p: Plan) -> list[str]:
    out = [f"{p.pages:,} pages, about {p.lines:,} lines"
           + (f"; {p.scans:,} page scans to segment first" if p.scans else "")]
    for o in p.options:
        mark = "->" if o.name == p.choice else "  "
        who = "this CPU" if o.name == "cpu" else f"{o.instances} x {o.name.upper()}"
        layout = f", layout {o.segment_s_per_page:.1f} s/page {o.segment_source}" if p.scans else ""
        out.append(f"{mark} {who:<12} {duration(o.seconds):>9}  ${o.usd}  "
                   f"({o.lines_per_s:,.1f} lines/s, {o.throughput_source}{layout})")
    out.append(f"choice: {p.choice} ({p.reason})")
    return out


# -- the flow ---------------------------------------------------------------------------------
def infer(opts: InferOptions, deps: InferDeps) -> InferResult:
    """See the module docstring."""
    from jobs.htr.errors import HtrError

    try:
        return _infer(opts, deps)
    except HtrError as exc:  # the trainer's own expected errors (a model it cannot load, ...)
        message = " ".join(exc.message.split())[:400]  # torch's messages span lines
        raise SpecError(message, exc.fix or "check the model and the pages") from None


def _infer(opts: InferOptions, deps: InferDeps) -> InferResult:
    pages = _pages(opts)
    manifest = Manifest(opts.out, opts.model)
    earlier = [] if opts.plan_only else FleetRecords(manifest).earlier()
    pending = [p for p in pages if not manifest.is_done(p)]
    pending = _collect_earlier(deps, manifest, earlier, pending, opts.out)
    job = opts.job or new_job_id("infer")
    result = InferResult(job, "nothing-to-do", None, opts.out, pages=len(pages),
                         skipped=len(pages) - len(pending))
    if not pending:
        deps.say(f"all {len(pages):,} pages are done already (manifest in {manifest.path}); nothing to do")
        FleetRecords(manifest).remove(*(r.job for r in earlier))
        return result
    if result.skipped:
        deps.say(f"{result.skipped:,} of {len(pages):,} pages done already: skipping them")
    result.plan = p = plan(plan_inputs(opts, deps, pending))
    for line in describe(p):
        deps.say(line)
    if opts.plan_only:
        result.status = "plan"
        return result
    if opts.int8 and p.choice != "cpu" and opts.fleet == "aws":
        raise SpecError("--int8 runs on CPUs only, and the plan chose "
                        f"{p.chosen.instances} x {p.choice.upper()}", "drop --int8, or pass --gpu none")
    if p.choice != "cpu" and deps.make_fleet is None:
        raise ProviderError(f"the plan chose {p.chosen.instances} x {p.choice.upper()}, but a fleet needs "
                            "[aws] bucket (and instance_profile) in the config",
                            "run `gpuhire init --from-terraform DIR`, or pass --gpu none to use this CPU")
    if p.choice != "cpu" and not opts.yes and not deps.confirm(
            f"Rent {p.chosen.instances} x {p.choice.upper()} for about ${p.chosen.usd}?"):
        result.status = "stopped"
        return result
    # a local fleet's workers are this machine's CPU, whatever GPU the plan priced
    device = p.choice if p.choice != "cpu" and opts.fleet == "aws" else "cpu"
    fleet = {"fleet": opts.fleet} if p.choice != "cpu" else {}  # gc: whose queues these are
    deps.ledger.create_job(Job(id=job, kind="infer", status="running", gpu_model=device,
                               spec={"pages": len(pending), "lines": p.lines,
                                     "model": str(opts.model.resolve()),
                                     "engine": model_engine(opts.model),
                                     "out": str(opts.out), "host": host_name(), "pid": os.getpid(),
                                     "instances": p.chosen.instances, "int8": opts.int8,
                                     "scans": scan_frames(pending), "format": opts.output_format, **fleet}))
    started = time.monotonic()
    try:
        with never_lost():  # a Ctrl-C Python swallowed surfaces at the next page (launcher/ctrl_c.py)
            if p.choice == "cpu":
                _run_cpu(opts, deps, pending, manifest, result)
            else:
                _run_fleet(opts, deps, pending, manifest, result)
    except KeyboardInterrupt:  # Ctrl-C: the user stopped it (the session ends with reason `user`)
        deps.ledger.update_job(job, status="stopped", ended_at=utcnow())
        raise
    except BaseException:
        deps.ledger.update_job(job, status="failed", ended_at=utcnow())
        raise
    finally:
        result.seconds = time.monotonic() - started
        result.usd = deps.ledger.job_usd(job)
    _write_dead_letters(opts.out, result.dead, {pg.key: pg for pg in pending})
    FleetRecords(manifest).remove(*(r.job for r in earlier))  # all they were sent is done or dead
    result.status = "done" if not result.dead else "partial"
    deps.ledger.update_job(job, status=result.status, ended_at=utcnow(),
                           metrics={"pages": result.done, "dead": len(result.dead), "usd": str(result.usd),
                                    "seconds": round(result.seconds, 3), "workers": result.workers,
                                    "segmented": result.segmented, "segment_s": round(result.segment_s, 3)})
    deps.after_job(job)
    return result


def _say_notes(backend: Workers, deps: InferDeps) -> None:
    while backend.notes:
        deps.say(backend.notes.pop(0))


def _pages(opts: InferOptions) -> list[Page]:
    """The pages under the inputs; a missing model or input is refused here, before anything."""
    from jobs.htr.errors import GroundTruthError
    from jobs.htr.pages import list_pages

    model, give = opts.model, "give --model RUN/model.pt of a finished training run"
    if model.is_dir():  # a run folder: name the model it holds (gpuhire's, else kraken's)
        beside = next((model / n for n in ("model.pt", "model.safetensors", "model.mlmodel")
                       if (model / n).is_file()), model / "model.pt")
        raise SpecError(f"--model {model} is a folder", f"give the model file: --model {beside}"
                        if beside.is_file() else "give the model file, " + give.removeprefix("give --model "))
    if not model.is_file():
        raise SpecError(f"model {model} does not exist", give)
    if opts.out.exists() and not opts.out.is_dir():
        raise SpecError(f"--out {opts.out} is a file", "give a folder for the results")
    if importlib.util.find_spec("torch") is not None:  # a launcher without torch ships it unread
        from jobs.htr.infer import check_model

        engine = check_model(model)  # a file that is no recognition model stops here, before anything runs
        if opts.int8 and engine == "kraken":
            raise SpecError("--int8 quantises gpuhire's own models only, not kraken models",
                            "drop --int8 for a kraken model")
    elif model.stat().st_size == 0:
        raise SpecError(f"{model} is empty (0 bytes): not a model this trainer wrote "
                        "(a model.pt from gpuhire train)", give)
    if opts.segment_model is not None and not opts.segment_model.is_file():
        raise SpecError(f"--segment-model {opts.segment_model} does not exist",
                        "give a kraken segmentation model file, or leave the option out for kraken's own")
    try:
        pages = list_pages(list(opts.inputs), opts.input_mode)
    except GroundTruthError as exc:  # its fix is its own: say it once
        raise SpecError(exc.message, exc.fix or "check the paths you gave") from None
    if not pages:
        raise SpecError("no pages found in " + ", ".join(map(str, opts.inputs)),
                        "give page scans (JPEG, PNG, TIFF, PDF), PAGE/ALTO *.xml files with their images, "
                        "or line images, or folders of them")
    if any(p.kind == "scan" for p in pages) and opts.segment_model is not None \
            and importlib.util.find_spec("kraken") is not None:
        from jobs.htr.scanpages import Segmenters

        Segmenters(opts.segment_model, "cpu").get()  # a model that is no segmenter stops here
    return pages


def _write_dead_letters(out: Path, dead: dict[str, str], pages: dict[str, Page]) -> None:
    """OUT/dead-letter.json: each failed page by its key, the user's own file, and why."""
    path = out / DEAD_LETTER
    if dead:
        out.mkdir(parents=True, exist_ok=True)
        entries = [{"page": k, **({"file": str(pages[k].path)} if k in pages else {}), "reason": v}
                   for k, v in sorted(dead.items())]
        path.write_text(json.dumps({"pages": entries}, indent=2) + "\n", encoding="utf-8")
    elif path.exists():
        path.unlink()  # a rerun that finished everything leaves no stale report


def _collect_earlier(deps: InferDeps, manifest: Manifest, earlier: list[FleetRecord],
                     pending: list[Page], out: Path) -> list[Page]:
    """Fetch what fleets whose launcher died finished of `pending` (pages sent to them
    unchanged); returns the pages still to do. Without AWS this run simply does them again."""
    from launcher.infer.queue import collect_finished

    if deps.results_s3 is None or not earlier or not pending:
        return pending
    left = {p.key: p for p in pending}
    for record in earlier:
        sent = [p for p in left.values() if record.signatures.get(p.key) == p.signature()]
        if not sent:
            continue
        try:
            got = collect_finished(deps.results_s3(), record.bucket, record.job, sent, out)
        except GpuhireError as exc:
            deps.say(f"note: could not collect what fleet job {record.job} finished ({exc.message}); "
                     "its pages are sent again")
            continue
        for page in got:
            manifest.add(page, record.job)
            del left[page.key]
        if got:
            deps.say(f"collected {len(got):,} page(s) that fleet job {record.job} finished after its "
                     "launcher stopped")
    return list(left.values())


def _run_cpu(opts: InferOptions, deps: InferDeps, pending: list[Page], manifest: Manifest,
             result: InferResult) -> None:
    from jobs.htr.pages import PageOutcome, recognise_pages

    by_key = {p.key: p for p in pending}
    session = deps.ledger.record_session(
        NewSession(provider="local", gpu_model="cpu", start_at=utcnow(), usd_per_hour=deps.cpu_usd_per_hour,
                   job_id=result.job, note="gpuhire infer on this CPU"), deps.cpu_rules)  # type: ignore[arg-type]
    started = time.monotonic()

    def on_page(o: PageOutcome) -> None:
        if o.ok:
            manifest.add(by_key[o.key], result.job)
            result.done += 1
            result.lines += o.lines
        else:
            result.dead[o.key] = o.reason
        deps.bar.advance(1)
        check()

    reason = "user"  # anything but the end (Ctrl-C above all) ends the session as the user's doing
    try:
        deps.bar.start(len(pending), "recognising on this CPU")
        with tempfile.TemporaryDirectory(prefix="gpuhire-infer-") as tmp:
            report, _ = recognise_pages(opts.model, pending, Path(tmp), opts.out, int8=opts.int8,
                                        device="cpu", fmt=opts.output_format,
                                        segment_model=opts.segment_model, on_page=on_page)
        reason = "completed"
    finally:
        deps.bar.stop()
        deps.ledger.end_session(session, utcnow(), reason)
    result.segmented, result.segment_s = report.segmented, report.segment_s
    seconds = time.monotonic() - started - report.segment_s  # reading lines only
    if result.lines >= MEASURE_MIN_LINES and seconds > 0:  # fewer: model loading would dominate
        deps.ledger.update_job(result.job, lines_per_s=result.lines / seconds)
    record_segmentation(deps.ledger, result.job, report.segment_s, report.segmented)
    result.workers = 1


def _run_fleet(opts: InferOptions, deps: InferDeps, pending: list[Page], manifest: Manifest,
               result: InferResult) -> None:
    from launcher.providers.base import WorkerSpec

    p = result.plan
    assert p is not None and deps.make_fleet is not None
    fleet, make_backend = deps.make_fleet(result.job, p)
    records = FleetRecords(manifest)
    records.add(result.job, fleet.bucket, pending)  # before anything is sent: a rerun collects it
    queues = fleet.create_queues()
    backend = make_backend(WorkerSpec(result.job, fleet.bucket, queues, fleet.settings, int8=opts.int8))
    by_key = {pg.key: pg for pg in pending}
    wanted = p.chosen.instances
    seen = Collected()
    try:
        deps.say(f"sending the model and {len(pending):,} pages to s3://{fleet.bucket}/{fleet.prefix}")
        fleet.upload_model(opts.model)
        fleet.options["format"] = opts.output_format
        if opts.segment_model is not None and any(pg.kind == "scan" for pg in pending):
            fleet.upload_segment_model(opts.segment_model)
        deps.bar.start(len(pending), "uploading pages")
        fleet.upload_pages(pending, deps.bar.advance)
        deps.bar.stop()
        batches = fleet.enqueue(pending)
        deps.say(f"{batches} batches queued; starting {wanted} worker(s): {backend.description}")
        backend.start(wanted)
        _say_notes(backend, deps)
        deps.bar.start(len(pending), f"recognising on {wanted} x {p.choice.upper()}")
        _follow(fleet, backend, deps, by_key, manifest, seen, result, wanted, opts.fleet)
        backend.stop("completed")
        records.remove(result.job)  # every page it was sent came home (or was dead-lettered)
    except BaseException:
        backend.stop("user")  # never leave a worker running by accident
        raise
    finally:
        deps.bar.stop()
        fleet.delete_queues()
        result.workers = backend.started
    result.done = len(seen.done)
    result.lines = sum(seen.done.values())
    result.dead = dict(seen.dead)
    result.segmented, result.segment_s = seen.segmented, seen.segment_s


def _follow(fleet: Fleet, backend: Workers, deps: InferDeps, by_key: dict[str, Page],
            manifest: Manifest, seen: Collected, result: InferResult, wanted: int,
            fleet_kind: str) -> None:
    """Collect results until every page is done or dead-lettered; replace lost workers."""
    restarts = 0
    max_restarts = max(3, 2 * wanted)
    stall_s = 2 * fleet.settings.visibility_s + 60
    last_progress = time.monotonic()

    read_at = [0.0]  # when the USD so far was last read from the ledger (not once per page)
    spent = [Decimal(0)]

    def on_page(key: str, lines: int) -> None:
        if lines >= 0:
            manifest.add(by_key[key], result.job)
        if time.monotonic() - read_at[0] > USD_REFRESH_S:
            read_at[0], spent[0] = time.monotonic(), deps.ledger.job_usd(result.job)
        deps.bar.advance(1, spent[0])

    def left() -> int:
        return len(by_key) - len(seen.done) - len(seen.dead)

    while left():
        check()
        if fleet.collect(by_key, result.out, seen, wait_s=1, on_page=on_page):
            last_progress = time.monotonic()
            continue
        alive = backend.alive()
        waiting, in_flight = fleet.backlog()
        backlog = waiting + in_flight
        if alive < wanted and waiting > 0:  # batches nobody holds: a worker is missing
            if restarts >= max_restarts:
                raise ProviderError(f"{left():,} pages left and workers keep getting lost "
                                    f"({restarts} replaced)", "run the same `gpuhire infer` again: "
                                    "pages done so far are kept and skipped")
            restarts += backend.top_up(wanted)
            _say_notes(backend, deps)
        elif not alive and not backlog and time.monotonic() - last_progress > stall_s:
            raise ProviderError(f"{left():,} pages left, no worker running and nothing queued",
                                "run the same `gpuhire infer` again: pages done so far are skipped")
        time.sleep(POLL_S)
    if seen.busy_s > 0 and fleet_kind == "aws":  # per-worker GPU throughput for the next plan
        reading_s = seen.busy_s - seen.segment_s  # layout analysis is measured on its own
        if reading_s > 0:
            deps.ledger.update_job(result.job, lines_per_s=sum(seen.done.values()) / reading_s)
        record_segmentation(deps.ledger, result.job, seen.segment_s, seen.segmented)
