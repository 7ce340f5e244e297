"""Offers: latest spot point per zone and type, only zones offering the type, ranked."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from aws_fakes import AwsWorld

from launcher.providers.aws.offers import type_table
from launcher.providers.aws.types import Market


def test_offers_rank_latest_point_per_zone_and_type(make_provider, world: AwsWorld) -> None:
    offers = make_provider().offers("t4")
    got = [(o.zone, o.instance_type, o.usd_per_hour) for o in offers]
    assert got == [
        # equal price: the 8-vCPU type first (feeds the GPU better)
        ("us-east-1b", "g4dn.2xlarge", Decimal("0.1800")),
        ("us-east-1b", "g4dn.xlarge", Decimal("0.1800")),
        # the latest point (0.21), not the older cheaper one (0.15)
        ("us-east-1a", "g4dn.xlarge", Decimal("0.2100")),
        ("us-east-1c", "g4dn.4xlarge", Decimal("0.4500")),
    ]  # us-east-1e's 0.01 is gone: that zone does not offer g4dn
    first = offers[0]
    assert first.market == Market.spot and first.vcpus == 8 and first.gpu == "t4"
    assert first.on_demand_usd_per_hour == Decimal("0.752")
    assert first.source == "describe_spot_price_history"
    assert {"DescribeInstanceTypeOfferings", "DescribeSpotPriceHistory"} <= {o for _, o in world.calls}


def test_l4_offers_and_on_demand_override(make_provider) -> None:
    provider = make_provider(on_demand_usd_per_hour={"g6.2xlarge": "0.90"})
    offers = provider.offers("l4")
    assert [(o.instance_type, o.usd_per_hour, o.on_demand_usd_per_hour) for o in offers] == [
        ("g6.2xlarge", Decimal("0.2900"), Decimal("0.90")),
        ("g6.xlarge", Decimal("0.3100"), Decimal("0.805")),
    ]
    od = provider.on_demand_offers("l4")
    assert od[0].instance_type == "g6.xlarge" and od[0].market == Market.on_demand
    assert od[0].source.startswith("AWS EC2 On-Demand pricing page")  # the dated table
    assert all(o.source == "config" for o in od if o.instance_type == "g6.2xlarge")


def test_bundled_table_is_dated_and_complete() -> None:
    table = type_table()
    assert set(table) == {"g4dn.xlarge", "g4dn.2xlarge", "g4dn.4xlarge", "g6.xlarge", "g6.2xlarge", "g6.4xlarge"}
    assert all("as of 2026-" in t.source for t in table.values())
    assert table["g4dn.xlarge"].on_demand_usd_per_hour == Decimal("0.526")


def test_unknown_configured_type_is_a_config_error(make_provider) -> None:
    from launcher.errors import ConfigError

    provider = make_provider(instance_types={"t4": ["g4dn.xlarge", "p5.48xlarge"]})
    with pytest.raises(ConfigError, match=r"p5\.48xlarge"):
        provider.offers("t4")


def test_offers_cli_json(moto, world: AwsWorld, cli, tmp_path) -> None:
    result = cli("offers", "--gpu", "t4", "--format", "json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows[0]["instance_type"] == "g4dn.2xlarge" and rows[0]["usd_per_hour"] == "0.1800"
    assert rows[0]["zone"] == "us-east-1b" and rows[0]["market"] == "spot"
    table = cli("offers", "--region", "us-east-1", env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "g6.2xlarge" in table.stdout and "g4dn.4xlarge" in table.stdout


def test_offers_cli_bad_gpu(moto, world: AwsWorld, cli) -> None:
    result = cli("offers", "--gpu", "a100")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --gpu 'a100' is not offered; use --gpu t4 or --gpu l4"


def test_no_credentials_is_one_line(cli, monkeypatch, tmp_path) -> None:
    # No moto, no credentials anywhere: botocore's NoCredentialsError becomes one line.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    result = cli("offers", "--gpu", "t4")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no AWS credentials found while trying to")
    assert "aws sso login" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_endpoint_is_one_line(cli, aws_env, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    result = cli("status")  # the other providers' jobs are still listed: one line for AWS
    assert result.exit_code == 0, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("note: AWS could not be reached: cannot reach AWS")
    assert "AWS_ENDPOINT_URL" in line and result.stdout.strip() == "nothing running"


def test_bad_region_is_one_line(moto, world: AwsWorld, cli) -> None:
    result = cli("offers", "--region", "not a region!")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: AWS call failed while trying to connect to AWS ec2 in not a region!")
    assert "check [aws] region" in result.stderr and "Traceback" not in result.stderr
