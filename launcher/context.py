"""What every command shares: the global options, the settings and the ledger, made lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from launcher.config import Settings
    from ledger.book import Ledger


@dataclass
class AppContext:
    """Global options; settings and the ledger are opened on first use only."""

    db_url: str | None = None
    config_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _ledger: Ledger | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from launcher.config import load_settings

            self._settings = load_settings(self.config_path, db=self.db_url)
        return self._settings

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            from ledger.book import Ledger
            from ledger.db import open_engine

            self._ledger = Ledger(open_engine(self.settings.db))
        return self._ledger


def app_context(ctx: typer.Context) -> AppContext:
    """The AppContext of the running command (made by the root callback)."""
    root: Any = ctx.find_root().obj
    if isinstance(root, AppContext):
        return root
    fresh = AppContext()  # called outside the CLI: defaults
    ctx.find_root().obj = fresh
    return fresh
