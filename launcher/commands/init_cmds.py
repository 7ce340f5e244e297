"""`gpuhire init`: the config file from terraform's outputs (docs/terraform.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from launcher.context import app_context


def init(
    ctx: typer.Context,
    from_terraform: Annotated[
        Path | None,
        typer.Option("--from-terraform", metavar="DIR",
                     help="Run `terraform output -json` in DIR (the terraform/ you applied)."),
    ] = None,
    outputs_file: Annotated[
        Path | None,
        typer.Option("--outputs-file", metavar="FILE",
                     help="A saved `terraform output -json` instead (no terraform binary needed)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Update an existing config file: only its [aws] keys "
                                           "and sns channel change (a .bak copy is kept).")
    ] = False,
) -> None:
    """Write the config file ([aws], the SNS alert channel) from terraform's outputs.

    The file goes to --config / GPUHIRE_CONFIG, or config.toml in your config directory.

    Example:  gpuhire init --from-terraform terraform/
    """
    from launcher.config import default_config_path
    from launcher.init_config import init_config

    path = app_context(ctx).config_path or default_config_path()
    result = init_config(path, terraform_dir=from_terraform, outputs_file=outputs_file, force=force)
    out = result.outputs
    if result.merged:
        typer.echo(f"updated {result.path} (mode 0600): the [aws] keys and the sns channel; "
                   "the rest is as it was")
    else:
        typer.echo(f"wrote {result.path} (mode 0600)"
                   + ("; the previous file was not TOML" if result.backup else ""))
    if result.backup:
        typer.echo(f"kept the previous file as {result.backup}")
    typer.echo(f"  region {out.region}, bucket {out.bucket}, instance profile {out.instance_profile}")
    typer.echo(f"  alerts channel 'sns' -> {out.sns_topic_arn}")
    typer.echo("next: gpuhire offers --gpu t4   (then add [[alerts.rules]] using channel 'sns')")


def register(app: typer.Typer) -> None:
    app.command("init")(init)
