"""The user-data of a gpuhire instance: safety first, then whatever the job needs.

A MIME multipart document for cloud-init with two parts:
- `#cloud-config` (from launcher/ssh/hostkeys.py): the box's only SSH host key is the one the
  launcher made and pins; cloud-init generates no other, so there is no window in which sshd
  offers an unpinned key;
- a shell script: the dead-man switch is installed and started before anything else can fail,
  so a box that never hears from the launcher still shuts itself down (and, launched with
  shutdown behaviour `terminate`, stops billing); then the spot-notice watcher; then the job's
  own setup lines. The script deliberately does not use `set -e`.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from launcher.errors import SpecError
from launcher.providers.aws.scripts import script
from launcher.ssh.hostkeys import multipart_user_data

RUN_DIR = "/var/run/gpuhire"
HEARTBEAT_PATH = f"{RUN_DIR}/heartbeat"
PID_FILE = f"{RUN_DIR}/job.pid"
NOTICE_FILE = f"{RUN_DIR}/spot-notice"
LIB_DIR = "/usr/local/lib/gpuhire"
USER_DATA_LIMIT = 16 * 1024  # EC2 rejects larger user-data (before base64)


@dataclass(frozen=True)
class SafetySettings:
    """What the box's safety scripts need."""

    deadman_s: int  # heartbeat missing this long -> shutdown
    max_lifetime_s: int  # counted from boot on the box's own clock
    ssh_user: str  # owns the run dir so the launcher can touch the heartbeat
    host_private_key: str  # OpenSSH private host key made by launcher/ssh/keys.py


def _heredoc(path: str, text: str, mode: str) -> str:
    marker = "GPUHIRE_EOF"
    assert marker not in text
    return f"cat > {path} <<'{marker}'\n{text.rstrip()}\n{marker}\nchmod {mode} {path}\n"


def _unit(name: str, script_name: str) -> str:
    return _heredoc(
        f"/etc/systemd/system/{name}.service",
        f"""[Unit]
Description=gpuhire {name}
After=network-online.target

[Service]
EnvironmentFile=/etc/gpuhire.env
ExecStart=/bin/sh {LIB_DIR}/{script_name}
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target""",
        "0644",
    )


def _host_key_config(host_private_key: str) -> str:
    from launcher.ssh.hostkeys import HostKeyInjection, pinned_from_private

    return HostKeyInjection(host_private_key, pinned_from_private(host_private_key)).cloud_config()


def build_user_data(safety: SafetySettings, extra: str = "") -> str:
    """The complete user-data (cloud-config + shell script), under EC2's 16 KiB limit."""
    user = shlex.quote(safety.ssh_user)
    env = (
        f"GPUHIRE_HEARTBEAT={HEARTBEAT_PATH}\n"
        f"GPUHIRE_DEADMAN_S={int(safety.deadman_s)}\n"
        "GPUHIRE_DEADLINE=__DEADLINE__\n"
        f"GPUHIRE_PID_FILE={PID_FILE}\n"
        f"GPUHIRE_NOTICE_FILE={NOTICE_FILE}\n"
        "GPUHIRE_POLL_S=5\n"
        "GPUHIRE_CHECK_S=30\n"
    )
    parts = [
        "#!/bin/bash\n# gpuhire setup: the dead-man switch first, then the spot watcher, then the job.\n",
        f"install -d -m 0755 {LIB_DIR}\n",
        f"install -d -m 0755 -o {user} -g {user} {RUN_DIR} || install -d -m 0755 {RUN_DIR}\n",
        _heredoc(f"{LIB_DIR}/deadman.sh", script("deadman.sh"), "0755"),
        _heredoc(f"{LIB_DIR}/spot-watch.sh", script("spot-watch.sh"), "0755"),
        _heredoc("/etc/gpuhire.env", env, "0644"),
        # The lifetime counts on the box's clock from boot, whatever the launcher's clock says.
        f"sed -i \"s/__DEADLINE__/$(( $(date +%s) + {int(safety.max_lifetime_s)} ))/\" /etc/gpuhire.env\n",
        _unit("gpuhire-deadman", "deadman.sh"),
        _unit("gpuhire-spot-watch", "spot-watch.sh"),
        "if command -v systemctl >/dev/null; then\n"
        "  systemctl daemon-reload\n"
        "  systemctl enable --now gpuhire-deadman.service gpuhire-spot-watch.service\n"
        "else\n"
        f"  set -a; . /etc/gpuhire.env; set +a\n"
        f"  nohup /bin/sh {LIB_DIR}/deadman.sh >/var/log/gpuhire-deadman.log 2>&1 &\n"
        f"  nohup /bin/sh {LIB_DIR}/spot-watch.sh >/var/log/gpuhire-spot-watch.log 2>&1 &\n"
        "fi\n",
    ]
    if extra.strip():
        parts.append("# job setup\n" + extra.rstrip() + "\n")
    text = multipart_user_data(_host_key_config(safety.host_private_key), "".join(parts))
    if len(text.encode()) > USER_DATA_LIMIT:
        raise SpecError(
            f"user-data is {len(text.encode())} bytes, over EC2's 16 KiB",
            "fetch big setup scripts from S3 instead of inlining them",
        )
    return text
