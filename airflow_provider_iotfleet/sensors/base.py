"""What every device-status sensor shares: validated ids, a first check, polling or deferring.

A vendor sensor says which ids and target it takes and how to validate them
(:meth:`DeviceWatchSensor.new_watch`); this base runs the wait. In poke and reschedule mode each poke
polls the watch with the sync hook; with ``deferrable=True`` the sensor checks once, then defers to
the vendor trigger (the same watch, polled with the async hook in the triggerer), whose event
:meth:`execute_complete` turns into the same XCom value as poke mode. Over 100 devices travel to
the trigger through an XCom of the sensor's own task instance (``iotfleet_watch``), so the
trigger's kwargs stay small whatever the device count.
"""

from __future__ import annotations

import time
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.configuration import conf
from airflow.sdk.exceptions import AirflowSensorTimeout

# Users import the sensor errors from here too (they live in exceptions.py): keep them importable.
from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetError,
    IoTFleetSensorError,
    IoTFleetUnreachableDevicesError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http.retry import is_transient
from airflow_provider_iotfleet.triggers.base import DeviceWatch, DeviceWatchTrigger, describe_unreachable
from airflow_provider_iotfleet.triggers.handover import WatchState

if TYPE_CHECKING:
    from airflow.sdk import Context

#: How much longer than the sensor's timeout Airflow waits for a deferred trigger: the trigger ends
#: the wait itself at the timeout, with a message naming the devices still not matched.
DEFERRAL_GRACE = timedelta(minutes=2)
#: The task state store key (Airflow 3.3+) holding, in reschedule mode, the transiently failed polls
#: in a row: ``{"try": try number, "failures": n}``.
SENSOR_FAILURES_KEY = "iotfleet.sensor.transient_failures"


class DeviceWatchSensor(BaseSensorOperator):
    """Base of the device-status sensors.

    :param conn_id: the Airflow connection (each sensor names it ``<vendor>_conn_id``).
    :param deferrable: hand the polling to the triggerer instead of holding a worker slot
        (default: the ``[operators] default_deferrable`` setting).
    :param max_transient_errors: polls in a row that may fail transiently (throttling, 5xx, dropped
        connections, after the client's own retries) before the sensor fails. In
        ``mode="reschedule"`` each poke is a new run of the task, so the count is kept in the task
        instance's own state (``context["task_state_store"]``, Airflow 3.3+), per try, reset by a
        good poll and cleared when the sensor ends; Airflow 3.2 has no such store, so there each
        reschedule starts the count afresh and only poke and deferrable mode enforce the limit.
    :param fail_on_unreachable: when some devices can never reach the target (see the vendor
        sensor), fail the task once every other device matched, naming each of them and why, after
        pushing the XCom value under XCom key ``outcome`` (as the operators' ``fail_on_error``
        does); ``False`` succeeds, with them in the XCom value's ``unreachable``.

    ``poke_interval`` is the time between polls in every mode, and ``timeout`` bounds the wait in
    every mode; a timeout names the devices still not matched and what they last reported. The
    trigger bounds each poll by what is left of it; in poke and reschedule mode Airflow checks it
    between pokes, and one poke's reads are bounded by the connection's ``timeout`` and
    ``max_retries`` (and the task's ``execution_timeout``, if set).

    XCom: ``{"matched": [id], <values_key>: {id: last value}, "unreachable": {id: reason}}``, ids in
    input order. A device that can never reach the target (the vendor does not know it, say) is
    settled at once as unreachable with a reason (``not_found``, ``not_in_account``,
    ``connected_before``) and not read again; the wait goes on for the others.
    """

    trigger_class: ClassVar[type[DeviceWatchTrigger]]
    #: the name of the sensor's (templated) target argument, for messages.
    target_field: ClassVar[str] = ""
    ui_color = "#fdf3e8"

    def __init__(
        self,
        *,
        conn_id: str,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_transient_errors: int = 5,
        fail_on_unreachable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.deferrable = deferrable
        self.max_transient_errors = max_transient_errors
        self.fail_on_unreachable = fail_on_unreachable
        self._watch: DeviceWatch | None = None
        self._transient_failures = 0

    @property
    def hook_class(self) -> type[IoTFleetBaseHook]:
        return self.trigger_class.hook_class

    @cached_property
    def hook(self) -> IoTFleetBaseHook:
        return self.hook_class(self.conn_id)

    @property
    def vendor(self) -> str:
        return self.hook_class.hook_name

    def new_watch(self) -> DeviceWatch:
        """Return the watch over this sensor's (rendered, validated) devices and target.

        :raises IoTFleetValidationError: naming every bad id, before the first poll.
        """
        raise NotImplementedError

    def trigger_options(self) -> dict[str, Any]:
        """Vendor-specific trigger options, JSON primitives."""
        return {}

    def execute(self, context: Context) -> Any:
        watch = self._watch = self.new_watch()
        if not watch.ids:
            self.log.warning("%s: no devices to wait for", self.vendor)
            return self.finish(context, watch.xcom())
        self.log.info(
            "%s: waiting for %s (connection %r, %s mode)",
            self.vendor,
            watch.waiting_for(),
            self.conn_id,
            "deferrable" if self.deferrable else self.mode,
        )
        try:
            if not self.deferrable:
                return self.finish(context, self._poke_until_done(context))
            if self.poke(context).is_done:  # type: ignore[union-attr]
                return self.finish(context, watch.xcom())
        finally:
            self.hook.close()
        self.defer(
            trigger=self.deferral_trigger(context, watch),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
        )

    def deferral_trigger(self, context: Context, watch: DeviceWatch) -> DeviceWatchTrigger:
        """The trigger this sensor defers to, to go on with ``watch`` after its first check.

        Few devices travel in the trigger's kwargs; more (over 100) are pushed to this task
        instance's XCom ``iotfleet_watch`` with what the first check matched and found unreachable,
        and the kwargs refer to it: they stay under 16 KiB whatever the device count.
        """
        return self.trigger_class.handing_over(
            WatchState(list(watch.ids), watch.seen(), watch.settled()),
            context["ti"],
            conn_id=self.conn_id,
            target=watch.target,
            poll_interval=self.poke_interval,
            deadline=time.time() + self.timeout,
            max_transient_errors=self.max_transient_errors,
            options=self.trigger_options(),
        )

    def _poke_until_done(self, context: Context) -> Any:
        try:
            return super().execute(context)
        except AirflowSensorTimeout as timeout:
            watch = self._watch
            raise AirflowSensorTimeout(
                f"{timeout} {watch.describe_unmatched() if watch else ''}".strip()
            ) from None

    def poke(self, context: Context) -> PokeReturnValue:
        """Poll the devices still waited on; done when every device matched or is unreachable.

        :return: not done, or done with the XCom value.
        :raises IoTFleetSensorError: for a vendor error that is not transient, or the
            ``max_transient_errors + 1``-th transient one in a row.
        """
        watch = self._watch
        if watch is None:  # poke called on its own, as tests and Airflow's test command may
            watch = self._watch = self.new_watch()
        if watch.done:  # nothing left to read (no devices at all, or all matched already)
            return PokeReturnValue(is_done=True, xcom_value=watch.xcom())
        try:
            watch.poll(self.hook)
        except IoTFleetError as error:
            failures = self._count_failure(context)
            if is_transient(error) and failures <= self.max_transient_errors:
                self.log.warning("%s (poll failed; trying again at the next poke)", error)
                return PokeReturnValue(is_done=False)
            self._forget_failures(context)
            raise IoTFleetSensorError(f"{error}. {watch.describe_unmatched()}") from error
        self._forget_failures(context)
        if watch.done:
            self.log.info("%s: %s", self.vendor, watch.describe_unmatched())
            return PokeReturnValue(is_done=True, xcom_value=watch.xcom())
        self.log.info("%s: %s", self.vendor, watch.describe_unmatched())
        return PokeReturnValue(is_done=False)

    def _failure_store(self, context: Context) -> Any:
        """Where the failed polls are counted across reschedules: the task state store in
        reschedule mode (Airflow 3.3+), else ``None`` (this sensor object, which lives as long as
        the wait in poke mode)."""
        return context.get("task_state_store") if self.reschedule else None

    def _count_failure(self, context: Context) -> int:
        """Count one more transiently failed poll in a row; return how many there are now."""
        store = self._failure_store(context)
        if store is None:
            self._transient_failures += 1
            return self._transient_failures
        try_number = getattr(context.get("ti"), "try_number", None)
        kept = store.get(SENSOR_FAILURES_KEY)
        # A count left by an earlier try (killed mid-wait, say) does not count against this one.
        earlier = kept.get("failures", 0) if isinstance(kept, dict) and kept.get("try") == try_number else 0
        failures = (earlier if isinstance(earlier, int) else 0) + 1
        store.set(SENSOR_FAILURES_KEY, {"try": try_number, "failures": failures})
        return failures

    def _forget_failures(self, context: Context) -> None:
        """A good poll, or the end of the wait: the count starts again from zero."""
        self._transient_failures = 0
        store = self._failure_store(context)
        if store is not None:
            store.delete(SENSOR_FAILURES_KEY)

    def finish(self, context: Context, xcom: Any) -> Any:
        """Return the XCom value of a wait that ended, in every mode: every device matched or
        unreachable.

        :raises IoTFleetUnreachableDevicesError: with ``fail_on_unreachable``, when devices were
            unreachable, after pushing ``xcom`` under XCom key ``outcome``.
        """
        unreachable = xcom.get("unreachable") if isinstance(xcom, dict) else None
        if not unreachable:
            return xcom
        watch_class = self.trigger_class.watch_class
        message = f"{self.vendor}: " + describe_unreachable(
            unreachable,
            len(xcom.get(watch_class.values_key) or {}),
            watch_class.unit,
            watch_class.value_name,
            str(getattr(self, self.target_field, "") or "the target"),
        )
        if not self.fail_on_unreachable:
            self.log.warning("%s (fail_on_unreachable=False)", message)
            return xcom
        context["ti"].xcom_push(key=OUTCOME_KEY, value=xcom)
        raise IoTFleetUnreachableDevicesError(
            f"{message}. The XCom value is in XCom key {OUTCOME_KEY!r} (set fail_on_unreachable=False to "
            "succeed with them left out)",
            xcom,
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Turn the trigger's event into the XCom value poke mode returns, or the task's failure.

        :return: the XCom value (see the class), as :meth:`finish` returns it.
        :raises AirflowSensorTimeout: for a ``timeout`` event, naming the devices still not matched.
        :raises IoTFleetSensorError: for an ``error`` event: a lasting vendor error, a connection
            that is gone (the message names it), or devices no longer found in XCom.
        :raises IoTFleetUnreachableDevicesError: see :meth:`finish`.
        """
        status = event.get("status")
        if status == "success":
            self.log.info("%s: %s", self.vendor, event.get("description", ""))
            return self.finish(context, event["xcom"])
        context["ti"].xcom_push(key="last_seen", value=event.get("xcom"))
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"{self.vendor}: the sensor timed out after {self.timeout:g} s: {event.get('description')}"
            )
        raise IoTFleetSensorError(f"{self.vendor}: {event.get('message')}. {event.get('description')}")
