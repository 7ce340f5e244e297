"""Ctrl-C that is never lost while a job is followed.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be. When that
is inside a garbage-collection callback (a weakref finaliser, `__del__`: SQLAlchemy has them),
Python prints "Exception ignored in ..." and the Ctrl-C is gone: the user pressed it, nothing
stops. Inside `never_lost()` a SIGINT also leaves a mark, and `check()` (called in the loops that
follow a job) raises the KeyboardInterrupt that was swallowed.

    with never_lost():
        while working:
            check()      # a swallowed Ctrl-C surfaces here
            ...
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

_pending = threading.Event()


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def never_lost() -> Iterator[None]:
    """While inside, every SIGINT is remembered until `check()` or the end of the block (main
    thread only: Python delivers signals there; elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    _pending.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending.clear()


def check() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C since the last check (one Python may have
    swallowed); nothing otherwise."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt


def handled() -> None:
    """A KeyboardInterrupt was caught and acted on: `check()` must not raise it again."""
    _pending.clear()
