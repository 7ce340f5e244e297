"""`gpuhire init`: write the config file from terraform's outputs (terraform/outputs.tf).

The outputs come from `terraform output -json` run in a directory, or from a saved copy of
that JSON. Every output is checked (present, right type, plausible value) before anything is
written, so a wrong or half-applied setup stops with one line naming the output to fix.

What is written (docs/terraform.md):

    [aws]
    region = "eu-west-1"
    bucket = "gpuhire-123456789012-eu-west-1"
    instance_profile = "gpuhire-instance"
    ecr_repository_url = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpuhire-htr"
    operator_cidrs = ["203.0.113.7/32"]

    [alerts.channels.sns]
    type = "sns"
    topic_arn = "arn:aws:sns:eu-west-1:123456789012:gpuhire-alerts"
    region = "eu-west-1"

With --force into an existing file, only those keys change (the [aws] keys above and the
whole sns channel); every other line, comments included, stays as it was, and the previous
file is kept as a `.bak` copy. How the file is merged and written is in `launcher.init_toml`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launcher.init_toml import write_config
from ledger.errors import ConfigError, InputError

_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
_BUCKET = re.compile(r"^(?!xn--)(?!\d+\.\d+\.\d+\.\d+$)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PROFILE = re.compile(r"^[\w+=,.@-]{1,128}$")
_TOPIC = re.compile(r"^arn:aws[a-z-]*:sns:(?P<region>[a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}$")
_ECR = re.compile(
    r"^\d{12}\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/[a-z0-9][a-z0-9._/-]*$"
)
_REAPPLY = "run `terraform apply` in terraform/ (its outputs.tf defines it), then `gpuhire init` again"
_FIX_VALUE = "fix it in terraform/ (or its variables), `terraform apply`, then `gpuhire init` again"
TERRAFORM_TIMEOUT_S = 120  # `terraform output` reads the state; remote backends can be slow


@dataclass(frozen=True)
class TerraformOutputs:
    """The outputs of terraform/ that the launcher needs, checked."""

    region: str  # where the bucket, topic and repository live
    bucket: str  # S3 bucket for data/<sha256>/ and jobs/<job>/
    instance_profile: str  # instance profile name for training boxes
    sns_topic_arn: str  # alerts topic
    ecr_repository_url: str  # trainer image repository
    operator_cidrs: tuple[str, ...]  # networks allowed on SSH


@dataclass(frozen=True)
class InitResult:
    """What `init_config` did."""

    path: Path  # the config file written
    backup: Path | None  # the previous file, kept when --force updated it
    outputs: TerraformOutputs
    merged: bool = False  # into an existing file (False: a new file, or one that was not TOML)


def terraform_output_json(directory: Path) -> dict[str, Any]:
    """Run `terraform output -json` in `directory` and return the parsed JSON."""
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory", "pass the terraform/ directory you applied")
    binary = shutil.which("terraform")
    if binary is None:
        raise ConfigError(
            "the terraform binary is not on PATH",
            "where terraform is, run `terraform output -json > outputs.json` and pass "
            "`gpuhire init --outputs-file outputs.json`",
        )
    try:
        proc = subprocess.run(
            [binary, f"-chdir={directory}", "output", "-json", "-no-color"],
            capture_output=True, text=True, timeout=TERRAFORM_TIMEOUT_S, check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"`terraform output -json` in {directory} took over {TERRAFORM_TIMEOUT_S} s",
            "check the backend's connection, or save the outputs and pass --outputs-file",
        ) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(
            f"`terraform output -json` failed in {directory}: {last}",
            "run `terraform init` and `terraform apply` there first",
        )
    return _parse_json(proc.stdout, f"the output of terraform in {directory}")


def read_outputs_file(path: Path) -> dict[str, Any]:
    """Read a saved `terraform output -json` file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"outputs file {path} does not exist",
                         "save it with `terraform output -json > outputs.json`") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"outputs file {path} is not UTF-8 text (byte {exc.start})",
                         "save it with `terraform output -json > outputs.json`") from None
    except OSError as exc:
        raise InputError(f"cannot read outputs file {path}: {exc.strerror}") from None
    return _parse_json(text, f"outputs file {path}")


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except RecursionError:
        raise InputError(f"{what} is not JSON (nested too deep)",
                         "give the output of `terraform output -json`") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not JSON ({exc.msg}, line {exc.lineno})",
                         "give the output of `terraform output -json`") from None
    if not isinstance(data, dict):
        raise InputError(f"{what} is not a JSON object of outputs",
                         "give the output of `terraform output -json`")
    if not data:
        raise ConfigError(f"{what} holds no outputs", _REAPPLY)
    return data


def _value(raw: dict[str, Any], name: str, kind: type) -> Any:
    """The value of output `name`, which must be of `kind` (str or list)."""
    if name not in raw:
        raise ConfigError(f"terraform output {name!r} is missing", _REAPPLY)
    entry = raw[name]
    if not isinstance(entry, dict) or "value" not in entry:
        raise InputError(f"terraform output {name!r} has no 'value'",
                         "give the output of `terraform output -json` (not `terraform show`)")
    value: Any = entry["value"]
    if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
        got = "null" if value is None else type(value).__name__
        want = "a non-empty string" if kind is str else "a list"
        raise ConfigError(f"terraform output {name!r} should be {want}, got {got}", _REAPPLY)
    return value


def _check(name: str, ok: bool, value: object, what: str) -> None:
    if not ok:
        raise ConfigError(f"terraform output {name!r} is {value!r}, not {what}", _FIX_VALUE)


def parse_outputs(raw: dict[str, Any]) -> TerraformOutputs:
    """Check terraform's outputs and keep what the launcher needs."""
    region = _value(raw, "region", str)
    _check("region", bool(_REGION.match(region)), region, "an AWS region like eu-west-1")
    bucket = _value(raw, "bucket", str)
    _check("bucket", bool(_BUCKET.match(bucket)), bucket, "a valid S3 bucket name")
    profile = _value(raw, "instance_profile", str)
    _check("instance_profile", bool(_PROFILE.match(profile)), profile, "an instance profile name")
    topic = _value(raw, "sns_topic_arn", str)
    match = _TOPIC.match(topic)
    _check("sns_topic_arn", bool(match), topic, "an SNS topic ARN")
    _check("sns_topic_arn", match is not None and match["region"] == region, topic,
           f"a topic in {region} (the 'region' output)")
    ecr = _value(raw, "ecr_repository_url", str)
    ecr_match = _ECR.match(ecr)
    _check("ecr_repository_url", bool(ecr_match), ecr, "an ECR repository URL")
    _check("ecr_repository_url", ecr_match is not None and ecr_match["region"] == region, ecr,
           f"a repository in {region} (the 'region' output)")
    cidrs = _value(raw, "operator_cidrs", list)
    for cidr in cidrs:
        _check("operator_cidrs", _is_narrow_cidr(cidr), cidr, "a CIDR narrower than /8")
    return TerraformOutputs(region, bucket, profile, topic, ecr, tuple(cidrs))


def _is_narrow_cidr(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_network(value, strict=True).prefixlen >= 8
    except ValueError:
        return False


def config_values(out: TerraformOutputs) -> dict[str, Any]:
    """The config file's contents for these outputs (the sections `launcher.config` reads)."""
    return {
        "aws": {
            "region": out.region,
            "bucket": out.bucket,
            "instance_profile": out.instance_profile,
            "ecr_repository_url": out.ecr_repository_url,
            "operator_cidrs": list(out.operator_cidrs),
        },
        "alerts": {
            "channels": {
                "sns": {"type": "sns", "topic_arn": out.sns_topic_arn, "region": out.region},
            },
        },
    }


def init_config(
    config_path: Path,
    *,
    terraform_dir: Path | None = None,
    outputs_file: Path | None = None,
    force: bool = False,
) -> InitResult:
    """Write `config_path` from terraform's outputs; an existing file only with `force`, and
    then merged: init's keys replaced, the rest kept (see `launcher.init_toml`)."""
    if (terraform_dir is None) == (outputs_file is None):
        raise InputError("give one source of terraform outputs",
                         "pass --from-terraform DIR or --outputs-file FILE")
    if config_path.exists() and not force:
        raise InputError(f"config file {config_path} exists",
                         "pass --force to update its [aws] and sns channel (the rest is kept, and "
                         "a .bak copy), or --config another path")
    if outputs_file is not None:
        raw, source = read_outputs_file(outputs_file), str(outputs_file)
    elif terraform_dir is not None:
        raw, source = terraform_output_json(terraform_dir), f"terraform output in {terraform_dir}"
    outputs = parse_outputs(raw)
    backup, merged = write_config(config_path, config_values(outputs), source)
    return InitResult(config_path, backup, outputs, merged=merged)
