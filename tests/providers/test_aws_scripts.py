"""The on-box safety scripts, run here for real against a small IMDSv2 stand-in on loopback.

moto's metadata endpoint does not serve spot/instance-action, so the stand-in below does:
PUT /latest/api/token gives a token; GET .../spot/instance-action with that token is 404
until the test posts a notice, then the notice JSON. Requests without a token get 401.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from launcher.providers.aws.scripts import script
from launcher.providers.aws.userdata import SafetySettings, build_user_data

TOKEN = "test-token-123"


class Imds(ThreadingHTTPServer):
    notice: dict[str, str] | None = None
    polls = 0
    unauthorised = 0


class _Handler(BaseHTTPRequestHandler):
    server: Imds

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, TOKEN)
        else:
            self._send(400)

    def do_GET(self) -> None:
        if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
            self.server.unauthorised += 1
            self._send(401)
        elif self.path == "/latest/meta-data/spot/instance-action":
            self.server.polls += 1
            notice = self.server.notice
            self._send(200, json.dumps(notice)) if notice else self._send(404, "Not Found")
        else:
            self._send(404)


@pytest.fixture
def imds() -> Iterator[Imds]:
    server = Imds(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def _run(name: str, tmp: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    path = tmp / name
    path.write_text(script(name))
    return subprocess.Popen(["/bin/sh", str(path)], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=5)


def test_spot_watcher_sigterms_the_job_on_a_notice(imds: Imds, tmp_path: Path) -> None:
    job = subprocess.Popen(["sleep", "60"])  # the "job": a real child process
    pid_file, notice_file = tmp_path / "job.pid", tmp_path / "spot-notice"
    pid_file.write_text(str(job.pid))
    host, port = imds.server_address[:2]
    watcher = _run("spot-watch.sh", tmp_path, {
        "GPUHIRE_IMDS": f"http://{host}:{port}", "GPUHIRE_PID_FILE": str(pid_file),
        "GPUHIRE_NOTICE_FILE": str(notice_file), "GPUHIRE_POLL_S": "0.05",
    })
    try:
        wait_for(lambda: imds.polls >= 3)  # polled with a token, 404 each time: nothing fires
        assert job.poll() is None and not notice_file.exists() and imds.unauthorised == 0
        imds.notice = {"action": "terminate", "time": "2026-11-22T08:22:00Z"}
        assert job.wait(timeout=10) == -signal.SIGTERM
        assert json.loads(notice_file.read_text()) == imds.notice
        assert watcher.wait(timeout=10) == 0  # its work is done
    finally:
        _stop(watcher)
        if job.poll() is None:
            job.kill()


def _deadman(tmp: Path, heartbeat: Path, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
    fired = tmp / "shutdown-called"
    proc = _run("deadman.sh", tmp, {
        "GPUHIRE_HEARTBEAT": str(heartbeat), "GPUHIRE_CHECK_S": "0.1",
        "GPUHIRE_SHUTDOWN": f"echo called > {fired}", **env,
    })
    return proc, fired


def test_deadman_quiet_while_heartbeat_fresh_then_fires(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()
    proc, fired = _deadman(tmp_path, heartbeat, GPUHIRE_DEADMAN_S="2")
    try:
        # The launcher's heartbeat: touched every 0.2 s for 3 s (longer than the limit).
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            heartbeat.touch()
            time.sleep(0.2)
            assert not fired.exists() and proc.poll() is None
        # The launcher goes quiet: the switch fires within the limit (+1 s mtime resolution).
        wait_for(fired.exists, timeout_s=6)
        assert fired.read_text().strip() == "called"
        assert proc.wait(timeout=5) == 0
        assert b"no heartbeat for" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        _stop(proc)


def test_deadman_fires_at_max_lifetime_despite_heartbeat(tmp_path: Path) -> None:
    heartbeat = tmp_path / "heartbeat"
    heartbeat.touch()
    proc, fired = _deadman(tmp_path, heartbeat, GPUHIRE_DEADMAN_S="600",
                           GPUHIRE_DEADLINE=str(int(time.time()) + 1))
    try:
        wait_for(fired.exists, timeout_s=5)
        assert b"maximum lifetime passed" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        _stop(proc)


def test_user_data_is_cloud_config_and_valid_bash_under_the_limit(tmp_path: Path) -> None:
    import email

    from launcher.ssh.keys import job_keys

    keys = job_keys("job-ud")
    text = build_user_data(SafetySettings(900, 86400, "ubuntu", keys.host_private_key), "echo job setup")
    assert len(text.encode()) < 16 * 1024
    doc = email.message_from_string(text)
    assert doc.is_multipart()
    config, shell = doc.get_payload()
    assert (config.get_content_type(), shell.get_content_type()) == ("text/cloud-config", "text/x-shellscript")
    # the pinned host key is the box's only one: cloud-init generates none of its own
    cloud = config.get_payload(decode=True).decode()
    assert "ssh_deletekeys: true" in cloud and "ssh_genkeytypes: []" in cloud
    assert f"ed25519_public: {keys.host_public_key}" in cloud
    script_text = shell.get_payload(decode=True).decode()
    path = tmp_path / "user-data.sh"
    path.write_text(script_text)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    # the dead-man switch starts before anything of the job's
    assert script_text.index("enable --now gpuhire-deadman") < script_text.index("echo job setup")
    assert "GPUHIRE_DEADMAN_S=900" in script_text and "+ 86400" in script_text
