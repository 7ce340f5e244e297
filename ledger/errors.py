"""The one error hierarchy of gpuhire.

It lives in `ledger` because imports go one way (`launcher -> ledger`): the launcher's errors
subclass these, and the CLI turns any of them into one line on stderr and a non-zero exit.

    GpuhireError                  every expected failure; `.fix` says what the user should do
    ├── ConfigError               a bad config file, variable or flag value
    ├── InputError                bad user input: a CSV row, a date, a month
    │   └── DuplicateSessionsError  sessions identical to recorded ones (a file imported twice)
    ├── LedgerError               the database cannot be opened, migrated or written
    ├── NotFoundError             a job, card or session that does not exist
    └── (launcher.errors)         SpecError, CapacityError, ProviderError, SshError, ...

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
