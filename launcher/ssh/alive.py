"""Noticing a box that stopped answering, in bounded time (used by launcher/ssh/client.py).

A box that vanishes without closing TCP (powered off, frozen, its network cut) leaves every
read on the connection waiting until the kernel gives up, which takes many minutes. paramiko's
own keepalive (`Transport.set_keepalive`) sends a packet that asks for no answer, so it keeps
NAT state alive but never notices a dead peer. `AliveWatch` does what OpenSSH's
ServerAliveInterval / ServerAliveCountMax do: every `every_s` it sends `keepalive@openssh.com`
asking for a reply (OpenSSH answers it, with a failure, which is all we need), and if none
comes within `dead_after_s` it closes the transport. Closing wakes every call waiting on the
connection (an exec, an SFTP read, a channel open), which then fails as a dropped connection.

A box is thus given up within `every_s + dead_after_s` of its last word, whatever the call.
"""

from __future__ import annotations

import random
import threading

import paramiko

KEEPALIVE_REQUEST = "keepalive@openssh.com"


class AliveWatch:
    """Probes one transport until it is closed, or closes it when the box stops answering."""

    def __init__(self, transport: paramiko.Transport, every_s: float, dead_after_s: float) -> None:
        self.transport = transport
        self.every_s = every_s
        self.dead_after_s = dead_after_s
        self.dead = False  # True once this watch closed the transport for want of an answer
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuhire-ssh-alive", daemon=True)

    def start(self) -> AliveWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing (the connection is being closed on purpose); does not wait."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            if not self.transport.is_active():
                return
            # The probe waits for an answer without a limit of its own: the timer is the limit.
            timer = threading.Timer(self.dead_after_s, self._give_up)
            timer.daemon = True
            timer.start()
            try:
                self.transport.global_request(KEEPALIVE_REQUEST, wait=True)
            except (OSError, EOFError, paramiko.SSHException):
                return  # the link is gone already: the call that uses it says so
            finally:
                timer.cancel()

    def _give_up(self) -> None:
        if self._stop.is_set() or not self.transport.is_active():
            return
        self.dead = True
        self.transport.close()


def backoff_s(attempt: int, first_s: float = 0.25, cap_s: float = 10.0) -> float:
    """The wait before retry number `attempt` (1, 2, ...): doubling from `first_s`, at most
    `cap_s`, with jitter so that many launchers retrying one region do not knock in step."""
    jitter = random.uniform(0.5, 1.0)  # noqa: S311 - timing, not security
    return min(cap_s, first_s * 2.0 ** (attempt - 1)) * jitter
