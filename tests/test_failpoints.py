"""launcher/failpoints.py: the crash points the gc tests use, and their spec."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from launcher.failpoints import actions, failpoint


def test_the_spec_names_an_action_per_point() -> None:
    assert actions("aws.session-written=pause(/tmp/x) ; aws.instance-launched=crash;") == {
        "aws.session-written": "pause(/tmp/x)", "aws.instance-launched": "crash"}
    assert actions("") == {}


def test_an_unset_or_other_point_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUHIRE_FAILPOINTS", raising=False)
    failpoint("aws.session-written")
    monkeypatch.setenv("GPUHIRE_FAILPOINTS", "aws.instance-launched=crash")
    failpoint("aws.session-written")  # still alive: another point


def test_a_bad_action_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUHIRE_FAILPOINTS", "aws.session-written=explode")
    with pytest.raises(ValueError, match=r"aws\.session-written='explode'"):
        failpoint("aws.session-written")


def test_crash_kills_the_process_at_that_point() -> None:
    code = "from launcher.failpoints import failpoint; print('before', flush=True); failpoint('p'); print('after')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "GPUHIRE_FAILPOINTS": "p=crash"})
    assert done.returncode == -signal.SIGKILL
    assert done.stdout == "before\n"
