"""Huawei Cloud ROMA Connect LINK: bring devices offline in batches."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.hooks.huawei import DEFAULT_MAX_DEVICES_PER_REQUEST, HuaweiRomaConnectHook
from airflow_provider_iotfleet.operators.base import Failure, IoTFleetBaseOperator, OperationResult
from airflow_provider_iotfleet.validation import (
    as_item_list,
    chunks,
    distinct,
    validate_batch_size,
    validate_roma_device_ids,
)

if TYPE_CHECKING:
    from airflow.sdk import Context


class HuaweiRomaForceOfflineOperator(IoTFleetBaseOperator[HuaweiRomaConnectHook]):
    """Force ROMA Connect devices offline (``POST .../devices/force-offline``), ``batch_size`` ids per
    request. Only online MQTT devices can be forced offline; the others come back in ``failed``.

    XCom (``return_value``, and ``outcome`` also when the task fails)::

        {"requested": n, "succeeded": [{"id", "device_name"}],
         "failed": [{"id", "device_name", "message", "error_code"?, "request_id"?}]}

    Every distinct id is in exactly one list. ``error_code`` and ``request_id`` are there when the
    whole request failed.

    :param device_ids: ROMA device ids (integers; templated, or an upstream task's output).
    :param batch_size: ids per request, at most 1000.
    :param huawei_roma_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device was not forced offline (after trying all).
    """

    hook_class = HuaweiRomaConnectHook
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

    def operate(self, context: Context) -> OperationResult:
        raw = as_item_list(self.device_ids, "device_ids")
        if not raw:
            self.nothing_to_do("device_ids")
            return _result([], [], [])
        ids, duplicates = distinct(validate_roma_device_ids(raw), key=lambda device_id: device_id)
        batches = list(chunks(ids, self.batch_size))
        progress = self.start("forcing offline", len(ids), duplicates=duplicates, batches=len(batches))
        succeeded: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        failures: list[Failure] = []
        for batch in self.run_batches(batches, self.hook.force_offline, progress, lambda r: len(r.failed)):
            if batch.result is not None:
                succeeded.extend(batch.result.succeeded)
                failed.extend(batch.result.failed)
                failures.extend(
                    Failure(item=str(entry["id"]), message=entry["message"], code=entry["message"])
                    for entry in batch.result.failed
                )
            elif batch.error is not None:
                error = batch.error.to_dict()
                failed.extend(
                    {
                        "id": device_id,
                        "device_name": None,
                        "message": error["message"],
                        "error_code": error["error_code"],
                        "request_id": error["request_id"],
                    }
                    for device_id in batch.items
                )
                failures.append(
                    Failure.from_error(
                        f"request {batch.index + 1} (ids {batch.items[0]}..{batch.items[-1]})",
                        batch.error,
                        items=len(batch.items),
                    )
                )
        return _result(succeeded, failed, failures)


def _result(succeeded: list[Any], failed: list[Any], failures: list[Failure]) -> OperationResult:
    return OperationResult(
        outcome={"requested": len(succeeded) + len(failed), "succeeded": succeeded, "failed": failed},
        counts={"forced offline": len(succeeded), "failed": len(failed)},
        failures=failures,
    )
