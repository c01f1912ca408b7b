"""The few Airflow names whose import path moved between Airflow 3 minor releases."""

from __future__ import annotations

from typing import Any

try:  # Task SDK 1.1+ (Airflow 3.1+)
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]

try:  # Task SDK with async supervisor comms: masking from a coroutine must not block the loop
    from airflow.sdk.log import amask_secret
except ImportError:  # pragma: no cover - older Task SDKs mask locally only

    async def amask_secret(secret: Any, name: str | None = None) -> None:  # type: ignore[misc]
        mask_secret(secret, name)


try:  # the function Airflow's log processors use to mask registered secrets
    from airflow.sdk._shared.secrets_masker import redact as _redact
except ImportError:  # pragma: no cover - older Task SDKs
    from airflow.sdk.execution_time.secrets_masker import redact as _redact  # type: ignore[no-redef]


def redact(text: str) -> str:
    """Return ``text`` with every secret registered with Airflow's masker replaced by ``***``."""
    redacted = _redact(text)
    return redacted if isinstance(redacted, str) else text


__all__ = ["amask_secret", "mask_secret", "redact"]
