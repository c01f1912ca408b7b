"""The one transport core every hook uses: calls described once, auth flows, retries, rate limit,
error mapping, and two thin drivers (``requests`` for hooks and operators, ``httpx`` for triggers).
"""

from airflow_provider_iotfleet.http.aclient import AsyncVendorHttpClient
from airflow_provider_iotfleet.http.answers import Reply
from airflow_provider_iotfleet.http.auth import Auth, NoAuth
from airflow_provider_iotfleet.http.client import VendorHttpClient
from airflow_provider_iotfleet.http.clock import SYSTEM_CLOCK, Clock
from airflow_provider_iotfleet.http.concurrency import BatchOutcome, Outcome, map_batches, map_bounded
from airflow_provider_iotfleet.http.config import ConnectionSettings, is_loopback_host
from airflow_provider_iotfleet.http.errors import ErrorMapping, VendorErrorBody, text_or_none
from airflow_provider_iotfleet.http.ratelimit import TokenBucket
from airflow_provider_iotfleet.http.request import Call, Request, Response
from airflow_provider_iotfleet.http.retry import BackoffPolicy, parse_retry_after

__all__ = [
    "SYSTEM_CLOCK",
    "AsyncVendorHttpClient",
    "Auth",
    "BackoffPolicy",
    "BatchOutcome",
    "Call",
    "Clock",
    "ConnectionSettings",
    "ErrorMapping",
    "NoAuth",
    "Outcome",
    "Reply",
    "Request",
    "Response",
    "TokenBucket",
    "VendorErrorBody",
    "VendorHttpClient",
    "is_loopback_host",
    "map_batches",
    "map_bounded",
    "parse_retry_after",
    "text_or_none",
]
