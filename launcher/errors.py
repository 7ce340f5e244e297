"""The launcher's errors: subclasses of the one hierarchy in ledger.errors.

    GpuhireError (ledger.errors)
    ├── ConfigError, InputError, LedgerError, NotFoundError   (ledger.errors)
    ├── SpecError        a job spec or ground truth that cannot run
    ├── ProviderError    a cloud or host refused or failed a call
    │   └── CapacityError   no capacity anywhere we were allowed to try
    ├── SshError         an SSH connection, host key or transfer failed
    └── BudgetError      a quote or a running job passed --max-usd
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
