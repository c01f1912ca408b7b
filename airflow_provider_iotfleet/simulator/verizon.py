"""Verizon ThingSpace (OAuth, M2M session login, FOTA v3 with firmware campaigns) as the simulator serves it.

The router's paths are the vendor's own (``/api/ts/v1/oauth2/token``, ``/api/m2m/v1/session/login``,
``/api/fota/v3/...``); the app serves them both under ``/verizon`` and at its root.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse

from airflow_provider_iotfleet.simulator.campaigns import (
    FIRMWARE,
    PROTOCOLS,
    REQUEST_PENDING,
    CampaignError,
)
from airflow_provider_iotfleet.simulator.core import SimulatorState
from airflow_provider_iotfleet.simulator.fleet import NEVER_CONNECTED, ONLINE, imei_of
from airflow_provider_iotfleet.simulator.web import (
    MALFORMED,
    answer,
    basic_credentials,
    bearer_token,
    read_form,
    read_json,
)

ACCESS_TOKEN_LIFETIME = 3600
MAX_SYNC_IMEIS = 100
LOCKOUT_AFTER = 5
INVALID_CREDENTIALS = {
    "fault": {
        "code": "900901",
        "message": "Invalid Credentials",
        "description": "Invalid Credentials. Make sure you have given the correct access token",
    }
}


def _timestamp(value: datetime) -> str:
    # ThingSpace's own format: 2020-11-10 15:35:00.122 +0000 UTC
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d} +0000 UTC"


def router(sim: SimulatorState) -> APIRouter:
    """The ThingSpace routes at the vendor's paths (``/api/...``), over ``sim``."""
    api = APIRouter(prefix="/api")
    credentials = sim.config.credentials

    def error(code: str, message: str, status: int = 400) -> JSONResponse:
        return answer(status, {"errorCode": code, "errorMessage": message})

    def refuse(request: Request, account: str) -> JSONResponse | None:
        if not sim.token_valid("verizon", bearer_token(request)):
            return answer(401, INVALID_CREDENTIALS)
        session = request.headers.get("vz-m2m-token")
        with sim.lock:
            last_used = sim.sessions.get(session or "")
            now = sim.now()
            if last_used is None or now - last_used > timedelta(seconds=sim.config.session_idle_timeout):
                sim.expire_session(session)
                return error(
                    "FOTA.REQUEST_FAILED.SessionToken.Expired", "Session token is expired or invalid."
                )
            sim.sessions[session or ""] = now
        if account != credentials.verizon_account:
            return error("FOTA.REQUEST_FAILED.AccountNotFound", f"Account {account} was not found.")
        # Campaigns upgrade firmware as the clock moves: what this request reads must show it.
        sim.campaigns.progress()
        return None

    def refused_campaign(problem: CampaignError) -> JSONResponse:
        return error(problem.code, problem.message, problem.status)

    def describe(index: int) -> dict[str, Any]:
        device = sim.fleet.device(index)
        files_key = "filesList" if index % 2 == 0 else "fileList"  # the doc and the SDK disagree
        return {
            "deviceId": device["imei"],
            "mdn": device["mdn"],
            "model": device["model"],
            "make": device["make"],
            "firmware": device["firmware"],
            "fotaEligible": device["protocol"] != "HTTP",
            "licenseAssigned": True,
            "status": "Active" if device["status"] == "ACTIVATED" else "Suspended",
            "protocol": device["protocol"],
            "softwareList": [],
            files_key: [],
            "createTime": _timestamp(device["date_added"]),
            "upgradeTime": _timestamp(device["date_updated"]),
            "statusTime": _timestamp(device["date_updated"]),
            "refreshTime": _timestamp(device["date_updated"]),
            "lastConnectionTime": "N/A"
            if device["online_status"] == NEVER_CONNECTED
            else _timestamp(device["date_updated"] + timedelta(days=3)),
        }

    async def list_devices(request: Request, account: str, subset: list[int] | None) -> JSONResponse:
        query = request.query_params
        protocol = query.get("protocol")
        try:
            last_seen = int(query.get("lastSeenDeviceId", "0"))
        except ValueError:
            return error("FOTA.REQUEST_FAILED.InvalidParameter", "lastSeenDeviceId must be a number.")
        page_size = sim.config.verizon_page_size
        # Devices in IMEI order, which is index order in the simulated fleet: find where the last page
        # ended by bisection, so every page costs the same however deep into a big fleet it is.
        candidates: Sequence[int] = subset if subset is not None else range(sim.fleet.size)
        start = bisect.bisect_right(candidates, last_seen, key=lambda i: int(imei_of(i)))
        page: list[dict[str, Any]] = []
        has_more = False
        for index in candidates[start:]:
            if protocol and sim.fleet.device(index)["protocol"] != protocol:
                continue
            if len(page) == page_size:
                has_more = True
                break
            page.append(describe(index))
        body: dict[str, Any] = {
            "accountName": account,
            "deviceCount": len(page),
            "deviceList": page,
            "hasMoreData": has_more,
        }
        if has_more:
            body["lastSeenDeviceId"] = page[-1]["deviceId"]
        return answer(200, body)

    async def read_imeis(request: Request) -> list[Any] | JSONResponse:
        body = await read_json(request)
        imeis = body.get("deviceList") if isinstance(body, dict) else None
        if body is MALFORMED or not isinstance(imeis, list):
            return error("FOTA.REQUEST_FAILED.InvalidBody", "The request body must carry a deviceList.")
        return imeis

    @api.get("/fota/v3/devices/{account}")
    async def account_devices(account: str, request: Request) -> JSONResponse:
        if refused := refuse(request, account):
            return refused
        return await list_devices(request, account, None)

    @api.post("/fota/v3/devices/{account}")
    async def subset_devices(account: str, request: Request) -> JSONResponse:
        if refused := refuse(request, account):
            return refused
        imeis = await read_imeis(request)
        if isinstance(imeis, JSONResponse):
            return imeis
        indices = sorted({i for i in (sim.fleet.by_imei(imei) for imei in imeis) if i is not None})
        return await list_devices(request, account, indices)

    @api.put("/fota/v3/firmware/{account}/devices")
    async def sync_firmware(account: str, request: Request) -> JSONResponse:
        if refused := refuse(request, account):
            return refused
        imeis = await read_imeis(request)
        if isinstance(imeis, JSONResponse):
            return imeis
        if len(imeis) > MAX_SYNC_IMEIS:
            return error(
                "FOTA.REQUEST_FAILED.TooManyDevices", f"At most {MAX_SYNC_IMEIS} devices per request."
            )
        results = []
        for position, imei in enumerate(imeis):
            index = sim.fleet.by_imei(imei)
            reason_key = "Reason" if position % 2 == 0 else "reason"  # the vendor spells it both ways
            if index is None:
                results.append(
                    {
                        "deviceId": imei,
                        "status": "FirmwareVersionUpdateFailed",
                        reason_key: "Device not found in account",
                    }
                )
                continue
            device = sim.fleet.device(index)
            if device["online_status"] != ONLINE:
                results.append(
                    {
                        "deviceId": imei,
                        "status": "FirmwareVersionUpdateFailed",
                        reason_key: "Device did not respond",
                    }
                )
                continue
            sim.fleet.update(
                index, {"firmware": device["reported_firmware"], "firmware_synced_at": sim.now()}
            )
            results.append(
                {
                    "deviceId": imei,
                    "status": "FirmwareVersionUpdateSuccess",
                    reason_key: "",
                    "firmwareVersion": device["reported_firmware"],
                    "VersionUpdateTime": _timestamp(sim.now()),
                }
            )
        sim.count("verizon.firmware_syncs")
        # sic: the vendor's misspelling of the list name
        return answer(200, {"accountName": account, "deviceFirmwarVersionList": results})

    @api.get("/fota/v3/firmware/{account}")
    async def list_firmware(account: str, request: Request) -> JSONResponse:
        """The firmware on offer: ``[{firmwareName, firmwareFrom, firmwareTo, launchDate, releaseNote,
        make, model, protocol}]``, only ``?protocol=`` ones if given."""
        if refused := refuse(request, account):
            return refused
        protocol = request.query_params.get("protocol")
        if protocol is not None and protocol not in PROTOCOLS:
            return error(
                "FOTA.REQUEST_FAILED.InvalidParameter", f"protocol must be one of {', '.join(PROTOCOLS)}."
            )
        return answer(
            200,
            [package.json() for package in FIRMWARE.values() if protocol in (None, package.protocol)],
        )

    @api.post("/fota/v3/campaigns/firmware/{account}")
    async def schedule_campaign(account: str, request: Request) -> JSONResponse:
        """Schedule a firmware campaign; the answer is the campaign, ``CampaignRequestPending``."""
        if refused := refuse(request, account):
            return refused
        body = await read_json(request)
        try:
            campaign = sim.campaigns.schedule(account, None if body is MALFORMED else body)
        except CampaignError as problem:
            return refused_campaign(problem)
        sim.count("verizon.campaigns")
        return answer(200, campaign.json(status=REQUEST_PENDING))

    @api.get("/fota/v3/campaigns/{account}/{campaign_id}")
    async def get_campaign(account: str, campaign_id: str, request: Request) -> JSONResponse:
        """The campaign, with its status as of now."""
        if refused := refuse(request, account):
            return refused
        try:
            return answer(200, sim.campaigns.campaign(campaign_id, account).json())
        except CampaignError as problem:
            return refused_campaign(problem)

    @api.delete("/fota/v3/campaigns/{account}/{campaign_id}")
    async def cancel_campaign(account: str, campaign_id: str, request: Request) -> JSONResponse:
        """Cancel (before the start date) or abort (after) a campaign: ``{"success": true}``."""
        if refused := refuse(request, account):
            return refused
        try:
            sim.campaigns.cancel(account, campaign_id)
        except CampaignError as problem:
            return refused_campaign(problem)
        return answer(200, {"success": True})

    @api.put("/fota/v3/campaigns/firmware/{account}/{campaign_id}")
    async def change_campaign_devices(account: str, campaign_id: str, request: Request) -> JSONResponse:
        """``{"Type": "append"|"remove", "deviceList": [...]}`` before the start date; per-device results."""
        if refused := refuse(request, account):
            return refused
        body = await read_json(request)
        try:
            return answer(200, sim.campaigns.change_devices(account, campaign_id, body))
        except CampaignError as problem:
            return refused_campaign(problem)

    @api.put("/fota/v3/campaigns/firmware/{account}/{campaign_id}/dates")
    async def change_campaign_dates(account: str, campaign_id: str, request: Request) -> JSONResponse:
        """``{startDate, endDate, campaignTimeWindowList?}``: the campaign with its new dates."""
        if refused := refuse(request, account):
            return refused
        body = await read_json(request)
        try:
            return answer(200, sim.campaigns.change_dates(account, campaign_id, body).json())
        except CampaignError as problem:
            return refused_campaign(problem)

    @api.get("/fota/v3/reports/{account}/campaigns/{campaign_id}/devices")
    async def campaign_devices(account: str, campaign_id: str, request: Request) -> JSONResponse:
        """A page of the campaign's devices, IMEIs above ``?lastSeenDeviceId=`` (0 first)."""
        if refused := refuse(request, account):
            return refused
        try:
            page = sim.campaigns.report(account, campaign_id, request.query_params.get("lastSeenDeviceId"))
        except CampaignError as problem:
            return refused_campaign(problem)
        return answer(200, page)

    async def campaign_history(account: str, request: Request) -> JSONResponse:
        if refused := refuse(request, account):
            return refused
        query = request.query_params
        try:
            page = sim.campaigns.history(
                account, query.get("campaignStatus"), query.get("lastSeenCampaignId")
            )
        except CampaignError as problem:
            return refused_campaign(problem)
        return answer(200, page)

    @api.get("/fota/v3/reports/{account}/firmware/campaigns")
    async def firmware_campaign_history(account: str, request: Request) -> JSONResponse:
        """Campaigns in ``?campaignStatus=`` (required), ids above ``?lastSeenCampaignId=``: the SDK's path."""
        return await campaign_history(account, request)

    @api.get("/fota/v3/reports/{account}/campaigns")
    async def documented_campaign_history(account: str, request: Request) -> JSONResponse:
        """The same history at the path the v3 reference documents."""
        return await campaign_history(account, request)

    @api.post("/ts/v1/oauth2/token")
    async def oauth_token(request: Request) -> JSONResponse:
        form = await read_form(request)
        if basic_credentials(request) != (credentials.verizon_key, credentials.verizon_secret):
            return answer(401, INVALID_CREDENTIALS)
        if form.get("grant_type") != "client_credentials":
            return answer(400, {"error": "unsupported_grant_type"})
        sim.count("verizon.access_tokens")
        token = sim.issue_token("verizon", ACCESS_TOKEN_LIFETIME)
        return answer(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME}
        )

    @api.post("/m2m/v1/session/login")
    async def session_login(request: Request) -> JSONResponse:
        if not sim.token_valid("verizon", bearer_token(request)):
            return answer(401, INVALID_CREDENTIALS)
        body = await read_json(request)
        username = body.get("username") if isinstance(body, dict) else None
        password = body.get("password") if isinstance(body, dict) else None
        user = str(username)
        with sim.lock:
            if sim.login_failures[user] >= LOCKOUT_AFTER:
                return error(
                    "REQUEST_FAILED.AccountLocked", "The account is locked after repeated failed logins."
                )
            if (username, password) != (credentials.verizon_m2m_username, credentials.verizon_m2m_password):
                sim.login_failures[user] += 1
                return error("REQUEST_FAILED.UnexpectedError", "Invalid username or password.")
            sim.login_failures[user] = 0
            sim.count("verizon.logins")
            session = sim.open_session()
        return answer(200, {"sessionToken": session})

    return api
