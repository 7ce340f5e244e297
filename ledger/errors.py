"""The one error hierarchy of gpuhire, drawn whole here.

It is rooted in `ledger` because imports go one way (`launcher -> ledger`): `launcher.errors`
adds the launcher's own subclasses, and the CLI turns any of them into one line on stderr and
a non-zero exit (`exit_code`: 2 for config and input, 1 for the rest).

    GpuhireError                    every expected failure; `.fix` says what the user should do
    ├── ConfigError                 a bad config file, variable or flag value
    ├── InputError                  bad user input: a CSV row, a date, a month
    │   └── DuplicateSessionsError  sessions identical to recorded ones (a file imported twice)
    ├── LedgerError                 the database cannot be opened, migrated or written
    ├── NotFoundError               a job, card or session that does not exist
    ├── DeliveryError               (ledger.alerts.channels) an alert channel could not deliver
    ├── SpecError                   (launcher.errors) a job spec or ground truth that cannot run
    ├── ProviderError               (launcher.errors) a cloud or host refused or failed a call
    │   └── CapacityError           (launcher.errors) no capacity anywhere we were allowed to try
    ├── SshError                    (launcher.errors) an SSH connection, host key or transfer failed
    └── BudgetError                 (launcher.errors) a quote or a running job passed --max-usd

`jobs.htr.errors.HtrError` stands apart: the trainer image holds `jobs` only, so it cannot
subclass these; it carries the same `message` and `fix`, and the launcher turns it into one
of the above where it meets it.

Messages never carry credentials: a database URL is shown with its password masked.
"""

from __future__ import annotations


class GpuhireError(Exception):
    """An expected failure with a message for the user and, ideally, the fix."""

    exit_code = 1

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}; {self.fix}"
        return self.message


class ConfigError(GpuhireError):
    """A config file, environment variable or flag holds something unusable."""

    exit_code = 2


class InputError(GpuhireError):
    """User input (a CSV file, a date, a flag value) is malformed."""

    exit_code = 2


class LedgerError(GpuhireError):
    """The ledger database cannot be opened, upgraded or written."""


class NotFoundError(GpuhireError):
    """A named thing (job, card, session) does not exist."""


class DuplicateSessionsError(InputError):
    """Sessions to record that are identical to ones already in the ledger.

    `indexes` are their positions in the batch, so a caller can name its own lines."""

    def __init__(self, indexes: list[int]) -> None:
        super().__init__(
            f"{len(indexes)} session(s) are already in the ledger",
            "recording them again would count their rent twice",
        )
        self.indexes = indexes
