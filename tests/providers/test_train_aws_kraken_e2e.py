"""`gpuhire train --engine kraken` on AWS end to end, on loopback: moto as EC2, a real sshd as
the instance (tests/providers/test_train_aws_e2e.py's InstanceBox), kraken's real trainer
(`process` runtime, a tiny network), and a spot interruption after the first epoch: the
trainer checkpoints on SIGTERM, the checkpoint comes home, the relaunched box resumes from
kraken's own checkpoint with the same engine flags, and both model files come home."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from aws_fakes import AwsWorld
from test_train_aws_e2e import _epochs, _user, instance_box, reclaim_after_first_epoch  # noqa: F401 (a fixture)

from jobs.htr.synth import synth
from launcher.providers.aws.provider import AwsProvider
from launcher.train.flow import train
from launcher.train.types import TrainDeps, TrainOptions
from ledger.book import Ledger

pytestmark = pytest.mark.slow
TINY_SPEC = "[1,32,0,1 Cr3,3,16 Mp2,2 Cr3,3,16 Mp2,2 S1(1x0)1,3 Lbx32 Do]"


def test_kraken_on_spot_is_interrupted_resumed_and_brings_both_models_home(
    make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, instance_box,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kraken's tiny epochs take a second or two: EC2 is asked every second here, not every 15 s,
    # so the interruption after the first epoch is seen before the job could finish without it
    monkeypatch.setattr("launcher.providers.aws.provider.PROVIDER_CHECK_S", 1.0)
    job = "train-e2e-aws-kraken"
    box = instance_box(job)
    provider = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=_user())
    renter = AwsProvider(provider, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                         workdir_root=str(tmp_path / "box-home"))
    synth(tmp_path / "gt", 40, seed=3)
    preset = tmp_path / "tiny-kraken.toml"
    preset.write_text("[kraken]\nbatch_size = 8\nmin_epochs = 3\n")  # no early stop
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True)
    thread, interrupted = reclaim_after_first_epoch(provider, job, run)
    result = train(TrainOptions(data=(tmp_path / "gt",), preset=str(preset), epochs=3, yes=True, out=run,
                                job=job, max_restarts=1, engine="kraken", kraken_spec=TINY_SPEC), deps)
    thread.join(10)

    assert result.status == "done", (result.message, said)
    assert interrupted and any("interrupted by the provider" in s for s in said), said
    assert any("kraken engine, aws / t4" in s for s in said) and any("kraken default, an estimate" in s
                                                                   for s in said), said
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    starts = [i for i, e in enumerate(events) if e["event"] == "start"]
    assert len(starts) == 2 and all(events[i].get("engine") == "kraken" for i in starts)
    assert events[starts[1]]["resumed_from_step"]  # from kraken's checkpoint, not from zero
    assert any(e["event"] == "interrupted" for e in events[:starts[1]])
    second = [e["epoch"] for e in events[starts[1]:] if e["event"] == "epoch"]
    assert second and second[0] > 1 and second[-1] == 3
    assert result.engine == "kraken"
    assert result.models == [run / "model.safetensors", run / "model.mlmodel"]
    assert all(m.stat().st_size > 1000 for m in result.models)

    first_s, second_s = book.sessions(job_id=job)
    assert first_s.session.end_reason == "spot-interruption" and first_s.cost.compute_usd == 0
    assert second_s.session.end_reason == "completed"
    row = book.get_job(job)
    assert row.status == "done" and row.spec["engine"] == "kraken" and row.spec["kraken_spec"] == TINY_SPEC
    assert row.model_size is not None and row.model_size.startswith("kraken spec ")
    assert all(i.state.gone for i in provider.instances(job)) and box.boots == 2
    # both attempts ran the kraken trainer with the job's flags (the box's logs name them)
    state = json.loads((run / "state.json").read_text())
    assert (state["engine"], state["kraken_spec"], state["attempt"]) == ("kraken", TINY_SPEC, 1)
