"""Errors of the HTR jobs.

`jobs` imports nothing of gpuhire, so these do not subclass `ledger.errors.GpuhireError`; they
carry the same `.fix` attribute so the launcher and `python -m jobs.htr` print them alike:
`error: <message>; <fix>`.

    HtrError              every expected failure of jobs.htr
    └── GroundTruthError  ground truth that cannot be used (nothing usable left, bad split file,
                          a compiled dataset that is damaged or of another version)
"""

from __future__ import annotations


class HtrError(Exception):
    """An expected failure with a message and, ideally, the fix."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}; {self.fix}"
        return self.message


class GroundTruthError(HtrError):
    """The ground truth (or a compiled dataset) cannot be used as it is."""
