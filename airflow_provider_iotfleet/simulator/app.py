"""The simulator's FastAPI app: the four vendor routers behind latency, rate-limit and fault knobs."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from airflow_provider_iotfleet.simulator import cisco, huawei, paloalto, verizon
from airflow_provider_iotfleet.simulator.core import VENDORS, SimulatorState, device_json

#: Login and token endpoints: never faulted nor throttled, so knobs never push an account towards
#: lockout (the hooks never repeat a ThingSpace login).
AUTH_PATHS = ("/paloalto/oauth2/", "/huawei/v3/auth/", "/verizon/api/ts/", "/verizon/api/m2m/")


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


class KnobsMiddleware:
    """Applies latency, per-vendor rate limits and injected faults before a vendor router answers."""

    def __init__(self, app: ASGIApp, state: SimulatorState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        vendor = path.strip("/").split("/", 1)[0]
        if scope["type"] != "http" or vendor not in VENDORS:
            await self.app(scope, receive, send)
            return
        state = self.state
        state.count(f"{vendor}.requests")
        if state.config.latency:
            await asyncio.sleep(state.config.latency)
        is_auth = path.startswith(AUTH_PATHS)
        if not is_auth and (wait := state.over_rate_limit(vendor)) is not None:
            state.count(f"{vendor}.throttled")
            retry_after = str(max(1, math.ceil(wait)))
            await _send_json(send, 429, _throttled_body(vendor, state), {"retry-after": retry_after})
            return
        fault = None if is_auth else state.roll_fault()
        if fault is not None:
            state.count(f"faults.{fault}")
        if fault == "server_error":
            await _send_json(send, 500, _server_error_body(vendor, state))
        elif fault == "rate_limited":
            await _send_json(send, 429, _throttled_body(vendor, state), {"retry-after": "1"})
        elif fault == "malformed_json":
            await _send_raw(send, 200, b'{"truncated": [1, 2', {"content-type": "application/json"})
        elif fault == "dropped_connection":
            # Promise more body than is sent: the server closes the connection mid-answer.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"512")]}
            )
            await send({"type": "http.response.body", "body": b'{"partial": ', "more_body": False})
        else:
            if fault == "token_expiry":
                _expire_presented_tokens(scope, state)
            await self.app(scope, receive, send)


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


def create_app(state: SimulatorState) -> FastAPI:
    """Build the simulator app over ``state`` (one app per state; the routers close over it)."""
    app = FastAPI(
        title="airflow-provider-iotfleet vendor simulator",
        docs_url="/_sim/docs",
        openapi_url="/_sim/openapi.json",
    )
    for vendor in (paloalto, cisco, huawei, verizon):
        app.include_router(vendor.router(state))

    @app.get("/_sim/state")
    async def sim_state() -> JSONResponse:
        """Changed devices, scheduled edits and counters (read-only)."""
        return JSONResponse(state.snapshot())

    @app.get("/_sim/devices/{imei}")
    async def sim_device(imei: str) -> JSONResponse:
        """One device by IMEI, as every vendor currently sees it."""
        index = state.fleet.by_imei(imei)
        if index is None:
            return JSONResponse({"detail": "no such device"}, status_code=404)
        return JSONResponse(device_json(state.fleet.device(index)))

    @app.post("/_sim/clock/advance")
    async def sim_advance(request: Request) -> JSONResponse:
        """Advance the simulator clock by ``?seconds=N`` (scheduled edits come due, sessions age)."""
        state.advance(float(request.query_params.get("seconds", "0")))
        return JSONResponse({"clock": state.now().isoformat()})

    app.add_middleware(KnobsMiddleware, state=state)
    return app
