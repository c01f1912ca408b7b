"""Huawei Cloud ROMA Connect LINK: bring devices offline in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.hooks.huawei import DEFAULT_MAX_DEVICES_PER_REQUEST, HuaweiRomaConnectHook
from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.outcome import FleetOutcome
from airflow_provider_iotfleet.validation import (
    as_item_list,
    chunks,
    distinct,
    validate_batch_size,
    validate_roma_device_ids,
)

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

    Safe under Airflow's retries: a try after the first reads the devices' online status first and
    sends only those still online, so what an earlier try did is ``unchanged``.

    :param device_ids: ROMA device ids (integers; templated, or an upstream task's output).
    :param batch_size: ids per request, at most 1000.
    :param huawei_roma_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device was not forced offline (after trying all).
    """

    hook_class = HuaweiRomaConnectHook
    operation = "force_offline"
    template_fields = ("device_ids",)

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

    def operate(self, context: Context) -> FleetOutcome:
        raw = as_item_list(self.device_ids, "device_ids")
        if not raw:
            self.nothing_to_do("device_ids")
            return self.new_outcome(0).build()
        ids, duplicates = distinct(validate_roma_device_ids(raw), key=lambda device_id: device_id)
        outcome = self.new_outcome(len(ids))
        batches = list(chunks(ids, self.batch_size))
        read_first = self.retrying(context)
        progress = self.start(
            "forcing offline",
            len(ids),
            duplicates=duplicates,
            batches=len(batches),
            detail=f"try {context['ti'].try_number}: reading each device's status first to skip what is done"
            if read_first
            else "",
        )
        results = self.run_batches(
            batches,
            lambda batch: self.hook.force_offline(batch, read_first=read_first),
            progress,
            lambda result: len(result.failed),
        )
        for batch in results:
            if batch.error is not None:
                outcome.fail(batch.items, batch.error)
            if batch.result is None:
                continue
            outcome.add_many("succeeded", (entry["id"] for entry in batch.result.succeeded))
            outcome.add_many("unchanged", batch.result.unchanged)
            for entry in batch.result.failed:
                outcome.refuse(
                    [entry["id"]],
                    entry["error_code"],
                    entry["message"],
                    attempted=entry["attempted"],
                    http_status=entry.get("http_status"),
                    retryable=entry.get("retryable", False),
                )
        return outcome.build()
