"""Failpoints: named places where the launcher can be made to stop as if it crashed there.

Fault injection the way mature systems do it (FreeBSD's fail(9), etcd's and TiKV's failpoints):
the product calls `failpoint("aws.session-written")` at the places where a crash matters, and
the environment decides what happens there. Tests use it to prove that nothing is lost when the
launcher dies between two writes (`gpuhire gc` finds the rest); an operator can rehearse the same.

    GPUHIRE_FAILPOINTS="NAME=ACTION[;NAME=ACTION...]"
    ACTION:  pause(FILE)   write this process's pid to FILE, then wait to be killed (SIGKILL
                           itself after 60 s): the caller kills it exactly there
             crash         SIGKILL itself at once

Points: `aws.session-written` (the ledger session is written, RunInstances not called yet) and
`aws.instance-launched` (EC2 answered, the instance id not yet in the ledger). Unset, which is
the default, a failpoint is one lookup in the environment.
"""

from __future__ import annotations

import os
import re
import signal
import time

ENV = "GPUHIRE_FAILPOINTS"
PAUSE_S = 60.0  # how long a paused process waits to be killed before it kills itself
_ACTION = re.compile(r"(?P<name>pause|crash)(?:\((?P<arg>[^)]*)\))?")


def actions(spec: str) -> dict[str, str]:
    """`"a=pause(/tmp/x);b=crash"` -> {"a": "pause(/tmp/x)", "b": "crash"}."""
    found = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, action = part.partition("=")
        found[name.strip()] = action.strip()
    return found


def failpoint(name: str) -> None:
    """Do what GPUHIRE_FAILPOINTS says for `name`; nothing when it names no action for it."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    action = actions(spec).get(name)
    if action is None:
        return
    match = _ACTION.fullmatch(action)
    if match is None:
        raise ValueError(f"{ENV}: {name}={action!r} is not pause(FILE) or crash")
    if match["name"] == "pause":
        with open(match["arg"] or os.devnull, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(PAUSE_S)
    os.kill(os.getpid(), signal.SIGKILL)
