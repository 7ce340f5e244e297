"""The trainer image on the box: which registry it names, and the ECR login and pull before a job.

The same image runs the trainer (`python -m jobs.htr`) and the inference fleet's workers
(`python -m jobs.fleet.worker`); the box pulls it with the instance profile's credentials.
"""

from __future__ import annotations

import re
import shlex

# ACCOUNT.dkr.ecr.REGION.amazonaws.com (also -fips, and .com.cn in China)
_ECR_HOST = re.compile(r"\d{12}\.dkr\.ecr(?:-fips)?\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?")
PULL_TIMEOUT_S = 1800.0  # a trainer image is a few GB; the heartbeat goes on meanwhile


def _registry(image: str) -> str | None:
    """The registry host an image reference names (`host[:port]/...`), or None (Docker Hub)."""
    first, slash, _ = image.partition("/")
    return first if slash and ("." in first or ":" in first or first == "localhost") else None


def resolve_image(image: str, ecr_repository_url: str | None) -> str:
    """The image the box runs: `image` as given when it names a registry; otherwise, with
    `[aws] ecr_repository_url` set, that repository with the image's tag (or digest).

        resolve_image("gpuhire-htr:1.0", "1234....dkr.ecr.eu-west-1.amazonaws.com/gpuhire-htr")
        -> "1234....dkr.ecr.eu-west-1.amazonaws.com/gpuhire-htr:1.0"
    """
    if _registry(image) or not ecr_repository_url:
        return image
    repo = ecr_repository_url.rstrip("/")
    if "@" in image:
        return repo + image[image.index("@"):]
    last = image.rsplit("/", 1)[-1]
    tag = last.rpartition(":")[2] if ":" in last else "latest"
    return f"{repo}:{tag}"


def pull_script(image: str) -> str | None:
    """Shell run on the box before the job (docker runtime): log in to ECR with the instance
    profile's credentials (the Deep Learning AMI has the aws CLI) and pull the image. None
    for an image outside ECR (public, or already on the AMI)."""
    registry = _registry(image)
    match = _ECR_HOST.fullmatch(registry or "")
    if registry is None or match is None:
        return None
    q = shlex.quote
    return (f"aws ecr get-login-password --region {q(match.group(1))} | "
            f"docker login --username AWS --password-stdin {q(registry)} && docker pull {q(image)}")
