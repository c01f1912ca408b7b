"""When to retry and how long to wait: pure functions shared by the sync client and async triggers."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from airflow_provider_iotfleet.exceptions import (
    IoTFleetCertificateError,
    IoTFleetError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
)
from airflow_provider_iotfleet.http.request import Call

#: HTTP statuses that mean "try again later" on every vendor we wrap.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Statuses that say the vendor did not process the request (throttled, or not serving at all).
NOT_PROCESSED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class BackoffPolicy:
    """How often and how patiently a request is retried.

    :param max_retries: retries after the first attempt (0 sends once).
    :param backoff_base: seconds before the first retry; doubles on each further retry.
    :param backoff_max: ceiling of the exponential backoff, in seconds.
    :param max_retry_after: the most seconds of ``Retry-After`` worth sleeping through for one
        call, in total over its retries; a vendor asking for more is not retried here, so the error
        reaches Airflow's own task retries at once instead of a worker slot sleeping.
    :param deadline: the most seconds one call may take, its retries and waits included.
    """

    max_retries: int = 3
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    max_retry_after: float = 120.0
    deadline: float = 600.0

    def delay(
        self,
        retry_number: int,
        retry_after: float | None = None,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Return the seconds to wait before retry ``retry_number`` (0 for the first retry).

        A vendor's ``Retry-After`` wins over the backoff. Otherwise the wait is exponential with "equal
        jitter": half the ceiling plus a random share of the other half, so that many workers throttled
        together do not come back in lockstep.
        """
        if retry_after is not None:
            return max(retry_after, 0.0)
        ceiling = min(self.backoff_max, self.backoff_base * 2.0**retry_number)
        return ceiling / 2 + uniform(0.0, ceiling / 2)

    def next_delay(
        self,
        retries_done: int,
        retry_after: float | None,
        *,
        waited_for_vendor: float,
        elapsed: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> float | None:
        """Return the seconds to wait before the next attempt, or ``None`` when the call gives up.

        :param waited_for_vendor: ``Retry-After`` seconds already slept for this call.
        :param elapsed: seconds since the call's first attempt.
        """
        if retries_done >= self.max_retries:
            return None
        if retry_after is not None and waited_for_vendor + retry_after > self.max_retry_after:
            return None
        delay = self.delay(retries_done, retry_after, uniform)
        return None if elapsed + delay > self.deadline else delay


def may_repeat(call: Call, error: IoTFleetError, vendor_says_retry: bool = False) -> bool:
    """Return whether ``call`` may be sent again after ``error``, given what kind of call it is.

    :param vendor_says_retry: the vendor named the error as "try again" (a throttling code sent with
        another status than 429).
    """
    if call.repeat == "never" or isinstance(error, IoTFleetCertificateError):
        return False  # a certificate that fails verification fails again
    status = error.http_status
    if isinstance(error, IoTFleetTransportError):
        return call.repeat == "always" or not error.may_have_reached_vendor
    if status in NOT_PROCESSED_STATUSES or vendor_says_retry:
        return True
    if call.repeat != "always":
        return False
    # Other 5xx, and a 2xx whose body was garbled: the answer was lost, the call may be repeated.
    return status is not None and (status in RETRYABLE_STATUSES or 200 <= status < 300)


def is_transient(error: IoTFleetError) -> bool:
    """Whether the same read may well succeed later: a failed connection, throttling, or a 5xx.

    Sensors and triggers retry such failures on their next poll; anything else (refused
    credentials, an unknown device) ends the wait at once.
    """
    if isinstance(error, IoTFleetTransportError | IoTFleetRateLimitError):
        return True
    return error.http_status is not None and error.http_status >= 500


def answer_lost(error: IoTFleetError) -> bool:
    """Whether a call may have been applied although no usable answer came back: the connection
    failed after the request may have left, a 2xx body was garbled, or a 5xx came back (503 aside,
    which says "not processed"; a vendor's "unknown server error" says nothing of what was done). A
    write that failed so is read back, not sent again.
    """
    if isinstance(error, IoTFleetTransportError):
        return error.may_have_reached_vendor
    status = error.http_status
    return status is not None and (
        200 <= status < 300 or (status >= 500 and status not in NOT_PROCESSED_STATUSES)
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for, or ``None`` if absent or unreadable.

    Both forms of RFC 9110 are understood: delay-seconds (``"120"``) and an HTTP date
    (``"Wed, 21 Oct 2026 07:28:00 GMT"``), the latter measured from ``now`` (UTC).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)
