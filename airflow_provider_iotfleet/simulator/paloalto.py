"""Palo Alto Networks IoT Security as the simulator serves it, at the root and under ``/paloalto``.

Both ways in: the tenant portal's v4.0 API (``/pub/v4.0``, key headers) and Strata Cloud Manager
(``/oauth2/access_token`` and ``/iot/pub/v1``, OAuth2 bearer tokens).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_iotfleet.simulator.core import SimulatorState
from airflow_provider_iotfleet.simulator.web import (
    MALFORMED,
    answer,
    basic_credentials,
    bearer_token,
    read_form,
    read_json,
)

TOKEN_LIFETIME = 899
FORBIDDEN = {
    "code": 403,
    "msg": "Forbidden access. Either the provided API key is invalid or it does not have the required RBAC permissions to run this API.",
}
BAD_REQUEST = {
    "code": 400,
    "msg": "Bad Request. This occurs when an HTTP request contains an invalid query string.",
}
LOOKUPS = (
    ("imei", "by_imei"),
    ("iccid", "by_iccid"),
    ("imsi", "by_imsi"),
    ("msisdn", "by_msisdn"),
    ("ipAddress", "by_ipv4"),
)


def router(sim: SimulatorState) -> APIRouter:
    """The IoT Security routes at the vendor's paths (``/pub/v4.0/...`` and the SCM ones), over ``sim``."""
    api = APIRouter()
    credentials = sim.config.credentials

    def key_refused(request: Request) -> JSONResponse | None:
        given = (request.headers.get("x-key-id"), request.headers.get("x-access-key"))
        if given != (credentials.paloalto_key_id, credentials.paloalto_access_key):
            return answer(403, FORBIDDEN)
        if request.query_params.get("customerid") != credentials.paloalto_customer_id:
            return answer(400, BAD_REQUEST)
        return None

    def bearer_refused(request: Request) -> JSONResponse | None:
        if not sim.token_valid("paloalto", bearer_token(request)):
            return answer(
                401, {"code": 401, "msg": "Unauthorized. The access token is missing, invalid or expired."}
            )
        return None

    async def bulk_update(request: Request) -> JSONResponse:
        if request.query_params.get("updateSource") != "cellular":
            return answer(400, BAD_REQUEST)
        body = await read_json(request)
        devicelist = body.get("devicelist") if isinstance(body, dict) else None
        if body is MALFORMED or not isinstance(devicelist, list):
            return answer(
                400, {"code": "400", "msg": "Bad Request. The request body is not a valid devicelist."}
            )
        updated = 0
        for entry in devicelist:
            index = _find(entry) if isinstance(entry, dict) else None
            if index is not None:
                sim.fleet.update(index, {"paloalto": {k: v for k, v in entry.items() if isinstance(v, str)}})
                updated += 1
        sim.count("paloalto.bulk_updates")
        # The vendor sends code as a number or a string; the simulator alternates.
        code: Any = 1 if sim.counters["paloalto.bulk_updates"] % 2 else "1"
        return answer(
            200,
            {
                "api": "device/bulkUpdate",
                "ver": "v4.0",
                "code": code,
                "message": "OK",
                "updatedDeviceNum": updated,
            },
        )

    def _find(entry: dict[str, Any]) -> int | None:
        for key, lookup in LOOKUPS:
            if key in entry:
                index = getattr(sim.fleet, lookup)(entry[key])
                if index is not None:
                    return int(index)
        return None

    @api.put("/pub/v4.0/device/bulkUpdate")
    async def bulk_update_v4(request: Request) -> JSONResponse:
        if refused := key_refused(request):
            return refused
        return await bulk_update(request)

    @api.put("/iot/pub/v1/device/bulkUpdate")
    async def bulk_update_scm(request: Request) -> JSONResponse:
        if refused := bearer_refused(request):
            return refused
        return await bulk_update(request)

    @api.get("/pub/v4.0/device/list")
    async def device_list(request: Request) -> JSONResponse:
        if refused := key_refused(request):
            return refused
        try:
            offset = int(request.query_params.get("offset", 0))
            page_length = int(request.query_params.get("pagelength", 1000))
        except ValueError:
            return answer(400, BAD_REQUEST)
        if offset < 0 or not 1 <= page_length <= 1000:
            return answer(400, BAD_REQUEST)
        indices = range(offset, min(offset + page_length, sim.fleet.size))
        return answer(200, {"total": sim.fleet.size, "devices": [_describe(i) for i in indices]})

    @api.get("/pub/v4.0/device")
    async def device(request: Request) -> JSONResponse:
        if refused := key_refused(request):
            return refused
        index = sim.fleet.by_ipv4(request.query_params.get("deviceid", ""))
        if index is None:
            return answer(404, {"code": 404, "msg": "Device not found."})
        return answer(200, {"devices": [_describe(index)]})

    def _describe(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        return {
            "deviceid": device["ip_address"],
            "ip_address": device["ip_address"],
            "hostname": device["name"],
            "profile": device["model"],
            **device["paloalto"],
        }

    @api.post("/oauth2/access_token")
    async def access_token(request: Request) -> JSONResponse:
        form = await read_form(request)
        if basic_credentials(request) != (credentials.paloalto_client_id, credentials.paloalto_client_secret):
            return answer(
                401, {"error": "invalid_client", "error_description": "Client authentication failed"}
            )
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("scope") != f"tsg_id:{credentials.paloalto_tsg_id}"
        ):
            return answer(
                400, {"error": "invalid_scope", "error_description": "The requested scope is invalid"}
            )
        sim.count("paloalto.tokens")
        token = sim.issue_token("paloalto", TOKEN_LIFETIME)
        return answer(
            200,
            {
                "access_token": token,
                "scope": form.get("scope"),
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
            },
        )

    return api
