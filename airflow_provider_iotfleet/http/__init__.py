"""The one transport core every hook uses: session reuse, timeouts, retries, rate limit, error mapping."""

from airflow_provider_iotfleet.http.client import Auth, NoAuth, Reply, VendorHttpClient
from airflow_provider_iotfleet.http.clock import SYSTEM_CLOCK, Clock
from airflow_provider_iotfleet.http.concurrency import BatchOutcome, Outcome, map_batches, map_bounded
from airflow_provider_iotfleet.http.config import ConnectionSettings, is_loopback_host
from airflow_provider_iotfleet.http.errors import ErrorMapping, VendorErrorBody, text_or_none
from airflow_provider_iotfleet.http.ratelimit import TokenBucket
from airflow_provider_iotfleet.http.retry import BackoffPolicy, parse_retry_after

__all__ = [
    "SYSTEM_CLOCK",
    "Auth",
    "BackoffPolicy",
    "BatchOutcome",
    "Clock",
    "ConnectionSettings",
    "ErrorMapping",
    "NoAuth",
    "Outcome",
    "Reply",
    "TokenBucket",
    "VendorErrorBody",
    "VendorHttpClient",
    "is_loopback_host",
    "map_batches",
    "map_bounded",
    "parse_retry_after",
    "text_or_none",
]
