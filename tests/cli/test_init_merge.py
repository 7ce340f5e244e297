"""`gpuhire init --force` into an existing config: only init's keys change (the [aws] keys it
writes and the sns channel); the rest, comments included, stays; no backup is overwritten."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from launcher.config import load_settings
from tests.conftest import Cli

OUTPUTS = Path(__file__).parents[1] / "terraform" / "outputs.json"

MINE = '''\
# my settings: keep this comment
db = "sqlite:///mine.db"

[aws]
region = "us-east-1"   # the old region
profile = "work"
operator_cidrs = [
  "198.51.100.0/24",  # the office
]

[speeds]
t4 = 1.0
l4 = 2.5

[alerts.channels.sns]
type = "sns"
topic_arn = "arn:aws:sns:us-east-1:123456789012:old-topic"

[alerts.channels.slack]
type = "webhook"
url_env = "GPUHIRE_SLACK_URL"

[[alerts.rules]]
name = "job-cap"
type = "job_budget"
cap_usd = "25"
channels = ["sns", "slack"]

[hosts.box]
host = "10.0.0.2"
user = "me"
key_path = "/home/me/.ssh/id_ed25519"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"
'''


def _init(sqlite_db: str, config: Path, *extra: str) -> Any:
    return Cli(sqlite_db, config)("init", "--outputs-file", str(OUTPUTS), *extra)


def _expected(old: dict[str, Any]) -> dict[str, Any]:
    outputs = {k: v["value"] for k, v in json.loads(OUTPUTS.read_text()).items()}
    new = json.loads(json.dumps(old))
    new["aws"].update({k: outputs[k] for k in ("region", "bucket", "instance_profile",
                                               "ecr_repository_url", "operator_cidrs")})
    new["alerts"]["channels"]["sns"] = {"type": "sns", "topic_arn": outputs["sns_topic_arn"],
                                        "region": outputs["region"]}
    return new


def test_force_keeps_everything_init_does_not_own(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(MINE)
    r = _init(sqlite_db, config, "--force")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [
        f"updated {config} (mode 0600): the [aws] keys and the sns channel; the rest is as it was",
        f"kept the previous file as {config}.bak"]
    text = config.read_text()
    assert tomllib.loads(text) == _expected(tomllib.loads(MINE))
    assert "# my settings: keep this comment" in text and "[[alerts.rules]]" in text
    assert "old-topic" not in text and "198.51.100.0/24" not in text
    settings = load_settings(config)
    assert settings.aws.profile == "work" and settings.aws.region == "eu-west-1"
    assert settings.alerts.channel("sns").topic_arn.endswith(":gpuhire-alerts")
    assert "box" in settings.hosts and settings.speeds["l4"] == 2.5
    assert (tmp_path / "config.toml.bak").read_text() == MINE
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


def test_a_second_run_keeps_the_first_backup(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(MINE)
    assert _init(sqlite_db, config, "--force").exit_code == 0
    first = config.read_text()
    r = _init(sqlite_db, config, "--force")
    assert r.exit_code == 0, r.stderr
    assert f"kept the previous file as {config}.bak.1" in r.stdout
    assert (tmp_path / "config.toml.bak").read_text() == MINE  # never overwritten
    assert (tmp_path / "config.toml.bak.1").read_text() == first
    assert config.read_text() == first  # running it again changes nothing
    assert stat.S_IMODE((tmp_path / "config.toml.bak.1").stat().st_mode) == 0o600


def test_a_file_without_those_sections_gets_them_appended(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    mine = '[speeds]\nt4 = 1.0\n\n[[alerts.rules]]\nname = "job-cap"\ntype = "job_budget"\ncap_usd = "25"'
    config.write_text(mine)  # no newline at the end either
    assert _init(sqlite_db, config, "--force").exit_code == 0
    merged = tomllib.loads(config.read_text())
    assert merged["speeds"] == {"t4": 1.0} and merged["alerts"]["rules"][0]["name"] == "job-cap"
    assert merged["aws"]["bucket"] == "gpuhire-123456789012-eu-west-1"
    assert merged["alerts"]["channels"]["sns"]["type"] == "sns"


@pytest.mark.parametrize("mine", [
    'aws = { region = "us-east-1", profile = "work" }\n',
    '[alerts]\nchannels = { sns = { type = "sns", topic_arn = "x" }, slack = { type = "webhook" } }\n',
], ids=["aws-inline", "channels-inline"])
def test_a_layout_it_cannot_edit_in_place_is_refused(sqlite_db: str, tmp_path: Path, mine: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(mine)
    r = _init(sqlite_db, config, "--force")
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert r.stderr == (f"error: cannot update {config} in place: its [aws] or alert channels are "
                        "inline tables or dotted keys; write them as [aws] and "
                        "[alerts.channels.NAME] sections (or move the file away), then "
                        "`gpuhire init --force` again\n")
    assert config.read_text() == mine and not (tmp_path / "config.toml.bak").exists()


def test_a_file_that_is_not_toml_is_replaced_and_kept(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("this is [not toml\n")
    r = _init(sqlite_db, config, "--force")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.splitlines()[:2] == [f"wrote {config} (mode 0600); the previous file was not TOML",
                                         f"kept the previous file as {config}.bak"]
    assert (tmp_path / "config.toml.bak").read_text() == "this is [not toml\n"
    assert load_settings(config).aws.region == "eu-west-1"


def test_a_bad_setting_of_its_own_is_named(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[speeds]\nt4 = -1\n')
    r = _init(sqlite_db, config, "--force")
    assert r.exit_code == 2
    assert r.stderr.startswith(f"error: {config}: setting speeds.t4 does not validate: ")
    assert r.stderr.endswith("fix it (docs/config.md), then `gpuhire init --force` again\n")
    assert config.read_text() == '[speeds]\nt4 = -1\n'
