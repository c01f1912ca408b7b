"""Huawei ROMA Connect: wait until devices are online or offline."""

from __future__ import annotations

from typing import Any

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.triggers.base import DeviceWatch
from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusTrigger, new_online_status_watch


class HuaweiRomaDeviceStatusSensor(DeviceWatchSensor):
    """Wait until every ROMA device reports ``target_online_status`` (after a force-offline, say).

    Few devices are read one by one; more are found in the instance's listing filtered on the
    target status, whichever takes fewer requests.

    Waiting for ``offline``, a device that never connected counts as offline (it is not connected;
    its status reads ``never``); for more than 10 devices the never-connected listing is read too.
    Devices that can never match are unreachable at once, and the wait goes on for the others (see
    ``fail_on_unreachable``): an id ROMA does not know when read one by one (``not_found``; with
    the listing, once few enough devices are left to read one by one), and, waiting for ``never``,
    a device that reports ``online`` or ``offline`` (``connected_before``).

    XCom: ``{"matched": [id], "statuses": {id: last status}, "unreachable": {id: reason}}``
    (statuses ``online``, ``offline``, ``never``, or ``not <target>`` when read from the listing).

    :param device_ids: ROMA device ids (templated, or an upstream task's output).
    :param target_online_status: ``offline``, ``online`` or ``never`` (templated).
    :param huawei_roma_conn_id: the Airflow connection.
    """

    trigger_class = HuaweiRomaDeviceStatusTrigger
    target_field = "target_online_status"
    template_fields = ("device_ids", "target_online_status")

    def __init__(
        self,
        *,
        device_ids: Any,
        target_online_status: str = "offline",
        huawei_roma_conn_id: str = HuaweiRomaConnectHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=huawei_roma_conn_id, **kwargs)
        self.device_ids = device_ids
        self.target_online_status = target_online_status

    def new_watch(self) -> DeviceWatch:
        return new_online_status_watch(self.device_ids, self.target_online_status)
