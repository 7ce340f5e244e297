"""The one-line messages for settings that do not validate, each naming where the bad value
came from: the config file, a `GPUHIRE_*` variable (the most specific one set), or a flag.

The key is always given dotted (`ownership.window_months`), as it is written in the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal

from pydantic import ValidationError
from pydantic_settings import SettingsError


def _env_variable(key: str) -> str:
    """The GPUHIRE_* variable that set a dotted key: the most specific one that is set
    (`GPUHIRE_OWNERSHIP__WINDOW_MONTHS`, else the table `GPUHIRE_OWNERSHIP` as JSON)."""
    parts = key.split(".") if key else []
    set_names = {name.upper(): name for name in os.environ}
    for n in range(len(parts), 0, -1):
        wanted = "GPUHIRE_" + "__".join(parts[:n]).upper()
        if wanted in set_names:
            return set_names[wanted]
    return "GPUHIRE_" + "__".join(parts).upper() if parts else "a GPUHIRE_* variable"


def describe_env(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    variable = _env_variable(key)
    if first["type"] == "extra_forbidden":
        return (f"environment variable {variable} sets unknown config key {key!r}; "
                "unset it or fix its spelling (docs/config.md)")
    shown = f" (config key {key!r})" if variable != "GPUHIRE_" + key.replace(".", "__").upper() else ""
    return f"environment variable {variable}{shown}: {msg}; fix or unset it (docs/config.md)"


def describe_bad_json(exc: SettingsError) -> str:
    found = re.search(r'field "([^"]+)"', str(exc))
    variable = _env_variable(found.group(1)) if found else "a GPUHIRE_* variable"
    return (f"environment variable {variable} is not valid JSON (a table is written as JSON, "
            f"e.g. '{{\"card\": \"rtx3060\"}}'); fix or unset it, or set one key with "
            f"{variable}__KEY (docs/config.md)")


def describe_flag(exc: ValidationError, flag_names: Mapping[str, str]) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    section, _, item = key.rpartition(".")
    value = first.get("input")
    shown = f" {value}" if isinstance(value, str | int | float | Decimal) else ""
    flag = flag_names.get(key)
    if flag is None and section in flag_names:  # a table flag such as --speed GPU=FACTOR
        flag, shown = flag_names[section], f" {item}={value}"
    if flag is None:
        return describe(exc, "in a flag")
    return f"{flag}{shown}: {msg}; give another value (see --help)"


def describe(exc: ValidationError, where: str) -> str:
    first = exc.errors()[0]
    key, msg = _alert_key(first["loc"], first["msg"])
    key = key or "(top level)"
    if first["type"] == "union_tag_invalid":  # [alerts] rule or channel of an unknown type
        key += ".type"
    if first["type"] == "extra_forbidden":
        return f"unknown config key {key!r} {where}; remove it or fix its spelling (docs/config.md)"
    return f"config key {key!r} {where}: {msg}; fix its value (docs/config.md)"


def _alert_key(loc: tuple[int | str, ...], msg: str) -> tuple[str, str]:
    """The dotted key of an error, without pydantic's union tags ([alerts] rules and channels
    are tagged by `type`); a cross-field check names its own key as `key: message`."""
    parts = [str(p) for i, p in enumerate(loc)
             if not (i >= 2 and loc[i - 2] in ("rules", "channels") and loc[0] == "alerts")]
    msg = msg.removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if sep and head.startswith(("alerts.", "ownership.", "compare.")) and " " not in head:
        return head, rest
    return ".".join(parts), msg
