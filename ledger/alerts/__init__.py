"""Threshold alerts: rules from the config, evaluated against the ledger, sent once per period.

    run_checks(ledger, settings) -> CheckResult     the launcher calls it after every job/session
    job_over_cap(ledger, job_id, cap_usd) -> bool   the launcher stops hard-capped jobs with it

Rules and channels are described in ledger.alerts.config and docs/alerts.md. The names are
loaded on first use, so reading the config (ledger.alerts.config) stays cheap.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "CheckResult": "ledger.alerts.check",
    "Delivery": "ledger.alerts.check",
    "run_checks": "ledger.alerts.check",
    "job_over_cap": "ledger.alerts.rules",
}

__all__ = ["CheckResult", "Delivery", "job_over_cap", "run_checks"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
