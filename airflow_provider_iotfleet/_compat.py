"""The few Airflow names whose import path moved between Airflow 3 minor releases."""

from __future__ import annotations

try:  # Task SDK 1.1+ (Airflow 3.1+)
    from airflow.sdk.log import mask_secret
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]

__all__ = ["mask_secret"]
