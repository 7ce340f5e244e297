"""boto3 at one edge: clients with the right retries, and AWS errors turned into ours.

Credentials come only from the standard chain (environment, profile, SSO, instance role);
boto3 honours `AWS_ENDPOINT_URL` (the tests point it at moto). Throttling and transient
server errors are retried by botocore's adaptive mode; client errors (a bad request, no
permission, no capacity) are never retried here: the caller decides (capacity fallback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from launcher.errors import CapacityError, ProviderError

if TYPE_CHECKING:
    import boto3

    from launcher.config import AwsSettings

# Codes that mean "no room here now": try the next zone, type or market.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "VcpuLimitExceeded",
    }
)
QUOTA_CODES = frozenset({"MaxSpotInstanceCountExceeded", "VcpuLimitExceeded"})
_AUTH_CODES = frozenset(
    {"AuthFailure", "ExpiredToken", "ExpiredTokenException", "InvalidClientTokenId",
     "UnrecognizedClientException", "RequestExpired"}
)
_DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})

RETRIES: dict[str, Any] = {"mode": "adaptive", "max_attempts": 6}

# S3 clients presign the URLs the box fetches its data from (launcher/providers/aws/staging.py). botocore
# presigns with SigV2 on the global endpoint unless told otherwise, and S3 refuses SigV2 for
# buckets created since June 2020 (terraform's is); the global endpoint also fails for buckets
# in Regions launched after March 2019. So: SigV4, virtual-hosted style on the bucket's
# Regional endpoint (botocore still uses path style for an IP endpoint or a dotted bucket name).
# https://docs.aws.amazon.com/AmazonS3/latest/API/specify-signature-version.html
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html
S3_CONFIG: dict[str, Any] = {
    "signature_version": "s3v4",
    "s3": {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
}


def make_session(settings: AwsSettings) -> boto3.Session:
    """A boto3 session on the standard credential chain (optionally a named profile)."""
    import boto3
    import botocore.exceptions

    try:
        return boto3.Session(profile_name=settings.profile, region_name=settings.region)
    except botocore.exceptions.ProfileNotFound as exc:
        raise ProviderError(*_profile_not_found(settings, exc.kwargs.get("profile"))) from None


def _profile_not_found(settings: AwsSettings, profile: str | None) -> tuple[str, str]:
    """The message and fix for a profile boto3 cannot find, naming where it was set:
    [aws] profile, else AWS_PROFILE (or AWS_DEFAULT_PROFILE) in the environment."""
    import os

    name = profile or settings.profile or os.environ.get("AWS_PROFILE") or "?"
    if settings.profile is not None:
        source, change = "[aws] profile in the config", "fix [aws] profile"
    else:
        variable = next((v for v in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE") if os.environ.get(v)),
                        "AWS_PROFILE")
        source, change = f"the {variable} variable", f"fix or unset {variable}"
    return (
        f"AWS profile {name!r} (from {source}) is not configured",
        f"run `aws configure --profile {name}`, or {change}",
    )


def client(session: boto3.Session, service: str) -> Any:
    """A client with adaptive retries for throttling and bounded timeouts."""
    from botocore.config import Config

    config = Config(retries=RETRIES, connect_timeout=10, read_timeout=60)  # type: ignore[arg-type]
    if service == "s3":
        config = config.merge(Config(**S3_CONFIG))
    made = session.client(service, config=config)  # type: ignore[call-overload]
    if service == "ec2":
        made.meta.events.register_first("needs-retry.ec2.RunInstances", _no_retry_on_capacity)
    return made


def _no_retry_on_capacity(response: Any = None, **_: Any) -> bool | None:
    """EC2 answers InsufficientInstanceCapacity with HTTP 500, which botocore would retry
    in the same zone for up to a minute; answer "do not retry" so the fallback moves on.
    (False from the first needs-retry handler stops the retry; None lets botocore decide.)"""
    if response is None:
        return None
    parsed = response[1] if isinstance(response, tuple) and len(response) > 1 else {}
    code = parsed.get("Error", {}).get("Code", "") if isinstance(parsed, dict) else ""
    return False if code in CAPACITY_CODES else None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else ''."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


@contextlib.contextmanager
def aws_errors(what: str) -> Iterator[None]:
    """Turn botocore failures while doing `what` into one-line ProviderErrors with the fix."""
    import botocore.exceptions as bex

    try:
        yield
    except (bex.NoCredentialsError, bex.PartialCredentialsError):
        raise ProviderError(
            f"no AWS credentials found while trying to {what}",
            "run `aws configure` or `aws sso login`, or set AWS_PROFILE / [aws] profile",
        ) from None
    except bex.TokenRetrievalError:
        raise ProviderError(
            f"the AWS SSO session expired while trying to {what}", "run `aws sso login`"
        ) from None
    except (bex.EndpointConnectionError, bex.ConnectTimeoutError) as exc:
        raise ProviderError(
            f"cannot reach AWS while trying to {what} ({exc})",
            "check the network, [aws] region and AWS_ENDPOINT_URL",
        ) from None
    except bex.ClientError as exc:
        raise translate(exc, what) from None
    except (bex.WaiterError, bex.ParamValidationError):
        raise  # the caller decides (a waiter's timeout, a parameter it checks itself)
    except bex.BotoCoreError as exc:  # e.g. an invalid region name, a malformed endpoint URL
        raise ProviderError(
            f"AWS call failed while trying to {what}: {exc}",
            "check [aws] region and profile, and AWS_ENDPOINT_URL",
        ) from None


def translate(exc: Exception, what: str) -> ProviderError:
    """A ClientError as a ProviderError (or CapacityError) whose fix names what to do."""
    code = error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")) or str(exc)
    message = message.splitlines()[0][:300]
    if code in _AUTH_CODES:
        return ProviderError(
            f"AWS rejected the credentials while trying to {what} ({code})",
            "refresh them: `aws sso login`, `aws configure`, or check the clock",
        )
    if code in _DENIED_CODES:
        return ProviderError(
            f"AWS denied permission to {what} ({code}: {message})",
            "attach the gpuhire user policy (terraform output user_policy_json) to your IAM user",
        )
    if code in CAPACITY_CODES:
        return CapacityError(f"no capacity to {what} ({code}: {message})", quota_fix(code))
    return ProviderError(f"AWS refused to {what} ({code}: {message})", "check the message above")


def quota_fix(code: str) -> str:
    """What to do about a capacity or quota error."""
    if code in QUOTA_CODES:
        return (
            'request a higher "All G and VT Spot Instance Requests" quota (Service Quotas, EC2) '
            "or, for on-demand, \"Running On-Demand G and VT instances\""
        )
    return "try another region ([aws] region), allow on-demand ([aws] fallback_on_demand), or retry later"
