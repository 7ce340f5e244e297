"""Per-job SSH keys: ed25519, 0600 in a 0700 folder, reused by a retry, removed at the end."""

from __future__ import annotations

import stat

import paramiko
import pytest

from launcher.errors import InputError
from launcher.ssh.keys import job_ids_with_keys, job_keys, keys_root, remove_job_keys


def test_keys_are_private_reused_and_removed() -> None:
    keys = job_keys("train-20261122-1402-a3f9")
    folder = keys.private_key_path.parent
    assert folder.parent == keys_root()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    login = paramiko.Ed25519Key.from_private_key_file(str(keys.private_key_path))
    assert keys.public_key.split()[:2] == ["ssh-ed25519", login.get_base64()]
    assert keys.public_key.endswith("gpuhire:train-20261122-1402-a3f9")
    assert keys.host_public_key.startswith("ssh-ed25519 ") and keys.host_public_key != keys.public_key.rsplit(" ", 1)[0]

    again = job_keys("train-20261122-1402-a3f9")  # a retried launch: the same keys
    assert again == keys
    assert job_ids_with_keys() == ["train-20261122-1402-a3f9"]
    assert remove_job_keys("train-20261122-1402-a3f9") is True
    assert not folder.exists() and job_ids_with_keys() == []
    assert remove_job_keys("train-20261122-1402-a3f9") is False


@pytest.mark.parametrize("bad", ["../etc", "", "a b", "x" * 80])
def test_unsafe_job_ids_refused(bad: str) -> None:
    with pytest.raises(InputError):
        job_keys(bad)
