"""What a vendor's answer means, decided once for both clients: a :class:`Reply`, or a typed error."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetVendorResponseError
from airflow_provider_iotfleet.http.errors import ErrorMapping, malformed_response, request_id_in
from airflow_provider_iotfleet.http.request import Headers, Request, Response
from airflow_provider_iotfleet.http.retry import parse_retry_after


@dataclass(frozen=True)
class Reply:
    """A successful vendor answer: its parsed JSON ``data``, with checked accessors.

    The accessors raise :class:`IoTFleetVendorResponseError` naming the vendor, the request and the
    missing or mistyped field, so a changed vendor API never surfaces as a bare ``KeyError``.

    :ivar body: for a call sent with ``decode=False``, the answer's body not yet decoded (``data`` is
        then ``None`` until :meth:`decoded`); ``None`` otherwise.
    """

    data: Any
    status: int
    headers: Mapping[str, str] = field(repr=False)
    vendor: str
    action: str
    body: bytes | None = field(default=None, repr=False)

    def decoded(self) -> Reply:
        """Return this reply with its body decoded (itself when it already is).

        :raises IoTFleetVendorResponseError: for a body that is not JSON, worded as the client words
            it for any call (a call sent with ``decode=False`` is not retried for it).
        """
        if self.body is None:
            return self
        payload = _json_or_not(self.body)
        if payload is _NOT_JSON or payload is None:
            raise malformed_response(
                self.vendor,
                self.action,
                "a body that is not JSON",
                Response(status=self.status, headers=Headers(self.headers), body=self.body),
            )
        return replace(self, data=payload, body=None)

    @property
    def request_id(self) -> str | None:
        """The vendor's request id, from the answer's headers, when it sent one."""
        return request_id_in(self.headers)

    def _malformed(self, what: str) -> IoTFleetVendorResponseError:
        return malformed_response(self.vendor, self.action, what, request_id=self.request_id)

    def object(self) -> dict[str, Any]:
        """Return the body as a JSON object."""
        if not isinstance(self.data, dict):
            raise self._malformed(f"a {type(self.data).__name__} where a JSON object was expected")
        return self.data

    def field(self, key: str, kind: type | tuple[type, ...], *, required: bool = True) -> Any:
        """Return ``body[key]`` after checking its type; ``None`` if absent and not ``required``."""
        body = self.object()
        if key not in body or body[key] is None:
            if required:
                raise self._malformed(f"no {key!r} field")
            return None
        value = body[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise self._malformed(f"{key!r} of type {type(value).__name__}")
        return value

    def objects(self, key: str, *, required: bool = True) -> list[dict[str, Any]]:
        """Return ``body[key]`` as a list of JSON objects (an empty list if absent and not required)."""
        items = self.field(key, list, required=required) or []
        if not all(isinstance(item, dict) for item in items):
            raise self._malformed(f"{key!r} items that are not JSON objects")
        return items


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


_NOT_JSON = object()


def _json_or_not(body: bytes) -> Any:
    """Return ``body`` parsed as JSON, or :data:`_NOT_JSON`."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return _NOT_JSON


def interpret(
    request: Request, response: Response, errors: ErrorMapping, now: datetime
) -> tuple[Reply | IoTFleetVendorResponseError, float | None]:
    """Return what ``response`` to ``request`` means, and the ``Retry-After`` seconds it asked for.

    A 2xx with a JSON body is a :class:`Reply`; anything else is the vendor's typed error (returned,
    not raised, so that auth flows and retry rules can look at it first).
    """
    quote = not request.call.credentials
    if not 200 <= response.status < 300:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return errors.error_for(response, request.action, retry_after, quote_body=quote), retry_after
    if response.body and not request.call.decode:
        return (
            Reply(
                data=None,
                status=response.status,
                headers=response.headers,
                vendor=errors.vendor,
                action=request.action,
                body=response.body,
            ),
            None,
        )
    payload = _json_or_not(response.body) if response.body else _NOT_JSON
    if payload is _NOT_JSON or payload is None:
        what = "an empty body" if not response.body else "a body that is not JSON"
        return malformed_response(errors.vendor, request.action, what, response, quote_body=quote), None
    return (
        Reply(
            data=payload,
            status=response.status,
            headers=response.headers,
            vendor=errors.vendor,
            action=request.action,
        ),
        None,
    )
