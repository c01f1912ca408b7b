"""Palo Alto Networks IoT Security: bulk update of cellular device attributes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.hooks.paloalto import DEFAULT_MAX_DEVICES_PER_REQUEST, PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.operators.base import Failure, IoTFleetBaseOperator, OperationResult
from airflow_provider_iotfleet.validation import (
    as_item_list,
    chunks,
    distinct,
    validate_batch_size,
    validate_cellular_devices,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class PaloAltoIoTBulkUpdateOperator(IoTFleetBaseOperator[PaloAltoIoTSecurityHook]):
    """Update cellular attributes of devices in IoT Security (``PUT .../device/bulkUpdate``),
    ``batch_size`` devices per request.

    XCom (``return_value``, and ``outcome`` also when the task fails)::

        {"requested": n, "updated": <sum of updatedDeviceNum>, "batches": k,
         "failed_batches": [{"index", "size", "http_status", "error_code", "message", "request_id"}]}

    IoT Security reports a count per request, not which devices it updated: a device it does not
    know is accepted and not counted. ``index`` is the 0-based position of a failed request, so its
    devices are ``devices[index * batch_size:][:size]`` of the de-duplicated input.

    :param devices: dicts with any of ipAddress, ipv6Address, imei, iccid, imsi, apn, msisdn and
        SessionEvtType, at least one identifier each (templated, or an upstream task's output).
        The same device twice is sent once.
    :param update_source: the ``updateSource`` query value; this API takes ``cellular``.
    :param batch_size: devices per request, at most 1000 (the vendor publishes no cap).
    :param customer_id: the tenant (v4.0 API), overriding the connection's (templated).
    :param paloalto_iot_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any request failed (after sending all of them).
    """

    hook_class = PaloAltoIoTSecurityHook
    template_fields = ("devices", "update_source", "customer_id")
    template_fields_renderers = {"devices": "json"}

    def __init__(
        self,
        *,
        devices: Any,
        update_source: str = "cellular",
        batch_size: int = DEFAULT_MAX_DEVICES_PER_REQUEST,
        customer_id: str | None = None,
        paloalto_iot_conn_id: str = PaloAltoIoTSecurityHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=paloalto_iot_conn_id, fail_on_error=fail_on_error, **kwargs)
        self.devices = devices
        self.update_source = update_source
        self.customer_id = customer_id
        self.batch_size = validate_batch_size(batch_size, DEFAULT_MAX_DEVICES_PER_REQUEST, self.vendor)

    def operate(self, context: Context) -> OperationResult:
        raw = as_item_list(self.devices, "devices")
        if not raw:
            self.nothing_to_do("devices")
            return _result(0, 0, 0, [])
        devices, duplicates = distinct(validate_cellular_devices(raw), key=lambda d: tuple(sorted(d.items())))
        batches = list(chunks(devices, self.batch_size))
        progress = self.start("updating", len(devices), duplicates=duplicates, batches=len(batches))
        outcomes = self.run_batches(
            batches,
            lambda batch: self.hook.bulk_update(batch, self.update_source, self.customer_id, validated=True),
            progress,
        )
        updated = sum(batch.result.updated for batch in outcomes if batch.result is not None)
        failed = [batch for batch in outcomes if batch.error is not None]
        failed_batches = [
            {"index": batch.index, "size": len(batch.items), **batch.error.to_dict()}
            for batch in failed
            if batch.error is not None
        ]
        failures = [
            Failure.from_error(
                f"request {batch.index + 1} of {len(batches)}", batch.error, items=len(batch.items)
            )
            for batch in failed
            if batch.error is not None
        ]
        return _result(len(devices), updated, len(batches), failed_batches, failures)


def _result(
    requested: int,
    updated: int,
    batches: int,
    failed_batches: list[Any],
    failures: list[Failure] | None = None,
) -> OperationResult:
    in_failed = sum(batch["size"] for batch in failed_batches)
    return OperationResult(
        outcome={
            "requested": requested,
            "updated": updated,
            "batches": batches,
            "failed_batches": failed_batches,
        },
        counts={
            "updated": updated,
            "accepted, not counted as updated": requested - in_failed - updated,
            "in failed requests": in_failed,
        },
        failures=failures or [],
    )
