"""Huawei Cloud ROMA Connect LINK: bring devices offline in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import IoTFleetNotAttemptedError
from airflow_provider_iotfleet.hooks.huawei import DEFAULT_MAX_DEVICES_PER_REQUEST, HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.huawei.answers import ForceOfflineResult
from airflow_provider_iotfleet.hooks.huawei.connection import DEFAULT_CONSOLE_URL
from airflow_provider_iotfleet.hooks.huawei.planning import plan_force_offline
from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.operators.links import RomaInstanceLink
from airflow_provider_iotfleet.outcome import FleetOutcome, OutcomeBuilder
from airflow_provider_iotfleet.utils import chunks, distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_batch_size, validate_roma_device_ids

if TYPE_CHECKING:
    from airflow.sdk import Context


class HuaweiRomaForceOfflineOperator(IoTFleetWriteOperator[HuaweiRomaConnectHook]):
    """Force ROMA Connect devices offline (``POST .../devices/force-offline``), ``batch_size`` ids per
    request. Only online MQTT devices can be forced offline.

    Returns a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` (``operation``
    ``"force_offline"``, device ids are the ROMA ids as integers): ``succeeded`` devices forced
    offline; ``unchanged`` devices already offline (ROMA refuses them; a read-back tells them from
    devices it cannot force); ``failed`` with ``error_code`` ``not_forced_offline`` (ROMA refused a
    device that is not offline: not an MQTT device, say), ``never_connected`` (never sent: a device
    that never connected cannot be forced), ``missing_from_answer``, or the error of the whole
    request. Nothing to roll back: devices reconnect by themselves.

    A dry run (``dry_run=True``) sends no force-offline: it reads the devices' online status, the
    cheapest way the hook knows (each device once when few, else the filtered listing paged once),
    and returns the outcome a real run would leave, marked ``"dry_run": true``: ``succeeded``
    devices are online (``plan``: ``{"online_status": {"from": "online", "to": "offline"}}``),
    ``unchanged`` ones already offline, ``failed`` ones never connected (``never_connected``, not
    attempted) or unknown to ROMA (``not_forced_offline``, as a real run reports ROMA's refusal).
    Nothing to roll back after the real run either: devices reconnect by themselves.

    Safe under Airflow's retries: a try after the first reads the devices' online status first and
    sends only those still online, so what an earlier try did is ``unchanged``. Both that read and the
    read-back of refused devices are one read for the whole run (the instance's listing paged once),
    not one per batch.

    :param device_ids: ROMA device ids (integers; templated, or an upstream task's output).
    :param batch_size: ids per request, at most 1000.
    :param huawei_roma_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device was not forced offline (after trying all).
    :param dry_run: read only and return the plan (templated; see above).
    """

    hook_class = HuaweiRomaConnectHook
    operator_extra_links = (RomaInstanceLink(),)
    console_url_default = DEFAULT_CONSOLE_URL
    operation = "force_offline"
    template_fields = ("device_ids", "dry_run")

    def __init__(
        self,
        *,
        device_ids: Any,
        batch_size: int = DEFAULT_MAX_DEVICES_PER_REQUEST,
        huawei_roma_conn_id: str = HuaweiRomaConnectHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=huawei_roma_conn_id, fail_on_error=fail_on_error, **kwargs)
        self.device_ids = device_ids
        self.batch_size = validate_batch_size(batch_size, DEFAULT_MAX_DEVICES_PER_REQUEST, self.vendor)

    def _validated(self) -> tuple[list[int], int] | None:
        """The distinct device ids (checked, in input order) and how many repeats went; ``None``
        (logged) when there are none. What :meth:`operate` and :meth:`plan` both start from.

        :raises IoTFleetValidationError: listing every bad id, before any request.
        """
        raw = as_item_list(self.device_ids, "device_ids")
        if not raw:
            self.nothing_to_do("device_ids")
            return None
        return distinct(validate_roma_device_ids(raw), key=lambda device_id: device_id)

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """``(instance id, "instances/<instance id>/devices")``: the connection's ROMA Connect instance."""
        instance_id = self.hook.settings.get_str("instance_id") or ""
        return instance_id, f"instances/{instance_id}/devices"

    def console_link_fields(self, outcome: FleetOutcome) -> dict[str, str] | None:
        """The connection's instance, for the 'ROMA Connect instance' link, when any device was sent."""
        if not outcome.requested:
            return None
        settings = self.hook.settings
        return {key: settings.get_str(key) or "" for key in ("region", "project_id", "instance_id")}

    def plan(self, context: Context) -> FleetOutcome:
        """Read the devices' online status (see :func:`plan_force_offline`) and return what a real
        run would leave, changing nothing."""
        validated = self._validated()
        if validated is None:
            return self.new_outcome(0).build(dry_run=True)
        ids, _duplicates = validated
        outcome = self.new_outcome(len(ids), order=ids)
        result = plan_force_offline(self.hook, ids)
        _record(outcome, result)
        for entry in result.succeeded:
            outcome.plan(entry["id"], {"online_status": {"from": "online", "to": "offline"}})
        return outcome.build(dry_run=True)

    def operate(self, context: Context) -> FleetOutcome:
        validated = self._validated()
        if validated is None:
            return self.new_outcome(0).build()
        ids, duplicates = validated
        outcome = self.new_outcome(len(ids), order=ids)
        read_first = self.retrying(context)
        detail = ""
        to_send = ids
        read_per_batch = False
        if read_first:
            detail = (
                f"try {context['ti'].try_number}: reading every device's status first to skip what is done"
            )
            try:
                unchanged, never, to_send = self.hook.split_offline(ids, validated=True)
                _record(outcome, ForceOfflineResult(succeeded=[], failed=never, unchanged=unchanged))
            except IoTFleetNotAttemptedError as error:
                # One read for the whole run failed: read per batch instead, so that one bad read
                # holds back only its batch (its devices then fail as not sent, retryable).
                self.log.warning("%s: %s; reading each batch's devices before sending it", self.vendor, error)
                read_per_batch = True
        batches = list(chunks(to_send, self.batch_size))
        progress = self.start(
            "forcing offline", len(ids), duplicates=duplicates, batches=len(batches), detail=detail
        )
        progress.advance(len(ids) - len(to_send))
        answered: list[ForceOfflineResult] = []
        self.send_in_batches(
            outcome,
            batches,
            lambda batch: self.hook.force_offline(
                batch, read_first=read_per_batch, read_back=False, validated=True
            ),
            lambda _batch, result: answered.append(result),
            progress,
            failed_in=lambda result: len(result.failed),
        )
        # Refused devices are read back once for the whole run, not once per batch: a read of many
        # devices pages the instance's whole listing.
        all_answered = ForceOfflineResult(
            succeeded=[entry for result in answered for entry in result.succeeded],
            failed=[entry for result in answered for entry in result.failed],
            unchanged=[device_id for result in answered for device_id in result.unchanged],
        )
        _record(outcome, self.hook.read_back_refused(all_answered))
        return outcome.build()


def _record(outcome: OutcomeBuilder, result: ForceOfflineResult) -> None:
    """Record what a force-offline result says of each of its devices."""
    outcome.add_many("succeeded", (entry["id"] for entry in result.succeeded))
    outcome.add_many("unchanged", result.unchanged)
    for entry in result.failed:
        outcome.refuse(
            [entry["id"]],
            entry["error_code"],
            entry["message"],
            attempted=entry["attempted"],
            http_status=entry.get("http_status"),
            retryable=entry.get("retryable", False),
        )
