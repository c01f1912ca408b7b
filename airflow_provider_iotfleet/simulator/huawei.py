"""Huawei Cloud ROMA Connect LINK (and IAM tokens) as the simulator serves them, under ``/huawei``.

Requests are authenticated like the API gateway does: an ``SDK-HMAC-SHA256`` signature recomputed
from what arrived on the wire (signed headers, path, query, body) and a date within 15 minutes, or an
IAM token from ``/huawei/v3/auth/tokens``.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_iotfleet.hooks.huawei import SDK_DATE_FORMAT, SIGNING_ALGORITHM, request_signature
from airflow_provider_iotfleet.simulator.core import SimulatorState
from airflow_provider_iotfleet.simulator.fleet import OFFLINE, ONLINE
from airflow_provider_iotfleet.simulator.web import MALFORMED, answer, read_json

MAX_CLOCK_SKEW = timedelta(minutes=15)
IAM_TOKEN_LIFETIME = 24 * 3600
MAX_LIMIT = 999


def router(sim: SimulatorState) -> APIRouter:
    api = APIRouter(prefix="/huawei")
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
            access, signed, signature = (
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
        headers = {name: request.headers[name] for name in signed}
        expected, _ = request_signature(
            credentials.huawei_secret_key, request.method, str(request.url), headers, await request.body()
        )
        if not hmac.compare_digest(expected, signature):
            return "verify aksk signature fail"
        return None

    def summary(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        return {"id": device["roma_id"], "device_name": device["name"]}

    def describe(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        return {
            "device_id": device["roma_id"],
            "device_name": device["name"],
            "node_id": device["imei"],
            "product_name": device["model"],
            "online_status": device["online_status"],
            "status": 0,
            "client_id": f"{device['roma_id']}_{device['imei']}",
            "created_datetime": device["date_added"].isoformat(),
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
            online_status = int(query["online_status"]) if "online_status" in query else None
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
            matching = sim.fleet.indices_where("online_status", online_status)
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
