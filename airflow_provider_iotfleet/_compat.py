"""The few Airflow names that differ between the Airflow 3 releases we support (3.2.0 and newer)."""

from __future__ import annotations

from typing import Any

# _redact: the function Airflow's log processors use to mask registered secrets.
from airflow.sdk._shared.secrets_masker import redact as _redact
from airflow.sdk.log import mask_secret

try:  # Task SDK 1.3+ (Airflow 3.3+), async supervisor comms: masking from a coroutine must not block the loop
    from airflow.sdk.log import amask_secret
except ImportError:  # pragma: no cover - Task SDK 1.2 (Airflow 3.2) masks locally only

    async def amask_secret(secret: Any, name: str | None = None) -> None:  # type: ignore[misc]
        mask_secret(secret, name)


def redact(text: str) -> str:
    """Return ``text`` with every secret registered with Airflow's masker replaced by ``***``."""
    redacted = _redact(text)
    return redacted if isinstance(redacted, str) else text


__all__ = ["amask_secret", "mask_secret", "redact"]
