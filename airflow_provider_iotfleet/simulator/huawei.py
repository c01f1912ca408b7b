"""Huawei Cloud ROMA Connect LINK (and IAM tokens) as the simulator serves them.

The router's paths are the vendor's own (``/v2/{project_id}/link/...``, ``/v3/auth/tokens``); the app
serves them both under ``/huawei`` and at its root, where Huawei's SDK (which keeps only the scheme
and host of its endpoint) finds them.

Requests are authenticated like the API gateway does: an ``SDK-HMAC-SHA256`` signature recomputed
from what arrived on the wire (signed headers, path, query, body) with the simulator's own
implementation of Huawei's published algorithm, and a date within 15 minutes; or an IAM token from
``/v3/auth/tokens``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_iotfleet.simulator.core import SimulatorState
from airflow_provider_iotfleet.simulator.fleet import NEVER_CONNECTED, OFFLINE, ONLINE
from airflow_provider_iotfleet.simulator.web import MALFORMED, answer, read_json

SIGNING_ALGORITHM = "SDK-HMAC-SHA256"
SDK_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_CLOCK_SKEW = timedelta(minutes=15)
IAM_TOKEN_LIFETIME = 24 * 3600
MAX_LIMIT = 999
ONLINE_STATUSES = (NEVER_CONNECTED, ONLINE, OFFLINE)


# --- SDK-HMAC-SHA256, as Huawei publishes it -----------------------------------------------------


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_request(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes) -> str:
    """Huawei's canonical request, from the request as it arrived.

    Its lines are the method; the URI with each path segment percent-encoded (``~`` kept) and a
    trailing ``/``; the query's pairs encoded the same way, sorted by key then value, joined with
    ``&``; ``name:value`` lines (names lower-cased, values stripped) for the headers given, which are
    the signed ones, in sorted order, each ending in a newline; the signed header names joined with
    ``;``; and the hex SHA-256 of the body.

    :param path: the request path (percent-encoded or not: it is decoded, then encoded again).
    :param query: the raw query string.
    :param headers: the signed headers' values, by name.
    """
    uri = "/".join(_encode(unquote(segment)) for segment in path.split("/"))
    if not uri.endswith("/"):
        uri += "/"
    pairs = sorted((_encode(k), _encode(v)) for k, v in parse_qsl(query, keep_blank_values=True))
    values = {name.lower(): value.strip() for name, value in headers.items()}
    signed = sorted(values)
    lines = [
        method.upper(),
        uri,
        "&".join(f"{key}={value}" for key, value in pairs),
        "".join(f"{name}:{values[name]}\n" for name in signed),
        ";".join(signed),
        hashlib.sha256(body).hexdigest(),
    ]
    return "\n".join(lines)


def string_to_sign(canonical: str, sdk_date: str) -> str:
    """Three lines: ``SDK-HMAC-SHA256``, ``X-Sdk-Date``, the hex SHA-256 of the canonical request."""
    return f"{SIGNING_ALGORITHM}\n{sdk_date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"


def signature(secret_key: str, text: str) -> str:
    """The hex HMAC-SHA256 of the string to sign, keyed with the SK."""
    return hmac.new(secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()


def online_status_filter(text: str | None) -> set[int] | None:
    """The ``online_status`` query value as a set of codes: one code, or several comma-separated.

    ``None`` when absent; :class:`ValueError` for anything but ``0`` (never connected), ``1``
    (online), ``2`` (offline), which is what the ROMA API takes.
    """
    if text is None:
        return None
    codes = {int(part) for part in text.split(",")}
    if not codes <= set(ONLINE_STATUSES):
        raise ValueError(f"online_status codes are 0, 1, 2: {text!r}")
    return codes


def router(sim: SimulatorState) -> APIRouter:
    """The ROMA Connect and IAM routes at the vendor's paths (``/v2/...``, ``/v3/auth/tokens``)."""
    api = APIRouter()
    credentials = sim.config.credentials

    def error(status: int, code: str, message: str) -> JSONResponse:
        # The gateway and the service disagree on the request id's name; both appear.
        key = "request_id" if sim.counters["huawei.errors"] % 2 == 0 else "requestId"
        sim.count("huawei.errors")
        return answer(status, {"error_code": code, "error_msg": message, key: sim.request_id()})

    def unauthenticated(detail: str) -> JSONResponse:
        return error(401, "APIGW.0301", f"Incorrect IAM authentication information: {detail}")

    async def refuse(request: Request, project_id: str, instance_id: str) -> JSONResponse | None:
        token = request.headers.get("x-auth-token")
        if token is not None:
            if not sim.token_valid("huawei", token):
                return unauthenticated("token expired or invalid")
        elif (problem := await _signature_problem(request)) is not None:
            return unauthenticated(problem)
        if project_id != credentials.huawei_project_id:
            return error(
                404,
                "ROMA.00110006",
                f"The resource does not exist. Check whether the resource ID {project_id} is correct.",
            )
        if instance_id != credentials.huawei_instance_id:
            return error(
                500,
                "ROMA.00110002",
                f"The instance does not exist. project_id: {project_id}, instance_id: {instance_id}",
            )
        return None

    async def _signature_problem(request: Request) -> str | None:
        scheme, _, rest = request.headers.get("authorization", "").partition(" ")
        if scheme != SIGNING_ALGORITHM:
            return "no SDK-HMAC-SHA256 Authorization header"
        try:
            fields = dict(part.strip().split("=", 1) for part in rest.split(","))
            access, signed, given = (
                fields["Access"],
                fields["SignedHeaders"].split(";"),
                fields["Signature"],
            )
            date = datetime.strptime(request.headers["x-sdk-date"], SDK_DATE_FORMAT).replace(tzinfo=UTC)
        except (KeyError, ValueError):
            return "malformed Authorization or X-Sdk-Date header"
        if access != credentials.huawei_access_key:
            return "verify aksk signature fail"
        # The signing date is the caller's wall clock: compare it with real time, not with the
        # simulated clock that tests move forward to make scheduled changes come due.
        if abs(datetime.now(UTC) - date) > MAX_CLOCK_SKEW:
            return "x-sdk-date expired"
        if any(name not in request.headers for name in signed) or "x-sdk-date" not in signed:
            return "verify aksk signature fail"
        canonical = canonical_request(
            request.method,
            request.url.path,
            request.url.query,
            {name: request.headers[name] for name in signed},
            await request.body(),
        )
        expected = signature(
            credentials.huawei_secret_key, string_to_sign(canonical, request.headers["x-sdk-date"])
        )
        if not hmac.compare_digest(expected, given):
            return "verify aksk signature fail"
        return None

    def summary(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        return {"id": device["roma_id"], "device_name": device["name"]}

    def describe(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        return {
            "id": device["roma_id"],
            "device_id": device["roma_id"],
            "device_name": device["name"],
            "node_id": device["imei"],
            "product_name": device["model"],
            "online_status": device["online_status"],
            "status": 0,
            "client_id": f"{device['roma_id']}_{device['imei']}",
            # Epoch milliseconds, as the API (and its SDK's int fields) has them.
            "created_datetime": int(device["date_added"].timestamp() * 1000),
            "last_updated_datetime": int(device["date_updated"].timestamp() * 1000),
        }

    @api.post("/v2/{project_id}/link/instances/{instance_id}/devices/force-offline")
    async def force_offline(project_id: str, instance_id: str, request: Request) -> JSONResponse:
        if refused := await refuse(request, project_id, instance_id):
            return refused
        body = await read_json(request)
        ids = body.get("device_ids") if isinstance(body, dict) else None
        if body is MALFORMED or not isinstance(ids, list) or not all(isinstance(i, int | float) for i in ids):
            return error(
                400,
                "SCB.00000000",
                "Parameter is not valid for operation [romalink.link-device.forceDisconnect]. "
                "Parameter is [deviceDisconnectRequest]. Processor is [body].",
            )
        succeeded, failed = [], []
        for raw_id in ids:
            device_id = int(raw_id)  # the vendor rounds down
            index = sim.fleet.by_roma_id(device_id)
            if index is not None and sim.fleet.device(index)["online_status"] == ONLINE:
                sim.fleet.update(index, {"online_status": OFFLINE})
                succeeded.append({**summary(index), "device_id": device_id})
            else:
                failed.append(summary(index) if index is not None else {"id": device_id, "device_name": ""})
        sim.count("huawei.force_offline")
        return answer(200, {"success": succeeded, "failed": failed})

    @api.get("/v2/{project_id}/link/instances/{instance_id}/devices")
    async def list_devices(project_id: str, instance_id: str, request: Request) -> JSONResponse:
        if refused := await refuse(request, project_id, instance_id):
            return refused
        query = request.query_params
        try:
            offset = int(query.get("offset", 0))
            limit = int(query.get("limit", 10))
            online_status = online_status_filter(query.get("online_status"))
        except ValueError:
            return error(
                400, "SCB.00000000", "Parameter is not valid for operation [romalink.link-device.list]."
            )
        if offset < 0 or not 1 <= limit <= MAX_LIMIT:
            return error(
                400, "SCB.00000000", "Parameter is not valid for operation [romalink.link-device.list]."
            )
        if online_status is None:
            total = sim.fleet.size
            indices = list(range(offset, min(offset + limit, total)))
        else:
            matching = sorted(
                index for code in online_status for index in sim.fleet.indices_where("online_status", code)
            )
            total = len(matching)
            indices = matching[offset : offset + limit]
        return answer(200, {"total": total, "size": len(indices), "items": [describe(i) for i in indices]})

    @api.get("/v2/{project_id}/link/instances/{instance_id}/devices/{device_id}")
    async def get_device(project_id: str, instance_id: str, device_id: str, request: Request) -> JSONResponse:
        if refused := await refuse(request, project_id, instance_id):
            return refused
        index = sim.fleet.by_roma_id(device_id)
        if index is None:
            return error(
                404,
                "ROMA.00110006",
                f"The resource does not exist. Check whether the resource ID {device_id} is correct.",
            )
        return answer(200, describe(index))

    @api.post("/v3/auth/tokens")
    async def iam_token(request: Request) -> JSONResponse:
        body = await read_json(request)
        try:
            auth = body["auth"]
            user = auth["identity"]["password"]["user"]
            given = (user["name"], user["password"], user["domain"]["name"], auth["scope"]["project"]["id"])
        except (KeyError, TypeError):
            return answer(
                400,
                {"error": {"code": 400, "message": "The request body is invalid.", "title": "Bad Request"}},
            )
        expected = (
            credentials.huawei_iam_user,
            credentials.huawei_iam_password,
            credentials.huawei_domain,
            credentials.huawei_project_id,
        )
        if given != expected:
            return answer(
                401,
                {
                    "error": {
                        "code": 401,
                        "message": "The username or password is wrong.",
                        "title": "Unauthorized",
                    }
                },
            )
        sim.count("huawei.iam_tokens")
        token = sim.issue_token("huawei", IAM_TOKEN_LIFETIME)
        expires_at = sim.now() + timedelta(seconds=IAM_TOKEN_LIFETIME)
        return answer(
            201,
            {"token": {"expires_at": expires_at.isoformat().replace("+00:00", "Z"), "methods": ["password"]}},
            headers={"X-Subject-Token": token},
        )

    return api
