"""What every device-status wait shares, in the sensor's poke and in its deferrable trigger.

A :class:`DeviceWatch` is the vendor-neutral state of one wait: the devices, the value each must
reach, the last value seen, which are matched, and which can never match (unreachable, with a
reason). A vendor subclass says how to read the devices still waited on, once with the sync hook
(:meth:`DeviceWatch.poll`, for ``poke``) and once with its async twin (:meth:`DeviceWatch.apoll`,
for the trigger); everything else, including the XCom value and the messages, is written here once.
:class:`DeviceWatchTrigger` is the trigger template: the vendor triggers only name their watch and
hook. Its devices come inline or by XCom reference (:mod:`.handover`), and it reads its connection
when it starts (:func:`shared_hook`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import time
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_iotfleet.deadlines import Bound
from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError, IoTFleetError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.reads import NOT_FOUND
from airflow_provider_iotfleet.http.retry import is_transient
from airflow_provider_iotfleet.triggers.handover import (
    IoTFleetHandoverError,
    WatchState,
    XComRef,
    aread_state,
    hand_over,
)
from airflow_provider_iotfleet.utils import plural

if TYPE_CHECKING:
    from airflow.sdk.types import Logger

#: How many unmatched devices a log line or message names.
SAMPLE_SIZE = 5

#: Why a device can never reach the target, as the XCom value's ``unreachable`` says it: the vendor
#: does not know the device (Control Center ICCIDs and ROMA ids read one by one); the ThingSpace
#: account does not have the IMEI; a ROMA device waited on for ``never`` has connected before.
NOT_IN_ACCOUNT = "not_in_account"
CONNECTED_BEFORE = "connected_before"
REASONS = {
    NOT_FOUND: "the vendor does not know it",
    NOT_IN_ACCOUNT: "the account does not have it",
    CONNECTED_BEFORE: "it has connected before",
}


def describe_unreachable(
    unreachable: Mapping[Any, str], total: int, unit: str, value_name: str, target: str
) -> str:
    """``"1 of 10 devices can never report status ACTIVATED: 8901... (not_found: the vendor does not
    know it)"``: a count and a short sample."""
    sample = ", ".join(
        f"{device_id} ({reason}: {REASONS.get(reason, reason)})"
        for device_id, reason in list(unreachable.items())[:SAMPLE_SIZE]
    )
    more = f" and {len(unreachable) - SAMPLE_SIZE} more" if len(unreachable) > SAMPLE_SIZE else ""
    return (
        f"{len(unreachable)} of {plural(total, unit)} can never report {value_name} {target}: {sample}{more}"
    )


class DeviceWatch:
    """Devices waited on until each reports ``target``; a device once matched stays matched.

    A device that can never report the target (the vendor does not know it, say) is settled at once
    as *unreachable*, with a reason (:data:`REASONS`): it is not read again, and the wait is over
    when every device is matched or unreachable.

    :param ids: the devices, validated, in the order the user gave them.
    :param target: the value each must report.
    """

    #: the XCom key of the per-device values ("statuses", "firmware").
    values_key: ClassVar[str] = "statuses"
    #: what a value is called in messages ("status", "firmware").
    value_name: ClassVar[str] = "status"
    #: what a device is called in messages.
    unit: ClassVar[str] = "device"

    def __init__(self, ids: Sequence[Hashable], target: str) -> None:
        # A tuple of str/int ids, which the garbage collector stops tracking: a triggerer holds
        # thousands of watches for hours.
        self.ids = tuple(ids)
        self.target = target
        self.values: dict[Hashable, str | None] = {}
        self.matched: set[Hashable] = set()
        self.unreachable: dict[Hashable, str] = {}
        self.polls = 0

    # --- vendor reads: one line each, the same read in both worlds ------------------------------

    def poll(self, hook: Any) -> None:
        """Read the unmatched devices with the sync hook and absorb what they report."""
        raise NotImplementedError

    async def apoll(self, hook: Any) -> None:
        """Read the unmatched devices with the hook's async methods and absorb what they report."""
        raise NotImplementedError

    # --- what a value means: the target, or never --------------------------------------------------

    def reaches(self, value: str | None) -> bool:
        """Whether a device reporting ``value`` has reached the target."""
        return value == self.target

    def cannot_reach(self, value: str | None) -> str | None:
        """The reason a device reporting ``value`` can never reach the target, or ``None``."""
        return None

    # --- shared state ---------------------------------------------------------------------------

    def absorb(self, values: Mapping[Any, str | None], unreachable: Mapping[Any, str] | None = None) -> None:
        """Record what the devices reported in one poll, and those found unreachable (id -> reason)."""
        self.polls += 1
        for device_id, value in values.items():
            if device_id in self.matched or device_id in self.unreachable:
                continue
            self.values[device_id] = value
            if self.reaches(value):
                self.matched.add(device_id)
            elif (reason := self.cannot_reach(value)) is not None:
                self.unreachable[device_id] = reason
        for device_id, reason in (unreachable or {}).items():
            if device_id not in self.matched:
                self.unreachable.setdefault(device_id, reason)

    def seen(self) -> list[list[Any]]:
        """``[[id, value], ...]`` for the matched devices: what a trigger must start from."""
        return [
            [device_id, self.values.get(device_id)] for device_id in self.ids if device_id in self.matched
        ]

    def settled(self) -> list[list[Any]]:
        """``[[id, reason, last value], ...]`` for the unreachable devices: what a trigger must start
        from too."""
        return [
            [device_id, self.unreachable[device_id], self.values.get(device_id)]
            for device_id in self.ids
            if device_id in self.unreachable
        ]

    def restore(self, seen: Sequence[Sequence[Any]], settled: Sequence[Sequence[Any]] = ()) -> None:
        """Start from what an earlier check already matched and settled (see :meth:`seen` and
        :meth:`settled`)."""
        for device_id, value in seen:
            self.values[device_id] = value
            self.matched.add(device_id)
        for device_id, reason, value in settled:
            self.values[device_id] = value
            self.unreachable[device_id] = reason

    @property
    def unmatched(self) -> list[Hashable]:
        """The devices still waited on (neither matched nor unreachable): what a poll reads."""
        return [
            device_id
            for device_id in self.ids
            if device_id not in self.matched and device_id not in self.unreachable
        ]

    @property
    def done(self) -> bool:
        return len(self.matched) + len(self.unreachable) == len(self.ids)

    def xcom(self) -> dict[str, Any]:
        """The sensor's XCom value: matched ids in input order, each device's last value, and the
        unreachable devices with their reasons."""
        return {
            "matched": [device_id for device_id in self.ids if device_id in self.matched],
            self.values_key: {str(device_id): self.values.get(device_id) for device_id in self.ids},
            "unreachable": {
                str(device_id): self.unreachable[device_id]
                for device_id in self.ids
                if device_id in self.unreachable
            },
        }

    def waiting_for(self) -> str:
        """What the wait is for, for the sensor's first log line: ``"3 devices to report status ACTIVATED"``."""
        return f"{plural(len(self.ids), self.unit)} to report {self.value_name} {self.target}"

    def describe_unmatched(self) -> str:
        """``"2 of 10 devices not yet at status ACTIVATED: 8901... (DEACTIVATED), ..."``, and the
        unreachable devices after it, if any."""
        unmatched = self.unmatched
        if not unmatched:
            done = f"every {'reachable ' if self.unreachable else ''}{self.unit} reports {self.value_name} {self.target}"
            return f"{done}; {self.describe_unreachable()}" if self.unreachable else done
        sample = ", ".join(f"{device_id} ({self._shown(device_id)})" for device_id in unmatched[:SAMPLE_SIZE])
        more = f" and {len(unmatched) - SAMPLE_SIZE} more" if len(unmatched) > SAMPLE_SIZE else ""
        waiting = (
            f"{len(unmatched)} of {plural(len(self.ids), self.unit)} not yet at {self.value_name} "
            f"{self.target}: {sample}{more}"
        )
        return f"{waiting}; {self.describe_unreachable()}" if self.unreachable else waiting

    def describe_unreachable(self) -> str:
        """The unreachable devices, counted, with a sample and their reasons."""
        settled = {device_id: reason for device_id, reason, _ in self.settled()}
        return describe_unreachable(settled, len(self.ids), self.unit, self.value_name, self.target)

    def _shown(self, device_id: Hashable) -> str:
        if device_id not in self.values:
            return "not read yet"
        value = self.values[device_id]
        return "none reported" if value is None else str(value)

    def event(self, status: str, message: str = "") -> dict[str, Any]:
        """The JSON-safe payload a trigger fires: the XCom value, what is unmatched and unreachable,
        and why it ended."""
        xcom = self.xcom()
        return {
            "status": status,
            "message": message,
            "xcom": xcom,
            "unmatched": {str(device_id): self.values.get(device_id) for device_id in self.unmatched},
            "unreachable": xcom.get("unreachable", {}),
            "description": self.describe_unmatched(),
        }


#: Seconds a trigger that starts after its deadline (its triggerer was down or busy) still polls
#: once, so that devices which reached the target meanwhile are not reported as timed out: well
#: within the two minutes Airflow waits beyond the sensor's timeout (``DEFERRAL_GRACE``).
LATE_START_LOOK = 30.0

#: The share of its poll interval a trigger may wait before it starts (see
#: :meth:`DeviceWatchTrigger.start_delay`): its first poll comes at a random point within it.
START_SPREAD = 1.0

#: A trigger logs what it still waits for when that changed, else once every this many polls: a
#: triggerer running thousands of waits does not write a line per wait per poll, and a long wait's
#: log still shows it is alive.
QUIET_POLLS = 10

#: (event loop, hook class, connection id, fingerprint of the connection) -> (hook, its users).
_SHARED: dict[tuple[int, type[IoTFleetBaseHook], str, str], tuple[IoTFleetBaseHook, int]] = {}

#: Trigger class -> the logger its instances share (see :attr:`DeviceWatchTrigger.log`).
_CLASS_LOGGERS: dict[type, Logger] = {}

#: The connection fields a hook is built from: two reads that agree on all of them may share a hook.
_CONNECTION_FIELDS = ("conn_type", "host", "schema", "login", "password", "port", "extra")


def _fingerprint(connection: Any) -> str:
    """A digest of the connection's fields, to tell two versions of a connection apart without
    keeping (or ever logging) its secrets."""
    fields = [getattr(connection, name, None) for name in _CONNECTION_FIELDS]
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


#: What :func:`acquire_shared_hook` hands out: the key :func:`release_shared_hook` gives back.
SharedHookKey = tuple[int, type[IoTFleetBaseHook], str, str]


async def acquire_shared_hook(
    hook_class: type[IoTFleetBaseHook], conn_id: str
) -> tuple[SharedHookKey, IoTFleetBaseHook]:
    """Take one more use of the hook every trigger in this event loop shares for ``conn_id`` (see
    :func:`shared_hook`), building it when none does yet.

    :return: the key to give :func:`release_shared_hook` once done, and the hook.
    :raises IoTFleetConfigurationError: when the connection is not defined (deleted, say), naming it.
    """
    try:
        connection = await hook_class.aget_connection(conn_id)
    except AirflowNotFoundException:
        raise IoTFleetConfigurationError(
            f"Connection {conn_id!r} ({hook_class.hook_name}) is not defined: it was deleted, or never "
            "created. Define it again (or fix the sensor's connection id) and clear the task",
            vendor=hook_class.hook_name,
        ) from None
    key = (id(asyncio.get_running_loop()), hook_class, conn_id, _fingerprint(connection))
    # Only its fingerprint is kept: 2,000 waiting triggers would otherwise each keep a copy of the
    # connection (and its secret).
    del connection
    hook, users = _SHARED.get(key, (None, 0))
    if hook is None:
        hook = hook_class(conn_id)
    _SHARED[key] = (hook, users + 1)
    return key, hook


async def release_shared_hook(key: SharedHookKey) -> None:
    """Give back one use of the shared hook taken with ``key``; the last user closes it."""
    hook, users = _SHARED[key]
    if users > 1:
        _SHARED[key] = (hook, users - 1)
    else:
        del _SHARED[key]
        await hook.aclose()


@asynccontextmanager
async def shared_hook(hook_class: type[IoTFleetBaseHook], conn_id: str) -> AsyncIterator[IoTFleetBaseHook]:
    """One hook per connection for every trigger in this event loop, closed when the last one ends.

    Triggers waiting on the same tenant then share one connection pool, one login and one rate
    limiter, so 500 waits poll like one client, within the vendor's limits. Each trigger reads the
    connection as it is when it starts, and shares a hook only with the triggers that read the
    same one: a trigger started after the connection was fixed (a new host, a rotated key) uses
    the fixed connection, while the triggers started before keep theirs.

    :raises IoTFleetConfigurationError: when the connection is not defined (deleted, say), naming it.
    """
    key, hook = await acquire_shared_hook(hook_class, conn_id)
    try:
        yield hook
    finally:
        await release_shared_hook(key)


class DeviceWatchTrigger(BaseTrigger):
    """Polls a :class:`DeviceWatch` until every device matches or is unreachable, the deadline passes,
    or the vendor fails for good; then fires one event the sensor's ``execute_complete`` turns into
    its result.

    Transient failures (throttling, 5xx, dropped connections, after the client's own retries) are
    retried up to ``max_transient_errors`` polls in a row. Each poll is bounded by what is left of
    the deadline: slow answers end the wait with the ``timeout`` event at the deadline, not after
    it. Everything is awaited: nothing here blocks the event loop, and nothing is per-trigger thread.
    After a poll it logs what it still waits for when that changed, else every :data:`QUIET_POLLS`
    polls; each tolerated failure is logged as a warning.

    The devices come inline (``ids``, ``seen``, ``unreachable``) when there are few, or as
    ``devices_ref``, a reference to the XCom the sensor pushed them to (see
    :mod:`~airflow_provider_iotfleet.triggers.handover`): the kwargs stay small whatever the device
    count, and a trigger the triggerer rebuilds from them reads the same devices again.

    A trigger does not poll the moment it starts: the sensor checked every device just before it
    deferred, so the trigger's first poll is due one poll interval later, and it comes at a random
    point within that interval (:meth:`start_delay`). Triggers that start together (a triggerer
    starting with hundreds of them, a DAG run deferring many sensors at once) then read their
    connections and send their first requests spread over the interval, not all in one turn of the
    event loop. A trigger that starts after its deadline looks at once.

    The connection is read when the trigger starts (:func:`shared_hook`): a trigger started after
    it was fixed uses the fixed one, and one that is gone (deleted, or missing a field the hook
    needs) ends the wait at once with an ``error`` event whose message names it.

    :param conn_id: the Airflow connection.
    :param target: the value each must report.
    :param poll_interval: seconds between polls.
    :param deadline: the epoch second after which the wait ends with a ``timeout`` event.
    :param max_transient_errors: polls in a row that may fail transiently before giving up.
    :param options: vendor-specific watch arguments, JSON primitives (ThingSpace's account).
    :param ids: the devices (JSON primitives), when inline.
    :param seen: ``[[id, value], ...]`` the sensor's first check already found matched, so the
        event's XCom value covers every device, as in poke mode (inline only).
    :param unreachable: ``[[id, reason, last value], ...]`` the sensor's first check already found
        unreachable: they are not read again (inline only).
    :param devices_ref: ``{"dag_id", "run_id", "task_id", "map_index", "key"}``: the XCom holding
        ``{"ids", "seen", "unreachable"}``, instead of the three above.
    :raises ValueError: when neither ``ids`` nor ``devices_ref`` is given.
    """

    watch_class: ClassVar[type[DeviceWatch]]
    hook_class: ClassVar[type[IoTFleetBaseHook]]

    def __init__(
        self,
        *,
        conn_id: str,
        target: str,
        poll_interval: float,
        deadline: float,
        max_transient_errors: int = 5,
        options: Mapping[str, Any] | None = None,
        ids: Sequence[Any] | None = None,
        seen: Sequence[Sequence[Any]] = (),
        unreachable: Sequence[Sequence[Any]] = (),
        devices_ref: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if ids is None and devices_ref is None:
            raise ValueError(f"{type(self).__name__} needs ids or devices_ref")
        self.options = dict(options or {})
        self.ids = None if ids is None else list(ids)
        self.seen = [list(pair) for pair in seen]
        self.unreachable = [list(entry) for entry in unreachable]
        self.devices_ref = None if devices_ref is None else dict(devices_ref)
        self.conn_id = conn_id
        self.target = target
        self.poll_interval = poll_interval
        self.deadline = deadline
        self.max_transient_errors = max_transient_errors

    @classmethod
    def handing_over(cls, state: WatchState, ti: Any, **kwargs: Any) -> DeviceWatchTrigger:
        """The trigger for the wait ``state``, its devices inline when few, else pushed to an XCom of
        ``ti`` (the sensor's task instance) and referred to.

        :param kwargs: the other arguments of the trigger.
        """
        inline, ref = hand_over(state, ti)
        if inline is not None:
            return cls(ids=inline.ids, seen=inline.seen, unreachable=inline.unreachable, **kwargs)
        assert ref is not None
        return cls(devices_ref=ref.to_json(), **kwargs)

    @property
    def log(self) -> Logger:
        """The logger of the trigger's class, shared by its instances.

        Airflow's default builds one per instance, a handful of objects the garbage collector tracks
        for as long as the trigger waits: thousands of waits would add thousands of loggers, each
        logging under the same name. The triggerer tells one trigger's lines from another's by the
        log context it binds around each trigger, not by the logger.
        """
        trigger_class = type(self)
        logger = _CLASS_LOGGERS.get(trigger_class)
        if logger is None:
            name = trigger_class._create_logger_name(  # as LoggingMixin names its loggers
                logged_class=trigger_class,
                log_config_logger_name=self._log_config_logger_name,
                class_logger_name=self._logger_name,
            )
            logger = _CLASS_LOGGERS[trigger_class] = structlog.get_logger(name)
        return logger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "target": self.target,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "max_transient_errors": self.max_transient_errors,
                "options": self.options,
                "ids": self.ids,
                "seen": self.seen,
                "unreachable": self.unreachable,
                "devices_ref": self.devices_ref,
            },
        )

    async def awatch(self) -> DeviceWatch:
        """The watch this trigger polls, from its kwargs or from the XCom they refer to.

        :raises IoTFleetHandoverError: when that XCom is gone or holds something else.
        """
        if self.devices_ref is not None:
            state = await aread_state(XComRef.from_json(self.devices_ref))
        else:
            state = WatchState(self.ids or [], self.seen, self.unreachable)
        watch = self.watch_class(state.ids, self.target, **self.options)
        watch.restore(state.seen, state.unreachable)
        return watch

    def start_delay(self) -> float:
        """Seconds to wait before the first poll: a random share of the poll interval (at most
        :data:`START_SPREAD` of it), never beyond the deadline; ``0.0`` once the deadline has passed.
        """
        remaining = self.deadline - time.time()
        if remaining <= 0:
            return 0.0
        return min(random.uniform(0.0, START_SPREAD * self.poll_interval), remaining)  # noqa: S311 - spread, not secrecy

    def _failed_before_start(self, message: str) -> TriggerEvent:
        """The error event of a trigger that could not start its wait (no devices read back)."""
        return TriggerEvent(
            {
                "status": "error",
                "message": message,
                "xcom": None,
                "unmatched": {},
                "unreachable": {},
                "description": "the wait did not start",
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        # Before anything else, reading the devices' XCom and the connection included: the start-up
        # work of triggers started together is spread with their first polls.
        await asyncio.sleep(self.start_delay())
        try:
            watch = await self.awatch()
        except IoTFleetHandoverError as error:
            yield self._failed_before_start(str(error))
            return
        # The shared hook is taken and given back by hand rather than in an ``async with``: a
        # context manager, its generator and an exit stack would each stay alive (and tracked by the
        # garbage collector) for as long as the trigger waits, thousands of them in a triggerer.
        try:
            hook_key, hook = await acquire_shared_hook(self.hook_class, self.conn_id)
        except IoTFleetConfigurationError as error:  # the connection is gone
            yield TriggerEvent(watch.event("error", str(error)))
            return
        try:
            failures = 0
            logged, quiet = "", 0  # the last line logged, and polls since
            # Each poll is bounded by what is left of the deadline; a trigger that starts after it
            # (a triggerer that was down or busy) still takes one look, bounded by LATE_START_LOOK.
            late_start = self.deadline <= time.time()
            # One bound for every poll, on the loop's shared timer: asyncio.timeout would leave a
            # cancelled timer per poll in the loop for thousands of polls (see deadlines.py).
            bound = Bound()
            while True:
                seconds = LATE_START_LOOK if late_start else self.deadline - time.time()
                late_start = False
                try:
                    with bound.within(seconds):
                        # Polls queue for a turn on the client before they build any request.
                        client = await hook.aclient()
                        turn = await client.take_turn()
                        try:
                            await watch.apoll(hook)
                        finally:
                            if turn:
                                client.end_turn()
                    failures = 0
                except TimeoutError:
                    if not bound.expired():  # not the deadline: some library's own timeout
                        raise
                    yield TriggerEvent(watch.event("timeout", "the sensor's timeout passed during a poll"))
                    return
                except IoTFleetError as error:
                    failures += 1
                    if not is_transient(error) or failures > self.max_transient_errors:
                        yield TriggerEvent(watch.event("error", str(error)))
                        return
                    self.log.warning(
                        "%s (poll %d failed; %d more tries)",
                        error,
                        failures,
                        self.max_transient_errors - failures + 1,
                    )
                if watch.done:
                    yield TriggerEvent(watch.event("success"))
                    return
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    yield TriggerEvent(watch.event("timeout", "the sensor's timeout passed"))
                    return
                if not failures:
                    described = watch.describe_unmatched()
                    quiet += 1
                    if described != logged or quiet >= QUIET_POLLS:
                        self.log.info("%s", described)
                        logged, quiet = described, 0
                await asyncio.sleep(min(self.poll_interval, remaining))
        finally:
            await release_shared_hook(hook_key)
