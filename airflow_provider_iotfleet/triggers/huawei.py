"""Huawei ROMA Connect: wait for devices to be online or offline."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.answers import NEVER, OFFLINE, ONLINE_STATUS
from airflow_provider_iotfleet.hooks.reads import DeviceReads
from airflow_provider_iotfleet.triggers.base import CONNECTED_BEFORE, DeviceWatch, DeviceWatchTrigger
from airflow_provider_iotfleet.triggers.events import WatchEventTrigger, check_device_count
from airflow_provider_iotfleet.utils import distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_roma_device_ids

#: Values of a device that has connected before, so cannot be never connected again. "not offline"
#: comes from the listings of a wait on ``offline``, which page the never-connected listing too
#: (or skip it only for devices already seen connected).
CONNECTED = frozenset({"online", f"not {OFFLINE}"})


class RomaOnlineStatusWatch(DeviceWatch):
    """ROMA device ids waited on until each is ``online``/``offline``/``never``: each read one by
    one, or the instance's listing filtered on the target status, whichever takes fewer requests.

    Waiting for ``offline``, a device that never connected counts as offline (it is not connected),
    its value recorded as ``never``; once every device left was seen connected, polls skip the
    never-connected listing, so a poll pages only the listing of the target status. Waiting for
    ``never``, a device that reports ``online`` or ``offline`` has connected before and can never
    match: unreachable (``connected_before``). An id
    ROMA does not know is unreachable (``not_found``) once it is read one by one (from the first
    poll for up to 10 devices; for more, once few enough are left).
    """

    def reaches(self, value: str | None) -> bool:
        return value == self.target or (self.target == OFFLINE and value == NEVER)

    def cannot_reach(self, value: str | None) -> str | None:
        return CONNECTED_BEFORE if self.target == NEVER and value in ("online", OFFLINE) else None

    def _seen(self, reads: DeviceReads[int]) -> None:
        self.absorb(reads.values, reads.missing)

    def _with_never(self, unmatched: list[Hashable]) -> bool:
        """Whether a poll of ``unmatched`` must page the never-connected listing too (waiting for
        ``offline``): not once every one of them was seen connected (``online``, or ``not offline``
        with that listing paged), since a device that has connected can never be ``never`` again.

        :return: ``False`` when each device's last value says it has connected; ``True`` otherwise
            (the first poll, a trigger restarted from its matched devices, an unknown status).
        """
        return not all(self.values.get(device_id) in CONNECTED for device_id in unmatched)

    def poll(self, hook: HuaweiRomaConnectHook) -> None:
        ids = self.unmatched
        self._seen(hook.read_online_statuses(ids, self.target, with_never=self._with_never(ids)))  # type: ignore[arg-type]

    async def apoll(self, hook: HuaweiRomaConnectHook) -> None:
        ids = self.unmatched
        reads = await hook.aread_online_statuses(ids, self.target, with_never=self._with_never(ids))  # type: ignore[arg-type]
        self._seen(reads)


class HuaweiRomaDeviceStatusTrigger(DeviceWatchTrigger):
    """Fires when every device has the target online status or cannot reach it (or on timeout, or a
    lasting error)."""

    watch_class = RomaOnlineStatusWatch
    hook_class = HuaweiRomaConnectHook


def new_online_status_watch(device_ids: Any, target_online_status: Any) -> RomaOnlineStatusWatch:
    """The watch of ``device_ids`` (a list, or a comma-separated string) until each has
    ``target_online_status`` (any case), each device once.

    :raises IoTFleetValidationError: when the status is not ``online``, ``offline`` or ``never``, or a
        device id is malformed, naming each.
    """
    target = target_online_status
    if not isinstance(target, str) or target.lower() not in ONLINE_STATUS:
        raise IoTFleetValidationError(
            "target_online_status is invalid", [f"{target!r} is not one of {', '.join(ONLINE_STATUS)}"]
        )
    given = as_item_list(device_ids, "device_ids")
    ids, _ = distinct(validate_roma_device_ids(given) if given else [], key=int)
    return RomaOnlineStatusWatch(ids, target.lower())


class HuaweiRomaDeviceStatusEventTrigger(WatchEventTrigger):
    """For an ``AssetWatcher``: fires each time every ROMA device has ``target_online_status`` (or can
    never have it), once per occurrence; polls as :class:`HuaweiRomaDeviceStatusTrigger` does.

    The event's payload is ``{"status": "success", "matched": [id], "statuses": {id: status},
    "unreachable": {id: reason}, "description"}``.

    :param device_ids: the ROMA device ids, at most
        :data:`~airflow_provider_iotfleet.triggers.events.MAX_WATCHED_DEVICES`.
    :param target_online_status: ``online``, ``offline`` (a never-connected device counts) or ``never``.
    :param huawei_roma_conn_id: the Airflow connection.
    :param poll_interval: seconds between polls.
    :param max_transient_errors: see :class:`~airflow_provider_iotfleet.triggers.events.WatchEventTrigger`.
    :raises IoTFleetValidationError: for a status or device id ROMA would refuse, naming each.
    :raises ValueError: for no device or too many, or too short a poll interval.
    """

    hook_class = HuaweiRomaConnectHook

    def __init__(
        self,
        *,
        device_ids: Any,
        target_online_status: str,
        huawei_roma_conn_id: str = HuaweiRomaConnectHook.default_conn_name,
        poll_interval: float = 60.0,
        max_transient_errors: int = 5,
    ) -> None:
        super().__init__(
            conn_id=huawei_roma_conn_id,
            poll_interval=poll_interval,
            max_transient_errors=max_transient_errors,
        )
        watch = new_online_status_watch(device_ids, target_online_status)
        check_device_count(type(self).__name__, watch.ids, "device_ids")
        self.device_ids = [int(device_id) for device_id in watch.ids]  # type: ignore[call-overload]
        self.target_online_status = watch.target

    def new_watch(self) -> DeviceWatch:
        return RomaOnlineStatusWatch(self.device_ids, self.target_online_status)

    def arguments(self) -> dict[str, Any]:
        return {
            "device_ids": self.device_ids,
            "target_online_status": self.target_online_status,
            "huawei_roma_conn_id": self.conn_id,
        }
