"""SIGTERM and SIGINT in the trainer: the spot notice (two minutes), `docker stop`, Ctrl-C.

The handler is installed before anything else happens (compiling the ground truth, building the
model, the batch-size probe), so a notice during setup ends the run cleanly too:

- until the model exists there is nothing to checkpoint, and the handler raises `Interrupted`
  at once (a compile is written under a temporary name and renamed at the end, so nothing half
  written stays behind); the trainer emits `interrupted` and exits with EXIT_INTERRUPTED;
- from then on it only records the signal: the trainer writes a checkpoint at the next step
  boundary (or right after setup, before the first step) and exits the same way.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a process ended by the spot notice
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """A signal arrived while there was nothing to checkpoint yet.

    A BaseException, like KeyboardInterrupt: no `except Exception` on its way out (a reader that
    counts a file it cannot parse as a bad sample, say) may swallow it.
    """


@dataclass
class Signals:
    """What the handler saw, and whether it should raise (during setup) or only record."""

    received: str | None = None  # "SIGTERM" or "SIGINT" once one arrived
    raise_now: bool = True  # True until there is something a checkpoint could hold

    def handler(self, signum: int, _frame: Any) -> None:
        self.received = signal.Signals(signum).name
        if self.raise_now:
            raise Interrupted(self.received)


@contextmanager
def catching(signals: Signals) -> Iterator[Signals]:
    """`signals.handler` for SIGTERM and SIGINT inside the block; the old handlers after it."""
    previous: dict[int, Any] = {}
    try:
        for s in SIGNALS:
            previous[s] = signal.signal(s, signals.handler)
        yield signals
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def default_in_worker() -> None:
    """For compile's worker processes (forked, so they inherit the trainer's handler): SIGTERM
    ends a worker at once, SIGINT is the parent's to handle; the parent ends the pool."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
