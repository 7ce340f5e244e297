"""Where pinned host keys come from: an EC2 console output, or a key injected at boot."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from sshd import Sshd

from launcher.errors import SshError
from launcher.ssh.client import Ssh
from launcher.ssh.hostkeys import (
    PinnedHostKey,
    fingerprints_from_console,
    host_keys_from_console,
    new_host_key,
    pinned_from_console,
    pinned_from_private,
)

# A real Ubuntu 24.04 boot log's shape (CRLF, kernel timestamps, fingerprints logged through
# syslog, the keys block printed bare); keys made with ssh-keygen for this sample.
CONSOLE = (Path(__file__).parent / "data" / "ec2-console-ubuntu-24.04.txt").read_bytes().decode()
ED25519_FP = "SHA256:LJZz91V//L8T39uUkBcBcPqewcSdSLpqYcJ59JSaYXw"


def test_console_sample_gives_all_keys_and_pins_ed25519() -> None:
    keys = host_keys_from_console(CONSOLE)
    assert [k.key_type for k in keys] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    assert fingerprints_from_console(CONSOLE) == [
        "SHA256:w+7R+D+dAeFNYSjReJZa8DD3uI8H1xbMvRuKdUb6hGc",
        ED25519_FP,
        "SHA256:nJrj3fd2wFRysmcSn1fG5EG51TdfYPWJZfFEiyIpUsE",
    ]
    pinned = pinned_from_console(CONSOLE)
    assert pinned.key_type == "ssh-ed25519"
    assert pinned.fingerprint() == ED25519_FP  # our fingerprint math agrees with ssh-keygen's


def test_older_images_prefix_with_ec2_and_a_reboot_prints_a_new_block() -> None:
    first, second = new_host_key().pinned, new_host_key().pinned
    text = "".join(
        f"ec2: -----BEGIN SSH HOST KEY KEYS-----\nec2: {key.openssh()} root@box\nec2: -----END SSH HOST KEY KEYS-----\n"
        for key in (first, second)
    )
    assert pinned_from_console(text) == second


def test_keys_that_do_not_match_the_printed_fingerprints_are_refused() -> None:
    # One key swapped (the others intact) is enough to refuse them all.
    tampered = CONSOLE.replace(pinned_from_console(CONSOLE).openssh(), new_host_key().pinned.openssh())
    with pytest.raises(SshError, match="do not match its fingerprints"):
        pinned_from_console(tampered)


def test_a_console_before_cloud_init_printed_keys_says_to_wait() -> None:
    early = CONSOLE.split("-----BEGIN SSH HOST KEY KEYS-----")[0]
    with pytest.raises(SshError) as err:
        pinned_from_console(early)
    assert "no SSH host key block yet" in err.value.message
    assert "wait and retry" in (err.value.fix or "")


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    injected = new_host_key()
    pub = tmp_path / "k.pub"
    pub.write_text(injected.pinned.openssh() + " c\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    assert out.split()[1] == injected.pinned.fingerprint()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "not an SSH public key"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "unsupported host key type"),
        ("ssh-ed25519 not*base64", "not valid base64"),
        ("ssh-ed25519 " + new_host_key().pinned.key_b64[:-8] + "AAAAAAAA", None),
        ("ssh-rsa " + new_host_key().pinned.key_b64, "its data is not one"),
    ],
)
def test_bad_pins_are_refused(line: str, message: str | None) -> None:
    if message is None:  # a damaged key body still names its type: accepted here, fails at connect
        assert PinnedHostKey.parse(line).key_type == "ssh-ed25519"
        return
    with pytest.raises(SshError, match=message):
        PinnedHostKey.parse(line)


def test_injected_key_renders_cloud_config_and_is_what_the_box_serves(tmp_path: Path) -> None:
    injected = new_host_key()
    assert pinned_from_private(injected.private_openssh) == injected.pinned
    document = injected.cloud_config()
    assert document.startswith("#cloud-config\n")
    config = yaml.safe_load(document)
    assert config["ssh_deletekeys"] is True and config["ssh_genkeytypes"] == []
    assert config["ssh_keys"]["ed25519_private"].strip() == injected.private_openssh.strip()
    assert config["ssh_keys"]["ed25519_public"] == injected.pinned.openssh()

    # A box that installed the injected key is reachable with only the pin made beforehand.
    server = Sshd(tmp_path / "box", host_private_key=injected.private_openssh)
    server.start()
    try:
        with Ssh(server.target(host_key=injected.pinned)) as ssh:
            assert ssh.run("echo pinned").stdout == b"pinned\n"
    finally:
        server.kill()


def test_injected_key_and_a_script_as_one_multipart_user_data() -> None:
    import email

    injected = new_host_key()
    script = "#!/bin/bash\necho 'dead-man switch here'\n"
    text = injected.user_data_with(script)
    message = email.message_from_string(text)
    assert message.is_multipart()
    parts = [(p.get_content_type(), p.get_payload(decode=True).decode()) for p in message.get_payload()]
    assert [kind for kind, _ in parts] == ["text/cloud-config", "text/x-shellscript"]
    assert yaml.safe_load(parts[0][1])["ssh_keys"]["ed25519_public"] == injected.pinned.openssh()
    assert parts[1][1] == script
    assert len(text.encode()) < len(injected.cloud_config()) + len(script) + 1024  # no base64 bloat


def test_a_job_key_pair_stands_in_for_an_instance(tmp_path: Path) -> None:
    # What the end-to-end tests do: the loopback sshd serves the job's host key and accepts the
    # job's login key, both made by launcher/ssh/keys.py, so the provider's own pin and key work.
    from launcher.ssh.keys import job_keys

    keys = job_keys("e2e-job")
    server = Sshd(tmp_path / "box", host_private_key=keys.host_private_key)
    server.authorize(keys.public_key)
    server.start()
    try:
        target = server.target(key_path=keys.private_key_path, host_key=PinnedHostKey.parse(keys.host_public_key))
        with Ssh(target) as ssh:
            assert ssh.run("echo job").stdout == b"job\n"
    finally:
        server.kill()
