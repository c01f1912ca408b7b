"""Cisco IoT Control Center REST v1 as the simulator serves it, at ``/rws/api/v{n}`` (and under ``/cisco``).

What an edit may change is written here from Control Center's "Edit Device Details" reference
(``cisco-control-center-edit-device-details.txt`` among the vendor API docs), not taken from the
client package, so that a wrong client rule fails against the simulator instead of passing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_iotfleet.simulator.core import SimulatorState
from airflow_provider_iotfleet.simulator.fleet import BASE_DATE, COMMUNICATION_PLANS, RATE_PLANS, SIM_STATUSES
from airflow_provider_iotfleet.simulator.web import MALFORMED, answer, basic_credentials, read_json

#: operatorCustom1-5, accountCustom1-10 and customerCustom1-5.
CUSTOM_FIELDS = frozenset(
    [f"operatorCustom{n}" for n in range(1, 6)]
    + [f"accountCustom{n}" for n in range(1, 11)]
    + [f"customerCustom{n}" for n in range(1, 6)]
)
#: "These fields use the VARCHAR data type and can be up to 2000 characters in length."
CUSTOM_FIELD_MAX_LENGTH = 2000
#: An edit carries at least one of these; any other parameter is "Invalid request." (10000028).
EDITABLE_FIELDS = CUSTOM_FIELDS | {
    "status",
    "ratePlan",
    "communicationPlan",
    "customer",
    "deviceID",
    "modemID",
    "overageLimitOverride",
    "ipv4Address",
    "ipv6Address",
    "apn",
    "pdpId",
}
OVERAGE_VALUES = frozenset({"DEFAULT", "TEMPORARY_OVERRIDE", "PERMANENT_OVERRIDE"})
#: A future effectiveDate "cannot be more than 180 days in the future".
MAX_SCHEDULE_DAYS = 180
PRE_ACTIVATION = {"INVENTORY", "TEST_READY", "ACTIVATION_READY"}
# Device record keys for the vendor's field names.
FIELD_KEYS = {
    "status": "status",
    "ratePlan": "rate_plan",
    "communicationPlan": "communication_plan",
    "customer": "customer",
    "deviceID": "device_label",
    "modemID": "modem_id",
    "overageLimitOverride": "overage_limit_override",
    "ipv4Address": "fixed_ipv4",
    "ipv6Address": "fixed_ipv6",
}


def _error(code: str, message: str, status: int = 400) -> JSONResponse:
    return answer(status, {"errorCode": code, "errorMessage": message})


def _date(value: datetime | None) -> str | None:
    # Control Center's own format: 2016-06-29 00:21:33.339+0000
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}+0000" if value else None


def router(sim: SimulatorState) -> APIRouter:
    """The Control Center routes at the vendor's paths (``/rws/api/v1/...``), over ``sim``."""
    api = APIRouter(prefix="/rws/api")
    credentials = sim.config.credentials

    def refuse(request: Request, api_version: str) -> JSONResponse | None:
        login = basic_credentials(request)
        if login is None:
            return answer(401, {"errorMessage": "Authentication credentials were not provided."})
        if login != (credentials.cisco_username, credentials.cisco_api_key):
            return _error("10000001", "Invalid credentials.", 401)
        if api_version != "v1":
            return _error("10000024", "Invalid apiVersion.")
        return None

    def describe(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        body = {
            "iccid": device["iccid"],
            "imsi": device["imsi"],
            "msisdn": device["msisdn"],
            "imei": device["imei"],
            "status": device["status"],
            "ratePlan": device["rate_plan"],
            "communicationPlan": device["communication_plan"],
            "customer": device.get("customer"),
            "dateActivated": _date(device["date_added"] + timedelta(days=2)),
            "dateUpdated": _date(device["date_updated"]),
            "dateAdded": _date(device["date_added"]),
            "fixedIPAddress": device.get("fixed_ipv4"),
            "fixedIpv6Address": device.get("fixed_ipv6"),
            "deviceID": device.get("device_label"),
            "modemID": device.get("modem_id"),
            "overageLimitOverride": device.get("overage_limit_override", "DEFAULT"),
        }
        body.update(device["custom"])
        return body

    def check_edit(index: int, body: dict[str, Any]) -> tuple[JSONResponse | None, datetime | None]:
        """Return (error, effective date) for an edit body, checked in the vendor's order."""
        fields = {key: value for key, value in body.items() if key != "effectiveDate"}
        if any(key not in EDITABLE_FIELDS for key in fields):
            return _error("10000028", "Invalid request."), None
        if not fields:
            return _error("10000011", "One or more required fields are missing."), None
        effective = None
        if "effectiveDate" in body:
            try:
                effective = datetime.fromisoformat(str(body["effectiveDate"]).replace("Z", "+00:00"))
            except ValueError:
                return _error("10000012", "Invalid date format."), None
            if effective.tzinfo is None or effective > sim.now() + timedelta(days=MAX_SCHEDULE_DAYS):
                return _error("10000012", "Invalid date format."), None
        status = fields.get("status")
        current = sim.fleet.device(index)["status"]
        if status is not None and status not in SIM_STATUSES:
            return _error("10000005", "Invalid status."), None
        if status == "ACTIVATED" and current == "ACTIVATED":
            return _error("10030000", "Cannot activate a SIM which is already activated."), None
        if status in PRE_ACTIVATION and current not in PRE_ACTIVATION:
            return _error("10000029", "This SIM may not be moved back to a Pre Activation status."), None
        if "ratePlan" in fields and fields["ratePlan"] not in RATE_PLANS:
            return _error("10000013", "Invalid ratePlan.", 404), None
        if "communicationPlan" in fields and fields["communicationPlan"] not in COMMUNICATION_PLANS:
            return _error("10000014", "Invalid communicationPlan."), None
        if "overageLimitOverride" in fields and fields["overageLimitOverride"] not in OVERAGE_VALUES:
            return _error("10000016", "Invalid overageLimitOverride."), None
        if ("ipv4Address" in fields or "ipv6Address" in fields) and not (
            "apn" in fields and "pdpId" in fields
        ):
            return _error("10000011", "One or more required fields are missing."), None
        for key in ("ipv4Address", "ipv6Address"):
            if key in fields and _address_taken(FIELD_KEYS[key], fields[key], index):
                return _error(
                    "10000517",
                    "The ipv4Address/ipv6Address is already in use, please assign a different one.",
                ), None
        if any(len(str(fields[key])) > CUSTOM_FIELD_MAX_LENGTH for key in fields if key in CUSTOM_FIELDS):
            return _error("10000028", "Invalid request."), None
        return None, effective

    def _address_taken(key: str, address: str, index: int) -> bool:
        with sim.lock:
            return any(
                other != index and changes.get(key) == address for other, changes in sim.fleet.changed.items()
            )

    def as_changes(fields: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, Any] = {
            FIELD_KEYS[key]: value for key, value in fields.items() if key in FIELD_KEYS
        }
        custom = {key: value for key, value in fields.items() if key in CUSTOM_FIELDS}
        if custom:
            changes["custom"] = custom
        return changes

    @api.put("/{api_version}/devices/{iccid}")
    async def edit_device(api_version: str, iccid: str, request: Request) -> JSONResponse:
        if refused := refuse(request, api_version):
            return refused
        body = await read_json(request)
        if body is MALFORMED or not isinstance(body, dict):
            return _error(
                "10000023",
                "The JSON in the request is not well formed. Please ensure that commas, colons, braces etc. are formatted properly.",
            )
        index = sim.fleet.by_iccid(iccid)
        if index is None:
            return _error("20000001", "Resource not found - Invalid ICCID.", 404)
        error, effective = check_edit(index, body)
        if error is not None:
            return error
        changes = as_changes({key: value for key, value in body.items() if key != "effectiveDate"})
        sim.count("cisco.edits")
        if effective is not None and effective > sim.now():
            sim.fleet.schedule(effective, index, changes)
            return answer(202, {"iccid": iccid})
        sim.fleet.update(index, changes)
        return answer(200, {"iccid": iccid})

    @api.get("/{api_version}/devices/{iccid}")
    async def get_device(api_version: str, iccid: str, request: Request) -> JSONResponse:
        if refused := refuse(request, api_version):
            return refused
        index = sim.fleet.by_iccid(iccid)
        if index is None:
            return _error("20000001", "Resource not found - Invalid ICCID.", 404)
        return answer(200, describe(index))

    # The matches of the latest searches, so that paging through a large fleet scans it once, not
    # once per page: (since, status) -> (what the fleet's changes looked like, matching indices).
    searches: dict[tuple[datetime, str | None], tuple[int, list[int]]] = {}

    def search_matches(since: datetime, status: str | None) -> list[int]:
        changed = sim.fleet.changed
        signature = sim.fleet.changes_recorded
        cached = searches.get((since, status))
        if cached is not None and cached[0] == signature:
            return cached[1]
        # Untouched devices were all last updated by BASE_DATE: past it, only changed ones can match.
        candidates = range(sim.fleet.size) if since <= BASE_DATE else sorted(changed)
        matches = []
        for index in candidates:
            device = sim.fleet.device(index)
            if device["date_updated"] >= since and (status is None or device["status"] == status):
                matches.append(index)
        if len(searches) >= 16:
            searches.clear()
        searches[(since, status)] = (signature, matches)
        return matches

    @api.get("/{api_version}/devices")
    async def search_devices(api_version: str, request: Request) -> JSONResponse:
        if refused := refuse(request, api_version):
            return refused
        query = request.query_params
        try:
            since = datetime.fromisoformat(query["modifiedSince"].replace(" ", "+").replace("Z", "+00:00"))
            page_size = int(query.get("pageSize", 50))
            page_number = int(query.get("pageNumber", 1))
        except (KeyError, ValueError):
            return _error("10000011", "One or more required fields are missing.")
        if since.tzinfo is None or not 1 <= page_size <= 50 or page_number < 1:
            return _error("10000012", "Invalid date format.")
        status = query.get("status")
        with sim.lock:
            matches = search_matches(since, status)
            start = (page_number - 1) * page_size
            page = [sim.fleet.device(index) for index in matches[start : start + page_size]]
        return answer(
            200,
            {
                "devices": [
                    {
                        "iccid": d["iccid"],
                        "status": d["status"],
                        "ratePlan": d["rate_plan"],
                        "communicationPlan": d["communication_plan"],
                    }
                    for d in page
                ],
                "pageNumber": page_number,
                "lastPage": start + page_size >= len(matches),
            },
        )

    return api
