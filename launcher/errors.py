"""The launcher's errors: it adds SpecError, ProviderError (and its CapacityError), SshError
and BudgetError to the one hierarchy, whose whole tree is drawn in `ledger/errors.py`; the
ledger's own errors are re-exported here, so launcher code imports all of them from one place.
"""

from __future__ import annotations

from ledger.errors import (
    ConfigError,
    GpuhireError,
    InputError,
    LedgerError,
    NotFoundError,
)

__all__ = [
    "BudgetError",
    "CapacityError",
    "ConfigError",
    "GpuhireError",
    "InputError",
    "LedgerError",
    "NotFoundError",
    "ProviderError",
    "SpecError",
    "SshError",
]


class SpecError(GpuhireError):
    """A job spec or its ground truth cannot run."""


class ProviderError(GpuhireError):
    """A provider refused or failed a call."""


class CapacityError(ProviderError):
    """No capacity in any zone, type or market we were allowed to try."""


class SshError(GpuhireError):
    """An SSH connection, host-key check or transfer failed."""


class BudgetError(GpuhireError):
    """A quote or a running job passed the hard cap (--max-usd)."""
