"""The docker runtime on AWS: which image the box runs, and the ECR login + pull before the job."""

from __future__ import annotations

from pathlib import Path

import pytest
from sshd import Sshd

from launcher.errors import ProviderError
from launcher.providers.aws.image import pull_script, resolve_image
from launcher.providers.aws.provider import AwsMachine, AwsProvider
from launcher.ssh.client import Ssh
from launcher.ssh.host import SshHost

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gpuhire-htr"


@pytest.mark.parametrize(("image", "repo", "expected"), [
    ("gpuhire-htr:1.0", ECR, f"{ECR}:1.0"),  # no registry: the configured repository, same tag
    ("gpuhire-htr", ECR, f"{ECR}:latest"),
    ("gpuhire-htr@sha256:" + "a" * 64, ECR, f"{ECR}@sha256:" + "a" * 64),
    (f"{ECR}:2.0", "999999999999.dkr.ecr.us-east-1.amazonaws.com/other", f"{ECR}:2.0"),  # named: kept
    ("ghcr.io/org/htr:1", ECR, "ghcr.io/org/htr:1"),
    ("gpuhire-htr:1.0", None, "gpuhire-htr:1.0"),  # no repository configured: as given
])
def test_image_resolution(image: str, repo: str | None, expected: str) -> None:
    assert resolve_image(image, repo) == expected


def test_pull_script_logs_in_to_the_images_registry_then_pulls() -> None:
    assert pull_script(f"{ECR}:1.0") == (
        "aws ecr get-login-password --region eu-west-1 | docker login --username AWS "
        "--password-stdin 123456789012.dkr.ecr.eu-west-1.amazonaws.com "
        f"&& docker pull {ECR}:1.0"
    )
    assert pull_script("ghcr.io/org/htr:1") is None  # not ECR: nothing to log in to
    assert pull_script("gpuhire-htr:latest") is None  # a local image (baked into the AMI)


def test_renter_runs_the_resolved_image_and_pulls_it_first(make_provider) -> None:
    provider = make_provider()
    renter = AwsProvider(provider, "t4", image="gpuhire-htr:1.0", ecr_repository_url=ECR)
    argv = renter.trainer_argv(["train", "dataset"])
    assert argv[:2] == ["sh", "-c"] and argv[2].startswith("exec docker run --rm --gpus all")
    assert f"{ECR}:1.0 train dataset" in argv[2]
    assert renter.setup == pull_script(f"{ECR}:1.0")
    assert AwsProvider(provider, "t4", runtime="process", image=f"{ECR}:1.0").setup is None


def test_a_failed_pull_stops_the_attempt_with_the_boxes_words(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "sshd")  # a box without the aws CLI's credentials (or without it)
    server.start()
    try:
        with Ssh(server.target()) as ssh:
            host = SshHost(ssh, str(tmp_path / "job"))
            machine = AwsMachine(None, "job", "i-1", None, host, "notice", "box",  # type: ignore[arg-type]
                                 setup="echo 'no basic auth credentials' >&2; exit 1")
            with pytest.raises(ProviderError, match="could not pull the trainer image: no basic auth"):
                machine.prepare()
            AwsMachine(None, "job", "i-1", None, host, "notice", "box").prepare()  # type: ignore[arg-type]
    finally:
        server.kill()


def test_the_trainer_container_runs_as_the_boxes_user(make_provider, tmp_path: Path) -> None:
    """The image's own user could not write the mounted job folder: docker gets the SSH user's
    ids, which the box's shell fills in (run here with a stand-in `docker` that records its argv)."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_OUT"\n')
    (bin_dir / "docker").chmod(0o755)
    renter = AwsProvider(make_provider(), "t4", image="gpuhire-htr:1.0")
    argv = [a.replace("{workdir}", str(tmp_path / "job")) for a in renter.trainer_argv(["train", "dataset"])]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "ARGV_OUT": str(tmp_path / "argv")}
    subprocess.run(argv, env=env, check=True)
    seen = (tmp_path / "argv").read_text().splitlines()
    assert seen[seen.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert f"{tmp_path / 'job'}:/work" in seen and seen[-3:] == ["gpuhire-htr:1.0", "train", "dataset"]
