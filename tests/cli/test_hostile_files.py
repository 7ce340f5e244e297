"""Files and arguments a user hands gpuhire that are not what they should be: random bytes, a
value of the wrong type, bytes that are not UTF-8 on the command line. Each is one line on
stderr naming the fix and a non-zero exit, never the "unexpected ... please report it" line
(real files, the in-process runner; argv bytes through a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]
RANDOM = bytes([0xB0, 0x9F, 0x00, 0xFF, 0x13, 0x80]) * 20  # not UTF-8 from its first byte


def one_line(result, code: int) -> str:
    """The error line of a failed command (checked: one line, that exit code, no report)."""
    assert result.exit_code == code, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    return str(result.stderr.removeprefix("error: ").rstrip("\n"))


@pytest.fixture
def gt(tmp_path: Path) -> Path:
    folder = tmp_path / "gt"
    folder.mkdir()
    return folder


# -- a --preset file of the user's own ------------------------------------------------------
def test_preset_of_random_bytes(cli: Cli, tmp_path: Path, gt: Path) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_bytes(RANDOM)
    line = one_line(cli("train", str(gt), "--dry-run", "--provider", "local",
                        "--preset", str(preset)), 2)
    assert line == (f"--preset: cannot read {preset}: not UTF-8 text (byte 0); "
                    "save it as a UTF-8 TOML file")


@pytest.mark.parametrize(("text", "why"), [
    ('epochs = "many"\n', "epochs must be a whole number, not 'many'"),
    ("epochs = true\n", "epochs must be a whole number, not True"),
    ("lr = nan\n", "lr must be a finite number, not nan"),
    ('channels = [16, "x"]\n', "channels must be a list of whole numbers, not [16, 'x']"),
    ("probe_batch = 1\n", "probe_batch must be true or false, not 1"),
])
def test_preset_value_of_the_wrong_type(cli: Cli, tmp_path: Path, gt: Path, text: str, why: str) -> None:
    preset = tmp_path / "mine.toml"
    preset.write_text(text)
    line = one_line(cli("train", str(gt), "--dry-run", "--provider", "local",
                        "--preset", str(preset)), 2)
    assert line == (f"--preset: bad value in mine.toml: {why}; "
                    "compare with jobs/htr/presets/default.toml")


# -- gpuhire init --outputs-file ---------------------------------------------------------------
def test_init_outputs_file_of_random_bytes(tmp_path: Path, sqlite_db: str) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_bytes(RANDOM)
    cli = Cli(sqlite_db, tmp_path / "config.toml")
    line = one_line(cli("init", "--outputs-file", str(outputs)), 2)
    assert line == (f"outputs file {outputs} is not UTF-8 text (byte 0); "
                    "save it with `terraform output -json > outputs.json`")
    assert not (tmp_path / "config.toml").exists()


def test_init_outputs_file_nested_too_deep(tmp_path: Path, sqlite_db: str) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text("[" * 100_000)
    line = one_line(Cli(sqlite_db, tmp_path / "config.toml")("init", "--outputs-file", str(outputs)), 2)
    assert line == (f"outputs file {outputs} is not JSON (nested too deep); "
                    "give the output of `terraform output -json`")


# -- runs/<job>/state.json ---------------------------------------------------------------------
@pytest.mark.parametrize("command", ["logs", "attach", "resume"])
def test_state_file_of_random_bytes_names_the_file(cli: Cli, tmp_path: Path, command: str) -> None:
    state = tmp_path / "runs" / "train-1" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_bytes(RANDOM)
    line = one_line(cli(command, "train-1", "--runs", str(tmp_path / "runs")), 2)
    assert line == (f"the state file {state} is unreadable (not UTF-8 text, byte 0); repair it "
                    "(JSON, see docs/train.md), or end the job with `gpuhire stop train-1`")


@pytest.mark.parametrize("command", ["attach", "resume"])
def test_state_file_with_a_value_of_the_wrong_type(cli: Cli, tmp_path: Path, command: str) -> None:
    state = tmp_path / "runs" / "train-1" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"job": "train-1", "provider": "local", "gpu": "cpu", "data": ["gt"], '
                     '"preset": "tiny", "epochs": "many", "max_restarts": 0}')
    line = one_line(cli(command, "train-1", "--runs", str(tmp_path / "runs")), 2)
    assert line == (f"{state.parent / 'state.json'} is unreadable ('epochs' has the wrong type); "
                    "the run directory is damaged; check `gpuhire status` and the ledger")


# -- [ownership] window_months = true (issue item 16) ---------------------------------------
@pytest.mark.parametrize(("toml", "key", "what"), [
    ("[ownership]\nwindow_months = true\n", "ownership.window_months", "a whole number"),
    ("[aws]\nvolume_gb = false\n", "aws.volume_gb", "a whole number"),
    ("[providers.runpod]\nmin_billed_s = true\n", "providers.runpod.min_billed_s", "a whole number"),
    ("[infer]\ncoffee_break_minutes = true\n", "infer.coffee_break_minutes", "a number"),
    ("[infer.lines_per_s]\ncpu = true\n", "infer.lines_per_s", "a number"),
])
def test_a_boolean_is_no_number_in_the_config(tmp_path: Path, sqlite_db: str, toml: str, key: str,
                                              what: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(toml)
    line = one_line(Cli(sqlite_db, config)("cards"), 2)
    assert line == (f"config key {key!r} in {config}: Input should be {what}, not true or false; "
                    "fix its value (docs/config.md)")


def test_booleans_stay_booleans_and_numbers_numbers(tmp_path: Path, sqlite_db: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[ownership]\nwindow_months = 2\n[providers.mine]\nowned = true\n"
                      "[aws]\nfallback_on_demand = true\n")
    assert Cli(sqlite_db, config)("cards").exit_code == 0


def test_a_boolean_in_a_variable_table_names_the_variable(cli: Cli) -> None:
    r = cli("cards", env={"GPUHIRE_OWNERSHIP": '{"window_months": true}'})
    assert one_line(r, 2) == (
        "environment variable GPUHIRE_OWNERSHIP (config key 'ownership.window_months'): Input "
        "should be a whole number, not true or false; fix or unset it (docs/config.md)"
    )


# -- command-line arguments that are not UTF-8 -------------------------------------------------
def _gpuhire(tmp_path: Path, *args: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUHIRE_")}
    env["GPUHIRE_DB"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    env["GPUHIRE_CONFIG"] = str(tmp_path / "config.toml")
    (tmp_path / "config.toml").write_text("")
    return subprocess.run([os.fsencode(sys.executable), b"-m", b"launcher", *args], cwd=ROOT,
                          env=env, capture_output=True, timeout=60)


@pytest.mark.parametrize(("args", "line"), [
    ([b"ledger", b"add", b"--provider", b"runpod", b"--gpu", b"a100", b"--start",
      b"2026-10-01T08:00Z", b"--usd-per-hour", b"1", b"--note", b"caf\xe9"],
     "the value of --note 'caf\\xe9' is not UTF-8 text (byte 3)"),
    ([b"train", b"gt", b"--dry-run", b"--provider", b"\xff"],
     "the value of --provider '\\xff' is not UTF-8 text (byte 0)"),
    ([b"train", b"gt", b"--dry-run", b"--provider=lo\xffcal"],
     "the value of --provider 'lo\\xffcal' is not UTF-8 text (byte 2)"),
    ([b"train", b"g\xfft", b"--dry-run"], "the argument 'g\\xfft' is not UTF-8 text (byte 1)"),
])
def test_an_argument_that_is_not_utf8(tmp_path: Path, args: list[bytes], line: str) -> None:
    proc = _gpuhire(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == b""
    assert proc.stderr.decode() == (f"error: {line}; give it as UTF-8 (check your terminal's "
                                    "encoding, or rename such a file)\n")
