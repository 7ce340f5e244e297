"""The `gpuhire` command line: parses, calls one library function, prints.

Commands live in launcher/commands/<topic>.py, each with `register(app)`. Errors of the
GpuhireError hierarchy become one line on stderr with the fix and a non-zero exit; set
GPUHIRE_DEBUG=1 for the traceback. Usage errors (a missing option, a bad choice, an unknown
command) are one line too, pointing at the command's --help, with exit status 2. Nothing
heavy (boto3, torch, matplotlib) is imported here.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated, Any

import typer

# typer (>= 0.29, as pinned) vendors click: its usage errors are these classes, not click's.
from typer._click.core import Context
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer._click.parser import _OptionParser
from typer.core import TyperArgument, TyperGroup, TyperOption

from launcher import __version__
from launcher.commands import COMMAND_MODULES
from launcher.context import AppContext
from ledger.errors import GpuhireError


def _debug() -> bool:
    return os.environ.get("GPUHIRE_DEBUG", "") not in ("", "0")


def _parser_context(exc: UsageError) -> Context | None:
    """The context of the command whose options failed to parse. click raises "Option
    '--runs' requires an argument" without one; its option parser, in the traceback, has it."""
    found: Context | None = None
    tb = exc.__traceback__
    while tb is not None:
        parser = tb.tb_frame.f_locals.get("self")
        if isinstance(parser, _OptionParser) and isinstance(parser.ctx, Context):
            found = parser.ctx
        tb = tb.tb_next
    return found


def _usage_error(exc: UsageError) -> typer.Exit:
    """A usage error (missing option, bad choice, unknown command) as one line, exit 2."""
    ctx = exc.ctx if exc.ctx is not None else _parser_context(exc)
    path = ctx.command_path if ctx is not None else "gpuhire"
    message = " ".join(exc.format_message().split()).rstrip(".")
    sep = " " if message.endswith("?") else "; "  # "Did you mean 'ledger'?"
    typer.echo(f"error: {message}{sep}see `{path} --help`", err=True)
    return typer.Exit(2)


class _Argument(TyperArgument):
    """An argument in --help as its metavar alone (`DATA...`), not `data... <list[Path]>`."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None

    def _rich_display_name(self) -> str:
        return self.display_name_raw + ("..." if self.nargs != 1 else "")


def _default_metavar(param: TyperArgument | TyperOption) -> str:
    """An enum's values (`table|json`), else the parameter's name (`--region REGION`)."""
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    name = param.opts[0].lstrip("-") if param.opts else param.name or "value"
    return name.upper().replace("-", "_")


def _plain_metavars(cmd: Any) -> None:
    """Every value in every --help reads as a metavar (`--month YYYY-MM`, `DATA...`), never as
    typer's Python type (`<str>`, `<list[Path]>`, `<int range>`). Signatures name them
    (metavar=); an enum shows its values, anything else its name."""
    for param in getattr(cmd, "params", []):
        if isinstance(param, TyperArgument):
            param.__class__ = _Argument
        elif not isinstance(param, TyperOption) or param.is_flag or param.count:
            continue
        if param.metavar is None:
            param.metavar = _default_metavar(param)
    for sub in getattr(cmd, "commands", {}).values():
        _plain_metavars(sub)


def _not_utf8(args: list[str]) -> typer.Exit | None:
    """An argument that is not UTF-8 (Python hands such bytes on as lone surrogates, which
    would fail deep inside, e.g. when the ledger stores a --note) as one line, exit 2."""
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if not (arg.startswith("--") and eq and name.isascii()):
            name, value = (args[i - 1] if i > 0 and args[i - 1].startswith("-") else ""), arg
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            which = f"the value of {name}" if name.isascii() and name else "the argument"
            shown = repr(os.fsencode(value))[2:-1][:80]
            typer.echo(f"error: {which} '{shown}' is not UTF-8 text (byte {exc.start}); give it "
                       "as UTF-8 (check your terminal's encoding, or rename such a file)", err=True)
            return typer.Exit(2)
    return None


class GpuhireGroup(TyperGroup):
    """The root group: the one place that turns errors into a line on stderr and an exit code."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_metavars(self)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        bad = _not_utf8(args)  # every argument of every command passes here first
        if bad is not None:
            raise bad
        try:  # the root's own options (--db, --config, an unknown one)
            return super().parse_args(ctx, args)
        except NoArgsIsHelpError:  # `gpuhire` alone prints the help
            raise
        except UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx: typer.Context) -> object:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:  # `gpuhire ledger` alone prints its help
            raise
        except UsageError as exc:
            raise _usage_error(exc) from None
        except GpuhireError as exc:
            if _debug():
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            _quiet_sigint()
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug: one line, and how to see more
            if _debug():
                raise
            typer.echo(
                f"error: unexpected {exc.__class__.__name__}: {' '.join(str(exc).split())[:300]} "
                "(run again with GPUHIRE_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    name="gpuhire",
    cls=GpuhireGroup,
    help=(
        "Rent GPUs for handwriting-recognition work, keep exact books on the rent, "
        "and know when buying a card would be cheaper.\n\n"
        "Example:  gpuhire advise --card rtx3060"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpuhire {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db", envvar="GPUHIRE_DB", show_envvar=True, metavar="URL",
            help="Ledger database URL (default: SQLite in your data directory).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", envvar="GPUHIRE_CONFIG", show_envvar=True, metavar="FILE",
            help="Config file (default: config.toml in your config directory).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """gpuhire: rent or buy a GPU for HTR work."""
    ctx.obj = AppContext(db_url=db, config_path=config)


for _module in COMMAND_MODULES:
    _module.register(app)


_PROCESS = {"own": False}  # True when `gpuhire` is this process (not a test's in-process runner)


def _quiet_sigint() -> None:
    """Stopping already (the job is recorded stopped): another Ctrl-C while the process winds
    down must not turn exit 130 into a death by SIGINT. SIG_IGN, not a Python handler: Python
    puts SIGINT back to its default late in its shutdown, and a handler would not survive that.
    Only in the `gpuhire` process itself (a child it started later would inherit SIG_IGN; a
    test runner hosting the app must keep its own Ctrl-C)."""
    if _PROCESS["own"]:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def main() -> None:
    """Entry point of the `gpuhire` script."""
    _PROCESS["own"] = True
    app(prog_name="gpuhire")
