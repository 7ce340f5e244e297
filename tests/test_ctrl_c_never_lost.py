"""launcher/ctrl_c.py: a Ctrl-C that Python swallows inside a garbage-collection callback is
still seen (a loaded test run lost one: SQLAlchemy's InstanceState._cleanup took the
KeyboardInterrupt, "Exception ignored in ...", and the job trained on)."""

from __future__ import annotations

import os
import signal
import time
import weakref

import pytest

from launcher.ctrl_c import check, handled, never_lost


class _Thing:
    pass


def _sigint_inside_a_weakref_callback() -> None:
    thing = _Thing()

    def finaliser(ref: object) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the KeyboardInterrupt is raised here, inside the callback

    ref = weakref.ref(thing, finaliser)
    del thing  # the callback runs now; Python ignores what it raises
    assert ref() is None


def test_python_swallows_a_ctrl_c_in_a_weakref_callback() -> None:
    # What the module is for: with Python's own handler the Ctrl-C is simply gone.
    _sigint_inside_a_weakref_callback()  # no KeyboardInterrupt reaches us


def test_inside_never_lost_the_swallowed_ctrl_c_surfaces_at_the_next_check() -> None:
    with never_lost():
        _sigint_inside_a_weakref_callback()
        with pytest.raises(KeyboardInterrupt):
            check()
        check()  # raised once, not again


def test_a_handled_ctrl_c_is_not_raised_twice_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGINT)
    with never_lost():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        handled()
        check()  # the caught one is not raised again
    assert signal.getsignal(signal.SIGINT) is before
