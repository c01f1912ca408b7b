"""The one place where a vendor's error answer becomes a typed :mod:`~airflow_provider_iotfleet.exceptions` error."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetNotFoundError,
    IoTFleetRateLimitError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.http.request import Response

#: Response headers in which vendors put their request id when the body has none.
REQUEST_ID_HEADERS = ("X-Request-Id", "X-Request-ID", "X-Correlation-Id", "X-Trace-Id")
_MAX_TEXT = 200


@dataclass(frozen=True)
class VendorErrorBody:
    """What a vendor's error body says, whatever its field names."""

    code: str | None = None
    message: str | None = None
    request_id: str | None = None


def request_id_in(headers: Mapping[str, str]) -> str | None:
    """Return the vendor's request id from an answer's headers, ``None`` when it sent none."""
    return next((headers[name] for name in REQUEST_ID_HEADERS if name in headers), None)


def text_or_none(value: Any) -> str | None:
    """Return ``value`` as a string (vendors send codes as numbers or strings), ``None`` if empty."""
    if value is None or value == "":
        return None
    return str(value)


def _status_class(status: int) -> type[IoTFleetVendorResponseError]:
    if status in (401, 403):
        return IoTFleetAuthError
    if status == 404:
        return IoTFleetNotFoundError
    if status == 429:
        return IoTFleetRateLimitError
    return IoTFleetVendorResponseError


@dataclass(frozen=True)
class ErrorMapping:
    """How one vendor reports errors.

    :param vendor: display name used in messages (``"Cisco IoT Control Center"``).
    :param parse_body: reads the vendor's JSON error body (``None`` when the body is not JSON).
    :param code_classes: error codes whose meaning the HTTP status does not tell, mapped to the class
        to raise (a vendor throttling with 400, or a 404 that means "bad input" rather than "no device").
    :param retryable_codes: error codes to retry whatever the HTTP status.
    """

    vendor: str
    parse_body: Callable[[Any], VendorErrorBody]
    code_classes: Mapping[str, type[IoTFleetVendorResponseError]] = field(default_factory=dict)
    retryable_codes: frozenset[str] = frozenset()

    def error_for(
        self, response: Response, action: str, retry_after: float | None = None, *, quote_body: bool = True
    ) -> IoTFleetVendorResponseError:
        """Return (not raise) the typed error for a non-2xx ``response`` to ``action`` ("PUT /devices/1").

        :param quote_body: ``False`` for login and token endpoints: only the vendor's parsed message
            is used, never the raw body, which may echo the credentials sent.
        """
        body = self.parse_body(json_or_none(response))
        text = _short_text(response) if quote_body else None
        if text in ("{}", "[]"):
            text = None
        message = body.message or text or response.reason or "no error message"
        request_id = body.request_id or request_id_in(response.headers)
        error_class = self.code_classes.get(body.code or "") or _status_class(response.status)
        text = f"{self.vendor} rejected {action}: {message}"
        fields: dict[str, Any] = {
            "http_status": response.status,
            "error_code": body.code,
            "request_id": request_id,
            "vendor": self.vendor,
            "bare_message": message,
        }
        if issubclass(error_class, IoTFleetRateLimitError):
            error: IoTFleetVendorResponseError = error_class(text, retry_after=retry_after, **fields)
        else:
            error = error_class(text, **fields)
        error.server_time = _http_date(response.headers.get("Date"))
        return error

    def is_retryable_code(self, code: str | None) -> bool:
        return code is not None and code in self.retryable_codes


def _http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def json_or_none(response: Response) -> Any:
    """Return the body parsed as JSON, or ``None`` when it is empty or not JSON."""
    if not response.body:
        return None
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None


def _short_text(response: Response) -> str | None:
    text = " ".join(response.text.split())
    if not text:
        return None
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "..."


def malformed_response(
    vendor: str,
    action: str,
    what: str,
    response: Response | None = None,
    *,
    quote_body: bool = True,
    request_id: str | None = None,
) -> IoTFleetVendorResponseError:
    """Return (not raise) the error for a 2xx answer that is not what the vendor documents.

    :param quote_body: ``False`` for login and token endpoints, whose answers hold credentials.
    :param request_id: the vendor's request id; default: the one in ``response``'s headers, if any.
    """
    text = _short_text(response) if response is not None and quote_body else None
    if request_id is None and response is not None:
        request_id = request_id_in(response.headers)
    return IoTFleetVendorResponseError(
        f"{vendor} answered {action} with {what}" + (f": {text!r}" if text else ""),
        http_status=response.status if response is not None else None,
        request_id=request_id,
        vendor=vendor,
        bare_message=f"an answer with {what}",
    )
