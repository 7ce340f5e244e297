"""Quotes and event following, the pure parts of the train flow."""

from __future__ import annotations

import json
from decimal import Decimal as D

from launcher.train.events import EventReader, JobProgress, status_line
from launcher.train.quote import quote


def test_quote_uses_default_then_measured_throughput() -> None:
    q = quote(gpu="t4", lines=4000, epochs=50, usd_per_hour=D("0.20"), measured_lines_per_s=None,
              overhead_s=300)
    assert q.throughput_source == "default" and q.lines_per_s == 40.0
    assert q.seconds == 4000 * 50 // 40 + 300 == 5300
    assert q.usd == D("0.2945")  # 5300 s x 0.20 / 3600, rounded up to 1/100 cent
    m = quote(gpu="t4", lines=4000, epochs=50, usd_per_hour=D("0.20"), measured_lines_per_s=100.0,
              overhead_s=300)
    assert m.throughput_source == "measured" and m.seconds == 2300
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
