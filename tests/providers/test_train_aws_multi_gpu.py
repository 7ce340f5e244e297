"""`gpuhire train --gpus N` on AWS: N-GPU offers only, the capacity fallback within N unless
`--gpus-fallback`, and a 4-GPU job end to end on loopback (moto as EC2, a real sshd as the box,
the real trainer under torchrun as 4 CPU processes standing in for 4 GPUs), its books counting
four GPUs."""

from __future__ import annotations

import contextlib
import json
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from aws_fakes import AwsWorld
from test_train_aws_e2e import _user, instance_box  # noqa: F401  (the loopback instance fixture)

from jobs.htr.synth import synth
from launcher.errors import CapacityError, InputError
from launcher.providers.aws.offers import MultiGpuError, type_table
from launcher.providers.aws.provider import AwsProvider
from launcher.providers.base import RentRequest
from launcher.train.flow import train
from launcher.train.ground_truth import compile_ground_truth
from launcher.train.types import TrainDeps, TrainOptions
from ledger.book import Ledger
from ledger.report import build_report
from ledger.timeutil import utcnow


def _seed_multi(world: AwsWorld) -> None:
    now = utcnow()
    world.prices += [
        ("us-east-1a", "g4dn.12xlarge", "1.2000", now - timedelta(minutes=5)),
        ("us-east-1b", "g4dn.12xlarge", "1.1000", now - timedelta(minutes=5)),
        ("us-east-1c", "g4dn.metal", "2.3000", now - timedelta(minutes=5)),
        ("us-east-1a", "g6.12xlarge", "1.6000", now - timedelta(minutes=5)),
    ]


def test_table_gives_every_type_its_gpu_count() -> None:
    table = type_table(gpus=None)
    four = {n for n, i in table.items() if i.gpus == 4}
    eight = {n for n, i in table.items() if i.gpus == 8}
    assert four == {"g4dn.12xlarge", "g6.12xlarge", "g6.24xlarge"}
    assert eight == {"g4dn.metal", "g6.48xlarge"}
    assert table["g4dn.12xlarge"].on_demand_usd_per_hour == Decimal("3.912")
    assert table["g6.48xlarge"].vcpus == 192
    assert set(type_table()) == {n for n, i in table.items() if i.gpus == 1}  # the default: one GPU


def test_four_gpu_offers_are_four_gpu_types_only(make_provider, world: AwsWorld) -> None:
    _seed_multi(world)
    cloud = make_provider()
    offers = cloud.offers("t4", 4)
    assert [(o.instance_type, o.zone) for o in offers] == [("g4dn.12xlarge", "us-east-1b"),
                                                           ("g4dn.12xlarge", "us-east-1a")]
    assert all(o.gpu_count == 4 and o.vcpus == 48 for o in offers)
    assert [o.instance_type for o in cloud.offers("t4", 8)] == ["g4dn.metal"]
    assert all(o.gpu_count == 1 for o in cloud.offers("t4"))  # one GPU as before
    od = cloud.on_demand_offers("l4", 8)
    assert {o.instance_type for o in od} == {"g6.48xlarge"} and od[0].gpu_count == 8


def test_two_gpus_on_aws_says_which_counts_exist(make_provider, world: AwsWorld) -> None:
    cloud = make_provider()
    with pytest.raises(MultiGpuError) as caught:
        AwsProvider(cloud, "t4", runtime="process", gpus=2).plan()
    assert "no instance type with 2 T4 GPUs" in caught.value.message
    assert "--gpus 1 or 4 or 8" in (caught.value.fix or "")
    assert "g4dn.12xlarge 4x" in (caught.value.fix or "")
    # with --gpus-fallback, 2 falls back to one-GPU boxes
    renter = AwsProvider(cloud, "t4", runtime="process", gpus=2, gpus_fallback=True)
    assert {o.gpu_count for o in renter.offers("t4")} == {1}


def test_auto_with_two_gpus_names_the_counts_not_another_region(make_provider, world: AwsWorld) -> None:
    with pytest.raises(InputError) as caught:  # no region or market has a 2-GPU box: say --gpus
        AwsProvider(make_provider(), "auto", runtime="process", gpus=2)
    assert "no instance type with 2 T4 GPUs" in caught.value.message
    assert "--gpus 1 or 4 or 8" in (caught.value.fix or "") and "region" not in (caught.value.fix or "")


def test_auto_weighs_four_gpu_offers(make_provider, world: AwsWorld) -> None:
    _seed_multi(world)
    renter = AwsProvider(make_provider(), "auto", runtime="process", gpus=4)
    choice = renter.gpu_choice
    assert choice.usd_per_hour == {"t4": Decimal("1.1000"), "l4": Decimal("1.6000")}
    # l4 is twice a t4's speed at 1.45x the price: the cheaper job
    assert choice.gpu == "l4"
    assert "4x T4" not in renter.plan().description and "4x L4" in renter.plan().description


def test_capacity_fallback_stays_within_n_gpus_unless_allowed(make_provider, world: AwsWorld,
                                                            book: Ledger) -> None:
    _seed_multi(world)
    cloud = make_provider()
    world.run_errors += ["InsufficientInstanceCapacity"] * 2  # both 4-GPU offers
    renter = AwsProvider(cloud, "t4", runtime="process", gpus=4)
    with pytest.raises(CapacityError, match=r"g4dn\.12xlarge"):
        renter.rent(_request("job-4-strict"))
    assert {p["InstanceType"] for p in world.run_params} == {"g4dn.12xlarge"}  # never fewer GPUs

    world.run_params.clear()
    world.run_errors += ["InsufficientInstanceCapacity"] * 2
    renter = AwsProvider(cloud, "t4", runtime="process", gpus=4, gpus_fallback=True,
                         ssh_deadline_s=0.01)
    with contextlib.suppress(Exception):  # no sshd here: the launch is what this test looks at
        renter.rent(_request("job-4-fallback"))
    tried = [p["InstanceType"] for p in world.run_params]
    assert tried[:2] == ["g4dn.12xlarge", "g4dn.12xlarge"] and tried[2] in type_table()
    (session,) = [v.session for v in book.sessions(job_id="job-4-fallback")]
    assert session.gpu_count == 1 and renter.box_gpus == 1


def _request(job: str) -> RentRequest:
    return RentRequest(job, 0)


def test_docker_and_process_runtimes_start_torchrun_with_one_process_per_gpu(make_provider,
                                                                             world: AwsWorld) -> None:
    _seed_multi(world)
    cloud = make_provider()
    process = AwsProvider(cloud, "t4", runtime="process", python="/opt/py/bin/python3", gpus=4)
    argv = process.trainer_argv(["train", "dataset"])
    assert argv[:8] == ["/opt/py/bin/python3", "-m", "torch.distributed.run", "--standalone",
                        "--nnodes", "1", "--nproc-per-node", "4"]
    assert argv[8:] == ["-m", "jobs.htr", "train", "dataset"]
    docker = AwsProvider(cloud, "t4", runtime="docker", gpus=4).trainer_argv(["train", "dataset"])
    shell = docker[-1]
    assert "--gpus all" in shell and "--ipc host" in shell
    assert "--entrypoint python" in shell and "--nproc-per-node 4 -m jobs.htr train dataset" in shell
    one = AwsProvider(cloud, "t4", runtime="docker").trainer_argv(["train"])[-1]
    assert "torch.distributed.run" not in one and "--entrypoint" not in one


def test_bad_gpus_flag_is_one_line(cli, tmp_path: Path) -> None:
    result = cli("train", str(tmp_path), "--gpus", "3", "--dry-run")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --gpus 3 is not a GPU count gpuhire rents; use --gpus "
                                     "1, 2, 4 or 8 (AWS boxes: T4 4 or 8, L4 4 or 8)")


@pytest.mark.slow
def test_four_gpu_job_runs_end_to_end_and_the_books_count_four(
    make_provider, world: AwsWorld, book: Ledger, tmp_path: Path, instance_box,  # noqa: F811
) -> None:
    _seed_multi(world)
    job = "train-aws-4gpu"
    box = instance_box(job)
    cloud = make_provider(ssh_targets={"*": f"127.0.0.1:{box.port}"}, ssh_user=_user())
    renter = AwsProvider(cloud, "t4", runtime="process", python=sys.executable, ssh_deadline_s=20,
                         workdir_root=str(tmp_path / "box-home"), gpus=4)
    synth(tmp_path / "gt", 96, seed=5)
    run = tmp_path / "runs" / job
    said: list[str] = []
    deps = TrainDeps(ledger=book, provider=renter, say=said.append, confirm=lambda q: True,
                     compile_dataset=compile_ground_truth)
    result = train(TrainOptions(data=(tmp_path / "gt",), preset="tiny", epochs=1, yes=True,
                                out=run, job=job, max_restarts=0), deps)

    assert result.status == "done", (result.message, said, _log(run))
    assert result.quote is not None and result.quote.gpus == 4
    assert "4x t4" in result.quote.describe() and "x 4 GPUs x 0.72" in result.quote.describe()
    assert [p["InstanceType"] for p in world.run_params] == ["g4dn.12xlarge"]
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    (start,) = [e for e in events if e["event"] == "start"]
    assert start["world_size"] == 4  # four trainer processes, one per "GPU"
    (epoch,) = [e for e in events if e["event"] == "epoch"]
    assert len(epoch["data_wait_by_rank"]) == 4
    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    assert len(checkpoints) == 1  # rank 0 alone writes it
    assert (run / "model.pt").exists()

    (view,) = book.sessions(job_id=job)
    assert view.session.gpu_count == 4 and view.session.instance_type == "g4dn.12xlarge"
    assert sum(m.gpu_s for m in view.cost.months) == 4 * view.cost.duration_s
    row = book.get_job(job)
    assert row.spec["gpus"] == 4 and row.status == "done"
    report = build_report(book, view.session.start_at.strftime("%Y-%m"))
    hours = Decimal(view.cost.duration_s) / 3600
    assert abs(report.gpu_hours - 4 * hours) < Decimal("0.0001")
    assert all(i.state.gone for i in cloud.instances(job))


def _log(run: Path) -> str:
    log = run / "train.log"
    return log.read_text()[-2000:] if log.exists() else ""
