"""Vendor fakes for the device-status sensors and their triggers.

Each vendor is played by a small fake that keeps every device's current value and answers the
vendor's read calls from it, through requests-mock (the sensors) or an ``httpx.MockTransport`` (the
triggers), so both worlds read the very same fleet. A :class:`Case` bundles one vendor's sensor,
trigger, hook, connection and fake.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.sensors.base import DeviceWatchSensor
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceFirmwareSensor
from airflow_provider_iotfleet.triggers import handover
from airflow_provider_iotfleet.triggers.base import DeviceWatchTrigger
from airflow_provider_iotfleet.triggers.cisco import CiscoDeviceStatusTrigger
from airflow_provider_iotfleet.triggers.handover import XComRef
from airflow_provider_iotfleet.triggers.huawei import HuaweiRomaDeviceStatusTrigger
from airflow_provider_iotfleet.triggers.verizon import VerizonThingSpaceFirmwareTrigger
from tests.connections import (
    CISCO,
    ROMA_AK,
    ROMA_HOST,
    ROMA_SK,
    THINGSPACE,
    with_extra,
)
from tests.connections import ROMA_INSTANCE as INSTANCE
from tests.connections import ROMA_PROJECT as PROJECT
from tests.connections import THINGSPACE_ACCOUNT as ACCOUNT
from tests.connections import THINGSPACE_ROOT as VZ_ROOT
from tests.fake_thingspace import VZ_LOGIN_PATH, VZ_TOKEN_PATH, thingspace_login
from tests.fakes import (
    FakeClock,
    FakeTaskInstance,
    FakeTaskStateStore,
    RecordingVendor,
    Wire,
    luhn_complete,
    operator_context,
)

# --- Vendors ------------------------------------------------------------------------------------

CISCO_PATH = "/rws/api/v1"

ROMA_PATH = f"/v2/{PROJECT}/link/instances/{INSTANCE}/devices"
ROMA_CODES = {"never": 0, "online": 1, "offline": 2}

VZ_DEVICES_PATH = f"/api/fota/v3/devices/{ACCOUNT}"

#: Extras every test connection carries: no client-side retries (a 5xx reaches the sensor at
#: once) and a rate limit that never makes a test wait.
FAST = {"max_retries": 0, "requests_per_second": 100000}

ICCIDS = tuple(luhn_complete(f"890141032111185{n:04d}") for n in range(12))
IMEIS = tuple(luhn_complete(f"35693803564{n:03d}") for n in range(12))
ROMA_IDS = tuple(70_001 + n for n in range(12))


def bad_check_digit(identifier: str) -> str:
    return identifier[:-1] + str((int(identifier[-1]) + 1) % 10)


class FakeVendor(RecordingVendor):
    """A vendor's read endpoints answering from ``values`` (device id as text -> current value).

    ``faults`` are HTTP statuses the next read requests answer with instead (``None``: answer
    normally); ``after_reads`` changes values once some reads were answered. Logins are never
    faulted nor counted as reads.
    """

    def __init__(self, values: Mapping[Any, str | None]) -> None:
        super().__init__()
        self.values: dict[str, str | None] = {str(k): v for k, v in values.items()}
        #: devices whose value changed since the start (what Cisco's Search Devices reports).
        self.changed: set[str] = set()
        self.faults: list[int | None] = []
        self._later: list[tuple[int, dict[str, str | None]]] = []
        #: read requests beyond this many are never answered (the async transport only).
        self.answer_only: int | None = None
        #: read requests that came in and were never answered.
        self.stalled = 0
        self._lock = threading.Lock()

    # --- what tests do to the fleet -------------------------------------------------------------

    def set(self, changes: Mapping[Any, str | None]) -> None:
        with self._lock:
            self._apply({str(k): v for k, v in changes.items()})

    def _apply(self, changes: Mapping[str, str | None]) -> None:
        self.values.update(changes)
        self.changed.update(changes)

    def remove(self, device_id: Any) -> None:
        with self._lock:
            self.values.pop(str(device_id), None)

    def after_reads(self, count: int, changes: Mapping[Any, str | None]) -> None:
        """Apply ``changes`` once ``count`` read requests have been answered."""
        self._later.append((count, {str(k): v for k, v in changes.items()}))

    # --- answering ------------------------------------------------------------------------------

    def respond(self, wire: Wire) -> tuple[int, Any]:
        with self._lock:
            self.wires.append(wire)
            if wire.path in self.auth_paths:
                return self.auth(wire)
            done = len(self.reads) - 1
            for due, changes in list(self._later):
                if done >= due:
                    self._later.remove((due, changes))
                    self._apply(changes)
            if self.faults:
                fault = self.faults.pop(0)
                if fault is not None:
                    return fault, self.error_body(fault)
            return self.read(wire)

    def auth(self, wire: Wire) -> tuple[int, Any]:
        raise NotImplementedError

    def read(self, wire: Wire) -> tuple[int, Any]:
        raise NotImplementedError

    def error_body(self, status: int) -> Any:
        return {"message": f"fault {status}"}

    def transport(self, turns: int = 1, calls: list[int] | None = None) -> httpx.MockTransport:
        """An async transport; each answer takes ``turns`` event-loop turns."""

        async def handler(request: httpx.Request) -> httpx.Response:
            wire = Wire(request.method, str(request.url), await request.aread())
            for _ in range(turns):
                await asyncio.sleep(0)
            unanswered = self.answer_only is not None and len(self.reads) >= self.answer_only
            if unanswered and wire.path not in self.auth_paths:  # a vendor that no longer answers
                self.stalled += 1
                await asyncio.Event().wait()
            status, answer = self.respond(wire)
            return httpx.Response(status, json=answer)

        return httpx.MockTransport(handler)


class FakeCisco(FakeVendor):
    def error_body(self, status: int) -> Any:
        return {"errorCode": f"{status}00000", "errorMessage": f"fault {status}"}

    def read(self, wire: Wire) -> tuple[int, Any]:
        if wire.path == f"{CISCO_PATH}/devices":  # Search Devices: what changed
            devices = [
                {"iccid": iccid, "status": self.values[iccid], "ratePlan": "IOT-1GB"}
                for iccid in sorted(self.changed)
                if iccid in self.values
            ]
            return 200, {"devices": devices, "pageNumber": 1, "lastPage": True}
        iccid = wire.path.rsplit("/", 1)[-1]
        if iccid not in self.values:
            return 404, {"errorCode": "20000001", "errorMessage": "Resource not found - Invalid ICCID."}
        return 200, {"iccid": iccid, "status": self.values[iccid], "ratePlan": "IOT-1GB"}

    def full_reads(self, wires: Sequence[Wire] | None = None) -> list[str]:
        return [w.path.rsplit("/", 1)[-1] for w in (wires or self.reads) if w.path != f"{CISCO_PATH}/devices"]

    def searches(self, wires: Sequence[Wire] | None = None) -> list[Wire]:
        return [w for w in (wires or self.reads) if w.path == f"{CISCO_PATH}/devices"]


class FakeRoma(FakeVendor):
    def __init__(self, values: Mapping[Any, str | None], listing_padding: int = 0) -> None:
        super().__init__(values)
        #: devices of the instance in the listed status that the test does not wait for.
        self.listing_padding = listing_padding

    def error_body(self, status: int) -> Any:
        return {"error_code": f"ROMA.{status}", "error_msg": f"fault {status}", "request_id": "rid-1"}

    def read(self, wire: Wire) -> tuple[int, Any]:
        if wire.path == ROMA_PATH:  # the listing, filtered on online_status
            code = int(wire.query["online_status"][0])
            offset, limit = int(wire.query["offset"][0]), int(wire.query["limit"][0])
            name = {c: n for n, c in ROMA_CODES.items()}[code]
            matching = sorted(int(k) for k, v in self.values.items() if v == name)
            items = [{"device_id": i, "online_status": code} for i in matching[offset : offset + limit]]
            return 200, {"total": len(matching) + self.listing_padding, "size": len(items), "items": items}
        device_id = wire.path.rsplit("/", 1)[-1]
        if device_id not in self.values:
            return 404, {
                "error_code": "ROMA.00110006",
                "error_msg": f"The resource does not exist. Check whether the resource ID {device_id} is correct.",
            }
        value = self.values[device_id]
        return 200, {"device_id": int(device_id), "online_status": ROMA_CODES[value or "never"]}

    def device_reads(self, wires: Sequence[Wire] | None = None) -> list[int]:
        return [int(w.path.rsplit("/", 1)[-1]) for w in (wires or self.reads) if w.path != ROMA_PATH]

    def listings(self, wires: Sequence[Wire] | None = None) -> list[Wire]:
        return [w for w in (wires or self.reads) if w.path == ROMA_PATH]


class FakeVerizon(FakeVendor):
    auth_paths = frozenset({VZ_TOKEN_PATH, VZ_LOGIN_PATH})

    def auth(self, wire: Wire) -> tuple[int, Any]:
        return thingspace_login(wire)

    def error_body(self, status: int) -> Any:
        return {"errorCode": f"FOTA.REQUEST_FAILED.{status}", "errorMessage": f"fault {status}"}

    def read(self, wire: Wire) -> tuple[int, Any]:
        assert (wire.method, wire.path) == ("POST", VZ_DEVICES_PATH), wire
        assert wire.query == {"lastSeenDeviceId": ["0"]}
        devices = [
            {"deviceId": imei, "firmware": self.values[imei], "status": "Active", "protocol": "LWM2M"}
            for imei in wire.json()["deviceList"]
            if imei in self.values
        ]
        return 200, {"deviceList": devices, "hasMoreData": False}

    def bodies(self) -> list[list[str]]:
        return [wire.json()["deviceList"] for wire in self.reads]


@dataclass(frozen=True)
class Case:
    """One vendor's sensor, trigger, connection and fake, and values to wait for."""

    name: str
    sensor_class: type[DeviceWatchSensor]
    trigger_class: type[DeviceWatchTrigger]
    hook_class: type[IoTFleetBaseHook]
    conn_id: str
    connection: dict[str, Any]
    conn_arg: str
    ids_arg: str
    target_arg: str
    ids: tuple[Any, ...]
    target: str
    other: str
    bad_ids: tuple[Any, ...]
    bad_target: Any
    values_key: str
    value_name: str
    fake_class: type[FakeVendor]
    not_found: str
    #: the ids as a user may repeat them (same device twice, possibly spelled differently)
    repeated: Callable[[Sequence[Any]], list[Any]] = field(default=lambda ids: [ids[0], ids[0], ids[1]])

    def fake(self, values: Mapping[Any, str | None]) -> FakeVendor:
        return self.fake_class(values)

    def sensor(self, clock: FakeClock, ids: Sequence[Any] | None = None, **kwargs: Any) -> DeviceWatchSensor:
        arguments: dict[str, Any] = {
            "task_id": f"wait_{self.name}",
            self.conn_arg: self.conn_id,
            self.ids_arg: list(self.ids[:3] if ids is None else ids),
            self.target_arg: self.target,
            "poke_interval": 0,
            "timeout": 600,
            "deferrable": False,
            **kwargs,
        }
        sensor = self.sensor_class(**arguments)
        sensor.__dict__["hook"] = self.hook_class(self.conn_id, clock=clock)  # type: ignore[call-arg]
        return sensor

    def xcom(
        self,
        values: Mapping[Any, str | None],
        ids: Sequence[Any] | None = None,
        unreachable: Mapping[Any, str] | None = None,
    ) -> dict[str, Any]:
        """The XCom value DESIGN.md gives: matched ids in input order, every id's last value, and
        the devices that can never match with the reason why."""
        ids = list(self.ids[:3] if ids is None else ids)
        return {
            "matched": [i for i in ids if values.get(i) == self.target],
            self.values_key: {str(i): values.get(i) for i in ids},
            "unreachable": {str(i): reason for i, reason in (unreachable or {}).items()},
        }


CISCO = Case(
    name="cisco",
    sensor_class=CiscoControlCenterDeviceStatusSensor,
    trigger_class=CiscoDeviceStatusTrigger,
    hook_class=CiscoControlCenterHook,
    conn_id="cisco_sensor_test",
    connection=with_extra(CISCO, **FAST),
    conn_arg="cisco_control_center_conn_id",
    ids_arg="iccids",
    target_arg="target_status",
    ids=ICCIDS,
    target="ACTIVATED",
    other="DEACTIVATED",
    bad_ids=("123", bad_check_digit(ICCIDS[1])),
    bad_target="ACTIVE",
    values_key="statuses",
    value_name="status",
    fake_class=FakeCisco,
    not_found="Invalid ICCID",
)
ROMA = Case(
    name="huawei",
    sensor_class=HuaweiRomaDeviceStatusSensor,
    trigger_class=HuaweiRomaDeviceStatusTrigger,
    hook_class=HuaweiRomaConnectHook,
    conn_id="roma_sensor_test",
    connection={
        "conn_type": "huawei_roma",
        "host": ROMA_HOST,
        "login": ROMA_AK,
        "password": ROMA_SK,
        "extra": {"project_id": PROJECT, "instance_id": INSTANCE, **FAST},
    },
    conn_arg="huawei_roma_conn_id",
    ids_arg="device_ids",
    target_arg="target_online_status",
    ids=ROMA_IDS,
    target="offline",
    other="online",
    bad_ids=("abc", 0),
    bad_target="sleeping",
    values_key="statuses",
    value_name="status",
    fake_class=FakeRoma,
    not_found="resource does not exist",
    repeated=lambda ids: [ids[0], str(ids[0]), ids[1]],
)
VERIZON = Case(
    name="verizon",
    sensor_class=VerizonThingSpaceFirmwareSensor,
    trigger_class=VerizonThingSpaceFirmwareTrigger,
    hook_class=VerizonThingSpaceHook,
    conn_id="verizon_sensor_test",
    connection={**with_extra(THINGSPACE, **FAST), "host": VZ_ROOT},
    conn_arg="verizon_thingspace_conn_id",
    ids_arg="imeis",
    target_arg="target_firmware",
    ids=IMEIS,
    target="SR1.3.0.0-11020",
    other="SR1.2.0.0-10657",
    bad_ids=("12345", bad_check_digit(IMEIS[1])),
    bad_target="   ",
    values_key="firmware",
    value_name="firmware",
    fake_class=FakeVerizon,
    not_found="not in the account",
)
CASES = (CISCO, ROMA, VERIZON)


def define_connection(monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{case.conn_id.upper()}", json.dumps(case.connection))


# --- Waits in which some devices can never reach the target -------------------------------------------


@dataclass(frozen=True)
class Settled:
    """One situation in which devices settle without reaching the target, as a row of a table.

    Devices are positions in ``case.ids``. The vendor knows the devices in ``fleet`` (position ->
    value) and not the others; after the first poll the fleet changes by ``later``, and the devices
    in ``leaves`` leave it. The wait must end with ``matched`` matched, ``unreachable`` settled with
    their reasons at once (never read again after the poll that settled them), and ``values`` as
    every device's last value.
    """

    name: str
    case: Case
    target: str
    fleet: Mapping[int, str]
    waited: Sequence[int]
    matched: Sequence[int]
    unreachable: Mapping[int, str]
    values: Mapping[int, str | None]
    later: Mapping[int, str] = field(default_factory=dict)
    leaves: Sequence[int] = ()

    def ids(self, positions: Sequence[int] | None = None) -> list[Any]:
        return [self.case.ids[p] for p in (self.waited if positions is None else positions)]

    def fake(self) -> FakeVendor:
        return self.case.fake({self.case.ids[p]: value for p, value in self.fleet.items()})

    def change(self, fake: FakeVendor) -> None:
        """What happens to the fleet after the first poll."""
        fake.set({self.case.ids[p]: value for p, value in self.later.items()})
        for p in self.leaves:
            fake.remove(self.case.ids[p])

    def xcom(self) -> dict[str, Any]:
        """The sensor's XCom value at the end of this wait."""
        return {
            "matched": self.ids(self.matched),
            self.case.values_key: {str(self.case.ids[p]): self.values[p] for p in self.waited},
            "unreachable": {str(self.case.ids[p]): reason for p, reason in self.unreachable.items()},
        }


_TWELVE = range(12)
SETTLED = (
    Settled(
        "cisco-unknown-iccid",
        CISCO,
        "ACTIVATED",
        fleet={0: "DEACTIVATED"},
        waited=(0, 1),
        later={0: "ACTIVATED"},
        matched=(0,),
        unreachable={1: "not_found"},
        values={0: "ACTIVATED", 1: None},
    ),
    Settled(
        "roma-unknown-id",
        ROMA,
        "offline",
        fleet={0: "online"},
        waited=(0, 1),
        later={0: "offline"},
        matched=(0,),
        unreachable={1: "not_found"},
        values={0: "offline", 1: None},
    ),
    Settled(
        "roma-never-connected-counts-as-offline",
        ROMA,
        "offline",
        fleet={0: "online", 1: "never"},
        waited=(0, 1),
        later={0: "offline"},
        matched=(0, 1),
        unreachable={},
        values={0: "offline", 1: "never"},
    ),
    Settled(
        "roma-listing-sees-never-connected-devices",
        ROMA,
        "offline",
        fleet=dict.fromkeys(_TWELVE, "online") | {3: "never", 7: "never"},
        waited=tuple(_TWELVE),
        later={p: "offline" for p in _TWELVE if p not in (3, 7)},
        matched=tuple(_TWELVE),
        unreachable={},
        values={p: "never" if p in (3, 7) else "offline" for p in _TWELVE},
    ),
    Settled(
        "roma-connected-device-can-never-be-never-connected",
        ROMA,
        "never",
        fleet={0: "never", 1: "online"},
        waited=(0, 1),
        matched=(0,),
        unreachable={1: "connected_before"},
        values={0: "never", 1: "online"},
    ),
    Settled(
        "verizon-imei-not-in-the-account",
        VERIZON,
        VERIZON.target,
        fleet={0: VERIZON.other},
        waited=(0, 1),
        later={0: VERIZON.target},
        matched=(0,),
        unreachable={1: "not_in_account"},
        values={0: VERIZON.target, 1: None},
    ),
    Settled(
        "verizon-imei-leaving-the-account",
        VERIZON,
        VERIZON.target,
        fleet={0: VERIZON.other, 1: VERIZON.other},
        waited=(0, 1),
        later={0: VERIZON.target},
        leaves=(1,),
        matched=(0,),
        unreachable={1: "not_in_account"},
        values={0: VERIZON.target, 1: VERIZON.other},
    ),
)


# --- Handing a wait to its trigger: XComs, and the deferral of N devices ------------------------------


class FakeXComs:
    """The XComs the tasks of a test pushed, read back by triggers as the Task SDK would: values
    round-tripped through JSON, ``None`` for an XCom that is not there.

    :meth:`install` makes every trigger read from here instead of the Task SDK (which needs a
    supervisor); :attr:`reads` counts the reads.
    """

    def __init__(self) -> None:
        self.values: dict[tuple[str, str, str, int, str], Any] = {}
        self.reads = 0

    def take(self, ti: FakeTaskInstance) -> None:
        """Keep what ``ti`` pushed."""
        for key, value in ti.xcom.items():
            self.values[(ti.dag_id, ti.run_id, ti.task_id, ti.map_index, key)] = json.loads(json.dumps(value))

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeXComs:
        async def aget_xcom(ref: XComRef) -> Any:
            await asyncio.sleep(0)  # a read through the supervisor hands the loop to other triggers
            self.reads += 1
            return self.values.get((ref.dag_id, ref.run_id, ref.task_id, ref.map_index, ref.key))

        monkeypatch.setattr(handover, "aget_xcom", aget_xcom)
        return self


# --- Reschedule mode: each poke a new run of the task ------------------------------------------------


class RescheduledTaskInstance(FakeTaskInstance):
    """A task instance in ``mode="reschedule"``: Airflow asks it when its first poke was."""

    def get_first_reschedule_date(self, context: Any) -> None:
        return None  # no earlier reschedule in the database: the sensor's timeout counts from now


def reschedule_context(
    task_id: str, store: FakeTaskStateStore | None, try_number: int = 1
) -> dict[str, object]:
    """The context of one reschedule-mode poke (each runs the task anew, with a fresh operator);
    ``store`` is the task's state store, kept across them (``None``: Airflow 3.2, which has none)."""
    context = operator_context(task_id, try_number=try_number, state_store=store)
    ti = RescheduledTaskInstance(task_id)
    ti.try_number = try_number
    context["ti"] = ti
    return context
