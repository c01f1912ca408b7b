"""Cisco IoT Control Center REST API v1: edit and read device details per ICCID."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetNotFoundError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.cisco.connection import CONNECTION_FORM, DEFAULT_REQUESTS_PER_SECOND
from airflow_provider_iotfleet.hooks.cisco.planning import CiscoEditPlan, edit_difference, plan_edits
from airflow_provider_iotfleet.hooks.cisco.rules import (
    CISCO_CUSTOM_FIELDS,
    validate_cisco_changes,
    validate_cisco_edits,
    validate_effective_date,
)
from airflow_provider_iotfleet.hooks.readback import (
    Applied,
    LostAnswerWording,
    NotApplied,
    Verdict,
    write_with_read_back,
)
from airflow_provider_iotfleet.hooks.reads import NOT_FOUND, DeviceReads
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Call,
    Clock,
    ConnectionSettings,
    ErrorMapping,
    Outcome,
    Reply,
    VendorErrorBody,
    map_bounded,
    text_or_none,
)
from airflow_provider_iotfleet.http.auth import BasicAuth
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Each, SettlingPlan, arun_plan, replies, run_plan
from airflow_provider_iotfleet.outcome import FieldChange
from airflow_provider_iotfleet.validation import validate_iccids, validate_whole_number

VENDOR = "Cisco IoT Control Center"
MAX_SEARCH_PAGE_SIZE = 50
#: The most calls in flight a caller may ask for (the connection's default is the vendor's 1).
MAX_CONCURRENCY = 64


def _parse_error(body: Any) -> VendorErrorBody:
    # {"errorCode": "10000005", "errorMessage": "Invalid status."}; a 401 before authentication has
    # only errorMessage.
    if not isinstance(body, dict):
        return VendorErrorBody()
    return VendorErrorBody(
        code=text_or_none(body.get("errorCode")), message=text_or_none(body.get("errorMessage"))
    )


CISCO_ERRORS = ErrorMapping(
    vendor=VENDOR,
    parse_body=_parse_error,
    # Control Center answers "Invalid ratePlan" with a 404, but the device exists: it is bad input.
    code_classes={"10000013": IoTFleetVendorResponseError},
)


#: "Cannot activate a SIM which is already activated.": the device is already as asked.
ALREADY_ACTIVATED = "10030000"
#: Edit fields and where ``GET /devices/{iccid}`` reports their current value (custom fields keep
#: their names). ``apn`` and ``pdpId`` cannot be read back: they only accompany an IP change.
READ_BACK_FIELDS = {
    "status": "status",
    "ratePlan": "ratePlan",
    "communicationPlan": "communicationPlan",
    "customer": "customer",
    "deviceID": "deviceID",
    "modemID": "modemID",
    "overageLimitOverride": "overageLimitOverride",
    "ipv4Address": "fixedIPAddress",
    "ipv6Address": "fixedIpv6Address",
    **{name: name for name in CISCO_CUSTOM_FIELDS},
}
IP_FIELDS = ("ipv4Address", "ipv6Address")
IP_COMPANION_FIELDS = ("apn", "pdpId")

EditOutcome = Literal["updated", "scheduled", "unchanged"]


def _device_call(iccid: str) -> Call:
    """``GET /devices/{iccid}``: one device's details (the caller checked the ICCID)."""
    return Call("GET", f"devices/{iccid}")


def _edit_pair(edit: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """``(iccid, changes)`` of an edit ``{"iccid": ..., <fields>}`` already checked by
    :func:`validate_cisco_edits`."""
    return edit["iccid"], {key: value for key, value in edit.items() if key != "iccid"}


def _search_since(value: datetime | str) -> str:
    if not isinstance(value, datetime | str):
        raise IoTFleetValidationError("modified_since is not a date", [f"got {type(value).__name__}"])
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise IoTFleetValidationError(
                "modified_since is not a date", [f"{value!r} is not ISO 8601 with an offset"]
            ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise IoTFleetValidationError("modified_since has no time zone", [f"{value!r}: give an offset"])
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _search_call(since: str, status: str | None, page: int, page_size: int = MAX_SEARCH_PAGE_SIZE) -> Call:
    params: dict[str, Any] = {"modifiedSince": since, "pageSize": page_size, "pageNumber": page}
    if status:
        params["status"] = status
    return Call("GET", "devices", params=params)


def _search_page(reply: Reply) -> tuple[list[dict[str, Any]], bool]:
    """The devices of one Search Devices page, and whether it is the last one."""
    return reply.objects("devices"), bool(reply.field("lastPage", bool, required=False) is not False)


def _statuses_plan(
    iccids: Sequence[str], changed_since: datetime | None, *, settle_missing: bool = False
) -> SettlingPlan[DeviceReads[str]]:
    """Each device read in full (``GET /devices/{iccid}``), or Search Devices since ``changed_since``.

    :param settle_missing: an ICCID Control Center does not know (404) is reported in ``missing``
        and the other devices' statuses are kept; otherwise its error ends the read.
    """
    wanted = validate_iccids(iccids)
    if changed_since is None:
        calls = [_device_call(iccid) for iccid in wanted]
        answers = yield (Each(calls) if settle_missing else calls)
        statuses: dict[str, str | None] = {}
        missing: dict[str, str] = {}
        for iccid, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, IoTFleetError):
                missing[iccid] = NOT_FOUND
            else:
                statuses[iccid] = answer.field("status", str)
        return DeviceReads(statuses, missing)
    since = _search_since(changed_since)
    changed: dict[str, str | None] = {}
    members = set(wanted)
    page = 1
    while True:
        (reply,) = replies((yield [_search_call(since, None, page)]))
        devices, last = _search_page(reply)
        for device in devices:
            if device.get("iccid") in members and isinstance(device.get("status"), str):
                changed[device["iccid"]] = device["status"]
        if last:
            return DeviceReads(changed)
        page += 1


def _difference(changes: Mapping[str, str], current: Mapping[str, Any]) -> dict[str, FieldChange]:
    """What of ``changes`` a device with details ``current`` lacks (see :func:`edit_difference`)."""
    return edit_difference(changes, current, READ_BACK_FIELDS, IP_FIELDS, IP_COMPANION_FIELDS)


def _edit_wording(iccid: str, *, scheduled: bool) -> LostAnswerWording[Mapping[str, str]]:
    """How log lines and errors tell of an edit of ``iccid`` whose answer was lost."""
    edit = "scheduled edit" if scheduled else "edit"
    return LostAnswerWording(
        vendor=VENDOR,
        write=lambda _: f"the {edit} of {iccid}",
        bare_write=f"the {edit}",
        read="the device",
        risk="Control Center may have applied it",
        advice="check the device before sending it again",
        bare_advice="check the device",
    )


@dataclass(frozen=True)
class CiscoEditResult:
    """The outcome of one edit Control Center did not refuse.

    :ivar iccid: the device.
    :ivar outcome: ``"updated"`` (applied now, HTTP 200), ``"scheduled"`` (accepted for
        ``effective_date``, HTTP 202) or ``"unchanged"`` (the device already had those values: read
        first with ``skip_unchanged``, or an activation Control Center answered "already activated").
    :ivar effective_date: the ISO 8601 date sent, for scheduled changes.
    :ivar sent: the fields actually sent (fewer than asked when ``skip_unchanged`` found some
        already set; empty when nothing was sent).
    :ivar before: when the device was read first (``skip_unchanged``), its previous values of the
        sent fields a read shows, and for an IP address change the ``apn`` and ``pdpId`` sent with it
        (a read does not show them; they name the address's PDP context, which a rollback needs);
        ``None`` when it was not read.
    """

    iccid: str
    outcome: EditOutcome
    effective_date: str | None = None
    sent: tuple[str, ...] = ()
    before: Mapping[str, Any] | None = None

    @property
    def scheduled(self) -> bool:
        """Whether Control Center accepted the change for later (HTTP 202)."""
        return self.outcome == "scheduled"


class CiscoControlCenterHook(IoTFleetBaseHook):
    """Edit and read Cisco IoT Control Center devices.

    Connection: ``host`` is the Control Center API host (``https://restapi3.jasper.com``), ``login``
    the user name and ``password`` the API key (HTTP Basic). Extras: ``api_version`` (1),
    ``requests_per_second`` (5) and ``max_concurrency`` (1, the published limit of one active call per
    account), ``timeout`` and ``max_retries``.

    :param cisco_control_center_conn_id: the Airflow connection id.
    :param rate_limit_share: this hook's share of the connection's rate limit (see
        :class:`~airflow_provider_iotfleet.hooks.base.IoTFleetBaseHook`).
    """

    conn_name_attr = "cisco_control_center_conn_id"
    connection_form = CONNECTION_FORM

    def __init__(
        self,
        cisco_control_center_conn_id: str = CONNECTION_FORM.default_conn_id,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rate_limit_share: float = 1.0,
    ) -> None:
        super().__init__(cisco_control_center_conn_id, clock=clock, rate_limit_share=rate_limit_share)

    @cached_property
    def max_concurrency(self) -> int:
        """Calls in flight at once in this hook, from the connection's ``max_concurrency`` extra.

        Per task, not shared (unlike the rate limit): tasks in a pool of ``n`` slots may have
        ``n * max_concurrency`` calls in flight together, so an account that allows one active call
        needs a pool of one slot.
        """
        return self.settings.get_int("max_concurrency", 1, minimum=1)

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        version = settings.get_int("api_version", 1, minimum=1)
        return {
            "base_url": f"{settings.base_url()}/rws/api/v{version}",
            "errors": CISCO_ERRORS,
            "auth": BasicAuth(
                settings.require_login("Control Center user name"),
                settings.require_password("API key"),
                "the login (user name) and password (API key)",
            ),
            "max_connections": self.max_concurrency,
            **self._transport_options(
                settings, settings.get_float("requests_per_second", DEFAULT_REQUESTS_PER_SECOND)
            ),
        }

    def edit_device(
        self, iccid: str, changes: Mapping[str, str], effective_date: datetime | str | None = None
    ) -> CiscoEditResult:
        """Change one device's details (``PUT /devices/{iccid}``).

        :param iccid: the SIM's ICCID.
        :param changes: Control Center field names and new values, e.g. ``{"status": "ACTIVATED"}``.
        :param effective_date: when the change takes effect (aware datetime or ISO 8601 string, at
            most 180 days ahead); omitted means now.
        :return: whether the change was applied now, scheduled, or not needed (activating a SIM that
            is already activated).
        :raises IoTFleetValidationError: for a bad ICCID, field, value or date, before any request.
        :raises IoTFleetNotFoundError: when Control Center does not know the ICCID (20000001).
        :raises IoTFleetVendorResponseError: for any other refusal, with the vendor's error code.
        """
        (iccid,) = validate_iccids([iccid], "iccid")
        body = validate_cisco_changes(changes)
        return self._edit(iccid, body, self.check_effective_date(effective_date), skip_unchanged=False)

    def edit_devices(
        self,
        edits: Sequence[Mapping[str, str]],
        effective_date: datetime | str | None = None,
        max_concurrency: int | None = None,
        *,
        skip_unchanged: bool = False,
        on_outcome: Callable[[Outcome[str, CiscoEditResult]], None] | None = None,
        validated: bool = False,
    ) -> list[Outcome[str, CiscoEditResult]]:
        """Edit many devices, ``max_concurrency`` at a time (default: the connection's).

        Every edit is validated before the first request, and one failed device does not stop the
        others; refused credentials do (the devices not yet sent then fail as not attempted).

        :param edits: ``[{"iccid": "8988...", "status": "ACTIVATED"}, ...]``.
        :param skip_unchanged: read each device first (one more call per device) and send only the
            fields whose value differs; a device already as asked is not sent at all. Each result
            then carries ``before``, the previous values of the fields sent (see
            :class:`CiscoEditResult`).
        :param on_outcome: called with each device's outcome as soon as it is known (from worker
            threads), for progress reports.
        :param validated: ``edits`` hold ICCIDs and fields already checked (as
            :func:`~airflow_provider_iotfleet.hooks.cisco.rules.validate_cisco_edits` does) and
            ``effective_date`` is what :meth:`check_effective_date` returned: neither is checked again
            (the operator validates its whole input once, before the first request).
        :return: one outcome per edit, in input order; ``outcome.item`` is the ICCID and
            ``outcome.error`` the :class:`IoTFleetError` for a device Control Center refused.
        :raises IoTFleetValidationError: listing every bad ICCID, field, value or date.
        """
        pairs = [_edit_pair(edit) for edit in edits] if validated else validate_cisco_edits(edits)
        # A checked date is the string check_effective_date returns; a datetime is checked in any case.
        date = (
            effective_date
            if validated and not isinstance(effective_date, datetime)
            else self.check_effective_date(effective_date)
        )
        if max_concurrency is not None:
            validate_whole_number(max_concurrency, "max_concurrency", 1, MAX_CONCURRENCY)

        def on_pair(outcome: Outcome[tuple[str, dict[str, str]], CiscoEditResult]) -> None:
            if on_outcome is not None:
                on_outcome(Outcome(item=outcome.item[0], result=outcome.result, error=outcome.error))

        outcomes = map_bounded(
            lambda pair: self._edit(pair[0], pair[1], date, skip_unchanged),
            pairs,
            self.max_concurrency if max_concurrency is None else max_concurrency,
            on_outcome=on_pair,
        )
        return [Outcome(item=o.item[0], result=o.result, error=o.error) for o in outcomes]

    def plan_edits(
        self,
        edits: Sequence[Mapping[str, str]],
        *,
        on_outcome: Callable[[Outcome[str, CiscoEditPlan]], None] | None = None,
        validated: bool = False,
    ) -> list[Outcome[str, CiscoEditPlan]]:
        """Say what :meth:`edit_devices` with ``skip_unchanged`` would change, sending only reads: one
        ``GET /devices/{iccid}`` per device, with the connection's concurrency and rate limit.

        :param edits: as for :meth:`edit_devices` (``validated``: already checked).
        :param on_outcome: called with each device's plan as soon as it is known (worker threads).
        :return: one outcome per edit, in input order: the :class:`CiscoEditPlan` (``changes``
            ``{field: {"from": current, "to": wanted}}``, empty when already as asked), or the
            :class:`IoTFleetError` of a device that could not be read (404: not known).
        :raises IoTFleetValidationError: listing every bad ICCID, field or value, before any request.
        """
        pairs = [_edit_pair(edit) for edit in edits] if validated else validate_cisco_edits(edits)
        return plan_edits(
            lambda iccid: self.client.send(_device_call(iccid)).object(),
            pairs,
            _difference,
            self.max_concurrency,
            on_outcome,
        )

    def get_device(self, iccid: str) -> dict[str, Any]:
        """Return one device's details (``GET /devices/{iccid}``) as Control Center sends them.

        :return: a dict with ``iccid``, ``status``, ``ratePlan``, ``communicationPlan``, ``imei`` and the
            other documented fields.
        :raises IoTFleetNotFoundError: when Control Center does not know the ICCID.
        """
        (checked,) = validate_iccids([iccid], "iccid")
        return self.client.send(_device_call(checked)).object()

    async def aget_device(self, iccid: str) -> dict[str, Any]:
        """:meth:`get_device` for triggers: the same call, without blocking the event loop."""
        (checked,) = validate_iccids([iccid], "iccid")
        client = await self.aclient()
        return (await client.send(_device_call(checked))).object()

    def search_devices(
        self, modified_since: datetime | str, status: str | None = None, page_size: int = MAX_SEARCH_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over the devices changed since ``modified_since`` (``GET /devices``), one
        page requested at a time as it is consumed. Arguments are checked at once.

        :param modified_since: an aware datetime or ISO 8601 string with an offset.
        :param status: only devices in this SIM status.
        :param page_size: devices per page, 1..50.
        :return: ``{"iccid", "status", "ratePlan", "communicationPlan"}`` per device.
        :raises IoTFleetValidationError: for a date without time zone, a bad status or page size.
        """
        since = _search_since(modified_since)
        if status is not None:
            validate_cisco_changes({"status": status})
        validate_whole_number(page_size, "page_size", 1, MAX_SEARCH_PAGE_SIZE)

        def pages() -> Iterator[dict[str, Any]]:
            number = 1
            while True:
                devices, last = _search_page(self.client.send(_search_call(since, status, number, page_size)))
                yield from devices
                if last:
                    return
                number += 1

        return pages()

    def device_statuses(self, iccids: Sequence[str], changed_since: datetime | None = None) -> dict[str, str]:
        """Return the SIM status of each device in ``iccids`` that is read.

        Without ``changed_since`` every device is read (``GET /devices/{iccid}``, with the connection's
        concurrency); with it, only the devices Search Devices reports as changed since then, so that
        a poll costs what changed rather than the fleet.

        :raises IoTFleetNotFoundError: when Control Center does not know an ICCID (full read only).
        """
        reads = run_plan(self.client, _statuses_plan(iccids, changed_since), self.max_concurrency)
        return {iccid: status for iccid, status in reads.values.items() if status is not None}

    async def adevice_statuses(
        self, iccids: Sequence[str], changed_since: datetime | None = None
    ) -> dict[str, str]:
        """:meth:`device_statuses` for triggers: the same reads, without blocking the event loop."""
        client = await self.aclient()
        reads = await arun_plan(client, _statuses_plan(iccids, changed_since), self.max_concurrency)
        return {iccid: status for iccid, status in reads.values.items() if status is not None}

    def read_device_statuses(
        self, iccids: Sequence[str], changed_since: datetime | None = None
    ) -> DeviceReads[str]:
        """Read the devices as :meth:`device_statuses` does, keeping the others' statuses when Control
        Center does not know an ICCID (what a status sensor polls with).

        :return: ``values``: the SIM status of each device read; ``missing``: the ICCIDs Control
            Center answered 404 for, each with the reason ``"not_found"`` (full reads only: Search
            Devices reports only what changed).
        :raises IoTFleetValidationError: for a bad ICCID, before any request.
        :raises IoTFleetError: for any other failed call (refused credentials, throttling, 5xx).
        """
        plan = _statuses_plan(iccids, changed_since, settle_missing=True)
        return run_plan(self.client, plan, self.max_concurrency)

    async def aread_device_statuses(
        self, iccids: Sequence[str], changed_since: datetime | None = None
    ) -> DeviceReads[str]:
        """:meth:`read_device_statuses` for triggers: the same reads, without blocking the event loop."""
        client = await self.aclient()
        plan = _statuses_plan(iccids, changed_since, settle_missing=True)
        return await arun_plan(client, plan, self.max_concurrency)

    def check_effective_date(self, effective_date: datetime | str | None) -> str | None:
        """Return ``effective_date`` as the ISO 8601 string Control Center takes (``None`` stays ``None``).

        :raises IoTFleetValidationError: for a date without time zone, in the past, or more than
            180 days ahead of now.
        """
        if effective_date is None:
            return None
        return validate_effective_date(effective_date, self.clock.now()).isoformat(timespec="seconds")

    def _edit(
        self, iccid: str, changes: dict[str, str], effective_date: str | None, skip_unchanged: bool
    ) -> CiscoEditResult:
        before: dict[str, Any] | None = None
        if skip_unchanged:
            different = _difference(changes, self.client.send(_device_call(iccid)).object())
            changes = {key: change["to"] for key, change in different.items()}
            before = {key: change["from"] for key, change in different.items() if key in READ_BACK_FIELDS}
            if any(key in before for key in IP_FIELDS):  # what names the address's PDP context, to restore it
                before.update((key, changes[key]) for key in IP_COMPANION_FIELDS if key in changes)
            if not changes:
                self.log.debug("%s: %s already as asked; not sent", VENDOR, iccid)
                return CiscoEditResult(iccid=iccid, outcome="unchanged", before={})
        result = self._apply_edit(iccid, changes, effective_date)
        if before is None:
            return result
        return replace(result, before={key: before[key] for key in result.sent if key in before})

    def _apply_edit(self, iccid: str, changes: dict[str, str], effective_date: str | None) -> CiscoEditResult:
        """Send one edit; an activation of an active SIM is ``unchanged``, and the rest of it is sent."""
        try:
            return self._put_edit(iccid, changes, effective_date)
        except IoTFleetVendorResponseError as error:
            if error.error_code != ALREADY_ACTIVATED or changes.get("status") != "ACTIVATED":
                raise
            # Control Center refuses the whole edit when it would activate an active SIM: the status
            # is already what was asked, so send what else there is, or nothing.
            rest = {key: value for key, value in changes.items() if key != "status"}
            if not rest:
                self.log.debug("%s: %s already activated; not sent again", VENDOR, iccid)
                return CiscoEditResult(iccid=iccid, outcome="unchanged")
            return self._put_edit(iccid, rest, effective_date)

    def _put_edit(
        self, iccid: str, changes: Mapping[str, str], effective_date: str | None
    ) -> CiscoEditResult:
        """Send one edit; should its answer be lost, read the device back rather than send it again
        (see :func:`~airflow_provider_iotfleet.hooks.readback.write_with_read_back`).

        A scheduled edit, or one whose fields cannot be read back, cannot be told apart, so its lost
        answer is :class:`IoTFleetOutcomeUnknownError` at once.
        """
        readable = not effective_date and any(key in READ_BACK_FIELDS for key in changes)
        return write_with_read_back(
            changes,
            send=lambda fields: self._send_edit(iccid, fields, effective_date),
            read_back=(lambda fields: self._edit_read_back(iccid, fields)) if readable else None,
            wording=_edit_wording(iccid, scheduled=bool(effective_date)),
            # A round per try the connection gives any call (max_retries + 1).
            rounds=self.client.retry.max_retries + 1,
            log=self.log,
            conclusive=(IoTFleetNotFoundError,),  # no such device: no edit of it can have applied
        )

    def _send_edit(
        self, iccid: str, changes: Mapping[str, str], effective_date: str | None
    ) -> CiscoEditResult:
        body = dict(changes)
        if effective_date:
            body["effectiveDate"] = effective_date
        # Sent again only when it surely did not reach Control Center: an edit applied twice can
        # schedule a change twice, or answer the second activation "already activated".
        reply = self.client.send(Call("PUT", f"devices/{iccid}", json=body, repeat="if-not-received"))
        answered = reply.field("iccid", str)
        if answered != iccid:
            raise malformed_response(
                VENDOR,
                reply.action,
                f"the ICCID {answered!r} instead of {iccid!r}",
                request_id=reply.request_id,
            )
        outcome: EditOutcome = "scheduled" if reply.status == 202 else "updated"
        self.log.debug("%s: %s %s", VENDOR, outcome, iccid)
        return CiscoEditResult(
            iccid=iccid,
            outcome=outcome,
            effective_date=effective_date if outcome == "scheduled" else None,
            sent=tuple(changes),
        )

    def _edit_read_back(
        self, iccid: str, changes: Mapping[str, str]
    ) -> Verdict[Mapping[str, str], CiscoEditResult]:
        """Applied when every readable field of the edit is as asked; otherwise surely not applied."""
        current = self.client.send(_device_call(iccid)).object()
        if all(
            current.get(READ_BACK_FIELDS[key]) == value
            for key, value in changes.items()
            if key in READ_BACK_FIELDS
        ):
            return Applied(CiscoEditResult(iccid=iccid, outcome="updated", sent=tuple(changes)))
        return NotApplied(changes)

    def _check_connection(self) -> str:
        since = (self.clock.now() - timedelta(days=1)).isoformat(timespec="seconds")
        self.client.send(Call("GET", "devices", params={"modifiedSince": since, "pageSize": 1}))
        return f"Authenticated to {VENDOR} at {self.settings.base_url()} as {self.settings.login}"
