"""A vendor call described once as data, the bytes it becomes on the wire, and the answer as data.

Both clients (``requests`` for hooks and operators, ``httpx`` for triggers) send the same
:class:`Request`, built from the same :class:`Call` by :func:`build_request`, and hand back the same
neutral :class:`Response`; everything that decides what to send and what an answer means is written
once, against these three types.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.validation import control_character_problem, dot_segment_problem

#: When a call may be sent again after a failed attempt:
#: ``always`` (reads, and writes whose repetition changes nothing), ``if-not-received`` (only when
#: the vendor surely did not get it: a refused connection, a 429), ``never`` (logins that count
#: towards an account lockout).
Repeat = Literal["always", "if-not-received", "never"]


@dataclass(frozen=True)
class Call:
    """One vendor API call, as data.

    :param method: the HTTP method.
    :param path: relative to the client's base URL, or an absolute URL (token and login endpoints).
    :param params: query parameters; values are sent as strings, in the order given.
    :param json: a JSON body.
    :param form: a form body (``application/x-www-form-urlencoded``).
    :param headers: headers this call needs besides the client's and the auth's (a login's own
        credentials).
    :param repeat: when it is safe to send the call again; see :data:`Repeat`.
    :param rate_limited: ``False`` for token and login endpoints, which vendors do not count.
    :param credentials: a login or token call: its answers (and the vendor's echo of the request in
        them) are never quoted in messages.
    :param decode: ``False`` to have a 2xx answer's body handed back as bytes (:attr:`.Reply.body`),
        decoded later by :meth:`.Reply.decoded`: a caller that can act on the answer before all of it
        is parsed (the next page's request) decodes it where it suits. Errors, retries, the rate
        limit and an empty 2xx body are handled as for any call.
    """

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    form: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    repeat: Repeat = "always"
    rate_limited: bool = True
    credentials: bool = False
    decode: bool = True


@dataclass(frozen=True)
class Request:
    """A call turned into what goes on the wire: the full URL, every header we set, the body bytes.

    :ivar action: ``"PUT /rws/api/v1/devices/8901..."``, how messages name the request.
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    call: Call = field(repr=False)

    @property
    def action(self) -> str:
        return f"{self.method} {urlsplit(self.url).path}"

    def with_headers(self, headers: Mapping[str, str]) -> Request:
        """Return a copy with ``headers`` added (replacing same-named ones, whatever their case)."""
        lowered = {name.lower() for name in headers}
        kept = {name: value for name, value in self.headers.items() if name.lower() not in lowered}
        return replace(self, headers={**kept, **headers})

    def unsendable_headers(self) -> list[str]:
        """Names of headers whose value holds a line break or another control character.

        ``http.client`` would refuse them with a ``ValueError`` quoting the value, which may be a
        credential; the client refuses first, naming only the header.
        """
        return [name for name, value in self.headers.items() if control_character_problem(value)]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)


class Headers(Mapping[str, str]):
    """Response headers, looked up whatever their case (both clients' own types are replaced by this)."""

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items = {name.lower(): value for name, value in (items or {}).items()}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class Response:
    """A vendor's answer, whichever client received it."""

    status: int
    headers: Headers = field(repr=False)
    body: bytes = field(repr=False)
    reason: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def build_request(call: Call, base_url: str, default_headers: Mapping[str, str]) -> Request:
    """Return the wire form of ``call``: URL joined to ``base_url`` with the query, headers, body.

    :raises IoTFleetValidationError: when a segment of the URL's path is a dot segment, plain or
        percent-encoded (see :func:`~airflow_provider_iotfleet.validation.dot_segment_problem`):
        normalised away on the way, it would send the credentials to another path. Nothing is sent.
    """
    if call.path.startswith(("https://", "http://")):
        url = call.path
    else:
        url = f"{base_url.rstrip('/')}/{call.path.lstrip('/')}"
    _refuse_dot_segments(call.method, url)
    if call.params:
        query = urlencode({key: str(value) for key, value in call.params.items()})
        url = f"{url}{'&' if '?' in url else '?'}{query}"
    headers = dict(default_headers)
    body = b""
    if call.json is not None:
        body = jsonlib.dumps(call.json, separators=(",", ":"), allow_nan=False).encode()
        headers["Content-Type"] = "application/json"
    elif call.form is not None:
        body = urlencode(call.form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = Request(method=call.method.upper(), url=url, headers=headers, body=body, call=call)
    return request.with_headers(call.headers) if call.headers else request


def _refuse_dot_segments(method: str, url: str) -> None:
    """Raise if a segment of ``url``'s path is a dot segment; the last guard, whatever built the path."""
    path = urlsplit(url).path
    problems = [
        f"path segment {segment!r} {problem}"
        for segment in path.split("/")
        if (problem := dot_segment_problem(segment))
    ]
    if problems:
        raise IoTFleetValidationError(f"refusing to send {method.upper()} {path}", problems)
