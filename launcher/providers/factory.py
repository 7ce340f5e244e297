"""The only place that picks a provider by name.

    make_provider(settings, ledger, "auto" | "local" | "ssh" | "aws", gpu=..., run_root=...)
    aws_cloud(settings, ledger, region=None)     the AWS layer itself (offers, status, stop, gc)

Adding a provider: a module in launcher/providers/ that implements `base.Provider`, and one
line in PROVIDERS. `auto` is `[train] provider`, and when that is `auto` too, AWS once
`gpuhire init` configured it (`aws_configured`), this machine otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from launcher.errors import ConfigError

if TYPE_CHECKING:
    from launcher.config import Settings
    from launcher.providers.aws.cloud import AwsCloud
    from launcher.providers.base import Provider
    from ledger.book import Ledger


@dataclass(frozen=True)
class ProviderArgs:
    """What every provider may be made from."""

    settings: Settings
    ledger: Ledger
    gpu: str  # t4, l4, auto (aws: the best price per speed now), or what a local/ssh box has
    run_root: Path  # the job's run folder (the local provider's box lives in it)
    host: str | None = None  # [hosts.NAME] for ssh
    spot: bool = True  # aws: spot, or on-demand


def aws_configured(settings: Settings) -> bool:
    """Whether `gpuhire init` set AWS up ([aws] bucket or instance profile): `auto` means AWS then."""
    return bool(settings.aws.bucket or settings.aws.instance_profile)


def aws_cloud(settings: Settings, ledger: Ledger, region: str | None = None) -> AwsCloud:
    """The AWS layer on the user's settings (optionally another region)."""
    from launcher.providers.aws.cloud import AwsCloud

    if region:
        settings = settings.model_copy(update={"aws": settings.aws.model_copy(update={"region": region})})
    return AwsCloud(settings, ledger)


def _local(a: ProviderArgs) -> Provider:
    from launcher.providers.local import LocalProvider

    s = a.settings
    gpu = s.local.gpu if a.gpu in ("auto", "") else a.gpu
    return LocalProvider(a.ledger, a.run_root, gpu, s.local.watts, s.ownership.usd_per_kwh,
                         s.billing_rules("local"))


def _ssh(a: ProviderArgs) -> Provider:
    from launcher.providers.ssh import SshProvider

    s = a.settings
    only = next(iter(s.hosts)) if len(s.hosts) == 1 else None
    name = a.host or s.train.host or only
    if name is None or name not in s.hosts:
        raise ConfigError(
            f"no SSH host {name!r} is configured" if name else "no SSH host chosen",
            "add [hosts.NAME] to the config and pass --host NAME (docs/train.md)",
        )
    return SshProvider(a.ledger, name, s.hosts[name], s.ownership.usd_per_kwh, s.billing_rules("ssh"))


def _aws(a: ProviderArgs) -> Provider:
    from launcher.providers.aws.provider import AwsProvider

    s = a.settings
    cloud = aws_cloud(s, a.ledger)
    stage = None
    if s.aws.bucket:
        from launcher.providers.aws.staging import S3Stage

        stage = S3Stage(cloud.client("s3"), s.aws.bucket)
    return AwsProvider(cloud, a.gpu, spot=a.spot, runtime=s.train.runtime, image=s.train.image,
                       python=s.train.remote_python, workdir_root=s.aws.workdir, stage=stage,
                       ecr_repository_url=s.aws.ecr_repository_url)


PROVIDERS: dict[str, Callable[[ProviderArgs], Provider]] = {
    "local": _local,
    "ssh": _ssh,
    "aws": _aws,
}


def resolve_name(settings: Settings, name: str) -> str:
    """`auto` (the flag) -> `[train] provider` -> aws when configured, else local."""
    choice = settings.train.provider if name == "auto" else name
    if choice == "auto":
        choice = "aws" if aws_configured(settings) else "local"
    return choice


def make_provider(settings: Settings, ledger: Ledger, name: str, *, gpu: str = "auto",
                  run_root: Path, host: str | None = None, spot: bool = True) -> Provider:
    """The provider `name` (or `auto`), ready for one job."""
    choice = resolve_name(settings, name)
    make = PROVIDERS.get(choice)
    if make is None:
        raise ConfigError(f"provider {choice!r} is unknown",
                          "use --provider local, ssh or aws")
    return make(ProviderArgs(settings, ledger, gpu, run_root, host, spot))
