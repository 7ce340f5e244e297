"""What the infer flow needs from the settings: GPU prices now, the fleet and its workers.

    deps = infer_deps(settings, ledger, fleet_kind="aws", out=Path("out"), say=..., confirm=..., bar=...)

GPU prices are live spot offers with AWS, else the bundled on-demand table; the fleet's
workers come from the provider named by `--fleet` (`Provider.workers`), through the factory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.infer.plan import DEFAULT_INFER_LINES_PER_S, DEFAULT_SEGMENT_S_PER_PAGE, GpuPrice, Plan
from launcher.infer.types import Bar, InferDeps
from launcher.providers.factory import aws_cloud, aws_configured, make_provider
from ledger.catalogue import RENTED_GPUS
from ledger.ownership import running_usd_per_hour

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.infer.queue import Fleet
    from launcher.providers.base import Workers, WorkerSpec
    from ledger.book import Ledger


def gpu_prices(settings: Settings, ledger: Ledger, live: bool, model: Path | None = None) -> list[GpuPrice]:
    """The cheapest offer per GPU now: live spot prices with AWS (`live`), else the bundled table.

    Throughput (lines/s, and layout analysis s/page) as past fleet jobs measured it (lines/s: with
    `model`, or models of its engine: launcher/infer/measure.py), else the config's or the default."""
    from launcher.infer.measure import measured_lines_per_s, measured_segment_s_per_page

    rates = {**DEFAULT_INFER_LINES_PER_S, **settings.infer.lines_per_s}
    configured = settings.infer.segment_s_per_page
    prices: list[GpuPrice] = []
    for gpu in RENTED_GPUS:
        measured = measured_lines_per_s(ledger, gpu, model) if model is not None \
            else ledger.measured_lines_per_s("infer", gpu)
        rate, source = (measured, "measured") if measured else (rates[gpu], "default")
        segment = measured_segment_s_per_page(ledger, gpu)
        if gpu in configured:
            seg_s, seg_source = configured[gpu], "config"
        elif segment is not None:
            seg_s, seg_source = segment, "measured"
        else:
            seg_s, seg_source = DEFAULT_SEGMENT_S_PER_PAGE[gpu], "default"
        if live:
            offers = aws_cloud(settings, ledger).offers(gpu)
            if not offers:
                continue
            best = offers[0]
            usd_per_hour, where = best.usd_per_hour, f"{best.market} {best.instance_type} {best.zone}"
        else:
            from launcher.providers.aws.offers import type_table

            table = type_table(settings.aws.on_demand_usd_per_hour)
            usd_per_hour = min(t.on_demand_usd_per_hour for t in table.values() if t.gpu == gpu)
            where = "on-demand table (no live spot prices)"
        prices.append(GpuPrice(gpu, usd_per_hour, rate, source, settings.infer.boot_s, where,
                               seg_s, seg_source))
    return prices


FleetMaker = Callable[[str, Plan], "tuple[Fleet, Callable[[WorkerSpec], Workers]]"]


def fleet_maker(settings: Settings, ledger: Ledger, fleet_kind: str, out: Path) -> FleetMaker | None:
    """Makes a job's Fleet (queues, bucket) and its workers' maker; None without a bucket."""
    if not settings.aws.bucket:
        return None
    bucket = settings.aws.bucket

    def make(job: str, plan: Plan) -> tuple[Fleet, Callable[[WorkerSpec], Workers]]:
        from launcher.infer.queue import Fleet
        from launcher.providers.base import FleetSettings

        s = settings.infer
        fleet_settings = FleetSettings(batch_pages=s.batch_pages, visibility_s=s.visibility_s,
                                       max_receives=s.max_receives, retry_delay_s=s.retry_delay_s,
                                       idle_exit_s=s.idle_exit_s, batch_timeout_s=s.batch_timeout_s)
        cloud = aws_cloud(settings, ledger)
        fleet = Fleet(cloud.client("s3"), cloud.client("sqs"), bucket, job, fleet_settings)
        provider = make_provider(settings, ledger, fleet_kind, gpu=plan.choice, run_root=out)

        def workers(spec: WorkerSpec) -> Workers:
            return provider.workers(spec, plan.choice, out / ".gpuhire" / "workers")

        return fleet, workers

    return make


def infer_deps(settings: Settings, ledger: Ledger, *, fleet_kind: str, out: Path,
               say: Callable[[str], None], confirm: Callable[[str], bool], bar: Bar,
               model: Path | None = None) -> InferDeps:
    """Everything `gpuhire infer` hands the flow, from the settings (GPU throughput measured
    with `model`, or models of its engine, where there is any)."""
    from ledger.alerts.check import check_quietly

    s = settings.infer
    live = fleet_kind == "aws" and aws_configured(settings)
    return InferDeps(
        ledger=ledger, say=say, confirm=confirm, bar=bar,
        gpu_prices=lambda: gpu_prices(settings, ledger, live, model),
        cpu_usd_per_hour=running_usd_per_hour(settings.local.watts, settings.ownership.usd_per_kwh),
        cpu_rules=settings.billing_rules("local"), make_fleet=fleet_maker(settings, ledger, fleet_kind, out),
        cpu_lines_per_s=s.lines_per_s.get("cpu"),
        cpu_segment_s_per_page=s.segment_s_per_page.get("cpu"),
        plan_settings={"coffee_break_s": int(s.coffee_break_minutes * 60), "max_instances": s.max_instances,
                       "hours_per_instance": s.hours_per_instance},
        after_job=lambda job: check_quietly(ledger, settings, say),
        results_s3=(lambda: aws_cloud(settings, ledger).client("s3")) if settings.aws.bucket else None,
    )
