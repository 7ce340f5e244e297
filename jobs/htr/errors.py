"""Errors of the HTR jobs.

`jobs` runs in the trainer image without the rest of gpuhire, so these do not subclass
`ledger.errors.GpuhireError`; they carry the same `message` and `fix`, so the launcher and
`python -m jobs.htr` print them alike: `error: <message>; <fix>`.

    HtrError              every expected failure of jobs.htr
    ├── GroundTruthError  ground truth that cannot be used (nothing usable left, bad split file,
    │                     a compiled dataset that is damaged or of another version)
    └── ConfigError       a preset or config file that cannot be used (jobs.htr.config)
"""

from __future__ import annotations


class HtrError(Exception):
    """An expected failure: the pair (message, fix) is its `args`, so it pickles whole."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message, fix)

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def fix(self) -> str | None:
        fix: str | None = self.args[1]
        return fix

    def __str__(self) -> str:
        return self.message + (f"; {self.fix}" if self.fix else "")


class GroundTruthError(HtrError):
    """The ground truth (or a compiled dataset) cannot be used as it is."""
