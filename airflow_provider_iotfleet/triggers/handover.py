"""How a device-status sensor hands its wait to its trigger: inline when small, by XCom reference when not.

Airflow keeps a trigger's kwargs in its ``trigger`` table (a ``Text`` column: 64 KiB on MySQL), and the
triggerer loads them again after every restart, so they must stay small whatever the device count.
What the wait is about (the devices, and what the sensor's first check already matched or found
unreachable) is a :class:`WatchState`: up to :data:`INLINE_DEVICES` devices (and
:data:`INLINE_BYTES`) it travels in the kwargs; beyond, the sensor pushes it to an XCom of its own
task instance (key :data:`WATCH_XCOM_KEY`) and the kwargs carry only an :class:`XComRef` to it.
XComs are not cleared when a deferred task resumes, so the trigger reads it back when it starts, and
again when the triggerer rebuilds it from its kwargs: it then waits on exactly those devices.

The read goes through the Task SDK's XCom class (the configured XCom backend, so values a custom
backend keeps elsewhere are read back the same way): awaited where the process's channel to its
supervisor can be awaited (the triggerer of Airflow 3.3+), in a worker thread otherwise (Airflow 3.2,
and ``dag.test()``, which runs triggers in-process with a synchronous channel). Either way the
event loop is never blocked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseXCom
from airflow.sdk.configuration import conf
from asgiref.sync import sync_to_async

from airflow_provider_iotfleet.exceptions import IoTFleetError

#: The XCom key under which a sensor leaves a large wait for its trigger.
WATCH_XCOM_KEY = "iotfleet_watch"
#: Up to this many devices, and this many bytes of JSON, a wait travels in the trigger's kwargs.
INLINE_DEVICES = 100
INLINE_BYTES = 8 * 1024


class IoTFleetHandoverError(IoTFleetError):
    """The devices a trigger is to wait on could not be read back from the XCom its sensor pushed."""


@dataclass(frozen=True)
class WatchState:
    """What a wait is about, as JSON primitives.

    :ivar ids: the devices, validated, in input order.
    :ivar seen: ``[[id, value], ...]``: matched by the sensor's first check.
    :ivar unreachable: ``[[id, reason, last value], ...]``: found unreachable by it.
    """

    ids: list[Any]
    seen: list[list[Any]]
    unreachable: list[list[Any]]

    def to_json(self) -> dict[str, Any]:
        return {"ids": self.ids, "seen": self.seen, "unreachable": self.unreachable}

    @classmethod
    def from_json(cls, value: Any, where: str) -> WatchState:
        """Read a state back from its JSON form.

        :param where: how messages name the place it came from.
        :raises IoTFleetHandoverError: when ``value`` is missing or not such a state.
        """
        if value is None:
            raise IoTFleetHandoverError(
                f"the devices to wait on are not in {where}: was the task instance cleared, or its XComs "
                "deleted, while it was deferred? Clear the task to start the wait again"
            )
        if not (
            isinstance(value, Mapping)
            and isinstance(value.get("ids"), list)
            and all(isinstance(value.get(key, []), list) for key in ("seen", "unreachable"))
            and all(isinstance(entry, list) and len(entry) == 2 for entry in value.get("seen", []))
            and all(isinstance(entry, list) and len(entry) == 3 for entry in value.get("unreachable", []))
        ):
            raise IoTFleetHandoverError(
                f"{where} does not hold the devices to wait on: {type(value).__name__}"
            )
        return cls(list(value["ids"]), list(value.get("seen", [])), list(value.get("unreachable", [])))

    def fits_inline(self) -> bool:
        """Whether this state may travel in a trigger's kwargs."""
        return len(self.ids) <= INLINE_DEVICES and len(json.dumps(self.to_json()).encode()) <= INLINE_BYTES


@dataclass(frozen=True)
class XComRef:
    """Where a :class:`WatchState` was pushed: one XCom of the sensor's own task instance."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    key: str = WATCH_XCOM_KEY

    def to_json(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "key": self.key,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> XComRef:
        return cls(
            dag_id=str(value["dag_id"]),
            run_id=str(value["run_id"]),
            task_id=str(value["task_id"]),
            map_index=int(value["map_index"]),
            key=str(value.get("key", WATCH_XCOM_KEY)),
        )

    @classmethod
    def of(cls, ti: Any) -> XComRef:
        """The reference to the watch XCom of task instance ``ti`` (``context["ti"]``)."""
        map_index = getattr(ti, "map_index", -1)
        return cls(
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            map_index=-1 if map_index is None else int(map_index),
        )

    def __str__(self) -> str:
        mapped = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"XCom {self.key!r} of task {self.task_id}{mapped} (DAG {self.dag_id}, run {self.run_id})"


def hand_over(state: WatchState, ti: Any) -> tuple[WatchState | None, XComRef | None]:
    """Return how ``state`` travels to the trigger: itself when it fits in the kwargs, else a
    reference to the XCom it was just pushed to (on ``ti``, the sensor's task instance).

    :return: ``(state, None)`` or ``(None, reference)``.
    """
    if state.fits_inline():
        return state, None
    ref = XComRef.of(ti)
    ti.xcom_push(key=ref.key, value=state.to_json())
    return None, ref


async def aread_state(ref: XComRef) -> WatchState:
    """Read back the state a sensor pushed, without blocking the event loop.

    :raises IoTFleetHandoverError: when the XCom is gone or does not hold a state.
    """
    return WatchState.from_json(await aget_xcom(ref), str(ref))


def xcom_backend() -> type[BaseXCom]:
    """The configured XCom class (``[core] xcom_backend``), as the Task SDK resolves it."""
    backend = conf.getimport("core", "xcom_backend")
    return backend if isinstance(backend, type) and issubclass(backend, BaseXCom) else BaseXCom


async def aget_xcom(ref: XComRef) -> Any:
    """One XCom's value (``None`` when there is none), read through the Task SDK.

    ``BaseXCom.aget_one`` (Task SDK 1.3+, Airflow 3.3+) is awaited when this process's channel to
    its supervisor can be awaited (the triggerer's can); otherwise the synchronous ``get_one`` runs
    in a worker thread (``sync_to_async``, so that a channel which bridges back to the event loop
    finds it): Airflow 3.2, and ``dag.test()``, whose in-process channel has no async send.
    """
    backend = xcom_backend()
    arguments = {
        "key": ref.key,
        "dag_id": ref.dag_id,
        "task_id": ref.task_id,
        "run_id": ref.run_id,
        "map_index": ref.map_index,
    }
    aget_one = getattr(backend, "aget_one", None)
    if aget_one is not None and supervisor_channel_is_async():
        return await aget_one(**arguments)
    return await sync_to_async(backend.get_one, thread_sensitive=False)(**arguments)


def supervisor_channel_is_async() -> bool:
    """Whether this process's Task SDK channel to its supervisor has an async ``asend``.

    The one use of a private Task SDK name in this provider (``task_runner.SUPERVISOR_COMMS``, which
    Airflow's own ``amask_secret`` looks at the same way): no public API says whether the channel
    can be awaited. ``tests/unit/test_triggers.py`` fails loudly if Airflow moves it.
    """
    from airflow.sdk.execution_time import task_runner

    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    return callable(getattr(comms, "asend", None))
