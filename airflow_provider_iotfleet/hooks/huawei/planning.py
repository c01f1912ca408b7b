"""What a force-offline would do, read from ROMA Connect without changing anything (a dry run's plan)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_iotfleet.hooks.huawei.answers import (
    NEVER,
    NEVER_CONNECTED,
    NEVER_CONNECTED_MESSAGE,
    NOT_FORCED,
    NOT_FORCED_OFFLINE,
    OFFLINE,
    ONLINE_STATUS,
    VENDOR,
    ForceOfflineResult,
    failed_entry,
)
from airflow_provider_iotfleet.http.plans import run_plan

if TYPE_CHECKING:
    from airflow_provider_iotfleet.hooks.huawei.hook import HuaweiRomaConnectHook

ONLINE = "online"


def plan_force_offline(hook: HuaweiRomaConnectHook, ids: list[int]) -> ForceOfflineResult:
    """Read the devices' online status and say what a force-offline of ``ids`` would do, sending
    nothing that changes them.

    The reads are the hook's cheapest (:meth:`HuaweiRomaConnectHook.read_online_statuses`'s plan):
    each device read once when few, else the instance's listing filtered on ``online`` paged once;
    the devices not online are then told apart as a real run's read-back of refused devices does (the
    never-connected listing, then the offline one for the rest), so that a plan and its apply agree.

    :param ids: checked ROMA device ids (the operator validated them).
    :return: ``succeeded``: online devices (would be forced offline); ``unchanged``: already offline;
        ``failed``: never connected (``never_connected``, not attempted: a real run would not send
        them once it read them so, and ROMA refuses them), and devices ROMA does not know
        (``not_forced_offline``, as ROMA's refusal of them reads in a real run).
    :raises IoTFleetError: when a read fails (a plan that could not read says nothing).
    """
    reads = run_plan(hook.client, hook._statuses_plan(ids, ONLINE_STATUS[ONLINE], watching=True))
    statuses: dict[int, str] = {
        device_id: value for device_id, value in reads.values.items() if value is not None
    }
    # From the filtered listing, a device is "online" or "not online": which of the others are
    # offline or never connected takes the reads a real run makes of the devices ROMA refused.
    undecided = [device_id for device_id in ids if statuses.get(device_id) == f"not {ONLINE}"]
    if undecided:
        statuses.update(hook._offline_or_not(undecided, NEVER))
        still = [device_id for device_id in undecided if statuses.get(device_id) == f"not {NEVER}"]
        if still:
            statuses.update(hook._offline_or_not(still, with_never=False))
    succeeded, unchanged, failed = [], [], []
    for device_id in ids:
        status = statuses.get(device_id)
        if status == ONLINE:
            succeeded.append({"id": device_id, "device_name": None})
        elif status == OFFLINE:
            unchanged.append(device_id)
        elif status == NEVER:
            failed.append(failed_entry(device_id, NEVER_CONNECTED, NEVER_CONNECTED_MESSAGE, attempted=False))
        else:  # unknown to ROMA (404, or in no listing): ROMA refuses it, and a real run says so
            failed.append(failed_entry(device_id, NOT_FORCED, NOT_FORCED_OFFLINE))
    hook.log.info(
        "%s: %d of %d devices online (would be forced offline), %d already offline, %d would be refused",
        VENDOR,
        len(succeeded),
        len(ids),
        len(unchanged),
        len(failed),
    )
    return ForceOfflineResult(succeeded=succeeded, failed=failed, unchanged=unchanged)
