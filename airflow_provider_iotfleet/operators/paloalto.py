"""Palo Alto Networks IoT Security: bulk update of cellular device attributes."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.paloalto import (
    DEFAULT_MAX_DEVICES_PER_REQUEST,
    PALOALTO_IDENTIFIERS,
    PaloAltoIoTSecurityHook,
    validate_cellular_devices,
)
from airflow_provider_iotfleet.hooks.paloalto.connection import DEFAULT_CONSOLE_URL
from airflow_provider_iotfleet.hooks.paloalto.reads import planned_changes
from airflow_provider_iotfleet.operators.base import IoTFleetWriteOperator
from airflow_provider_iotfleet.operators.links import IoTSecurityInventoryLink
from airflow_provider_iotfleet.outcome import FleetOutcome
from airflow_provider_iotfleet.utils import chunks, distinct, plural
from airflow_provider_iotfleet.validation import as_item_list, validate_batch_size, validate_whole_number

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Requests on their way at once by default: one after the other, so the later entry always wins.
DEFAULT_REQUESTS_IN_FLIGHT = 1
#: IoT Security publishes no concurrency limit for bulkUpdate; more than this buys nothing.
MAX_REQUESTS_IN_FLIGHT = 4


class PaloAltoIoTBulkUpdateOperator(IoTFleetWriteOperator[PaloAltoIoTSecurityHook]):
    """Update cellular attributes of devices in IoT Security (``PUT .../device/bulkUpdate``),
    ``batch_size`` devices per request.

    Returns a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` (``operation``
    ``"bulk_update"``) with ``updated`` and ``batches`` added. IoT Security reports how many devices
    each request updated (``updatedDeviceNum``), not which: a device it does not know is accepted
    and not counted. So the devices of accepted requests are ``accepted`` (not ``succeeded``), and
    ``updated`` is IoT Security's count over them; the devices of a failed request are ``failed``
    under that request's error. A device's id is its entry's first identifier among ipAddress,
    ipv6Address, imei, iccid, imsi and msisdn.

    Safe under Airflow's retries: the bulk update writes absolute values, so sending a device twice
    changes nothing. On Airflow 3.3+ each accepted request is also recorded in the task's own state,
    and a retry sends only the requests an earlier try did not get accepted.

    A dry run (``dry_run=True``) sends no update. It validates the devices as a real run does, reads
    IoT Security's device list (``GET .../device/list``, 1000 entries a page, within the published
    60 device reads a minute: the connection's ``device_reads_per_minute``) once for the whole run,
    stopping as soon as every device is found, and finds each device in it by its identifiers. Where
    a real run can only count (the bulk update answers how many devices it updated, not which), a
    plan can tell per device, because it reads each device's listed entry: ``succeeded`` devices
    would change, with ``plan`` ``{field: {"from": listed, "to": sent}}`` for each field the list
    shows otherwise (``from`` ``None`` where it shows none), and ``unchanged`` ones already show
    every value sent. A device the list does not show is ``succeeded`` with every field
    ``{"from": None, "to": sent}``: that plan is only what would be sent (IoT Security ignores a
    device it does not know). ``plan_source`` says which is which: ``{"device_list": [ids read
    back], "not_listed": [ids planned from what would be sent]}``. ``batches`` is the requests a real
    run would send; ``updated`` is ``None`` (IoT Security counts only what it updates). With
    ``auth_type=scm`` (no documented device list) every device is ``not_listed``. Nothing in the
    plan is ``accepted``, which only says that a request was.

    :param devices: dicts with any of ipAddress, ipv6Address, imei, iccid, imsi, apn, msisdn and
        SessionEvtType, at least one identifier each (templated, or an upstream task's output).
        The same device twice is sent once.
    :param update_source: the ``updateSource`` query value; this API takes ``cellular``.
    :param batch_size: devices per request, at most 1000 (the vendor publishes no cap).
    :param customer_id: the tenant (v4.0 API), overriding the connection's (templated).
    :param paloalto_iot_conn_id: the Airflow connection.
    :param fail_on_error: fail the task when any request failed (after sending all of them).
    :param dry_run: read only and return the plan (templated; see above).
    :param requests_in_flight: requests on their way at once, 1..4 (default 1, one after the
        other). 2 sends the next batch while IoT Security works on the previous one (the
        connection's rate limit still paces every request). Every device is in one request only
        (repeats dropped, two updates under one id refused), so the order requests land in changes
        nothing, except for one device given twice under different identifiers: with 1, the later
        entry is sure to win. After refused credentials, a request already on its way is still
        answered; the others are not sent.
    """

    hook_class = PaloAltoIoTSecurityHook
    operator_extra_links = (IoTSecurityInventoryLink(),)
    console_url_default = DEFAULT_CONSOLE_URL
    operation = "bulk_update"
    template_fields = ("devices", "update_source", "customer_id", "dry_run")
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
        requests_in_flight: int = DEFAULT_REQUESTS_IN_FLIGHT,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=paloalto_iot_conn_id, fail_on_error=fail_on_error, **kwargs)
        self.devices = devices
        self.update_source = update_source
        self.customer_id = customer_id
        self.batch_size = validate_batch_size(batch_size, DEFAULT_MAX_DEVICES_PER_REQUEST, self.vendor)
        self.requests_in_flight = validate_whole_number(
            requests_in_flight, f"{self.task_id}: requests_in_flight", 1, MAX_REQUESTS_IN_FLIGHT
        )

    def _validated(self) -> tuple[list[dict[str, str]], list[str], int] | None:
        """The distinct entries (validated, in input order), their ids, and how many repeats went;
        ``None`` (logged) when there are none. What :meth:`operate` and :meth:`plan` both start from.

        :raises IoTFleetValidationError: naming every bad entry, or two different updates of one
            device, before any request.
        """
        raw = as_item_list(self.devices, "devices")
        if not raw:
            self.nothing_to_do("devices")
            return None
        devices, ids, duplicates = _distinct_devices(validate_cellular_devices(raw))
        _refuse_conflicts(ids)
        return devices, ids, duplicates

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """``(customer id, "customers/<customer id>/devices")``, or with Strata Cloud Manager auth
        ``(tsg id, "tsgs/<tsg id>/devices")``: the tenant the updates went to."""
        if self.hook.auth_type == "scm":
            tsg_id = self.hook.settings.get_str("tsg_id") or ""
            return tsg_id, f"tsgs/{tsg_id}/devices"
        customer_id = self.customer_id or self.hook.customer_id
        return customer_id, f"customers/{customer_id}/devices"

    def console_link_fields(self, outcome: FleetOutcome) -> dict[str, str] | None:
        """The tenant, for the 'IoT Security inventory' link, when any device was sent."""
        if not outcome.requested:
            return None
        return {"customer_id": self.customer_id or self.hook.customer_id}

    def plan(self, context: Context) -> FleetOutcome:
        """Read the device list back (:meth:`PaloAltoIoTSecurityHook.read_devices`) and return what
        each device would get, sending no update."""
        validated = self._validated()
        sources: dict[str, list[str]] = {"device_list": [], "not_listed": []}
        if validated is None:
            return self.new_outcome(0).build(dry_run=True, updated=0, batches=0, plan_source=sources)
        devices, ids, _duplicates = validated
        outcome = self.new_outcome(len(devices), order=ids)
        listed = self.hook.read_devices(devices, self.customer_id)
        for device, key, entry in zip(devices, ids, listed, strict=True):
            sources["device_list" if entry is not None else "not_listed"].append(key)
            changes = planned_changes(device, entry)
            if changes:
                outcome.add("succeeded", key)
                outcome.plan(key, changes)
            else:
                outcome.add("unchanged", key)
        batches = -(-len(devices) // self.batch_size)
        return outcome.build(dry_run=True, updated=None, batches=batches, plan_source=sources)

    def operate(self, context: Context) -> FleetOutcome:
        validated = self._validated()
        if validated is None:
            return self.new_outcome(0).build(updated=0, batches=0)
        devices, ids, duplicates = validated
        outcome = self.new_outcome(len(devices), order=ids)
        batches = list(chunks(devices, self.batch_size))
        journal = self.journal(context, "paloalto.accepted")
        accepted_before: dict[str, Any] = journal.load()
        # Each batch's journal key and device ids, by the batch's identity (computed once per batch).
        # Without a task state store nothing is recorded or found, so no batch needs its key.
        keyed = journal.available
        about: dict[int, tuple[str, list[str]]] = {
            id(batch): (_batch_key(batch, self.update_source, self.customer_id) if keyed else "", batch_ids)
            for batch, batch_ids in zip(batches, chunks(ids, self.batch_size), strict=True)
        }
        to_send: list[list[dict[str, str]]] = []
        # IoT Security's count of updated devices, one per accepted request
        updated: list[int] = []
        for batch in batches:
            key, batch_ids = about[id(batch)]
            if key in accepted_before:
                updated.append(int(accepted_before[key]))
                outcome.add_many("accepted", batch_ids)
            else:
                to_send.append(batch)
        detail = ""
        if updated:
            detail = f"{plural(len(updated), 'request')} accepted in an earlier try, not sent again"
        progress = self.start(
            "updating", len(devices), duplicates=duplicates, batches=len(batches), detail=detail
        )
        progress.advance(len(devices) - sum(len(batch) for batch in to_send))

        def send(batch: list[dict[str, str]]) -> int:
            result = self.hook.bulk_update(batch, self.update_source, self.customer_id, validated=True)
            journal.record(about[id(batch)][0], result.updated)
            return result.updated

        def record(batch: list[dict[str, str]], count: int) -> None:
            updated.append(count)
            outcome.add_many("accepted", about[id(batch)][1])

        try:
            self.send_in_batches(
                outcome, to_send, send, record, progress, id_of=device_id, in_flight=self.requests_in_flight
            )
        finally:
            journal.flush()
        return outcome.build(updated=sum(updated), batches=len(batches))


def _distinct_devices(devices: list[dict[str, str]]) -> tuple[list[dict[str, str]], list[str], int]:
    """Return the entries with repeats dropped (first kept), their ids (:func:`device_id`, each
    worked out once: for order, conflicts and the outcome), and how many entries went.

    Equal entries have the same id: when no two ids are the same, as in most lists, there is
    nothing to drop and no entry needs its sorted items as a key.
    """
    ids = [device_id(device) for device in devices]
    if len(set(ids)) == len(ids):
        return devices, ids, 0
    kept, dropped = distinct(devices, key=lambda device: tuple(sorted(device.items())))
    return kept, [device_id(device) for device in kept], dropped


def _refuse_conflicts(ids: list[str]) -> None:
    """One device, one update: two different entries under the same id (its first identifier) would
    both be sent, the later one winning, and the outcome would name the device twice.

    :param ids: the id of each distinct entry (:func:`device_id`), in order.
    :raises IoTFleetValidationError: naming every such pair.
    """
    if len(set(ids)) == len(ids):
        return
    first: dict[str, int] = {}
    problems = []
    for index, key in enumerate(ids):
        if key in first:
            problems.append(
                f"devices {first[key]} and {index} (of the distinct ones) both update {key} differently"
            )
        else:
            first[key] = index
    if problems:
        raise IoTFleetValidationError("the same device is given two different updates", problems)


def device_id(device: dict[str, str]) -> str:
    """The id a Palo Alto entry is reported under: its first identifier among ipAddress,
    ipv6Address, imei, iccid, imsi and msisdn (validation ensures there is one).

    :raises StopIteration: for an entry without any (one validation refused).
    """
    for key in PALOALTO_IDENTIFIERS:
        if key in device:
            return device[key]
    raise StopIteration(f"no identifier in {sorted(device)}")


def _batch_key(batch: list[dict[str, str]], update_source: str, customer_id: str | None) -> str:
    """What identifies one request across tries: its devices, update source and tenant."""
    text = json.dumps([batch, update_source, customer_id], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
