"""`gpuhire init`: the config file from terraform's outputs, checked before it is written."""

from __future__ import annotations

import copy
import json
import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import platformdirs
import pytest

from launcher.config import load_settings
from launcher.init_toml import render_toml
from tests.terraform.tfparse import TERRAFORM, blocks

OUTPUTS = Path(__file__).parent / "terraform" / "outputs.json"


@pytest.fixture
def outputs() -> dict[str, Any]:
    """A saved `terraform output -json` of terraform/ (account 123456789012, eu-west-1)."""
    return json.loads(OUTPUTS.read_text())  # type: ignore[no-any-return]


def _save(tmp_path: Path, data: object, name: str = "outputs.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _one_error_line(result: Any) -> str:
    assert result.exit_code != 0, result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_saved_outputs_match_outputs_tf(outputs: dict[str, Any]) -> None:
    assert set(outputs) == {name for (name,) in blocks("output", TERRAFORM)}


def test_init_writes_a_config_that_loads(cli: Any, tmp_path: Path, outputs: dict[str, Any]) -> None:
    config = tmp_path / "conf" / "config.toml"
    r = cli("init", "--outputs-file", str(_save(tmp_path, outputs)),
            env={"GPUHIRE_CONFIG": str(config)})
    assert r.exit_code == 0, r.stderr
    assert f"wrote {config} (mode 0600)" in r.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    settings = load_settings(config)
    assert settings.aws.region == "eu-west-1"
    assert settings.aws.bucket == "gpuhire-123456789012-eu-west-1"
    assert settings.aws.instance_profile == "gpuhire-instance"
    assert settings.aws.ecr_repository_url == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpuhire-htr")
    assert settings.aws.operator_cidrs == ["203.0.113.7/32", "2001:db8:42::/48"]
    channel = settings.alerts.channel("sns")
    assert channel.type == "sns"
    assert channel.topic_arn == "arn:aws:sns:eu-west-1:123456789012:gpuhire-alerts"
    assert channel.region == "eu-west-1"


def test_init_writes_the_default_config_path(cli: Any, tmp_path: Path, outputs: dict[str, Any]) -> None:
    r = cli("init", "--outputs-file", str(_save(tmp_path, outputs)))
    assert r.exit_code == 0, r.stderr
    default = Path(platformdirs.user_config_dir("gpuhire")) / "config.toml"
    assert default.is_file() and default.is_relative_to(os.environ["XDG_CONFIG_HOME"])
    assert load_settings(None).aws.bucket == "gpuhire-123456789012-eu-west-1"


def test_init_refuses_to_overwrite_without_force(cli: Any, tmp_path: Path,
                                                 outputs: dict[str, Any]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('db = "sqlite:///mine.db"\n')
    source = str(_save(tmp_path, outputs))
    line = _one_error_line(cli("init", "--outputs-file", source, env={"GPUHIRE_CONFIG": str(config)}))
    assert "exists" in line and "--force" in line
    assert config.read_text() == 'db = "sqlite:///mine.db"\n'

    r = cli("init", "--outputs-file", source, "--force", env={"GPUHIRE_CONFIG": str(config)})
    assert r.exit_code == 0, r.stderr
    backup = tmp_path / "config.toml.bak"
    assert backup.read_text() == 'db = "sqlite:///mine.db"\n'
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert load_settings(config).aws.region == "eu-west-1"


def _drop(name: str):  # type: ignore[no-untyped-def]
    return lambda o: o.pop(name)


def _set(name: str, value: object):  # type: ignore[no-untyped-def]
    return lambda o: o[name].update(value=value)


BAD = [
    ("missing", _drop("bucket"), "'bucket' is missing"),
    ("wrong-type", _set("region", 42), "'region' should be a non-empty string, got int"),
    ("null", _set("instance_profile", None), "'instance_profile' should be a non-empty string, got null"),
    ("bad-region", _set("region", "moon-base-1"), "'region' is 'moon-base-1', not an AWS region"),
    ("bad-bucket", _set("bucket", "My_Bucket"), "'bucket' is 'My_Bucket', not a valid S3 bucket name"),
    ("topic-elsewhere", _set("sns_topic_arn", "arn:aws:sns:us-east-1:123456789012:gpuhire-alerts"),
     "'sns_topic_arn'"),
    ("ecr-elsewhere", _set("ecr_repository_url",
                           "123456789012.dkr.ecr.us-east-1.amazonaws.com/gpuhire-htr"),
     "'ecr_repository_url'"),
    ("open-ssh", _set("operator_cidrs", ["0.0.0.0/0"]), "'operator_cidrs' is '0.0.0.0/0'"),
    ("cidr-not-list", _set("operator_cidrs", "203.0.113.7/32"), "'operator_cidrs' should be a list"),
    ("no-value", lambda o: o["region"].pop("value"), "'region' has no 'value'"),
]


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_outputs_name_the_output_to_fix(cli: Any, tmp_path: Path, outputs: dict[str, Any],
                                            change: Any, message: str) -> None:
    broken = copy.deepcopy(outputs)
    change(broken)
    config = tmp_path / "config.toml"
    line = _one_error_line(cli("init", "--outputs-file", str(_save(tmp_path, broken)),
                               env={"GPUHIRE_CONFIG": str(config)}))
    assert message in line
    assert "; " in line  # the fix follows the message
    assert not config.exists()


@pytest.mark.parametrize(("text", "message"), [
    ("not json {", "is not JSON"),
    ("[1, 2]", "is not a JSON object of outputs"),
    ("{}", "holds no outputs"),
])
def test_outputs_file_that_is_not_terraform_output(cli: Any, tmp_path: Path, text: str,
                                                   message: str) -> None:
    line = _one_error_line(cli("init", "--outputs-file", str(_save(tmp_path, text)),
                               env={"GPUHIRE_CONFIG": str(tmp_path / "c.toml")}))
    assert message in line


@pytest.mark.parametrize("args", [[], ["--outputs-file", "o.json", "--from-terraform", "."]],
                         ids=["none", "both"])
def test_exactly_one_source(cli: Any, tmp_path: Path, args: list[str]) -> None:
    line = _one_error_line(cli("init", *args, env={"GPUHIRE_CONFIG": str(tmp_path / "c.toml")}))
    assert "--from-terraform DIR or --outputs-file FILE" in line


def test_missing_outputs_file(cli: Any, tmp_path: Path) -> None:
    line = _one_error_line(cli("init", "--outputs-file", str(tmp_path / "nope.json"),
                               env={"GPUHIRE_CONFIG": str(tmp_path / "c.toml")}))
    assert "does not exist" in line and "terraform output -json > outputs.json" in line


def _stub_terraform(bin_dir: Path, script: str) -> None:
    """A `terraform` on PATH that stands in for the binary (not under test: our call of it is)."""
    bin_dir.mkdir()
    stub = bin_dir / "terraform"
    stub.write_text("#!/bin/sh\n" + script)
    stub.chmod(0o755)


def test_from_terraform_runs_terraform_output_json(cli: Any, tmp_path: Path,
                                                   outputs: dict[str, Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _save(tmp_path, outputs)
    args_log = tmp_path / "args"
    _stub_terraform(tmp_path / "bin", f'echo "$@" > {args_log}\ncat {saved}\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "config.toml"
    r = cli("init", "--from-terraform", str(tmp_path), env={"GPUHIRE_CONFIG": str(config)})
    assert r.exit_code == 0, r.stderr
    assert args_log.read_text().split() == [f"-chdir={tmp_path}", "output", "-json", "-no-color"]
    assert load_settings(config).aws.instance_profile == "gpuhire-instance"


def test_from_terraform_that_fails(cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stub_terraform(tmp_path / "bin", 'echo "Error: Backend initialization required" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    line = _one_error_line(cli("init", "--from-terraform", str(tmp_path),
                               env={"GPUHIRE_CONFIG": str(tmp_path / "c.toml")}))
    assert "Backend initialization required" in line and "terraform init" in line


def test_from_terraform_without_the_binary(cli: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    line = _one_error_line(cli("init", "--from-terraform", str(tmp_path),
                               env={"GPUHIRE_CONFIG": str(tmp_path / "c.toml")}))
    assert "not on PATH" in line and "--outputs-file" in line


@pytest.mark.skipif(shutil.which("terraform") is None, reason="no terraform binary here")
def test_from_terraform_with_the_real_binary(cli: Any, tmp_path: Path,
                                             outputs: dict[str, Any],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs-only configuration: terraform applies it offline, no provider needed."""
    stack = tmp_path / "stack"
    stack.mkdir()
    blocks_tf = [f'output "{name}" {{\n  value = jsondecode({json.dumps(json.dumps(o["value"]))})\n}}\n'
                 for name, o in outputs.items()]
    (stack / "main.tf").write_text("\n".join(blocks_tf))
    monkeypatch.setenv("CHECKPOINT_DISABLE", "1")
    monkeypatch.setenv("TF_IN_AUTOMATION", "1")
    for step in (["init", "-input=false"], ["apply", "-auto-approve", "-input=false"]):
        proc = subprocess.run(["terraform", f"-chdir={stack}", *step], capture_output=True,
                              text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
    config = tmp_path / "config.toml"
    r = cli("init", "--from-terraform", str(stack), env={"GPUHIRE_CONFIG": str(config)})
    assert r.exit_code == 0, r.stderr
    assert load_settings(config).aws.bucket == "gpuhire-123456789012-eu-west-1"


def test_render_toml_round_trips_awkward_strings() -> None:
    values = {"aws": {"bucket": 'quote " back \\ slash', "operator_cidrs": ["a", "b\"c"]},
              "alerts": {"channels": {"sns": {"type": "sns"}}}}
    assert tomllib.loads(render_toml(values, "a test")) == values
