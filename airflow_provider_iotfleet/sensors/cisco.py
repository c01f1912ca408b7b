"""Cisco IoT Control Center: wait until SIMs report a status."""

from __future__ import annotations

from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.cisco.rules import CISCO_KNOWN_STATUSES
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.triggers.base import DeviceWatch
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
from airflow_provider_iotfleet.utils import distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_iccids


class CiscoControlCenterDeviceStatusSensor(DeviceWatchSensor):
    """Wait until every ICCID reports ``target_status`` (after a scheduled 202 edit, for instance).

    The first poll reads each device; later ones ask Search Devices what changed since, so a poll
    costs what changed rather than the fleet. Both respect the connection's rate limit and
    concurrency. An ICCID Control Center does not know (404 when read in full) can never match: it
    is unreachable (``not_found``) at once and the wait goes on for the others (see
    ``fail_on_unreachable``).

    XCom: ``{"matched": [iccid], "statuses": {iccid: last status}, "unreachable": {iccid: reason}}``.

    :param iccids: the SIMs (templated, or an upstream task's output).
    :param target_status: the SIM status to wait for, e.g. ``ACTIVATED`` (templated).
    :param cisco_control_center_conn_id: the Airflow connection.
    """

    trigger_class = CiscoDeviceStatusTrigger
    target_field = "target_status"
    template_fields = ("iccids", "target_status")

    def __init__(
        self,
        *,
        iccids: Any,
        target_status: str,
        cisco_control_center_conn_id: str = CiscoControlCenterHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=cisco_control_center_conn_id, **kwargs)
        self.iccids = iccids
        self.target_status = target_status

    def new_watch(self) -> DeviceWatch:
        if self.target_status not in CISCO_KNOWN_STATUSES:
            raise IoTFleetValidationError(
                "target_status is not a SIM status",
                [f"{self.target_status!r}: use one of {', '.join(sorted(CISCO_KNOWN_STATUSES))}"],
            )
        given = as_item_list(self.iccids, "iccids")
        iccids, _ = distinct(validate_iccids(given) if given else [], key=str)
        return self.trigger_class.watch_class(iccids, self.target_status)
