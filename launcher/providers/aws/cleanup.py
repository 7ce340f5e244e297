"""Deleting what a job made on AWS besides its instances: key pair, security group, local keys.

`AwsCloud.release` calls `cleanup_job` when a job ends; `gpuhire gc` (gc.py) uses the same
pieces for what no live job owns. Takes the EC2 client, not the cloud, so neither imports the other.
"""

from __future__ import annotations

from typing import Any

from launcher.errors import ProviderError
from launcher.providers.aws.client import aws_errors
from launcher.providers.aws.setup import TAG_JOB, TAG_OWNER
from launcher.providers.aws.types import Leftover
from launcher.ssh.keys import remove_job_keys


def tagged_resources(ec2: Any) -> list[tuple[str, str, str, str]]:
    """(kind, id, job, owner) of key pairs and security groups tagged gpuhire:job (filtered
    here: moto and the API differ in which tag filters they know)."""
    out = []
    with aws_errors("list gpuhire key pairs and security groups"):
        for kp in ec2.describe_key_pairs().get("KeyPairs", []):
            tags = _tags(kp)
            if TAG_JOB in tags:
                out.append(("key-pair", str(kp["KeyName"]), tags[TAG_JOB], tags.get(TAG_OWNER, "")))
        for page in ec2.get_paginator("describe_security_groups").paginate():
            for g in page["SecurityGroups"]:
                tags = _tags(g)
                if TAG_JOB in tags:
                    out.append(("security-group", str(g["GroupId"]), tags[TAG_JOB], tags.get(TAG_OWNER, "")))
    return out


def _tags(resource: dict[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in resource.get("Tags", [])}


def delete(ec2: Any, x: Leftover) -> None:
    try:
        with aws_errors(f"delete {x.kind} {x.ident}"):
            if x.kind == "key-pair":
                ec2.delete_key_pair(KeyName=x.ident)
            elif x.kind == "security-group":
                ec2.delete_security_group(GroupId=x.ident)
    except ProviderError as exc:
        if "NotFound" in str(exc):
            return
        raise
    if x.kind == "local-keys":
        remove_job_keys(x.ident)


def cleanup_job(ec2: Any, job_id: str) -> list[str]:
    """Delete the job's key pair, security group and local keys (after its instances went)."""
    leftovers = [Leftover(k, i, j) for k, i, j, _ in tagged_resources(ec2) if j == job_id]
    leftovers.append(Leftover("local-keys", job_id, job_id))
    problems = []
    for x in leftovers:
        try:
            delete(ec2, x)
        except ProviderError as exc:  # typically DependencyViolation: `gpuhire gc` finishes it
            problems.append(f"{x.kind} {x.ident}: {exc.message}")
    return problems
