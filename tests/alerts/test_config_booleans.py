"""true/false is no number in [alerts] either (pydantic alone takes `minutes = true` for 1)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ledger.alerts.config import AlertsSettings

IDLE = {"type": "idle_gpu", "name": "idle", "below_pct": 5, "minutes": 30}
MAIL = {"type": "email", "host": "127.0.0.1", "sender": "a@example.org", "to": ["b@example.org"]}


@pytest.mark.parametrize(("settings", "where"), [
    ({"rules": [{**IDLE, "minutes": True}]}, "rules.0.idle_gpu.minutes"),
    ({"channels": {"mail": {**MAIL, "port": True}}}, "channels.mail.email.port"),
    ({"channels": {"mail": {**MAIL, "timeout_s": False}}}, "channels.mail.email.timeout_s"),
])
def test_a_boolean_is_refused_where_a_number_goes(settings: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as err:
        AlertsSettings.model_validate(settings)
    assert where in str(err.value)
    assert "not true or false" in str(err.value)


def test_numbers_and_the_rule_type_still_read() -> None:
    read = AlertsSettings.model_validate({"rules": [IDLE], "channels": {"mail": {**MAIL, "port": 2525}}})
    assert read.rules[0].minutes == 30  # type: ignore[union-attr]
