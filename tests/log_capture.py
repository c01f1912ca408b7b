"""What a test captured of the logs: structlog events (operators, sensors, triggers and hooks log
through structlog) and stdlib records (urllib3, requests, Airflow). The ``events`` and ``logs``
fixtures of ``tests/unit/conftest.py`` capture them."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest

#: Structlog events as ``structlog.testing.capture_logs`` records them.
Events = list[MutableMapping[str, Any]]


@dataclass
class Logs:
    """What a run logged: the structlog events, and stdlib records."""

    caplog: pytest.LogCaptureFixture
    events: Events

    def lines(self, level: str | None = None) -> list[str]:
        """Every message logged at ``level`` (any level when ``None``): events first, then records."""
        found = [
            str(event.get("event"))
            for event in self.events
            if level is None or event.get("log_level") == level
        ]
        found += [
            record.getMessage()
            for record in self.caplog.records
            if level is None or record.levelname.lower() == level
        ]
        return found

    def text(self) -> str:
        """Everything logged, arguments included, as one text to search for what must not show."""
        events = "\n".join(repr(event) for event in self.events)
        records = "\n".join(f"{r.getMessage()} {r.args!r}" for r in self.caplog.records)
        return f"{events}\n{records}"
