"""The few Airflow names that differ between the Airflow 3 releases we support (3.2.0 and newer)."""

from __future__ import annotations

from typing import Any

from airflow.sdk.log import mask_secret

try:  # Task SDK 1.3+ (Airflow 3.3+), async supervisor comms: masking from a coroutine must not block the loop
    from airflow.sdk.log import amask_secret
except ImportError:  # pragma: no cover - Task SDK 1.2 (Airflow 3.2) masks locally only

    async def amask_secret(secret: Any, name: str | None = None) -> None:  # type: ignore[misc]
        mask_secret(secret, name)


#: Where :func:`redact` comes from. The Task SDK exports no redaction function of its own (its
#: ``redact`` lives in the private ``airflow.sdk._shared.secrets_masker``); the common.compat provider,
#: which every Airflow 3 installs, re-exports it and follows it when Airflow moves it. The private
#: module is the fallback for a common.compat too old to have it; tests/unit/test_compat.py fails,
#: naming both, when either stops providing it.
REDACT_PUBLIC_MODULE = "airflow.providers.common.compat.sdk"
REDACT_PRIVATE_MODULE = "airflow.sdk._shared.secrets_masker"

try:
    from airflow.providers.common.compat.sdk import redact as _redact
except ImportError:  # pragma: no cover - common.compat releases before it re-exported redact
    from airflow.sdk._shared.secrets_masker import redact as _redact


def redact(text: str) -> str:
    """Return ``text`` with every secret registered with Airflow's masker replaced by ``***``."""
    redacted = _redact(text)
    return redacted if isinstance(redacted, str) else text


__all__ = ["amask_secret", "mask_secret", "redact"]
