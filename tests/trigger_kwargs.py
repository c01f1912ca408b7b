"""The deferral of a device-status sensor over N devices, built without requests, and its size.

For ``make bench`` (``trigger, ti = deferral_for_devices(100_000); kwargs_bytes(trigger)``) and the
tests that hold the kwargs under 16 KiB: this module needs only the provider and ``tests.fakes``,
not the test extras.
"""

from __future__ import annotations

import json

from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.triggers.base import DeviceWatchTrigger
from tests.fakes import FakeTaskInstance, luhn_complete, operator_context


def iccids(count: int, prefix: str = "8901410") -> list[str]:
    """``count`` distinct Luhn-valid 20-digit ICCIDs (the longest ids any vendor here takes)."""
    return [luhn_complete(f"{prefix}{n:012d}") for n in range(count)]


def deferral_for_devices(
    count: int, matched_share: float = 0.5, unreachable_share: float = 0.0
) -> tuple[DeviceWatchTrigger, FakeTaskInstance]:
    """The trigger a Cisco status sensor over ``count`` SIMs defers to, and its task instance (with
    the XComs it pushed), as :meth:`DeviceWatchSensor.execute` builds them after a first check that
    found ``matched_share`` of the SIMs at the target and ``unreachable_share`` unknown; built
    without any request or connection, for measuring what a deferral of ``count`` devices costs
    (``make bench``: :func:`kwargs_bytes` of the trigger).
    """
    ids = iccids(count)
    sensor = CiscoControlCenterDeviceStatusSensor(
        task_id="wait_sims", iccids=ids, target_status="ACTIVATED", deferrable=True
    )
    watch = sensor.new_watch()
    matched = int(count * matched_share)
    unreachable = int(count * unreachable_share)
    watch.absorb(
        dict.fromkeys(ids[:matched], "ACTIVATED") | dict.fromkeys(ids[matched + unreachable :], "TEST_READY"),
        dict.fromkeys(ids[matched : matched + unreachable], "not_found"),
    )
    context = operator_context(task_id=sensor.task_id)
    trigger = sensor.deferral_trigger(context, watch)  # type: ignore[arg-type]
    ti = context["ti"]
    assert isinstance(ti, FakeTaskInstance)
    return trigger, ti


def kwargs_bytes(trigger: DeviceWatchTrigger) -> int:
    """The size of ``trigger``'s serialised kwargs, as JSON: what Airflow's trigger table holds
    (before its encryption, which adds about a third)."""
    return len(json.dumps(trigger.serialize()[1]).encode())
