"""How fast this machine and the rented GPUs read pages: the planner's inputs, from the ledger.

    CPU lines/s           median of past CPU runs and calibrations on this host, of this model
                          (else of models of its engine: gpuhire's CRNN or kraken)
    CPU s/page (layout)   the same, from their spec's `segment_s_per_page` (no column of its own)
    GPU lines/s, s/page   median of past fleet jobs on that GPU (launcher/infer/setup.py; lines/s
                          of this model or its engine, as for the CPU)

With nothing measured yet, `calibrate` recognises a few lines of the job's own pages on this CPU
(twice: only the second run is timed, so torch's start-up does not count) and, when the job has
page scans, segments one of them (timed, the segmentation model loaded beforehand), and stores
both in one ledger job of status `calibration`.
"""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.errors import ProviderError, SpecError
from launcher.infer.plan import DEFAULT_INFER_LINES_PER_S, DEFAULT_SEGMENT_S_PER_PAGE, PlanInputs
from ledger.book import Ledger
from ledger.catalogue import RENTED_GPUS
from ledger.models import Job
from ledger.timeutil import utcnow

if TYPE_CHECKING:
    from jobs.htr.pages import Page
    from launcher.infer.types import InferDeps, InferOptions

CALIBRATION_LINES = 48


def host_name() -> str:
    return socket.gethostname()


def model_engine(model: Path) -> str:
    """The recognition model's engine, "crnn" (gpuhire's model.pt) or "kraken", from its first bytes."""
    from jobs.htr.kraken_recognise import model_engine as engine

    return engine(model)


def _same(path: object, model: Path) -> bool:
    try:
        return Path(str(path)).resolve() == model.resolve()
    except (OSError, RuntimeError):
        return False


def measured_lines_per_s(ledger: Ledger, device: str, model: Path | None = None) -> float | None:
    """Median inference lines/s of past jobs on `device` (cpu: this host's runs and calibrations;
    a GPU: fleet jobs on it), for this model: the jobs that read this very file when there are
    any, else those whose model was of the same engine (a kraken model reads at a rate of its
    own; jobs recorded before engines were told apart read gpuhire models)."""
    jobs = [j for j in ledger.jobs("infer") if j.gpu_model == device and j.lines_per_s
            and (device != "cpu" or j.spec.get("host") == host_name())]
    if model is not None:
        engine = model_engine(model)
        jobs = ([j for j in jobs if _same(j.spec.get("model"), model)]
                or [j for j in jobs if j.spec.get("engine", "crnn") == engine])
    values = sorted(float(j.lines_per_s or 0.0) for j in jobs)
    return values[len(values) // 2] if values else None


def measured_cpu_lines_per_s(ledger: Ledger, model: Path | None = None) -> float | None:
    """Median CPU inference throughput of past runs and calibrations on this machine (see
    `measured_lines_per_s`: per model, or per engine)."""
    return measured_lines_per_s(ledger, "cpu", model)


def measured_segment_s_per_page(ledger: Ledger, device: str) -> float | None:
    """Median layout-analysis seconds per page of past infer jobs on `device` (cpu: this host's
    runs and calibrations; a GPU: fleet jobs on it), from the jobs' spec."""
    values = sorted(float(j.spec["segment_s_per_page"]) for j in ledger.jobs("infer")
                    if j.gpu_model == device and j.spec.get("segment_s_per_page")
                    and (device != "cpu" or j.spec.get("host") == host_name()))
    return values[len(values) // 2] if values else None


def scan_frames(pages: list[Page]) -> int:
    """Page images to segment: every frame of every scan."""
    return sum(p.frames for p in pages if p.kind == "scan")


def record_segmentation(ledger: Ledger, job: str, segment_s: float, segmented: int) -> None:
    """Store a run's layout-analysis seconds per page in its job's spec (the planner reads it)."""
    if segmented <= 0 or segment_s <= 0:
        return
    spec = dict(ledger.get_job(job).spec or {})
    spec.update(segment_s_per_page=round(segment_s / segmented, 3), segmented=segmented)
    ledger.update_job(job, spec=spec)


def _time_segmentation(opts: InferOptions, scan: Page, work: Path) -> tuple[float | None, str]:
    """Seconds per page to segment `scan` on this CPU (the model loaded first, untimed)."""
    from jobs.htr.scanpages import Segmenters, segment_scan

    segmenters = Segmenters(opts.segment_model, "cpu")
    segmenters.get()
    got = segment_scan(scan, work, segmenters, opts.output_format, max_frames=1)  # not a whole PDF
    if not got.frames or got.failures:
        return None, got.failures[0] if got.failures else "no frame"
    return got.seconds / got.frames, ""


def calibrate(opts: InferOptions, pages: list[Page], ledger: Ledger,
              say: object = None) -> tuple[float, float | None]:
    """CPU lines/s on a few of the job's lines, and s/page of layout analysis on one of its scans
    (None without scans); both stored in the ledger (see the module doc).

    With XML pages or line images, those are read twice (the second run timed) and one scan is
    segmented on its own; with scans only, the first page of one scan (the one with the fewest
    pages) is segmented and its lines read twice (the second run timed)."""
    from jobs.htr.infer import Recogniser
    from jobs.htr.pages import estimate_lines, recognise_pages

    scans = sorted((p for p in pages if p.kind == "scan"), key=lambda p: p.frames)
    plain = [p for p in pages if p.kind != "scan"]
    picked: list[Page] = []
    for page in plain:
        picked.append(page)
        if len(picked) >= 16 or estimate_lines(picked, sample=len(picked)) >= CALIBRATION_LINES:
            break
    segment_s: float | None = None
    why = ""
    lines, recognise_s = 0, 0.0
    kwargs = {"int8": opts.int8, "device": "cpu", "fmt": opts.output_format,
              "segment_model": opts.segment_model}
    with tempfile.TemporaryDirectory(prefix="gpuhire-calibrate-") as tmp:
        if scans:
            segment_s, why = _time_segmentation(opts, scans[0], Path(tmp) / "segment")
        if plain:
            recognise_pages(opts.model, picked, Path(tmp), Path(tmp) / "warm", **kwargs)  # type: ignore[arg-type]
            report, _ = recognise_pages(opts.model, picked, Path(tmp), Path(tmp) / "out", **kwargs)  # type: ignore[arg-type]
            lines, recognise_s = int(report.lines), report.recognise_s
        elif segment_s is not None:  # the lines the segmenter found, read twice (the second timed)
            recogniser = Recogniser(opts.model, int8=opts.int8, device="cpu")
            warm = recogniser.run([Path(tmp) / "segment"], Path(tmp) / "warm")
            lines0, seconds0 = warm.lines, warm.recognise_s  # the report adds up its runs
            report = recogniser.run([Path(tmp) / "segment"], Path(tmp) / "out")
            lines, recognise_s = int(report.lines - lines0), report.recognise_s - seconds0
    if scans and segment_s is None and callable(say):
        say(f"note: the calibration could not segment {scans[0].key} ({why}); "
            "planning with the default seconds per page")
    if not lines:
        if not plain and scans:  # a scan that failed says why; the default rate plans the rest
            return DEFAULT_INFER_LINES_PER_S["cpu"], segment_s
        raise SpecError("the calibration pages held no readable line",
                        "check the pages, or pass --no-calibrate to plan with the default throughput")
    rate = lines / max(recognise_s, 1e-6)
    spec: dict[str, object] = {"host": host_name(), "model": str(opts.model.resolve()), "lines": lines,
                               "int8": opts.int8, "engine": model_engine(opts.model)}
    if segment_s is not None:
        spec["segment_s_per_page"] = round(segment_s, 3)
    ledger.create_job(Job(id=f"calibrate-{utcnow():%Y%m%d-%H%M%S%f}"[:64], kind="infer",
                          status="calibration", gpu_model="cpu", lines_per_s=rate, ended_at=utcnow(),
                          spec=spec))
    return rate, segment_s


def plan_inputs(opts: InferOptions, deps: InferDeps, pending: list[Page]) -> PlanInputs:
    from jobs.htr.pages import estimate_lines

    lines = estimate_lines(pending)
    scans = scan_frames(pending)
    seg_rate: float | None = None
    seg_source = "default"
    if deps.cpu_segment_s_per_page:
        seg_rate, seg_source = deps.cpu_segment_s_per_page, "config"
    elif (seg_measured := measured_segment_s_per_page(deps.ledger, "cpu")) is not None:
        seg_rate, seg_source = seg_measured, "measured"
    if deps.cpu_lines_per_s:
        cpu_rate, cpu_source = deps.cpu_lines_per_s, "config"
    elif (measured := measured_cpu_lines_per_s(deps.ledger, opts.model)) is not None:
        cpu_rate, cpu_source = measured, "measured"
    elif opts.calibrate and opts.gpu != "none":  # with --gpu none there is nothing to decide
        deps.say("calibrating: recognising a few lines on this CPU to measure its speed"
                 + (" (and segmenting one page scan)" if scans and seg_rate is None else ""))
        cpu_rate, segmented = calibrate(opts, pending, deps.ledger, deps.say)
        cpu_source = "calibrated"
        if segmented is not None and seg_rate is None:
            seg_rate, seg_source = segmented, "calibrated"
    else:
        cpu_rate, cpu_source = DEFAULT_INFER_LINES_PER_S["cpu"], "default"
    # ~10 s of a CPU: only where the plan has a choice to make (--gpu auto)
    if scans and seg_rate is None and opts.calibrate and opts.gpu == "auto" and cpu_source != "calibrated":
        deps.say("calibrating: segmenting one page scan on this CPU to measure its speed")
        seg_rate = _calibrate_segmentation(opts, pending, deps)
        seg_source = "calibrated" if seg_rate is not None else "default"
    gpus = [] if opts.gpu == "none" else deps.gpu_prices()
    if opts.gpu in RENTED_GPUS and not any(g.gpu == opts.gpu for g in gpus):
        raise ProviderError(f"no {opts.gpu.upper()} offer to rent now", "try the other --gpu, or --gpu auto")
    settings = dict(deps.plan_settings)
    return PlanInputs(pages=len(pending), lines=lines, cpu_lines_per_s=cpu_rate, cpu_source=cpu_source,
                      cpu_usd_per_hour=deps.cpu_usd_per_hour, gpus=tuple(gpus), gpu=opts.gpu,
                      instances=opts.instances, deadline_s=opts.deadline_s, scans=scans,
                      cpu_segment_s_per_page=seg_rate or DEFAULT_SEGMENT_S_PER_PAGE["cpu"],
                      cpu_segment_source=seg_source, **settings)  # type: ignore[arg-type]


def _calibrate_segmentation(opts: InferOptions, pending: list[Page], deps: InferDeps) -> float | None:
    """Lines/s known already: segment one scan only, and store it like a calibration."""
    scan = next(p for p in pending if p.kind == "scan")
    with tempfile.TemporaryDirectory(prefix="gpuhire-calibrate-") as tmp:
        seconds, why = _time_segmentation(opts, scan, Path(tmp))
    if seconds is None:
        deps.say(f"note: the calibration could not segment {scan.key} ({why}); "
                 "planning with the default seconds per page")
        return None
    deps.ledger.create_job(Job(id=f"calibrate-{utcnow():%Y%m%d-%H%M%S%f}"[:64], kind="infer",
                               status="calibration", gpu_model="cpu", ended_at=utcnow(),
                               spec={"host": host_name(), "segment_s_per_page": round(seconds, 3)}))
    return seconds
