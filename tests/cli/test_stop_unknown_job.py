"""`gpuhire stop JOB` for an id nothing knows: one line saying so, asking AWS only where it
is set up (and then by its tags)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.rundir import RunDir, RunState
from tests.conftest import Cli

NO_AWS = {"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for key, value in {**NO_AWS, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def test_unknown_job_without_aws_says_no_such_job(sqlite_db: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = Cli(sqlite_db)("stop", "nope-job", env=NO_AWS)
    assert r.exit_code == 1
    assert r.stderr == ("error: no job nope-job in the ledger or under ./runs; check the id: "
                        "`gpuhire status` lists the running jobs\n")


def test_a_local_job_known_only_by_its_run_folder_needs_no_aws(sqlite_db: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "train-local-1"
    run.mkdir(parents=True)
    RunDir(run).save(RunState(job="train-local-1", provider="local", gpu="cpu", data=[], preset="tiny",
                              epochs=1, max_restarts=0, status="running"))
    r = Cli(sqlite_db)("stop", "train-local-1", env=NO_AWS)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "train-local-1: no process found, 0 session(s) closed\n"
    assert RunDir(run).load().status == "stopped"


def test_unknown_job_with_aws_configured_asks_its_tags(moto: None, sqlite_db: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('[aws]\nregion = "us-east-1"\nbucket = "gpuhire-bucket"\n')
    r = Cli(sqlite_db, config)("stop", "nope-job")
    assert r.exit_code == 1
    assert r.stderr == ("error: no job nope-job in the ledger, under ./runs or running on AWS; "
                        "check the id: `gpuhire status` lists the running jobs\n")
