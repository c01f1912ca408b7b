"""The simulator's FastAPI app: the four vendor routers behind its knobs (latency, rate limits, faults).

Each vendor's API is served twice: under the simulator's prefix (``/paloalto``, ``/cisco``,
``/huawei``, ``/verizon``, what the connections from :meth:`Simulator.connections` use) and at the
vendor's real paths at the root (``/pub/v4.0/...``, ``/rws/api/v1/...``, ``/v2/{project_id}/link/...``
and ``/v3/auth/tokens``, ``/api/ts/...``, ``/api/m2m/...``, ``/api/fota/v3/...``), for official SDKs
that keep only the scheme and host of their endpoint. The knobs' middleware applies to both, and
also keeps the request log. ``/_sim/...`` is the simulator's own API; there is no interactive docs
page (FastAPI's loads its assets from a CDN), only ``/_sim/openapi.json``.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from airflow_provider_iotfleet.simulator import cisco, huawei, paloalto, verizon
from airflow_provider_iotfleet.simulator.core import VENDORS, SimulatorState, device_json
from airflow_provider_iotfleet.simulator.fleet import (
    FIRMWARE_VERSIONS,
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    SIM_STATUSES,
)
from airflow_provider_iotfleet.simulator.requestlog import (
    body_devices,
    body_kind,
    is_auth,
    path_devices,
    vendor_of,
)

#: Online status names for ``/_sim/devices`` (the ROMA API has the codes).
ONLINE_NAMES = {ONLINE: "online", OFFLINE: "offline", NEVER_CONNECTED: "never_connected"}
DISCOVERY_LIMIT = 1000


def _throttled_body(vendor: str, state: SimulatorState) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "paloalto": {
            "code": 429,
            "msg": "Too many requests. The number of requests for device details for a single device exceeded the rate limit of 180 queries per minute per tenant.",
        },
        # Control Center's throttling error code is not published: the simulator sends none.
        "cisco": {"errorMessage": "Too many requests. Rate limit exceeded."},
        "huawei": {
            "error_code": "APIGW.0308",
            "error_msg": "The throttling threshold has been reached: policy user over ratelimit",
            "request_id": state.request_id(),
        },
        "verizon": {
            "errorCode": "FOTA.REQUEST_FAILED.RateLimitExceeded",
            "errorMessage": "Too many requests.",
        },
    }
    return bodies[vendor]


def _server_error_body(vendor: str, state: SimulatorState) -> dict[str, Any]:
    bodies: dict[str, dict[str, Any]] = {
        "paloalto": {
            "code": 500,
            "msg": "Internal server error. A unified status for API communication type errors.",
        },
        "cisco": {"errorCode": "30000001", "errorMessage": "Unknown server error."},
        "huawei": {
            "error_code": "ROMA.00000001",
            "error_msg": "Internal server error.",
            "request_id": state.request_id(),
        },
        "verizon": {
            "errorCode": "FOTA.REQUEST_FAILED.InternalError",
            "errorMessage": "Internal server error.",
        },
    }
    return bodies[vendor]


#: The faults answered in the vendor's place (the vendor router never runs), with their status.
IN_PLACE_FAULTS = {
    "server_error": 500,
    "rate_limited": 429,
    "malformed_json": 200,
    "dropped_connection": 200,
    "gzip_garbage": 200,
    "html_error_page": 502,
    "huge_body": 200,
    "deeply_nested": 200,
}
#: A gzip header, then 16 KiB that is no deflate stream (0xff opens a block of the reserved type).
GZIP_GARBAGE = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * (16 * 1024)
HTML_ERROR_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
NESTING_DEPTH = 100_000
DEEPLY_NESTED = b"[" * NESTING_DEPTH + b"]" * NESTING_DEPTH
#: The huge body is streamed in chunks of this (64 KiB of ``0,``), the only buffer it needs.
HUGE_BODY_CHUNK = b"0," * 32768


class KnobsMiddleware:
    """Applies latency, per-vendor rate limits and injected faults before a vendor router answers.

    It also writes the request log: every API request is recorded as it arrives, and its record
    completed (status, fault, applied) just before the answer starts, so a client that has its
    answer finds the record complete.
    """

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        vendor, vendor_path = vendor_of(scope.get("path", ""))
        if scope["type"] != "http" or vendor is None:
            await self.app(scope, receive, send)
            return
        state = self.state
        state.count(f"{vendor}.requests")
        record, receive = await _log_request(scope, receive, vendor, vendor_path, state)
        if state.config.latency:
            await asyncio.sleep(state.config.latency)
        # Login and token endpoints are never faulted nor throttled, so knobs never push an account
        # towards lockout (the hooks never repeat a ThingSpace login).
        login = is_auth(vendor, vendor_path)
        if not login and (wait := state.over_rate_limit(vendor)) is not None:
            state.count(f"{vendor}.throttled")
            state.log_answer(record, 429, "throttled", served=False)
            retry_after = state.retry_after(max(1, math.ceil(wait)))
            await _send_json(send, 429, _throttled_body(vendor, state), {"retry-after": retry_after})
            return
        fault = None if login else state.roll_fault(vendor, write=record["write"])
        if fault is not None:
            state.count(f"faults.{fault}")
        if fault in IN_PLACE_FAULTS:
            state.log_answer(record, IN_PLACE_FAULTS[fault], fault, served=False)
            await _answer_fault(fault, vendor, state, send)
        elif fault in ("applied_then_dropped", "applied_then_delayed"):
            start, body = await _served(self.app, scope, receive)
            state.log_answer(record, start["status"], fault, served=True)
            if fault == "applied_then_dropped":
                await _send_truncated(send, start, body)
            else:
                await _hold(state, receive)
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
        else:
            if fault == "token_expiry":
                _expire_presented_tokens(scope, state)

            async def logged_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    state.log_answer(record, message["status"], fault, served=True)
                await send(message)

            await self.app(scope, receive, logged_send)


async def _log_request(
    scope: Scope, receive: Receive, vendor: str, vendor_path: str, state: SimulatorState
) -> tuple[dict[str, Any], Receive]:
    """Record the request; returns the record and the ``receive`` the app must read the body from.

    Only the few requests that name devices in their body (bulk updates, force-offline, ThingSpace
    device lists) are read here, and their body is then replayed to the app.
    """
    method = scope.get("method", "GET")
    path = scope.get("path", "")
    devices, write = path_devices(method, vendor_path)
    if (kind := body_kind(method, vendor_path)) is not None:
        body = await _read_body(receive)
        receive = _replay(body, receive)
        devices, write = body_devices(kind, body)
    client = scope.get("client")
    record = state.log_request(
        vendor,
        method,
        path,
        scope.get("query_string", b"").decode("latin-1"),
        f"{client[0]}:{client[1]}" if client else None,
        devices,
        write,
    )
    return record, receive


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer_fault(fault: str, vendor: str, state: SimulatorState, send: Send) -> None:
    """Answer in the vendor's place with one of :data:`IN_PLACE_FAULTS`."""
    if fault == "server_error":
        await _send_json(send, 500, _server_error_body(vendor, state))
    elif fault == "rate_limited":
        await _send_json(send, 429, _throttled_body(vendor, state), {"retry-after": state.retry_after(1)})
    elif fault == "malformed_json":
        await _send_raw(send, 200, b'{"truncated": [1, 2', {"content-type": "application/json"})
    elif fault == "dropped_connection":
        # Promise more body than is sent: the server closes the connection mid-answer.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"512")]})
        await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": False})
    elif fault == "gzip_garbage":
        await _send_raw(
            send, 200, GZIP_GARBAGE, {"content-type": "application/json", "content-encoding": "gzip"}
        )
    elif fault == "html_error_page":
        await _send_raw(send, 502, HTML_ERROR_PAGE, {"content-type": "text/html"})
    elif fault == "huge_body":
        await _send_huge_body(send, state.config.huge_body_bytes)
    elif fault == "deeply_nested":
        await _send_raw(send, 200, DEEPLY_NESTED, {"content-type": "application/json"})


async def _send_huge_body(send: Send, size: int) -> None:
    """Stream ``size`` bytes of a valid JSON list (``[0,0,...,0]``), one chunk at a time."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(size).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if size < 3:
        await send({"type": "http.response.body", "body": b"[]", "more_body": False})
        return
    await send({"type": "http.response.body", "body": b"[", "more_body": True})
    # Between "[" and the closing "0]": "0," pairs, and a space if the count is odd.
    full_chunks, rest = divmod(size - 3, len(HUGE_BODY_CHUNK))
    for _ in range(full_chunks):
        # The server waits for the client to drain its buffer: memory stays at a chunk or two.
        await send({"type": "http.response.body", "body": HUGE_BODY_CHUNK, "more_body": True})
    tail = HUGE_BODY_CHUNK[: rest - rest % 2] + b" " * (rest % 2) + b"0]"
    await send({"type": "http.response.body", "body": tail, "more_body": False})


async def _served(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    """Run the vendor router (its change is applied) and return its answer instead of sending it."""
    start: Message = {"type": "http.response.start", "status": 500, "headers": []}
    chunks: list[bytes] = []

    async def capture(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, capture)
    return start, b"".join(chunks)


async def _send_truncated(send: Send, start: Message, body: bytes) -> None:
    """Send the answer's status and headers and half its body, then let the connection drop."""
    promised = len(body) or 512
    headers = [(name, value) for name, value in start.get("headers", []) if name.lower() != b"content-length"]
    headers.append((b"content-length", str(promised).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
    # Returning with the answer unfinished makes the server close the connection.


async def _hold(state: SimulatorState, receive: Receive) -> None:
    """Wait ``slow_answer_seconds``, without blocking other requests.

    The wait ends early if the client hangs up (nobody is left to answer) or the server stops.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + state.config.slow_answer_seconds
    hangup = asyncio.ensure_future(_disconnected(receive))
    try:
        while (remaining := deadline - loop.time()) > 0 and not state.stopping.is_set():
            done, _ = await asyncio.wait({hangup}, timeout=min(remaining, 0.1))
            if done:
                return
    finally:
        hangup.cancel()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _expire_presented_tokens(scope: Scope, state: SimulatorState) -> None:
    headers = {name.decode().lower(): value.decode() for name, value in scope.get("headers", [])}
    scheme, _, bearer = headers.get("authorization", "").partition(" ")
    if headers.get("vz-m2m-token"):
        state.expire_session(headers["vz-m2m-token"])
    elif scheme.lower() == "bearer":
        state.expire_token("paloalto", bearer)
    if headers.get("x-auth-token"):
        state.expire_token("huawei", headers["x-auth-token"])


async def _send_raw(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw_headers = [(k.encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def _send_json(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    await _send_raw(
        send, status, json.dumps(body).encode(), {"content-type": "application/json", **(headers or {})}
    )


def _discovery_filter(vendor: str | None, status: str | None) -> tuple[str, Any] | str | None:
    """``(device key, value)`` that ``/_sim/devices?status=`` asks for, ``None``, or why it is refused."""
    if status is None or vendor is None:
        return None
    if vendor == "cisco":
        if status.upper() not in SIM_STATUSES:
            return f"a SIM status is one of {', '.join(SIM_STATUSES)}"
        return "status", status.upper()
    if vendor == "huawei":
        codes = {name: code for code, name in ONLINE_NAMES.items()}
        if status.isdigit() and int(status) in ONLINE_NAMES:
            return "online_status", int(status)
        if status.lower() in codes:
            return "online_status", codes[status.lower()]
        return "an online status is online, offline or never_connected (or 1, 2, 0)"
    if status not in FIRMWARE_VERSIONS:
        return f"a firmware version is one of {', '.join(FIRMWARE_VERSIONS)}"
    return "firmware", status


def _discover(
    state: SimulatorState, vendor: str | None, wanted: tuple[str, Any] | None, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """Up to ``limit`` devices per vendor (those matching ``wanted``), in index order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in (vendor,) if vendor else VENDORS:
        devices: list[dict[str, Any]] = []
        # Device by device (each read takes the lock), so a long scan never holds other requests up.
        for index in range(state.fleet.size):
            if len(devices) >= limit:
                break
            device = state.fleet.device(index)
            if wanted is None or device[wanted[0]] == wanted[1]:
                devices.append(_discovered(name, device))
        found[name] = devices
    return found


def _discovered(vendor: str, device: dict[str, Any]) -> dict[str, Any]:
    if vendor == "cisco":
        return {"iccid": device["iccid"], "status": device["status"]}
    if vendor == "huawei":
        return {
            "device_id": ROMA_ID_BASE + device["index"],
            "online_status": device["online_status"],
            "online_status_name": ONLINE_NAMES[device["online_status"]],
        }
    if vendor == "verizon":
        return {key: device[key] for key in ("imei", "firmware", "make", "model", "protocol")}
    return {"imei": device["imei"], "ip_address": device["ip_address"]}


def create_app(state: SimulatorState) -> FastAPI:
    """Build the simulator app over ``state`` (one app per state; the routers close over it)."""
    # No /docs or /redoc: their pages load Swagger UI and ReDoc from a CDN, which may be unreachable.
    app = FastAPI(
        title="airflow-provider-iotfleet vendor simulator",
        docs_url=None,
        redoc_url=None,
        openapi_url="/_sim/openapi.json",
    )
    for name, vendor in (("paloalto", paloalto), ("cisco", cisco), ("huawei", huawei), ("verizon", verizon)):
        routes = vendor.router(state)
        app.include_router(routes, prefix=f"/{name}")
        # The same routes at the vendor's real paths; the schema lists them once, under the prefix.
        app.include_router(routes, include_in_schema=False)

    @app.get("/_sim/state")
    async def sim_state() -> JSONResponse:
        """Changed devices, scheduled edits and counters (read-only)."""
        return JSONResponse(state.snapshot())

    @app.get("/_sim/devices")
    async def sim_devices(request: Request) -> JSONResponse:
        """Device identifiers to try, per vendor, with the state each vendor shows.

        ``?vendor=`` one vendor only; ``?status=`` only devices in that state (needs ``vendor``:
        a SIM status such as ``ACTIVATED`` for ``cisco``, ``online``/``offline``/``never_connected``
        or ``1``/``2``/``0`` for ``huawei``, a firmware version for ``verizon``); ``?limit=`` how many
        per vendor (10 by default, at most 1000). Answers ``{vendor: [device, ...]}``, devices in
        index order: ``{"iccid", "status"}`` (cisco), ``{"device_id", "online_status",
        "online_status_name"}`` (huawei), ``{"imei", "firmware", "make", "model", "protocol"}``
        (verizon), ``{"imei", "ip_address"}`` (paloalto, which has no state to filter on).
        """
        query = request.query_params
        vendor = query.get("vendor") or None
        status = query.get("status") or None
        limit_text = query.get("limit", "10")
        if vendor is not None and vendor not in VENDORS:
            return JSONResponse({"detail": f"vendor must be one of {', '.join(VENDORS)}"}, status_code=400)
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= DISCOVERY_LIMIT:
            return JSONResponse(
                {"detail": f"limit must be a whole number within 1..{DISCOVERY_LIMIT}"}, status_code=400
            )
        if status is not None and vendor in (None, "paloalto"):
            return JSONResponse(
                {"detail": "status needs vendor=cisco, huawei or verizon (each has its own states)"},
                status_code=400,
            )
        wanted = _discovery_filter(vendor, status)
        if isinstance(wanted, str):
            return JSONResponse({"detail": wanted}, status_code=400)
        state.campaigns.progress()
        return JSONResponse(_discover(state, vendor, wanted, int(limit_text)))

    @app.get("/_sim/devices/{imei}")
    async def sim_device(imei: str) -> JSONResponse:
        """One device by IMEI, as every vendor currently sees it."""
        index = state.fleet.by_imei(imei)
        if index is None:
            return JSONResponse({"detail": "no such device"}, status_code=404)
        state.campaigns.progress()
        return JSONResponse(device_json(state.fleet.device(index)))

    @app.post("/_sim/clock/advance")
    async def sim_advance(request: Request) -> JSONResponse:
        """Advance the simulator clock by ``?seconds=N`` (scheduled edits come due, sessions age)."""
        state.advance(float(request.query_params.get("seconds", "0")))
        return JSONResponse({"clock": state.now().isoformat()})

    @app.post("/_sim/revoke")
    async def sim_revoke(request: Request) -> JSONResponse:
        """Revoke every issued token (``?what=token``) or ThingSpace session (``?what=session``) of ``?vendor=``."""
        vendor = request.query_params.get("vendor", "")
        what = request.query_params.get("what", "token")
        try:
            revoked = state.revoke(vendor, what)
        except ValueError as error:
            return JSONResponse({"detail": str(error)}, status_code=400)
        return JSONResponse({"vendor": vendor, "what": what, "revoked": revoked})

    @app.get("/_sim/requests")
    async def sim_requests(request: Request) -> JSONResponse:
        """The request log, oldest first: ``?vendor=`` only that vendor's, ``?limit=N`` only the latest N."""
        vendor = request.query_params.get("vendor") or None
        limit_text = request.query_params.get("limit") or None
        if vendor is not None and vendor not in VENDORS:
            return JSONResponse({"detail": f"vendor must be one of {', '.join(VENDORS)}"}, status_code=400)
        if limit_text is not None and not limit_text.isdigit():
            return JSONResponse({"detail": "limit must be a whole number"}, status_code=400)
        records = state.request_log(vendor, int(limit_text) if limit_text is not None else None)
        return JSONResponse(
            {
                "total": state.requests_seen,
                "requests": [{**record, "time": record["time"].isoformat()} for record in records],
            }
        )

    @app.get("/_sim/device-writes")
    async def sim_device_writes(request: Request) -> JSONResponse:
        """Writes per device id: ``?vendor=`` only that vendor's, ``?applied_only=true`` only applied ones."""
        vendor = request.query_params.get("vendor") or None
        if vendor is not None and vendor not in VENDORS:
            return JSONResponse({"detail": f"vendor must be one of {', '.join(VENDORS)}"}, status_code=400)
        applied_only = request.query_params.get("applied_only", "").lower() in ("1", "true", "yes")
        return JSONResponse({"writes": dict(state.per_device_writes(vendor, applied_only=applied_only))})

    app.add_middleware(KnobsMiddleware, state=state)
    return app
