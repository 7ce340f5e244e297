"""A missing option value points at the command's own --help; an unknown AWS profile is
named with where it was set (AWS_PROFILE or [aws] profile)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line
from tests.conftest import Cli


@pytest.mark.parametrize(("args", "command"), [
    (["ledger", "list", "--month"], "gpuhire ledger list"),
    (["ledger", "add", "--provider"], "gpuhire ledger add"),
    (["--db"], "gpuhire"),
])
def test_missing_option_value_points_at_the_commands_help(args: list[str], command: str) -> None:
    from typer.testing import CliRunner

    from launcher.cli import app

    r = CliRunner().invoke(app, args, prog_name="gpuhire")
    option = args[-1]
    assert one_line(r, 2) == f"Option {option!r} requires an argument; see `{command} --help`"


def test_unknown_aws_profile_is_named_with_its_source(cli: Cli, tmp_path: Path) -> None:
    env = {"AWS_PROFILE": "nope", "AWS_CONFIG_FILE": str(tmp_path / "none"),
           "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    assert one_line(cli("offers", env=env), 1) == (
        "AWS profile 'nope' (from the AWS_PROFILE variable) is not configured; run "
        "`aws configure --profile nope`, or fix or unset AWS_PROFILE"
    )
    config = tmp_path / "config.toml"
    config.write_text('[aws]\nprofile = "work"\n')
    env.pop("AWS_PROFILE")
    assert one_line(Cli(cli.db, config)("offers", env=env), 1) == (
        "AWS profile 'work' (from [aws] profile in the config) is not configured; run "
        "`aws configure --profile work`, or fix [aws] profile"
    )
