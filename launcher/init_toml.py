"""The TOML file `gpuhire init` writes: a new one, or its keys merged into an existing one.

With --force into an existing file, only init's keys change (the [aws] keys it writes and the
whole sns alert channel); every other line, comments included, stays as it was, and the
previous file is kept as the first free `.bak`, `.bak.1`, ... (no backup is ever overwritten).
Whatever is written must validate as `launcher.config.Settings` first, and is written 0600.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError


def write_config(path: Path, values: dict[str, Any], source: str) -> tuple[Path | None, bool]:
    """Write `values` to `path`: a new file, or merged into the existing one (`merge_toml`),
    which is first kept as a backup. (backup, merged): merged is False for a new file or one
    that was not TOML (then replaced whole, and still kept)."""
    old = _read_toml(path) if path.exists() else None
    text = render_toml(values, source) if old is None else merge_toml(path, old, values)
    _validate(text, path if old is not None else None)
    backup = _keep_backup(path) if path.exists() else None
    _write_private(path, text)
    return backup, old is not None


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
    keep, at = _without_owned(path, old)
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


def _without_owned(path: Path, old: str) -> tuple[list[str], dict[tuple[str, ...], int]]:
    """The lines of `old` without init's keys, and where its [aws] and sns sections were (the
    index in those lines where their new keys go)."""
    keep: list[str] = []
    table: tuple[str, ...] = ()
    at: dict[tuple[str, ...], int] = {}
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
    return keep, at


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
