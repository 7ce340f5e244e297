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
file is kept as the first free `.bak`, `.bak.1`, ... (no backup is ever overwritten).
"""

from __future__ import annotations

import copy
import ipaddress
import itertools
import json
import os
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    except OSError as exc:
        raise InputError(f"cannot read outputs file {path}: {exc.strerror}") from None
    return _parse_json(text, f"outputs file {path}")


def _parse_json(text: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
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


def render_toml(values: dict[str, Any], source: str) -> str:
    """TOML for `values` (nested tables of strings and string lists: all that init writes)."""
    lines = [f"# Written by `gpuhire init` from {source}.", "# Edit freely; see docs/config.md."]
    _render_table(values, [], lines)
    return "\n".join(lines) + "\n"


def _render_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    if scalars and path:
        lines.extend(["", f"[{'.'.join(path)}]"])
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _render_table(value, [*path, key], lines)


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"init writes only strings and lists, not {type(value).__name__}")


def init_config(
    config_path: Path,
    *,
    terraform_dir: Path | None = None,
    outputs_file: Path | None = None,
    force: bool = False,
) -> InitResult:
    """Write `config_path` from terraform's outputs; an existing file only with `force`, and
    then merged: init's keys replaced, the rest kept (see the module docstring)."""
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
    values = config_values(outputs)
    old = _read_toml(config_path) if config_path.exists() else None
    text = render_toml(values, source) if old is None else merge_toml(config_path, old, values)
    _validate(text, config_path if old is not None else None)
    backup = _keep_backup(config_path) if config_path.exists() else None
    _write_private(config_path, text)
    return InitResult(config_path, backup, outputs, merged=old is not None)


def _read_toml(path: Path) -> str | None:
    """The text of an existing config file, or None when it is not TOML (replaced whole)."""
    try:
        text = path.read_text(encoding="utf-8")
        tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    return text


_AWS_KEYS = ("region", "bucket", "instance_profile", "ecr_repository_url", "operator_cidrs")
_SNS = ("alerts", "channels", "sns")


def _owned(path: tuple[str, ...]) -> bool:
    """A key init writes: one of its [aws] keys, or anything in the sns channel."""
    return (len(path) > 1 and path[0] == "aws" and path[1] in _AWS_KEYS) or path[:3] == _SNS


def merge_toml(path: Path, old: str, values: dict[str, Any]) -> str:
    """`old` with the keys init owns replaced by `values`; every other line kept as it is.

    The file is walked one statement at a time (a header, or a key/value: the fewest lines
    that parse on their own), so multi-line arrays and strings are never cut. The result must
    load as exactly the old settings with init's keys replaced, or nothing is written."""
    old = old if old.endswith("\n") else old + "\n"
    keep: list[str] = []
    table: tuple[str, ...] = ()
    at: dict[tuple[str, ...], int] = {}  # where the [aws] / sns sections were: new keys go there
    for lines, parsed in _statements(old):
        if parsed is None:  # blank or comment: kept even inside a dropped section
            keep.extend(lines)
        elif lines[0].lstrip().startswith("["):
            table = _header_path(parsed)
            if table in (("aws",), _SNS):
                at.setdefault(table, len(keep) + (table == ("aws",)))
            if table[:3] != _SNS:
                keep.extend(lines)
        elif table[:3] != _SNS:
            owned = [_owned(table + leaf) for leaf in _leaves(parsed)]
            if any(owned) and not all(owned):
                raise _cannot_merge(path)  # an inline table mixing init's keys and the user's
            if not any(owned):
                keep.extend(lines)
    sns = values["alerts"]["channels"]["sns"]
    blocks = {("aws",): [f"{k} = {_toml_value(v)}\n" for k, v in values["aws"].items()],
              _SNS: ["[alerts.channels.sns]\n", *(f"{k} = {_toml_value(v)}\n" for k, v in sns.items())]}
    for table, index in sorted(at.items(), key=lambda item: -item[1]):
        keep[index:index] = blocks[table]
    for table in (t for t in blocks if t not in at):  # no such section yet: a new one at the end
        keep += ["\n", *(["[aws]\n"] if table == ("aws",) else []), *blocks[table]]
    text = "".join(keep)
    try:
        ok = tomllib.loads(text) == _merged(tomllib.loads(old), values)
    except (tomllib.TOMLDecodeError, AttributeError, TypeError):
        ok = False
    if not ok:
        raise _cannot_merge(path)
    return text


def _cannot_merge(path: Path) -> ConfigError:
    return ConfigError(
        f"cannot update {path} in place: its [aws] or alert channels are inline tables or dotted keys",
        "write them as [aws] and [alerts.channels.NAME] sections (or move the file away), "
        "then `gpuhire init --force` again",
    )


def _statements(text: str) -> list[tuple[list[str], dict[str, Any] | None]]:
    """(lines, parsed) per statement; parsed is None for a blank or comment line."""
    lines = text.splitlines(keepends=True)
    out: list[tuple[list[str], dict[str, Any] | None]] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            out.append(([lines[i]], None))
            i += 1
            continue
        for j in range(i + 1, len(lines) + 1):
            try:
                out.append((lines[i:j], tomllib.loads("".join(lines[i:j]))))
                break
            except tomllib.TOMLDecodeError:
                continue
        else:  # the whole file parsed, so every statement ends somewhere
            raise ConfigError("cannot split the config file into statements", "report this as a gpuhire bug")
        i = j
    return out


def _header_path(parsed: dict[str, Any]) -> tuple[str, ...]:
    """The table a header line opens: [a.b] -> (a, b); [[a.b]] -> (a, b, []) (never init's)."""
    path: list[str] = []
    node: Any = parsed
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        path.append(key)
        if isinstance(node, list):
            path.append("[]")
            node = node[-1]
    return tuple(path)


def _leaves(parsed: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every key path a key/value statement sets (dotted keys and inline tables unfolded)."""
    out: list[tuple[str, ...]] = []
    for key, value in parsed.items():
        if isinstance(value, dict) and value:
            out += [(key, *rest) for rest in _leaves(value)]
        else:
            out.append((key,))
    return out


def _merged(old: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """What the merged file must load as: `old` with init's keys replaced."""
    new = copy.deepcopy(old)
    new.setdefault("aws", {}).update(values["aws"])
    channels = new.setdefault("alerts", {}).setdefault("channels", {})
    channels["sns"] = values["alerts"]["channels"]["sns"]
    return new


def _validate(text: str, existing: Path | None) -> None:
    """The text must load as Settings: a mismatch is a bug here (or, merging, a setting of the
    existing file's own), caught before writing."""
    from pydantic import ValidationError

    from launcher.config import Settings

    try:
        Settings.model_validate(tomllib.loads(text))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if existing is not None and not _owned(tuple(str(p) for p in first["loc"])):
            raise ConfigError(f"{existing}: setting {where} does not validate: {first['msg']}",
                              "fix it (docs/config.md), then `gpuhire init --force` again") from None
        raise ConfigError(f"the config init would write does not validate: {first['msg']} ({where})",
                          "report this as a gpuhire bug") from None


def _keep_backup(path: Path) -> Path:
    """Copy `path` to the first free `.bak`, `.bak.1`, ... (mode 0600); never overwrite one."""
    names = (path.name + (".bak" if n == 0 else f".bak.{n}") for n in itertools.count())
    backup = next(b for name in names if not (b := path.with_name(name)).exists())
    try:  # O_EXCL: a backup that appeared meanwhile is still never overwritten
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(path.read_bytes())
        os.chmod(backup, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot keep a copy of {path} as {backup}: {exc.strerror}",
                          "check the directory's permissions, then `gpuhire init --force` again") from None
    return backup


def _write_private(path: Path, text: str) -> None:
    """Write `path` with mode 0600 through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror}",
                          "check the directory's permissions") from None
