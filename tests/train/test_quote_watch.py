"""Quotes and event following, the pure parts of the train flow."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from launcher.errors import ProviderError
from launcher.train.events import EventReader, JobProgress, status_line
from launcher.train.quote import (
    Throughput,
    choose_gpu,
    job_throughput,
    model_size,
    per_speed_seconds,
    quote,
)
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.models import Job


def test_quote_uses_default_then_measured_throughput() -> None:
    q = quote(gpu="t4", lines=4000, epochs=50, usd_per_hour=D("0.20"), measured_lines_per_s=None,
              overhead_s=300)
    assert q.throughput_source == "default" and q.lines_per_s == 40.0
    assert q.seconds == 4000 * 50 // 40 + 300 == 5300
    assert q.usd == D("0.2945")  # 5300 s x 0.20 / 3600, rounded up to 1/100 cent
    m = quote(gpu="t4", lines=4000, epochs=50, usd_per_hour=D("0.20"), measured_lines_per_s=100.0,
              overhead_s=300)
    assert m.throughput_source == "measured" and m.seconds == 2300
    c = quote(gpu="cpu", lines=400, epochs=10, usd_per_hour=D("0.02"), overhead_s=10, size="tiny",
              throughput=Throughput(25.0, "calibrated: 75 lines in 3.0 s"))
    assert c.seconds == 170 and "(tiny on cpu, calibrated: 75 lines in 3.0 s)" in c.describe()
    assert c.to_dict()["model_size"] == "tiny" and c.to_dict()["usd"] == c.usd
    o = quote(gpu="l4", lines=100, epochs=1, usd_per_hour=D(1), measured_lines_per_s=None,
              default_lines_per_s={"l4": 1.0}, overhead_s=0)
    assert o.seconds == 100


def _line(**ev: object) -> bytes:
    return (json.dumps(ev) + "\n").encode()


def test_event_reader_keeps_partial_lines_across_chunks() -> None:
    stream = _line(event="start", device="cpu", epochs=3) + _line(event="epoch", epoch=1,
                                                                    val_cer=0.5, seconds=10)
    reader = EventReader()
    events = []
    for i in range(0, len(stream), 7):  # arbitrary chunk boundaries
        events += reader.feed(stream[i : i + 7])
    assert [e["event"] for e in events] == ["start", "epoch"]
    assert reader.feed(b"not json\n{broken\n") == []


def test_progress_folds_events() -> None:
    p = JobProgress()
    for ev in [
        {"event": "start", "device": "cpu", "precision": "fp32", "epochs": 4},
        {"event": "epoch", "epoch": 1, "val_cer": 0.8, "lines_per_s": 50, "seconds": 60,
         "gpu_util": 0.9, "data_wait_fraction": 0.02},
        {"event": "epoch", "epoch": 2, "val_cer": 0.6, "lines_per_s": 70, "seconds": 40,
         "gpu_util": 0.7, "data_wait_fraction": 0.04},
        {"event": "checkpoint", "path": "run/ckpt.pt", "epoch": 2, "step": 20},
    ]:
        p.apply(ev)
    assert (p.epoch, p.best_cer, p.step, p.last_checkpoint) == (2, 0.6, 20, "run/ckpt.pt")
    assert p.eta_s() == 2 * 50.0
    assert p.mean(p.gpu_utils) == 0.8
    line = status_line(p, D("0.1234"))
    assert line == "epoch 2/4  CER 0.600 (best 0.600)  70 lines/s  $0.1234 so far  ETA 2 min"
    p.apply({"event": "done", "best_val_cer": 0.55, "model": "run/model.pt"})
    assert p.done and p.best_cer == 0.55 and p.model_path == "run/model.pt"


def test_model_size_is_the_preset_or_the_parameter_count() -> None:
    assert model_size("large") == model_size("large", 14_123_456) == "large"
    assert model_size("/home/me/my.toml", 1_172_937) == "1.2M params"
    assert model_size("/home/me/my.toml", 1_168_001) == "1.2M params"  # another codec, same size
    assert model_size("/home/me/my.toml") == "preset my.toml"


def _no_offer(gpu: str) -> D:
    raise ProviderError(f"no {gpu.upper()} spot offers in us-east-1", "try another region")


def test_choose_gpu_skips_types_without_offers_and_picks_the_cheapest_job() -> None:
    prices = {"t4": D("0.18"), "l4": D("0.29")}
    per_speed = choose_gpu(["t4", "l4"], prices.__getitem__, per_speed_seconds({"t4": D(1), "l4": D(2)}))
    assert per_speed.gpu == "l4" and per_speed.skipped == {}  # 0.29 / 2 < 0.18 / 1
    short = choose_gpu(["t4", "l4"], prices.__getitem__, lambda g: {"t4": 320.0, "l4": 310.0}[g])
    assert short.gpu == "t4" and short.expected_usd == {"t4": D("0.0160"), "l4": D("0.0250")}
    only = choose_gpu(["t4", "l4"], lambda g: prices["t4"] if g == "t4" else _no_offer(g),
                      lambda g: 3600.0)
    assert only.gpu == "t4" and only.skipped == {"l4": "no L4 spot offers in us-east-1"}
    assert "skipped l4: no L4 spot offers in us-east-1" in only.describe()
    with pytest.raises(ProviderError, match=r"no T4 spot offers in us-east-1; no L4 spot offers "
                                            r"in us-east-1 \(on-demand T4 offered\)"):
        choose_gpu(["t4", "l4"], _no_offer, lambda g: 1.0, alternatives=lambda: "on-demand T4 offered")


def test_job_throughput_measured_then_calibrated_then_default(tmp_path) -> None:
    book = Ledger(open_engine(f"sqlite:///{tmp_path / 'l.db'}"))
    calls: list[str] = []

    def calibrate() -> Throughput:
        calls.append("calibrated")
        return Throughput(25.0, "calibrated")

    assert job_throughput(book, "t4", "tiny").source == "default"
    assert job_throughput(book, "cpu", "tiny", calibrate=calibrate).lines_per_s == 25.0
    assert job_throughput(book, "cpu", "tiny", calibrate=calibrate,
                          overrides={"cpu": 3.0}) == Throughput(3.0, "config")
    book.create_job(Job(id="a", kind="train", gpu_model="t4", model_size="large", device="cuda",
                        lines_per_s=8.0))
    assert job_throughput(book, "t4", "tiny").source == "default"  # never another size's
    got = job_throughput(book, "t4", "large", calibrate=calibrate)
    assert got == Throughput(8.0, "measured, median of 1 job(s)") and calls == ["calibrated"]
