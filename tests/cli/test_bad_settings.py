"""Bad settings through the CLI: a GPUHIRE_* variable is named as such, not blamed on the
config file; a file that is not UTF-8, and values no sum can use, are one line too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line
from tests.conftest import Cli


def test_bad_variable_is_named_not_blamed_on_the_file(cli: Cli) -> None:
    r = cli("cards", env={"GPUHIRE_OWNERSHIP__WINDOW_MONTHS": "abc"})
    assert one_line(r, 2) == (
        "environment variable GPUHIRE_OWNERSHIP__WINDOW_MONTHS: Input should be a valid "
        "integer, unable to parse string as an integer; fix or unset it (docs/config.md)"
    )
    r = cli("cards", env={"GPUHIRE_OWNERSHIP__WINDOWMONTHS": "3"})
    assert one_line(r, 2) == (
        "environment variable GPUHIRE_OWNERSHIP__WINDOWMONTHS sets unknown config key "
        "'ownership.windowmonths'; unset it or fix its spelling (docs/config.md)"
    )


def test_table_variable_that_is_not_json(cli: Cli) -> None:
    line = one_line(cli("cards", env={"GPUHIRE_OWNERSHIP": "{bad"}), 2)
    assert line.startswith("environment variable GPUHIRE_OWNERSHIP is not valid JSON")
    assert "EnvSettingsSource" not in line and "config.toml" not in line
    r = cli("cards", env={"GPUHIRE_OWNERSHIP": '{"window_months": "x"}'})
    assert one_line(r, 2).startswith(
        "environment variable GPUHIRE_OWNERSHIP (config key 'ownership.window_months'): "
    )


def test_bad_file_value_still_names_the_file(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[ownership]\nwindow_months = 0\n")
    line = one_line(Cli(sqlite_db, config)("cards"), 2)
    assert line.startswith(f"config key 'ownership.window_months' in {config}: ")


def test_config_file_that_is_not_utf8(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_bytes(b'db = "caf\xe9"\n')
    line = one_line(Cli(sqlite_db, config)("cards"), 2)
    assert line == f"config file {config} is not UTF-8 text (byte 9); save it as UTF-8"


@pytest.mark.parametrize(("args", "line"), [
    (["--usd-per-kwh", "1e400"],
     "--usd-per-kwh 1e400: Input should be less than or equal to 100; give another value (see --help)"),
    (["--speed", "a100=1e400"],
     "--speed a100=1e400: Input should be less than or equal to 1000; give another value (see --help)"),
    (["--buy-payback-months", "30", "--watch-payback-months", "10"],
     "--buy-payback-months: buy payback 30 months is above watch payback 10 months "
     "(buy must be <= watch); give another value (see --help)"),
])
def test_advise_refuses_values_it_cannot_use(cli: Cli, args: list[str], line: str) -> None:
    assert one_line(cli("advise", *args), 2) == line


def test_buy_above_watch_in_the_file(sqlite_db: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[ownership]\nbuy_payback_months = 30\n")
    assert one_line(Cli(sqlite_db, config)("advise"), 2) == (
        f"config key 'ownership.buy_payback_months' in {config}: buy payback 30 months is "
        "above watch payback 24 months (buy must be <= watch); fix its value (docs/config.md)"
    )
