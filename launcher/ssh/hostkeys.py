"""Where the pinned SSH host key comes from (console output, or a key we made), and `SshTarget`.

The SSH client (launcher/ssh/client.py) accepts exactly one host key per target and never learns one
on first use. That key comes from one of two places, both giving a `PinnedHostKey`:

- **Injected at boot** (preferred): `new_host_key()` makes an ed25519 key pair here (as
  launcher/ssh/keys.py does for each job); the private half goes into the instance's user-data
  (`cloud_config()` renders the cloud-init `ssh_keys` block, which cloud-init writes before sshd
  first starts; `pinned_from_private()` gives the pin of a key made elsewhere), and the public
  half is pinned before the machine even exists.
- **Read from the console output**: cloud-init prints the box's host keys between
  `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----` on the serial console,
  which EC2's GetConsoleOutput returns (a few minutes after boot). `pinned_from_console()` parses
  it and, when the fingerprint block is there too, checks that the two agree.

No paramiko here: keys are parsed as the SSH wire format and fingerprints computed as
`ssh-keygen -l` does (SHA256 of the key blob, base64 without padding).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from launcher.errors import SshError

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa")
# Preference when a box offers several: ed25519 first (small, fast, no parameter choices).
_PREFERENCE = {name: rank for rank, name in enumerate(KEY_TYPES)}


@dataclass(frozen=True)
class PinnedHostKey:
    """The one host key an SSH target may present."""

    key_type: str  # "ssh-ed25519", "ecdsa-sha2-nistp256" or "ssh-rsa"
    key_b64: str  # the public key blob (SSH wire format), base64, as in known_hosts

    def __post_init__(self) -> None:
        if self.key_type not in KEY_TYPES:
            fix = f"pin one of: {', '.join(KEY_TYPES)}"
            raise SshError(f"unsupported host key type {self.key_type!r}", fix)
        try:
            blob = base64.b64decode(self.key_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            fix = "copy the whole 'ssh-... AAAA...' line"
            raise SshError("pinned host key is not valid base64", fix) from exc
        if _blob_type(blob) != self.key_type:
            raise SshError(
                f"pinned host key says {self.key_type!r} but its data is not one",
                "copy the whole 'ssh-... AAAA...' line unchanged",
            )

    @classmethod
    def parse(cls, line: str) -> PinnedHostKey:
        """From "ssh-ed25519 AAAA... [comment]" (a .pub file or a known_hosts entry's key part)."""
        parts = line.split()
        if len(parts) < 2:
            raise SshError(
                f"not an SSH public key: {line[:40]!r}",
                "give the host key as 'ssh-ed25519 AAAA...' (the box's /etc/ssh/ssh_host_ed25519_key.pub)",
            )
        return cls(parts[0], parts[1])

    @property
    def blob(self) -> bytes:
        """The public key in SSH wire format."""
        return base64.b64decode(self.key_b64)

    def openssh(self) -> str:
        """"ssh-ed25519 AAAA...": the form of .pub files and known_hosts."""
        return f"{self.key_type} {self.key_b64}"

    def fingerprint(self) -> str:
        """"SHA256:..." exactly as `ssh-keygen -l` and sshd's logs print it."""
        return fingerprint_of(self.blob)


def fingerprint_of(blob: bytes) -> str:
    """The SHA256 fingerprint of a public key blob, OpenSSH style."""
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _blob_type(blob: bytes) -> str | None:
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        return None
    return blob[4 : 4 + length].decode("ascii", errors="replace")


@dataclass(frozen=True)
class SshTarget:
    """Where and how to reach one box."""

    host: str  # address or name (a config override may point at a bastion or port-forward)
    port: int  # 22, or the forwarded port
    user: str  # login user, e.g. "ubuntu" on the Deep Learning AMI
    key_path: Path  # private login key; refused unless only its owner can read it (0600)
    host_key: PinnedHostKey  # the only host key accepted
    keepalive_s: float = 15.0  # keepalive interval: keeps NAT state alive, asks the box for a reply
    dead_after_s: float = 45.0  # no reply to a keepalive this long: the box is gone (launcher/ssh/alive.py)
    io_timeout_s: float = 60.0  # one SFTP request or channel open waits this long for an answer
    retries: int = 2  # idempotent calls (reads, checks, hashes, heartbeat) retried after a drop
    connect_timeout_s: float = 10.0  # one attempt: TCP connect, banner, key exchange, auth
    deadline_s: float = 600.0  # all attempts of one connect together (a box boots in minutes)
    auth_grace_s: float = 60.0  # keep retrying a refused login this long (authorized_keys lands late)
    host_key_grace_s: float = 0.0  # retry a different host key this long (a box swapping in ours)

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise SshError("the box has no address yet (no public IP)",
                           "wait until it has one, or point [aws] ssh_targets at it (docs/ssh.md)")
        if not 0 < self.port < 65536:
            raise SshError(f"SSH port {self.port} is not a TCP port", "use 1-65535 (usually 22)")
        for name in ("keepalive_s", "dead_after_s", "io_timeout_s", "connect_timeout_s"):
            if not getattr(self, name) > 0:
                raise SshError(f"SSH {name} must be above 0 (got {getattr(self, name)})",
                               "give it a number of seconds above 0")
        if self.retries < 0:
            raise SshError(f"SSH retries must be 0 or more (got {self.retries})", "give 0 or more")
        if not isinstance(self.host_key, PinnedHostKey):
            raise SshError(
                f"no pinned host key for {self.host}: unknown hosts are never accepted",
                "pin the key injected at boot or read from the console output (docs/ssh.md)",
            )

    @property
    def name(self) -> str:
        """user@host:port, for messages."""
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The host's name in known_hosts form, as paramiko looks the pinned key up."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


# --- from the console output ------------------------------------------------------------------

# Console lines may carry prefixes: a kernel timestamp "[   12.345678] ", a syslog priority and
# time "<14>Nov 22 14:41:12 " (cloud-init logs the fingerprints through `logger`), and a tag
# "cloud-init: ", "cloud-init[812]: " or "ec2: " (older images). Serial consoles add "\r".
_PREFIX = re.compile(
    r"^(?:\[\s*\d+\.\d+\]\s*)?(?:<\d+>)?(?:[A-Z][a-z]{2}\s+\d+\s+\d\d:\d\d:\d\d\s+)?"
    r"(?:(?:cloud-init|ec2)(?:\[\d+\])?:\s*)?"
)
_FINGERPRINT = re.compile(r"^\d+\s+(SHA256:[A-Za-z0-9+/]+)\s+.*\((\w+)\)\s*$")


def _blocks(output: str, name: str) -> list[list[str]]:
    """Every BEGIN/END block called `name`, each as its stripped inner lines."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in output.replace("\r", "").splitlines():
        line = _PREFIX.sub("", raw.strip()).strip()
        if line == f"-----BEGIN {name}-----":
            current = []
        elif line == f"-----END {name}-----":
            if current is not None:
                blocks.append(current)
            current = None
        elif current is not None and line and not line.startswith("#"):
            current.append(line)
    return blocks


def host_keys_from_console(output: str) -> list[PinnedHostKey]:
    """The host keys cloud-init printed, from the LAST block (a reboot prints a new one)."""
    blocks = _blocks(output, "SSH HOST KEY KEYS")
    if not blocks:
        return []
    keys = []
    for line in blocks[-1]:
        parts = line.split()
        if len(parts) >= 2 and parts[0] in KEY_TYPES:
            keys.append(PinnedHostKey(parts[0], parts[1]))
    return keys


def fingerprints_from_console(output: str) -> list[str]:
    """The "SHA256:..." fingerprints cloud-init printed, from the last fingerprint block."""
    blocks = _blocks(output, "SSH HOST KEY FINGERPRINTS")
    if not blocks:
        return []
    return [m.group(1) for line in blocks[-1] if (m := _FINGERPRINT.match(line))]


def pinned_from_console(output: str) -> PinnedHostKey:
    """The key to pin from an EC2 console output: ed25519 if offered, checked against fingerprints."""
    keys = host_keys_from_console(output)
    if not keys:
        raise SshError(
            "the console output has no SSH host key block yet",
            "cloud-init prints it a few minutes after boot: wait and retry (or inject the host key at boot)",
        )
    fingerprints = fingerprints_from_console(output)
    # Both blocks come from the same boot; a key without its fingerprint means the output was
    # tampered with or mixes two boots: trust none of them.
    if fingerprints and any(k.fingerprint() not in fingerprints for k in keys):
        raise SshError(
            "the console's host keys do not match its fingerprints",
            "do not connect: terminate the instance (`gpuhire gc`) and launch again",
        )
    return min(keys, key=lambda k: _PREFERENCE[k.key_type])


# --- injected at boot -------------------------------------------------------------------------


@dataclass(frozen=True)
class HostKeyInjection:
    """A host key made here for a box that does not exist yet."""

    private_openssh: str  # "-----BEGIN OPENSSH PRIVATE KEY-----...": goes into user-data only
    pinned: PinnedHostKey  # its public half: what the client pins

    def cloud_config(self) -> str:
        """A `#cloud-config` document installing this key as the box's only host key."""
        indented = "".join(f"    {line}\n" for line in self.private_openssh.strip().splitlines())
        return (
            "#cloud-config\n"
            "# gpuhire: the launcher pins this host key; no other is generated.\n"
            "ssh_deletekeys: true\n"
            "ssh_genkeytypes: []\n"
            "ssh_keys:\n"
            "  ed25519_private: |\n"
            f"{indented}"
            f"  ed25519_public: {self.pinned.openssh()}\n"
        )

    def user_data_with(self, script: str) -> str:
        """This key's cloud-config and a user-data shell `script` as one multipart document.

        cloud-init installs the key (config stage) before sshd first starts, then runs the
        script: the box never serves another host key, so no boot window needs a grace period.
        """
        return multipart_user_data(self.cloud_config(), script)


def multipart_user_data(cloud_config: str, script_text: str) -> str:
    """cloud-init's multipart user-data: the config part, then the script part."""
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    doc = MIMEMultipart(boundary="==gpuhire-user-data==")
    for text, subtype in ((cloud_config, "cloud-config"), (script_text, "x-shellscript")):
        # ASCII parts stay readable (7bit); anything else is base64, which cloud-init decodes.
        # EC2 caps user-data at 16 KiB: base64 of an ASCII script would add a third for nothing.
        doc.attach(MIMEText(text, subtype, "us-ascii" if text.isascii() else "utf-8"))
    return doc.as_string()


def new_host_key() -> HostKeyInjection:
    """Make an ed25519 host key pair (cryptography: paramiko cannot generate ed25519)."""
    from launcher.ssh.keys import new_ed25519_pair

    private = new_ed25519_pair()[0].decode()
    return HostKeyInjection(private_openssh=private, pinned=pinned_from_private(private))


def pinned_from_private(private_openssh: str) -> PinnedHostKey:
    """The public half of an OpenSSH private key (e.g. the one launcher/ssh/keys.py made), to pin."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_ssh_private_key(private_openssh.encode(), password=None)
    except (ValueError, TypeError) as exc:
        fix = "make a new one with new_host_key()"
        raise SshError("host private key is not an unencrypted OpenSSH key", fix) from exc
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return PinnedHostKey.parse(public.decode())
