"""Cisco IoT Control Center: wait until SIMs report a status."""

from __future__ import annotations

from typing import Any

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.triggers.base import DeviceWatch
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger, new_status_watch


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
        return new_status_watch(self.iccids, self.target_status)
