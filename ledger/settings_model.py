"""What every settings model shares: the config file's sections (launcher/config_sections.py)
and the alert rules and channels (ledger/alerts/config.py) each declare

    model_config = SETTINGS_CONFIG
    refuse_booleans = field_validator("*", mode="before")(no_bool_numbers)


Unknown keys are refused (a typo is an error naming the key, never a setting that does
nothing), a model is frozen once read, and true/false is no number: pydantic alone would
take `window_months = true` for 1.
"""

from __future__ import annotations

from decimal import Decimal
from typing import get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo


def _types_in(annotation: object) -> set[object]:
    """The types a field's annotation names anywhere (`dict[str, int] | None`: dict, str, int...)."""
    return {annotation}.union(*(_types_in(arg) for arg in get_args(annotation)))


def _has_bool(value: object) -> bool:
    if isinstance(value, dict):
        return any(_has_bool(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_bool(v) for v in value)
    return isinstance(value, bool)


SETTINGS_CONFIG = ConfigDict(extra="forbid", frozen=True)


def no_bool_numbers(cls: type[BaseModel], value: object, info: ValidationInfo) -> object:
    """A `field_validator("*", mode="before")`: true/false is no number (pydantic alone would
    take `window_months = true` for 1)."""
    field = cls.model_fields.get(info.field_name or "")
    kinds = _types_in(field.annotation) if field is not None and _has_bool(value) else set()
    if kinds & {int, float, Decimal} and bool not in kinds:
        whole = int in kinds and not kinds & {float, Decimal}
        raise ValueError(f"Input should be {'a whole number' if whole else 'a number'}, "
                         "not true or false")
    return value
