"""Event triggers: start a DAG when a firmware campaign ends or devices reach a status.

A :class:`WatchEventTrigger` runs in an ``AssetWatcher`` (Airflow's event-driven scheduling): the
triggerer polls it for as long as the asset's DAG is active, and each event it yields becomes an
asset event whose ``extra["payload"]`` is the event's payload, which starts a run of every DAG
scheduled on the asset. It polls the very :class:`~airflow_provider_iotfleet.triggers.base.DeviceWatch`
the sensors and their deferrable triggers poll, on the hook shared per connection
(:func:`~airflow_provider_iotfleet.triggers.base.shared_hook`): only the loop around it is written here.

What an *occurrence* is, so that each is reported once:

* devices reaching a status (:attr:`WatchEventTrigger.recurs`): every device reports the target (or
  can never report it); the trigger then fires, and fires again only after a device has left the
  target and every device has reached it once more;
* a campaign ending: once; the trigger then stops polling.

What was reported is kept in the asset's state store (Airflow 3.3+), so a restarted triggerer does
not report the same occurrence again; without one (Airflow 3.2, or the store unavailable) it is kept
in memory and a triggerer restart reports a current occurrence once more.

Kwargs are stored in Airflow's ``trigger`` table and hashed to recognise the watcher, so they hold
only the devices' ids (at most :data:`MAX_WATCHED_DEVICES`) and a few scalars, and the poll interval
is at least :data:`MIN_POLL_INTERVAL`: a poll's cost is bounded by both.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, ClassVar

from airflow.sdk.exceptions import AirflowRuntimeError
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError, IoTFleetError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http.retry import is_transient
from airflow_provider_iotfleet.triggers.base import DeviceWatch, shared_hook
from airflow_provider_iotfleet.triggers.handover import INLINE_DEVICES

#: Devices one event trigger may watch: its kwargs are stored and hashed by Airflow, and each poll
#: may read every one of them. Watch more with several assets, or wait for them with a sensor.
MAX_WATCHED_DEVICES = INLINE_DEVICES
#: The shortest poll interval an event trigger accepts, in seconds: a watcher polls for as long as
#: its DAG is active, day and night, so its cost is set by this.
MIN_POLL_INTERVAL = 10.0
#: The asset state store key prefix under which an event trigger remembers what it reported.
MEMORY_PREFIX = "iotfleet_event"


class WatchEventTrigger(BaseEventTrigger):
    """Polls a :class:`~airflow_provider_iotfleet.triggers.base.DeviceWatch` for ever and fires one
    event per occurrence (see the module's docstring); for an ``AssetWatcher``.

    A failed poll never ends the watcher (a watcher that ends is restarted at once by the triggerer,
    which would then poll a failing vendor without pause): it is logged, as a warning while the
    failures are transient and fewer than ``max_transient_errors`` in a row, else as an error, and
    the next poll comes one interval later. A connection that is not defined is read again at each
    poll, so defining it is enough to start the watch.

    A vendor subclass names its watch and hook, says how to build the watch from its own arguments
    (:meth:`new_watch`) and which arguments those are (:meth:`arguments`).

    :param conn_id: the Airflow connection.
    :param poll_interval: seconds between polls, at least :data:`MIN_POLL_INTERVAL`.
    :param max_transient_errors: transient failures in a row logged as warnings before they are
        logged as errors.
    :raises ValueError: when ``poll_interval`` is below :data:`MIN_POLL_INTERVAL`.
    """

    hook_class: ClassVar[type[IoTFleetBaseHook]]
    #: Whether what is watched can happen again (devices can leave a status and reach it again; a
    #: campaign ends once).
    recurs: ClassVar[bool] = True

    def __init__(self, *, conn_id: str, poll_interval: float, max_transient_errors: int = 5) -> None:
        super().__init__()
        if poll_interval < MIN_POLL_INTERVAL:
            raise ValueError(
                f"{type(self).__name__}: poll_interval={poll_interval!r} is below {MIN_POLL_INTERVAL:g} s; an "
                "event trigger polls for as long as its DAG is active"
            )
        self.conn_id = conn_id
        self.poll_interval = poll_interval
        self.max_transient_errors = max_transient_errors

    # --- what a vendor subclass says ------------------------------------------------------------

    def new_watch(self) -> DeviceWatch:
        """A fresh watch of what this trigger watches: nothing read yet."""
        raise NotImplementedError

    def arguments(self) -> dict[str, Any]:
        """The subclass's own constructor arguments, JSON primitives (the connection and timing
        arguments are added by :meth:`serialize`)."""
        raise NotImplementedError

    def payload(self, watch: DeviceWatch) -> dict[str, Any]:
        """The event's payload once ``watch`` is done: small, JSON-safe, and what a DAG needs."""
        return {"status": "success", **watch.xcom(), "description": watch.describe_unmatched()}

    # --- the template ---------------------------------------------------------------------------

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.arguments(),
                "poll_interval": self.poll_interval,
                "max_transient_errors": self.max_transient_errors,
            },
        )

    def memory_key(self) -> str:
        """The asset state store key of this watcher: the same for the same class and arguments."""
        classpath, kwargs = self.serialize()
        digest = hashlib.sha256(json.dumps([classpath, kwargs], sort_keys=True, default=str).encode())
        return f"{MEMORY_PREFIX}:{type(self).__name__}:{digest.hexdigest()[:16]}"

    async def recall(self) -> bool:
        """Whether the current occurrence was reported already, as the asset's state store says.

        :return: ``False`` without a store (Airflow 3.2, ``dag.test()``), or when it cannot be read.
        """
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return False
        try:
            return bool(await store.aget(self.memory_key(), default=False))
        except (AirflowRuntimeError, ValueError) as error:  # ValueError: watching several assets
            self.log.warning("Cannot read what this watcher reported before (%s): kept in memory only", error)
            return False

    async def remember(self, reported: bool) -> None:
        """Keep in the asset's state store whether the current occurrence was reported."""
        store = getattr(self, "asset_state_store", None)
        if store is None:
            return
        try:
            await store.aset(self.memory_key(), reported)
        except (AirflowRuntimeError, ValueError) as error:
            self.log.warning("Cannot keep what this watcher reported (%s): kept in memory only", error)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        reported = await self.recall()
        while not (reported and not self.recurs):
            try:
                async with shared_hook(self.hook_class, self.conn_id) as hook:
                    async for event in self._watch(hook, reported):
                        yield event
                    reported = True  # _watch returns only after the event of a watch that does not recur
            except IoTFleetConfigurationError as error:  # the connection is not defined (yet)
                self.log.error("%s; trying again in %g s", error, self.poll_interval)
                await asyncio.sleep(self.poll_interval)
        # Nothing more will happen: wait for ever, as a watcher that returns is started again at once.
        self.log.info("%s: reported; nothing more to watch", self.new_watch().waiting_for())
        await asyncio.Event().wait()

    async def _watch(self, hook: IoTFleetBaseHook, reported: bool) -> AsyncIterator[TriggerEvent]:
        """Poll until what is watched happens; fire; then, if it recurs, wait until it no longer holds
        and fire again when it next happens. Returns only when it does not recur."""
        watch = self.new_watch()
        failures = 0
        while True:
            try:
                await watch.apoll(hook)
                failures = 0
            except IoTFleetError as error:
                failures += 1
                lasting = not is_transient(error) or failures > self.max_transient_errors
                self.log.log(
                    logging.ERROR if lasting else logging.WARNING,
                    "%s (poll %d failed in a row; next poll in %g s)",
                    error,
                    failures,
                    self.poll_interval,
                )
            else:
                if watch.done:
                    if not reported:
                        self.log.info("%s", watch.describe_unmatched())
                        yield TriggerEvent(self.payload(watch))
                        reported = True
                        await self.remember(True)
                        if not self.recurs:
                            return
                    # The next poll reads every device again: has any left the target?
                    watch = self.new_watch()
                elif reported:
                    self.log.info("%s: watching for the next time", watch.describe_unmatched())
                    reported = False
                    await self.remember(False)
            await asyncio.sleep(self.poll_interval)


def check_device_count(trigger: str, ids: Sequence[Any], name: str) -> None:
    """Refuse no devices, or more than :data:`MAX_WATCHED_DEVICES`.

    :raises ValueError: naming the trigger, the argument and the count.
    """
    if not ids:
        raise ValueError(f"{trigger}: {name} is empty: name at least one device to watch")
    if len(ids) > MAX_WATCHED_DEVICES:
        raise ValueError(
            f"{trigger}: {name} holds {len(ids)} devices, more than the {MAX_WATCHED_DEVICES} an event "
            "trigger may watch (its arguments are stored in Airflow's trigger table): split them over "
            "several assets, or wait for them with a sensor"
        )
