"""Cisco IoT Control Center (formerly Jasper) REST API v1: edit and read device details per ICCID."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetVendorResponseError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Clock,
    ConnectionSettings,
    ErrorMapping,
    Outcome,
    VendorErrorBody,
    VendorHttpClient,
    map_bounded,
    text_or_none,
)
from airflow_provider_iotfleet.http.auth import BasicAuth
from airflow_provider_iotfleet.validation import (
    validate_cisco_changes,
    validate_cisco_edits,
    validate_effective_date,
    validate_iccids,
)

VENDOR = "Cisco IoT Control Center"


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


@dataclass(frozen=True)
class CiscoEditResult:
    """The outcome of one accepted edit.

    :ivar iccid: the device edited.
    :ivar scheduled: ``True`` when Control Center accepted the change for ``effective_date`` (HTTP 202),
        ``False`` when it applied it at once (HTTP 200).
    :ivar effective_date: the ISO 8601 date sent, for scheduled changes.
    """

    iccid: str
    scheduled: bool
    effective_date: str | None = None


class CiscoControlCenterHook(IoTFleetBaseHook):
    """Edit and read Cisco IoT Control Center devices.

    Connection: ``host`` is the Control Center API host (``https://restapi3.jasper.com``), ``login``
    the user name and ``password`` the API key (HTTP Basic). Extras: ``api_version`` (1),
    ``requests_per_second`` (5) and ``max_concurrency`` (1, the published limit of one active call per
    account), ``timeout`` and ``max_retries``.

    :param cisco_control_center_conn_id: the Airflow connection id.
    """

    conn_name_attr = "cisco_control_center_conn_id"
    default_conn_name = "cisco_control_center_default"
    conn_type = "cisco_control_center"
    hook_name = "Cisco IoT Control Center"

    def __init__(
        self, cisco_control_center_conn_id: str = default_conn_name, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(cisco_control_center_conn_id, clock=clock)

    @cached_property
    def max_concurrency(self) -> int:
        """Calls in flight at once, from the connection's ``max_concurrency`` extra."""
        return self.settings.get_int("max_concurrency", 1, minimum=1)

    def _build_client(self, settings: ConnectionSettings) -> VendorHttpClient:
        version = settings.get_int("api_version", 1, minimum=1)
        auth = BasicAuth(
            settings.require_login("Control Center user name"),
            settings.require_password("API key"),
            "the login (user name) and password (API key)",
        )
        return VendorHttpClient(
            base_url=f"{settings.base_url()}/rws/api/v{version}",
            errors=CISCO_ERRORS,
            auth=lambda _client: auth,
            max_connections=self.max_concurrency,
            **self._transport_options(settings, settings.get_float("requests_per_second", 5.0)),
        )

    def edit_device(
        self, iccid: str, changes: Mapping[str, str], effective_date: datetime | str | None = None
    ) -> CiscoEditResult:
        """Change one device's details (``PUT /devices/{iccid}``).

        :param iccid: the SIM's ICCID.
        :param changes: Control Center field names and new values, e.g. ``{"status": "ACTIVATED"}``.
        :param effective_date: when the change takes effect (aware datetime or ISO 8601 string, at
            most 180 days ahead); omitted means now.
        :return: whether the change was applied now or scheduled.
        :raises IoTFleetValidationError: for a bad ICCID, field, value or date, before any request.
        :raises IoTFleetNotFoundError: when Control Center does not know the ICCID (20000001).
        :raises IoTFleetVendorResponseError: for any other refusal, with the vendor's error code.
        """
        (iccid,) = validate_iccids([iccid], "iccid")
        body = validate_cisco_changes(changes)
        return self._put_edit(iccid, body, self._effective_date(effective_date))

    def edit_devices(
        self,
        edits: Sequence[Mapping[str, str]],
        effective_date: datetime | str | None = None,
        max_concurrency: int | None = None,
    ) -> list[Outcome[str, CiscoEditResult]]:
        """Edit many devices, ``max_concurrency`` at a time (default: the connection's).

        Every edit is validated before the first request, and one failed device does not stop the
        others.

        :param edits: ``[{"iccid": "8988...", "status": "ACTIVATED"}, ...]``.
        :return: one outcome per edit, in input order; ``outcome.item`` is the ICCID and
            ``outcome.error`` the :class:`IoTFleetError` for a device Control Center refused.
        :raises IoTFleetValidationError: listing every bad ICCID, field or value.
        """
        pairs = validate_cisco_edits(edits)
        date = self._effective_date(effective_date)
        outcomes = map_bounded(
            lambda pair: self._put_edit(pair[0], pair[1], date),
            pairs,
            max_concurrency or self.max_concurrency,
        )
        return [Outcome(item=o.item[0], result=o.result, error=o.error) for o in outcomes]

    def get_device(self, iccid: str) -> dict[str, Any]:
        """Return one device's details (``GET /devices/{iccid}``) as Control Center sends them.

        :return: a dict with ``iccid``, ``status``, ``ratePlan``, ``communicationPlan``, ``imei`` and the
            other documented fields.
        :raises IoTFleetNotFoundError: when Control Center does not know the ICCID.
        """
        (iccid,) = validate_iccids([iccid], "iccid")
        return self.client.send("GET", f"devices/{iccid}").object()

    def _effective_date(self, effective_date: datetime | str | None) -> str | None:
        if effective_date is None:
            return None
        return validate_effective_date(effective_date, self.clock.now()).isoformat(timespec="seconds")

    def _put_edit(
        self, iccid: str, changes: Mapping[str, str], effective_date: str | None
    ) -> CiscoEditResult:
        body = dict(changes)
        if effective_date:
            body["effectiveDate"] = effective_date
        reply = self.client.send("PUT", f"devices/{iccid}", json=body)
        reply.field("iccid", str)
        scheduled = reply.status == 202
        self.log.info("%s: %s %s", VENDOR, "scheduled edit of" if scheduled else "edited", iccid)
        return CiscoEditResult(
            iccid=iccid, scheduled=scheduled, effective_date=effective_date if scheduled else None
        )

    def _check_connection(self) -> str:
        since = (self.clock.now() - timedelta(days=1)).isoformat(timespec="seconds")
        self.client.send("GET", "devices", params={"modifiedSince": since, "pageSize": 1})
        return f"Authenticated to {VENDOR} at {self.settings.base_url()} as {self.settings.login}"
