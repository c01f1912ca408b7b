"""Verizon ThingSpace FOTA: stream the device firmware inventory, and sync firmware versions."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import Asset

from airflow_provider_iotfleet.exceptions import IoTFleetError
from airflow_provider_iotfleet.hooks.verizon import (
    MAX_SYNC_IMEIS,
    MISSING_FROM_ANSWER,
    VerizonThingSpaceHook,
    sync_failure,
)
from airflow_provider_iotfleet.operators.base import Failure, IoTFleetBaseOperator, OperationResult, Progress
from airflow_provider_iotfleet.validation import (
    as_item_list,
    chunks,
    distinct,
    validate_batch_size,
    validate_imeis,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_MAX_XCOM_DEVICES = 10_000


class VerizonThingSpaceFotaDevicesOperator(IoTFleetBaseOperator[VerizonThingSpaceHook]):
    """List an account's FOTA devices (firmware, make, model, eligibility), page by page.

    Without ``output_path`` the devices go to XCom, up to ``max_xcom_devices``::

        {"account_name", "device_count", "pages", "devices": [normalised device dicts]}

    With ``output_path`` they are streamed to a JSON Lines file as the pages arrive (one page in
    memory at a time, whatever the fleet size), written under a temporary name and renamed when
    complete, so a failed or retried task never leaves a partial file or duplicates::

        {"account_name", "device_count", "pages", "path"}

    With ``imeis``, only those devices are listed (``POST``) and the XCom adds ``"requested"`` and
    ``"missing"`` (the IMEIs the account did not return). Every :class:`~airflow.sdk.Asset` in
    ``outlets`` gets an asset event whose extra carries ``account_name``, ``device_count`` and
    ``path``, for data-aware scheduling of the DAGs that read the inventory.

    :param account_name: the billing account (templated); default: the connection's ``account_name``.
    :param imeis: only these devices (templated, or an upstream task's output).
    :param protocol: ``LWM2M``, ``OMADM`` or ``HTTP`` (templated).
    :param output_path: a local path or any ``ObjectStoragePath`` URI (``s3://...``, ``file://...``),
        templated, e.g. ``"/data/fota/{{ ds }}.jsonl"``.
    :param max_xcom_devices: the most devices returned in XCom without ``output_path``.
    :param verizon_thingspace_conn_id: the Airflow connection.
    """

    hook_class = VerizonThingSpaceHook
    template_fields = ("account_name", "imeis", "protocol", "output_path")

    def __init__(
        self,
        *,
        account_name: str | None = None,
        imeis: Any = None,
        protocol: str | None = None,
        output_path: str | None = None,
        max_xcom_devices: int = DEFAULT_MAX_XCOM_DEVICES,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, **kwargs)
        self.account_name = account_name
        self.imeis = imeis
        self.protocol = protocol
        self.output_path = output_path
        self.max_xcom_devices = max_xcom_devices

    def operate(self, context: Context) -> OperationResult:
        account = self.hook.resolve_account(self.account_name)
        requested: list[str] | None = None
        duplicates = 0
        if self.imeis is not None:
            given = as_item_list(self.imeis, "imeis")
            if not given:
                self.nothing_to_do("imeis")
                nothing = {
                    "account_name": account,
                    "device_count": 0,
                    "pages": 0,
                    "requested": 0,
                    "missing": [],
                }
                return OperationResult(outcome=nothing, counts={"listed": 0})
            requested, duplicates = distinct(validate_imeis(given), key=str)
        pages = self.hook.iter_fota_device_pages(requested, account_name=account, protocol=self.protocol)
        total = len(requested) if requested is not None else None
        progress = self.start(
            "listing the FOTA devices" + (" of" if total is not None else ""),
            total,
            detail=f"account {account}" + (f", protocol {self.protocol}" if self.protocol else ""),
            duplicates=duplicates,
        )
        listing = _Listing(pages, progress, track_ids=requested is not None)
        outcome: dict[str, Any] = {"account_name": account}
        if self.output_path:
            outcome["path"] = self._write_json_lines(listing, str(self.output_path), context)
        else:
            outcome["devices"] = self._collect(listing)
        outcome.update(device_count=listing.devices, pages=listing.pages)
        counts = {"listed": listing.devices}
        if requested is not None:
            missing = [imei for imei in requested if imei not in listing.seen]
            outcome.update(requested=len(requested), missing=missing)
            counts["not in the account"] = len(missing)
            if missing:
                self.log.warning(
                    "%s: %d of %d IMEIs are not in account %s, e.g. %s",
                    self.vendor,
                    len(missing),
                    len(requested),
                    account,
                    ", ".join(missing[:3]),
                )
        self._record_asset_events(context, outcome)
        return OperationResult(outcome=outcome, counts=counts)

    def _collect(self, listing: _Listing) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = []
        for device in listing:
            devices.append(device)
            if len(devices) > self.max_xcom_devices:
                raise IoTFleetError(
                    f"{self.vendor}: the listing has more than max_xcom_devices={self.max_xcom_devices} "
                    "devices, too many for XCom; set output_path to stream them to a file (or object "
                    "storage) instead",
                    vendor=self.vendor,
                )
        return devices

    def _write_json_lines(self, listing: _Listing, output_path: str, context: Context) -> str:
        """Write the devices to ``output_path`` atomically; return where they are."""
        from airflow.sdk import ObjectStoragePath  # fsspec and friends: not paid on every DAG parse

        is_uri = len(urlsplit(output_path).scheme) > 1  # "s3://b/k", "file:///x"; not "C:\\x"
        location = output_path if is_uri else os.path.abspath(os.path.expanduser(output_path))
        target = ObjectStoragePath(location if is_uri else f"file://{location}")
        # The same name on every try of this task instance: a retry overwrites what a killed try
        # left, and the target only ever appears complete, by rename.
        partial = target.parent / f".{target.name}.{_attempt_key(context)}.partial"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with partial.open("w") as out:
                # One write per page: each write on an ObjectStoragePath file is also tracked for lineage.
                for page in listing.pages_of_devices():
                    out.write("".join(json.dumps(device, separators=(",", ":")) + "\n" for device in page))
            partial.replace(target)
        except BaseException:
            with suppress(Exception):
                partial.unlink()
            raise
        self.log.info("%s: wrote %d devices to %s", self.vendor, listing.devices, location)
        return location

    def _record_asset_events(self, context: Context, outcome: dict[str, Any]) -> None:
        extra = {key: outcome.get(key) for key in ("account_name", "device_count", "path")}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)


class _Listing:
    """The devices of a page iterator, counting pages and devices as they stream past."""

    def __init__(self, pages: Iterable[list[dict[str, Any]]], progress: Progress, *, track_ids: bool) -> None:
        self._pages = pages
        self._progress = progress
        self.seen: set[str] = set()
        self._track_ids = track_ids
        self.pages = 0
        self.devices = 0

    def pages_of_devices(self) -> Iterator[list[dict[str, Any]]]:
        for page in self._pages:
            self.pages += 1
            self.devices += len(page)
            if self._track_ids:
                self.seen.update(str(device["device_id"]) for device in page)
            yield page
            self._progress.advance(len(page), batch=True)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for page in self.pages_of_devices():
            yield from page


def _why_no_status(entry: dict[str, Any]) -> str:
    """What groups a sync failure ThingSpace gave no per-device status for."""
    return "missing from the answer" if entry["reason"] == MISSING_FROM_ANSWER else "outcome unknown"


def _attempt_key(context: Context) -> str:
    ti = context["ti"]
    identity = f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'map_index', -1)}"
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


class VerizonThingSpaceSyncFirmwareOperator(IoTFleetBaseOperator[VerizonThingSpaceHook]):
    """Ask ThingSpace to read each device's firmware version (``PUT /firmware/{acc}/devices``),
    ``batch_size`` IMEIs per request.

    XCom (``return_value``, and ``outcome`` also when the task fails)::

        {"account_name", "requested": n,
         "synced": [{"device_id", "firmware_version", "version_update_time", "status"}],
         "failed": [{"device_id", "status", "reason", "error_code"}]}

    A device ThingSpace could not sync has its per-device ``status`` and ``reason``; when a whole
    request failed, ``status`` is ``None`` and ``error_code``/``reason`` are the request's error.

    :param imeis: the devices (templated, or an upstream task's output); repeats are sent once.
    :param account_name: the billing account (templated); default: the connection's.
    :param batch_size: IMEIs per request, at most 100.
    :param verizon_thingspace_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any device was not synced (after trying all).
    """

    hook_class = VerizonThingSpaceHook
    unit = "IMEI"
    template_fields = ("account_name", "imeis")

    def __init__(
        self,
        *,
        imeis: Any,
        account_name: str | None = None,
        batch_size: int = MAX_SYNC_IMEIS,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        fail_on_error: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, fail_on_error=fail_on_error, **kwargs)
        self.imeis = imeis
        self.account_name = account_name
        self.batch_size = validate_batch_size(batch_size, MAX_SYNC_IMEIS, self.hook_class.hook_name)

    def operate(self, context: Context) -> OperationResult:
        account = self.hook.resolve_account(self.account_name)
        raw = as_item_list(self.imeis, "imeis")
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        failures: list[Failure] = []
        if not raw:
            self.nothing_to_do("imeis")
        else:
            imeis, duplicates = distinct(validate_imeis(raw), key=str)
            batches = list(chunks(imeis, self.batch_size))
            progress = self.start(
                "syncing the firmware of",
                len(imeis),
                detail=f"account {account}",
                duplicates=duplicates,
                batches=len(batches),
            )
            outcomes = self.run_batches(
                batches,
                lambda batch: self.hook.sync_firmware_batch(batch, account_name=account),
                progress,
                lambda result: len(result.failed),
            )
            for batch in outcomes:
                if batch.result is not None:
                    synced.extend(batch.result.synced)
                    failed.extend(batch.result.failed)
                    failures.extend(
                        Failure(
                            item=entry["device_id"],
                            message=str(entry["reason"] or entry["status"]),
                            code=str(entry["status"] or entry["error_code"] or _why_no_status(entry)),
                        )
                        for entry in batch.result.failed
                    )
                elif batch.error is not None:
                    failed.extend(sync_failure(imei, batch.error) for imei in batch.items)
                    failures.append(
                        Failure.from_error(
                            f"request {batch.index + 1} of {len(batches)}", batch.error, len(batch.items)
                        )
                    )
        return OperationResult(
            outcome={
                "account_name": account,
                "requested": len(synced) + len(failed),
                "synced": synced,
                "failed": failed,
            },
            counts={"synced": len(synced), "failed": len(failed)},
            failures=failures,
        )
