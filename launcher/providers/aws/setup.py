"""What a launch needs before RunInstances: AMI, owner, operator address, key pair, group, subnets.

Each step is idempotent (a retried launch reuses the job's key pair and security group) and
each AWS error becomes a ProviderError naming the fix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from launcher.errors import ConfigError, ProviderError
from launcher.providers.aws.client import aws_errors

TAG_JOB = "gpuhire:job"
TAG_OWNER = "gpuhire:owner"
CHECKIP_URL = "https://checkip.amazonaws.com"
DEFAULT_ROOT_DEVICE = "/dev/sda1"  # the Ubuntu Deep Learning AMIs' root device


def resource_name(job_id: str) -> str:
    """Key pair and security group name of a job."""
    return f"gpuhire-{job_id}"


def job_tags(job_id: str, owner: str) -> list[dict[str, str]]:
    return [{"Key": TAG_JOB, "Value": job_id}, {"Key": TAG_OWNER, "Value": owner},
            {"Key": "Name", "Value": resource_name(job_id)}]


def detect_public_cidr(timeout_s: float = 5.0) -> str:
    """This machine's public address as a /32 (/128), asked of AWS's checkip service."""
    import urllib.request

    try:
        with urllib.request.urlopen(CHECKIP_URL, timeout=timeout_s) as reply:
            text = reply.read(64).decode().strip()
        address = ipaddress.ip_address(text)
    except (OSError, ValueError) as exc:
        raise ProviderError(
            f"cannot detect this machine's public address ({exc})",
            'set [aws] operator_cidrs = ["203.0.113.7/32"] to the address SSH comes from',
        ) from None
    return f"{address}/{address.max_prefixlen}"


def operator_cidrs(configured: list[str], detect: Callable[[], str]) -> list[str]:
    """The CIDRs allowed to reach port 22: configured ones, else the detected /32."""
    cidrs = list(configured) or [detect()]
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.num_addresses > 256:
            raise ConfigError(
                f"SSH would be open to {cidr} ({net.num_addresses} addresses)",
                "narrow [aws] operator_cidrs to your own address (/32) or a small range",
            )
    return cidrs


def resolve_ami(ssm: Any, ec2: Any, parameter: str, fixed: str | None) -> tuple[str, str]:
    """(image id, root device name) from [aws] ami_id or the Deep Learning AMI parameter."""
    image_id = fixed
    if image_id is None:
        import botocore.exceptions as bex

        try:
            with aws_errors(f"read the AMI parameter {parameter}"):
                image_id = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except ProviderError as exc:
            if "ParameterNotFound" not in str(exc):
                raise
            raise ConfigError(
                f"the AMI parameter {parameter} does not exist in this region (retired or misspelt)",
                "set [aws] ami_parameter to a current Deep Learning AMI name (see `aws ssm "
                "get-parameters-by-path --path /aws/service/deeplearning/ami/x86_64`) or [aws] ami_id",
            ) from None
        except bex.ParamValidationError as exc:
            raise ConfigError(f"[aws] ami_parameter is not valid: {exc}", "fix it") from None
    with aws_errors(f"describe the AMI {image_id}"):
        images = ec2.describe_images(ImageIds=[image_id]).get("Images", [])
    root = images[0].get("RootDeviceName") if images else None
    return str(image_id), str(root or DEFAULT_ROOT_DEVICE)


def caller_owner(sts: Any) -> str:
    """Who launches: the IAM identity's name (the gpuhire:owner tag); checks credentials early."""
    with aws_errors("check the AWS credentials"):
        arn = str(sts.get_caller_identity()["Arn"])
    return arn.rsplit("/", 1)[-1][:128] or arn


def ensure_key_pair(ec2: Any, job_id: str, public_key: str, owner: str) -> str:
    """Import the job's public key (the private half never leaves this machine)."""
    name = resource_name(job_id)
    try:
        with aws_errors("import the job's SSH key"):
            ec2.import_key_pair(
                KeyName=name, PublicKeyMaterial=public_key.encode(),
                TagSpecifications=[{"ResourceType": "key-pair", "Tags": job_tags(job_id, owner)}],
            )
    except ProviderError as exc:
        if "InvalidKeyPair.Duplicate" not in str(exc):
            raise
        # A retry of the same job: the key material is the same file, so reuse it.
    return name


def subnets_by_zone(ec2: Any, zones: set[str]) -> dict[str, tuple[str, str]]:
    """zone -> (subnet id, vpc id) of the default subnet in each zone (filtered here: moto and
    old accounts differ in which filters they know)."""
    out: dict[str, tuple[str, str]] = {}
    with aws_errors("find the default subnets"):
        for page in ec2.get_paginator("describe_subnets").paginate():
            for s in page["Subnets"]:
                if s.get("DefaultForAz") and s["AvailabilityZone"] in zones:
                    out[s["AvailabilityZone"]] = (s["SubnetId"], s["VpcId"])
    if not out:
        raise ProviderError(
            "the region has no default subnet in any zone with an offer",
            "create a default VPC (`aws ec2 create-default-vpc`) or choose another [aws] region",
        )
    return out


def ensure_security_group(ec2: Any, job_id: str, vpc_id: str, cidrs: list[str], owner: str) -> str:
    """The job's group in `vpc_id`: port 22 from `cidrs` only, nothing else in."""
    name = resource_name(job_id)
    with aws_errors("create the job's security group"):
        found = [
            g for g in ec2.describe_security_groups(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]
            )["SecurityGroups"]
            if g["GroupName"] == name
        ]
        if found:
            group_id = str(found[0]["GroupId"])
        else:
            group_id = str(ec2.create_security_group(
                GroupName=name, Description=f"gpuhire job {job_id}: SSH from the operator only",
                VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": job_tags(job_id, owner)}],
            )["GroupId"])
    v4 = [{"CidrIp": c, "Description": "gpuhire operator"} for c in cidrs if ":" not in c]
    v6 = [{"CidrIpv6": c, "Description": "gpuhire operator"} for c in cidrs if ":" in c]
    permission = {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": v4, "Ipv6Ranges": v6}
    try:
        with aws_errors("open port 22 to the operator"):
            ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[permission])
    except ProviderError as exc:
        if "InvalidPermission.Duplicate" not in str(exc):
            raise
    return group_id

