"""Fixtures for the AWS provider tests: moto in-process, instrumented boto3 sessions, a ledger."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aws_fakes import REGION, AwsWorld, aws_settings, instrument, no_detection, put_ami_parameter

from launcher.providers.aws import client as aws_client
from launcher.providers.aws.cloud import AwsCloud
from launcher.providers.aws.ops import AWS_OPERATIONS
from ledger.book import Ledger
from ledger.db import open_engine
from ledger.timeutil import utcnow


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, a region, and no real endpoint: nothing can reach AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsWorld]:
    """Every boto3 session the provider makes (also inside CLI commands) is instrumented;
    at the end, every operation called must be listed in AWS_OPERATIONS."""
    w = AwsWorld()
    w.seed_default_prices()
    real = aws_client.make_session
    monkeypatch.setattr(aws_client, "make_session", lambda s: instrument(real(s), w))
    monkeypatch.setattr("launcher.providers.aws.cloud.make_session", lambda s: instrument(real(s), w))
    yield w
    unknown = {(s, o) for s, o in w.calls if o not in AWS_OPERATIONS.get(s, frozenset())}
    assert not unknown, f"operations missing from AWS_OPERATIONS: {sorted(unknown)}"


@pytest.fixture
def moto(aws_env: None) -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


@pytest.fixture
def book(tmp_path: Path) -> Ledger:
    return Ledger(open_engine(f"sqlite:///{tmp_path / 'ledger.db'}"))


@pytest.fixture
def make_provider(moto: None, world: AwsWorld, book: Ledger) -> Callable[..., AwsCloud]:
    """make_provider(fallback_on_demand=True, ...) -> AwsCloud on moto with the AMI published."""
    put_ami_parameter()

    def make(now: Callable[[], datetime] = utcnow, **aws: Any) -> AwsCloud:
        return AwsCloud(aws_settings(**aws), book, detect_cidr=no_detection, now=now)

    return make


