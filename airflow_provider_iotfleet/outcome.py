"""The one outcome every write operator returns: what happened to each device, and why not.

Every write operator (Palo Alto bulk update, Cisco edit, ROMA force-offline, ThingSpace firmware
sync and firmware upgrade) pushes one :class:`FleetOutcome` to XCom, in this shape::

    {"operation": "force_offline", "vendor": "Huawei Cloud ROMA Connect", "requested": 3,
     "dry_run": False,
     "counts": {"succeeded": 1, "unchanged": 1, "scheduled": 0, "accepted": 0, "failed": 1,
                "unknown": 0},
     "devices": {"succeeded": [700002], "unchanged": [700003], "scheduled": [], "accepted": []},
     "errors": [{"status": "failed", "error_code": "never_connected", "http_status": None,
                 "message": "never connected: only online MQTT devices can be forced offline",
                 "request_id": None, "retryable": False, "attempted": False,
                 "devices": [700004]}],
     ...operation-specific fields (a campaign's id and dates, a sync's firmware versions)}

A device id is the id the caller gave (an ICCID, an IMEI, a ROMA device id; for Palo Alto, the
entry's first identifier among ``ipAddress``, ``ipv6Address``, ``imei``, ``iccid``, ``imsi``,
``msisdn``). Statuses mean the same for every vendor:

``succeeded``
    changed now, as asked.
``unchanged``
    already as asked: nothing was sent, or the vendor said so ("already activated", "already
    offline"). What an earlier try of the same task did is seen so on a retry where the retry reads
    the devices (Cisco edits, ROMA force-offline); where it knows it from the task's own state, it
    keeps the status the earlier try saw (a sync ``succeeded``, a Palo Alto request ``accepted``, a
    Cisco edit ``scheduled``).
``scheduled``
    accepted for later (a Cisco edit with an effective date, a device in a firmware campaign).
``accepted``
    in a request the vendor accepted without saying per device whether it applied it: Palo Alto
    IoT Security answers how many devices a bulk update updated (``updated``, its
    ``updatedDeviceNum`` summed), not which.
``failed``
    refused, or not sent.
``unknown``
    the answer was lost and reading the device back could not tell whether the change applied.

Devices in the first four statuses are listed under ``devices``; each failed or unknown device is
listed once, under the error that hit it in ``errors``, so that a run where 100,000 devices fail
the same way carries one message and the ids once (a few MiB at most), not 100,000 messages.
``counts`` has every status, ``0`` included. ``attempted`` is ``False`` for devices never sent
(stopped after refused credentials, or not sendable: a ROMA device that never connected).

A dry run (``dry_run=True`` on any write operator) sends only reads and pushes the same shape with
``"dry_run": true``: the statuses say what *would* happen (``succeeded``: would change,
``unchanged``: already as asked, ``failed``: would be refused, and why), and ``plan`` says how, per
device that would change::

    "plan": {"89011...": {"status": {"from": "TEST_READY", "to": "ACTIVATED"}}}

(each key is the device id as text; a ``from`` of ``None`` means the current value could not be
read, see the operator for what its plan shows). A Cisco edit that read its devices first also
carries ``before``: each changed device's previous values of the fields it changed, which
:func:`~airflow_provider_iotfleet.rollback.rollback_edits` turns into the edits that restore them.

In a downstream task, read it back with :func:`pull_outcome` (the outcome is the task's return
value when it succeeded, and is pushed under the XCom key ``outcome`` when it failed), then use
:meth:`FleetOutcome.ids_to_go_on`, :meth:`FleetOutcome.ids_to_retry` and
:meth:`FleetOutcome.failure_lines`. :meth:`FleetOutcome.combine` merges the outcomes of mapped tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetOutcomeUnknownError,
)
from airflow_provider_iotfleet.http.retry import is_transient

__all__ = [
    "DONE_STATUSES",
    "ERROR_STATUSES",
    "STATUSES",
    "DeviceId",
    "ErrorGroup",
    "FleetOutcome",
    "OutcomeBuilder",
    "Status",
    "pull_outcome",
]

DeviceId = str | int
Status = Literal["succeeded", "unchanged", "scheduled", "accepted", "failed", "unknown"]
#: Devices in these statuses are done as far as this operation goes: the ones to go on with.
DONE_STATUSES: tuple[Status, ...] = ("succeeded", "unchanged", "scheduled", "accepted")
#: Devices in these statuses are listed under the error that hit them.
ERROR_STATUSES: tuple[Status, ...] = ("failed", "unknown")
STATUSES: tuple[Status, ...] = DONE_STATUSES + ERROR_STATUSES
#: The keys every outcome has; anything else in its XCom form is operation-specific.

_COMMON_KEYS = frozenset({"operation", "vendor", "requested", "dry_run", "counts", "devices", "errors"})
#: A change of one field in a plan: ``{"from": current, "to": wanted}``.
FieldChange = dict[str, Any]


@dataclass
class ErrorGroup:
    """One distinct error and every device it hit.

    :ivar status: ``failed``, or ``unknown`` when the vendor may have applied the change.
    :ivar error_code: the vendor's error code, or its per-device status, or a name of ours for a
        refusal found before sending (``never_connected``).
    :ivar retryable: whether the same request may well succeed later (throttling, a 5xx, a dropped
        connection): what :meth:`FleetOutcome.ids_to_retry` returns.
    :ivar attempted: ``False`` when the devices were never sent.
    :ivar request_id: the vendor's request id of the first request that failed so.
    """

    status: Status
    error_code: str | None
    http_status: int | None
    message: str
    request_id: str | None = None
    retryable: bool = False
    attempted: bool = True
    devices: list[DeviceId] = field(default_factory=list)

    @property
    def key(self) -> tuple[Any, ...]:
        """What makes two errors the same error (the request id does not)."""
        return (self.status, self.error_code, self.http_status, self.message, self.retryable, self.attempted)

    @property
    def label(self) -> str:
        """``"20000001 (HTTP 404)"``: the code and status a person searches the logs for."""
        status = f"HTTP {self.http_status}" if self.http_status is not None else None
        if self.error_code and status:
            return f"{self.error_code} ({status})"
        return self.error_code or status or "error"

    def to_xcom(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "error_code": self.error_code,
            "http_status": self.http_status,
            "message": self.message,
            "request_id": self.request_id,
            "retryable": self.retryable,
            "attempted": self.attempted,
            "devices": list(self.devices),
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> ErrorGroup:
        return cls(
            status=value["status"],
            error_code=value.get("error_code"),
            http_status=value.get("http_status"),
            message=value.get("message") or "",
            request_id=value.get("request_id"),
            retryable=bool(value.get("retryable")),
            attempted=bool(value.get("attempted", True)),
            devices=list(value.get("devices") or []),
        )


@dataclass
class FleetOutcome:
    """What a write operation did to each device; see the module docstring for the XCom shape.

    :ivar operation: what was done (``bulk_update``, ``edit_devices``, ``force_offline``,
        ``sync_firmware``, ``upgrade_firmware``).
    :ivar vendor: the vendor platform's display name.
    :ivar requested: the distinct devices asked for.
    :ivar devices: the devices in each of :data:`DONE_STATUSES`, in input order.
    :ivar errors: one entry per distinct error, with the devices it hit.
    :ivar details: operation-specific fields, at the top level of the XCom value.
    """

    operation: str
    vendor: str
    requested: int
    devices: dict[str, list[DeviceId]] = field(default_factory=dict)
    errors: list[ErrorGroup] = field(default_factory=list)
    dry_run: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Devices per status, every status present."""
        counts: dict[str, int] = {status: len(self.devices.get(status, ())) for status in STATUSES}
        for error in self.errors:
            counts[error.status] += len(error.devices)
        return counts

    @property
    def not_done(self) -> int:
        """How many devices failed or ended unknown."""
        return sum(len(error.devices) for error in self.errors)

    def ids(self, *statuses: Status) -> list[DeviceId]:
        """The devices in ``statuses`` (all of them when none is given)."""
        wanted = statuses or STATUSES
        ids = [
            device for status in DONE_STATUSES if status in wanted for device in self.devices.get(status, ())
        ]
        ids += [device for error in self.errors if error.status in wanted for device in error.devices]
        return ids

    def ids_to_go_on(self) -> list[DeviceId]:
        """The devices the operation is done with (succeeded, unchanged, scheduled or accepted):
        the ones a next step (a wait, the next change) should take."""
        return self.ids(*DONE_STATUSES)

    def ids_to_retry(self) -> list[DeviceId]:
        """The devices whose error may well pass on a later try (throttling, 5xx, lost connection,
        or not sent because of such an error)."""
        return [device for error in self.errors if error.retryable for device in error.devices]

    def failure_lines(self, examples: int = 5) -> list[str]:
        """One line per distinct error, for a report or an alert, naming up to ``examples`` devices:
        ``"failed: 2 devices, 20000001 (HTTP 404): Invalid ICCID. e.g. 8901..., 8902..."``."""
        lines = []
        for error in self.errors:
            shown = ", ".join(str(device) for device in error.devices[:examples])
            more = f" and {len(error.devices) - examples} more" if len(error.devices) > examples else ""
            never = " (not sent)" if not error.attempted else ""
            request = f" (request id {error.request_id})" if error.request_id else ""
            text = (
                f"{error.status}{never}: {_devices(len(error.devices))}, {error.label}: "
                f"{error.message}{request}"
            )
            lines.append(f"{ended(text)} e.g. {shown}{more}")
        return lines

    @property
    def plan(self) -> dict[str, dict[str, FieldChange]]:
        """A dry run's changes per device id (as text): ``{field: {"from": current, "to": wanted}}``;
        ``{}`` for a real run."""
        return dict(self.details.get("plan") or {})

    def summary(self) -> str:
        """``"2 succeeded, 1 unchanged, 1 failed"``: the statuses that occurred, or ``"nothing to do"``."""
        return (
            ", ".join(f"{count} {status}" for status, count in self.counts.items() if count)
            or "nothing to do"
        )

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-safe dict pushed to XCom."""
        return {
            "operation": self.operation,
            "vendor": self.vendor,
            "requested": self.requested,
            "dry_run": self.dry_run,
            "counts": self.counts,
            "devices": {status: list(self.devices.get(status, ())) for status in DONE_STATUSES},
            "errors": [error.to_xcom() for error in self.errors],
            **self.details,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> FleetOutcome:
        """Rebuild an outcome from what an operator pushed (the dict :meth:`to_xcom` returned).

        :raises ValueError: when ``value`` is not such a dict.
        """
        if not isinstance(value, Mapping) or not {"operation", "devices", "errors"} <= value.keys():
            raise ValueError(
                "not a fleet outcome: expected the dict a write operator of airflow_provider_iotfleet pushes, "
                f"got {type(value).__name__}"
            )
        return cls(
            operation=value["operation"],
            vendor=value.get("vendor", ""),
            requested=int(value.get("requested", 0)),
            devices={status: list(value["devices"].get(status, ())) for status in DONE_STATUSES},
            errors=[ErrorGroup.from_xcom(error) for error in value["errors"]],
            dry_run=bool(value.get("dry_run", False)),
            details={key: item for key, item in value.items() if key not in _COMMON_KEYS},
        )

    @classmethod
    def combine(cls, outcomes: Iterable[FleetOutcome | Mapping[str, Any]]) -> FleetOutcome:
        """One outcome from several of the same operation (the batches of a mapped task): devices
        added up, the same error merged into one group. Operation-specific fields: counts
        (``updated``, ``batches``) are added up, mappings (``firmware``) merged, a value every part
        has the same kept, and values that differ (each batch's ``campaign_id``) listed per part.

        :raises ValueError: for no outcomes, or outcomes of different operations.
        """
        parts = [item if isinstance(item, FleetOutcome) else cls.from_xcom(item) for item in outcomes]
        if not parts:
            raise ValueError("no outcomes to combine")
        operations = {part.operation for part in parts}
        if len(operations) > 1:
            raise ValueError(f"outcomes of different operations cannot be combined: {sorted(operations)}")
        first = parts[0]
        builder = OutcomeBuilder(first.operation, first.vendor, sum(part.requested for part in parts))
        for part in parts:
            for status in DONE_STATUSES:
                builder.add_many(status, part.devices.get(status, ()))
            for error in part.errors:
                builder.add_group(error)
        return builder.build(dry_run=any(part.dry_run for part in parts), **_combined_details(parts))


class OutcomeBuilder:
    """Collects what happened to each device and builds the :class:`FleetOutcome`.

    Errors are grouped as they come: the same error on many devices is one group.

    :param order: the devices in input order, when they are recorded in another order (batch by
        batch, what was known before sending first): the outcome then lists each status's devices,
        each group's devices and the groups themselves (by their first device) in this order. A
        device not in it comes after those that are, as recorded. Without it, the outcome keeps the
        order of recording.
    """

    def __init__(
        self, operation: str, vendor: str, requested: int, *, order: Sequence[DeviceId] | None = None
    ) -> None:
        self.operation = operation
        self.vendor = vendor
        self.requested = requested
        self._devices: dict[str, list[DeviceId]] = {status: [] for status in DONE_STATUSES}
        self._groups: dict[tuple[Any, ...], ErrorGroup] = {}
        self._order = list(order) if order is not None else None
        self._plan: dict[DeviceId, dict[str, FieldChange]] = {}
        self._before: dict[DeviceId, dict[str, Any]] | None = None

    def plan(self, device: DeviceId, changes: Mapping[str, FieldChange]) -> None:
        """Record what a dry run would change on ``device``: ``{field: {"from": ..., "to": ...}}``
        (the device's status is recorded apart, with :meth:`add`, :meth:`refuse`, ...)."""
        self._plan[device] = dict(changes)

    def record_before(self, device: DeviceId, values: Mapping[str, Any]) -> None:
        """Record ``device``'s values, read before writing, of the fields the write changes (what a
        rollback restores). The first call makes the outcome carry ``before``."""
        if self._before is None:
            self._before = {}
        self._before[device] = dict(values)

    def records_before(self) -> None:
        """Make the outcome carry ``before`` (possibly empty: nothing changed) although no device was
        recorded: the devices were read before writing."""
        if self._before is None:
            self._before = {}

    def add(self, status: Status, device: DeviceId) -> None:
        """Record one device as done in ``status`` (one of :data:`DONE_STATUSES`)."""
        self._devices[status].append(device)

    def add_many(self, status: Status, devices: Iterable[DeviceId]) -> None:
        self._devices[status].extend(devices)

    def fail(self, devices: Sequence[DeviceId], error: IoTFleetError) -> None:
        """Record ``devices`` as hit by ``error``: ``unknown`` for an outcome-unknown error, else
        ``failed``, retryable when the error (or, for devices not attempted, its cause) is transient.
        The group's message is the error's :attr:`~IoTFleetError.bare_message`, which names no device."""
        attempted = not isinstance(error, IoTFleetNotAttemptedError)
        cause = error.cause if isinstance(error, IoTFleetNotAttemptedError) else error
        unknown = isinstance(error, IoTFleetOutcomeUnknownError)
        self.add_group(
            ErrorGroup(
                status="unknown" if unknown else "failed",
                error_code=error.error_code,
                http_status=error.http_status,
                message=error.bare_message,
                request_id=error.request_id,
                # An unknown outcome may have applied: sending it again is not a plain retry.
                retryable=not unknown and is_transient(cause),
                attempted=attempted,
                devices=list(devices),
            )
        )

    def refuse(
        self,
        devices: Sequence[DeviceId],
        error_code: str | None,
        message: str,
        *,
        attempted: bool = True,
        status: Status = "failed",
        http_status: int | None = None,
        request_id: str | None = None,
        retryable: bool = False,
    ) -> None:
        """Record ``devices`` as refused for a reason that is no :class:`IoTFleetError`: a vendor's
        per-device status in a successful answer, or a refusal found before sending."""
        self.add_group(
            ErrorGroup(
                status=status,
                error_code=error_code,
                http_status=http_status,
                message=message,
                request_id=request_id,
                retryable=retryable,
                attempted=attempted,
                devices=list(devices),
            )
        )

    def add_group(self, error: ErrorGroup) -> None:
        """Merge ``error`` into the group of the same error, or start that group."""
        if not error.devices:
            return
        group = self._groups.get(error.key)
        if group is None:
            self._groups[error.key] = ErrorGroup(**{**error.__dict__, "devices": list(error.devices)})
        else:
            group.devices.extend(error.devices)

    def build(self, *, dry_run: bool = False, **details: Any) -> FleetOutcome:
        """The outcome; ``details`` are the operation-specific fields."""
        devices = {status: list(ids) for status, ids in self._devices.items()}
        errors = [replace(group, devices=list(group.devices)) for group in self._groups.values()]
        if self._order is not None and not self._recorded_in_order(devices, errors):
            _sort_by(dict(zip(self._order, range(len(self._order)), strict=True)), devices, errors)
        if dry_run or self._plan:
            details = {"plan": self._keyed(self._plan), **details}
        if self._before is not None:
            details = {"before": self._keyed(self._before), **details}
        return FleetOutcome(
            operation=self.operation,
            vendor=self.vendor,
            requested=self.requested,
            devices=devices,
            errors=errors,
            dry_run=dry_run,
            details=details,
        )

    def _recorded_in_order(self, devices: dict[str, list[DeviceId]], errors: list[ErrorGroup]) -> bool:
        """Whether every device was recorded in one status, in input order (a run where all went
        alike, as most do): then there is nothing to sort, and no device's position to look up."""
        filled = [ids for ids in devices.values() if ids]
        return not errors and len(filled) == 1 and filled[0] == self._order

    def _keyed(self, values: Mapping[DeviceId, Any]) -> dict[str, Any]:
        """``values`` keyed by device id as text (JSON object keys), in the outcome's device order."""
        devices: Iterable[DeviceId] = values
        if self._order is not None:
            position = {device: index for index, device in enumerate(self._order)}
            devices = sorted(values, key=lambda device: position.get(device, len(position)))
        return {str(device): values[device] for device in devices}


def _sort_by(
    position: dict[DeviceId, int], devices: dict[str, list[DeviceId]], errors: list[ErrorGroup]
) -> None:
    """Sort each status's devices, each group's devices and the groups (by their first device) by
    ``position``; a device without one comes after those with one, as recorded."""

    def place(device: DeviceId) -> int:
        return position.get(device, len(position))

    for ids in [*devices.values(), *(group.devices for group in errors)]:
        try:
            ids.sort(key=position.__getitem__)  # every device has a position: no Python call each
        except KeyError:  # the keys are all computed before the list is touched: it is unchanged
            ids.sort(key=place)
    errors.sort(key=lambda group: place(group.devices[0]))


def pull_outcome(ti: Any, task_id: str, *, map_index: int | None = None) -> FleetOutcome | None:
    """The outcome a write operator pushed in this DAG run, whether its task succeeded (the return
    value) or failed (XCom key ``outcome``); ``None`` when it pushed none (it did not run, or failed
    before sending anything).

    Use it in a ``trigger_rule="all_done"`` task: ``pull_outcome(ti, "force_offline")``.

    :param ti: the running task instance (``context["ti"]``, or the ``ti`` argument of a ``@task``).
    :param map_index: one mapped task instance's outcome; for all of them, pull the list yourself
        and use :meth:`FleetOutcome.combine`.
    """
    pulled = {"map_indexes": map_index} if map_index is not None else {}
    for key in (OUTCOME_KEY, "return_value"):
        value = ti.xcom_pull(task_ids=task_id, key=key, **pulled)
        if value:
            return FleetOutcome.from_xcom(value)
    return None


def _combined_details(parts: Sequence[FleetOutcome]) -> dict[str, Any]:
    combined: dict[str, Any] = {}
    for key in dict.fromkeys(key for part in parts for key in part.details):
        values = [part.details.get(key) for part in parts]
        if all(isinstance(value, int) and not isinstance(value, bool) for value in values):
            combined[key] = sum(values)
        elif all(isinstance(value, Mapping) for value in values):
            combined[key] = {k: v for value in values if isinstance(value, Mapping) for k, v in value.items()}
        elif all(value == values[0] for value in values):
            combined[key] = values[0]
        else:
            combined[key] = values
    return combined


def ended(text: str) -> str:
    """``text`` ending a sentence: with a period, unless it has one ("Invalid ICCID." stays as is)."""
    return text if text.endswith(".") else f"{text}."


def _devices(count: int) -> str:
    return f"{count} device" if count == 1 else f"{count} devices"
