"""Reading terraform/ with python-hcl2 (v8 keeps the quotes of string literals)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hcl2

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "terraform"
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))


def unquote(value: Any) -> Any:
    """A literal without its quotes; lists and dicts unquoted all the way down."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def load(path: Path) -> dict[str, Any]:
    """One .tf file as plain data."""
    with path.open() as fh:
        return unquote(hcl2.load(fh))  # type: ignore[no-any-return]


def blocks(kind: str, directory: Path = TERRAFORM) -> dict[tuple[str, ...], dict[str, Any]]:
    """Every `kind` block (resource, data, variable, output) of a directory, by its labels."""
    found: dict[tuple[str, ...], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in load(path).get(kind, []):
            for label, body in entry.items():
                if kind in ("resource", "data"):
                    for name, inner in body.items():
                        found[(label, name)] = inner
                else:
                    found[(label,)] = body
    return found


def policy_statements(name: str) -> list[dict[str, Any]]:
    """The statements of `data "aws_iam_policy_document" name`."""
    doc = blocks("data")[("aws_iam_policy_document", name)]
    return list(doc["statement"])
