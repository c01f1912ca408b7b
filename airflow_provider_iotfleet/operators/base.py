"""What every fleet operator shares, so that a vendor operator is only its arguments and its calls.

:class:`IoTFleetBaseOperator` owns the plumbing: the hook bound to the operator's connection id,
progress logs and one summary line. :class:`IoTFleetWriteOperator` adds the outcome every write
operator returns (a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome`, errors grouped),
``fail_on_error``, sending in batches with one way of recording what each batch came to
(:meth:`~IoTFleetWriteOperator.send_in_batches`), and what a retry needs: whether this is one, and a
journal of what earlier tries did (:class:`TaskJournal`). A vendor operator implements ``operate``:
validate, send through the hook, and return its result.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

from airflow.sdk import BaseOperator

from airflow_provider_iotfleet.exceptions import OUTCOME_KEY, IoTFleetOperationFailedError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http.concurrency import BatchOutcome, map_batches
from airflow_provider_iotfleet.operators.lineage import (
    FleetLineage,
    OpenLineageMixin,
    vendor_namespace,
    write_lineage,
)
from airflow_provider_iotfleet.operators.links import push_console_url
from airflow_provider_iotfleet.outcome import DeviceId, FleetOutcome, OutcomeBuilder, ended
from airflow_provider_iotfleet.utils import plural
from airflow_provider_iotfleet.validation import as_flag, validate_share

if TYPE_CHECKING:
    from airflow.sdk import Context

# OUTCOME_KEY and IoTFleetOperationFailedError live in exceptions; they are still importable here.
__all__ = [
    "OUTCOME_KEY",
    "IoTFleetBaseOperator",
    "IoTFleetOperationFailedError",
    "IoTFleetWriteOperator",
    "OperationResult",
    "Progress",
    "TaskJournal",
]

HookT = TypeVar("HookT", bound=IoTFleetBaseHook)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: How many example items a failure group names in the log.
EXAMPLES_PER_GROUP = 3


@dataclass
class OperationResult:
    """What a read operator's :meth:`~IoTFleetBaseOperator.operate` hands back to the base (write
    operators return a :class:`~airflow_provider_iotfleet.outcome.FleetOutcome` instead).

    :ivar outcome: the JSON-safe dict returned to XCom.
    :ivar counts: items per outcome for the summary line, in display order (``{"listed": 9}``).
    """

    outcome: dict[str, Any]
    counts: dict[str, int]


class Progress:
    """Logs how far a long run is, at most every ``interval`` seconds or ``every_batches`` batches.

    Thread-safe: per-device operations advance it from their worker threads.

    :param total: the items the run will go through, or ``None`` when unknown (a whole account's
        listing): lines then give the count so far and the rate, with no ETA.
    """

    def __init__(
        self,
        log: Any,
        what: str,
        total: int | None,
        unit: str,
        *,
        interval: float,
        every_batches: int = 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._what = what
        self._total = total
        self._units = unit + "s"
        self._interval = interval
        self._every_batches = every_batches
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self._last_line = self.started
        self.done = 0
        self.failed = 0
        self.batches = 0

    def advance(self, items: int, *, failed: int = 0, batch: bool = False) -> None:
        """Count ``items`` more as done (``failed`` of them failed), and log a line if one is due."""
        with self._lock:
            self.done += items
            self.failed += failed
            self.batches += batch
            now = self._clock()
            due = (
                batch and self.batches % self._every_batches == 0
            ) or now - self._last_line >= self._interval
            if not due or (self._total is not None and self.done >= self._total):
                return  # the summary line covers the end
            self._last_line = now
            rate = self.done / max(now - self.started, 1e-9)
            if self._total is None:
                self._log.info("%s: %d %s so far, %.1f/s", self._what, self.done, self._units, rate)
                return
            left = (self._total - self.done) / rate if rate else float("inf")
            self._log.info(
                "%s: %d/%d %s (%d%%), %.1f/s, about %s left; %d failed so far",
                self._what,
                self.done,
                self._total,
                self._units,
                100 * self.done // max(self._total, 1),
                rate,
                _duration(left),
                self.failed,
            )


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "an unknown time"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class IoTFleetBaseOperator(OpenLineageMixin, BaseOperator, Generic[HookT]):
    """Base of the provider's operators: one hook, validated input, a logged summary.

    Subclasses set :attr:`hook_class`, declare their arguments and ``template_fields``, and implement
    :meth:`operate`. Read operators return an :class:`OperationResult`; write operators derive from
    :class:`IoTFleetWriteOperator`, which returns a :class:`FleetOutcome`.

    :param conn_id: the Airflow connection id (each operator names it ``<vendor>_conn_id``).
    :param progress_interval: seconds between progress lines on long runs.
    :param rate_limit_share: the share (above 0, at most 1) of the connection's rate limit that this
        task uses. When ``n`` tasks may run at once against one tenant (mapped tasks, parallel DAG
        runs), put them in a pool of ``n`` slots and give each ``1 / n``: together they then stay
        under the vendor's limit.
    """

    hook_class: ClassVar[type[IoTFleetBaseHook]]
    #: what one input item is called in logs and messages ("device", "IMEI").
    unit: ClassVar[str] = "device"
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        conn_id: str,
        progress_interval: float = 30.0,
        rate_limit_share: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.progress_interval = progress_interval
        self.rate_limit_share = validate_share(rate_limit_share, f"{self.task_id}: rate_limit_share")

    @cached_property
    def hook(self) -> HookT:
        """The vendor hook for this operator's connection, built once per task run."""
        return self.hook_class(self.conn_id, rate_limit_share=self.rate_limit_share)  # type: ignore[return-value]

    @property
    def vendor(self) -> str:
        return self.hook_class.hook_name

    def operate(self, context: Context) -> Any:
        """Validate the inputs, run the operation through :attr:`hook`, and return its result."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the operation; return its result for XCom.

        :raises IoTFleetValidationError: for bad input, before any request.
        """
        started = time.monotonic()
        result: OperationResult = self._operate(context)
        self.log.info(
            "%s: done in %s: %s", self.vendor, _duration(time.monotonic() - started), _counts(result.counts)
        )
        self.remember_lineage(result.outcome)
        return result.outcome

    def _operate(self, context: Context) -> Any:
        try:
            return self.operate(context)
        finally:
            self.hook.close()

    # --- helpers for subclasses -----------------------------------------------------------------

    def start(
        self,
        action: str,
        total: int | None,
        *,
        detail: str = "",
        duplicates: int = 0,
        batches: int | None = None,
    ) -> Progress:
        """Log the one line that says what is about to happen and where, and return the run's progress.

        :param action: what is done to the items ("editing", "forcing offline").
        :param total: the distinct items to go through, ``None`` when not known in advance.
        :param detail: anything else worth knowing up front ("effective now", "account 00001").
        """
        line = action
        if total is not None:
            line += f" {plural(total, self.unit)}"
            if batches is not None:
                line += f" in {plural(batches, 'request')}"
            if duplicates:
                line += f" ({plural(duplicates, 'duplicate')} dropped)"
        if detail:
            line += f", {detail}"
        self.log.info(
            "%s: %s, at %s (connection %r)", self.vendor, line, self.hook.client.base_url, self.conn_id
        )
        return Progress(self.log, self.vendor, total, self.unit, interval=self.progress_interval)

    def nothing_to_do(self, name: str) -> None:
        """Log that an input list is empty, so the run is a visible no-op rather than a silent one."""
        self.log.warning("%s: %s is empty; nothing to do", self.vendor, name)


class IoTFleetWriteOperator(IoTFleetBaseOperator[HookT]):
    """Base of the write operators: every device accounted once in a :class:`FleetOutcome`, safe
    under Airflow's retries.

    :meth:`execute` logs the summary and one line per distinct error, returns the outcome (the
    task's ``return_value``), or, when ``fail_on_error`` and any device failed or ended unknown,
    pushes it under the XCom key ``outcome`` and fails the task: one copy either way
    (:func:`~airflow_provider_iotfleet.outcome.pull_outcome` finds it in both cases).

    A retry is a fresh operator with the same context after an earlier try failed part-way or was
    killed. On a try after the first (:meth:`retrying`), each write operator starts from what is
    true now: it reads the devices' state before writing, or what the earlier tries recorded in the
    task's own state (:meth:`journal`, Airflow 3.3+) where the vendor shows nothing to read, and
    writes only what is still to do.

    A dry run (``dry_run``) calls :meth:`plan` instead of :meth:`operate`: it validates the input as a
    real run does (and fails the same way on bad input), sends only reads, and returns the outcome a
    real run would have, marked ``"dry_run": true``, with each would-be change in its ``plan``. It does
    not fail the task for devices that would fail: saying so is its job.

    :param fail_on_error: fail the task, after every device was tried and the outcome pushed, when
        any failed. ``False`` succeeds and leaves the failures in the outcome.
    :param dry_run: plan only (templated, so a DAG param can switch it: ``"{{ params.dry_run }}"``).
    """

    #: what the outcome's ``operation`` says ("edit_devices", "force_offline").
    operation: ClassVar[str]
    #: the vendor's console URL template when the connection sets no ``console_url`` (see
    #: ``operators/links.py``); ``None``: no link unless the connection sets one.
    console_url_default: ClassVar[str | None] = None

    def __init__(self, *, fail_on_error: bool = True, dry_run: bool | str = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail_on_error = fail_on_error
        self.dry_run = dry_run

    def operate(self, context: Context) -> FleetOutcome:
        """Validate the inputs, run the operation through :attr:`hook`, and return its outcome."""
        raise NotImplementedError

    def plan(self, context: Context) -> FleetOutcome:
        """Validate the inputs as :meth:`operate` does, read what the operation would change through
        :attr:`hook` (reads only), and return the outcome it would have, each would-be change
        recorded with :meth:`OutcomeBuilder.plan`."""
        raise NotImplementedError

    def _operate(self, context: Context) -> FleetOutcome:
        dry_run = as_flag(self.dry_run, f"{self.task_id}: dry_run")
        try:
            if not dry_run:
                return self.operate(context)
            self.log.info("%s: DRY RUN: reading only, nothing will be changed", self.vendor)
            planned = self.plan(context)
            planned.dry_run = True
            planned.details.setdefault("plan", {})
            return planned
        finally:
            self.hook.close()

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the operation; return its outcome (the task's ``return_value``).

        :raises IoTFleetValidationError: for bad input, before any request.
        :raises IoTFleetOperationFailedError: with ``fail_on_error`` when any device failed or ended
            unknown, after the outcome was pushed under XCom key ``outcome``.
        """
        started = time.monotonic()
        outcome: FleetOutcome = self._operate(context)
        self._log_outcome(outcome, time.monotonic() - started)
        if outcome.dry_run:
            # A plan changes nothing: it neither clears what earlier tries recorded nor fails.
            planned = outcome.to_xcom()
            self.remember_lineage(planned)
            return planned
        if not outcome.not_done:
            # Everything is done: a later run of this task instance (cleared, re-run) starts afresh.
            for journal in self.__dict__.pop("_journals", []):
                journal.clear()
        push_console_url(self, context, outcome)
        xcom = outcome.to_xcom()
        self.remember_lineage(xcom)
        if outcome.not_done and self.fail_on_error:
            context["ti"].xcom_push(key=OUTCOME_KEY, value=xcom)
            raise IoTFleetOperationFailedError(_failure_message(outcome, self.unit), xcom)
        return xcom

    def lineage_dataset(self, outcome: dict[str, Any]) -> tuple[str, str]:
        """Return ``(account, dataset name)`` of the devices this run addressed, for OpenLineage
        (``("0000123456-00001", "accounts/0000123456-00001/devices")``), from what the run knows."""
        raise NotImplementedError

    def lineage(self, result: dict[str, Any]) -> FleetLineage | None:
        """The vendor's devices as input and (unless a dry run) output, counts as facets (see
        :func:`~airflow_provider_iotfleet.operators.lineage.write_lineage`)."""
        account, name = self.lineage_dataset(result)
        return write_lineage(vendor_namespace(self.hook.client_options["base_url"]), account, name, result)

    def console_link_fields(self, outcome: FleetOutcome) -> dict[str, str] | None:
        """The values of the console URL's placeholders for what this run changed (see
        ``operators/links.py``); ``None`` (the default): nothing to link to."""
        return None

    def new_outcome(self, requested: int, *, order: Sequence[DeviceId] | None = None) -> OutcomeBuilder:
        """A builder for this operation's outcome over ``requested`` distinct devices.

        :param order: the devices in input order, for an operator that records them in another
            order (batch by batch): the outcome lists them in this one (see :class:`OutcomeBuilder`).
        """
        return OutcomeBuilder(self.operation, self.vendor, requested, order=order)

    def send_in_batches(
        self,
        outcome: OutcomeBuilder,
        batches: Sequence[list[ItemT]],
        send: Callable[[list[ItemT]], ResultT],
        record: Callable[[list[ItemT], ResultT], None],
        progress: Progress,
        *,
        id_of: Callable[[ItemT], DeviceId] | None = None,
        failed_in: Callable[[ResultT], int] = lambda result: 0,
        in_flight: int = 1,
    ) -> None:
        """Send each batch, one request each, and record what came of it in ``outcome``.

        Batches go through :func:`map_batches`, in order: a failed batch stops nothing,
        and after refused credentials (or another error every later request would meet) the rest are
        not sent. Each batch's devices are recorded once: a batch whose request failed is failed under
        its error (not attempted for those never sent); the result of one that was answered goes to
        ``record``, which says what it means for each device. ``progress`` advances as each lands.

        :param batches: the items, already split (``utils.chunks``) so that the start line can name
            the number of requests.
        :param send: sends one batch through the hook and returns its result.
        :param record: records a batch's result in ``outcome`` (called with the batch and its result).
        :param id_of: a device's id in the outcome; default: the item itself.
        :param failed_in: how many items of an answered batch failed, for progress lines.
        :param in_flight: requests on their way at once (see :func:`map_batches`); ``send`` is then
            called from worker threads, and ``record`` still from this one, in batch order.
        """

        def advance(landed: BatchOutcome[ItemT, ResultT]) -> None:
            failed = len(landed.items) if landed.result is None else failed_in(landed.result)
            progress.advance(len(landed.items), failed=failed, batch=True)

        for batch in map_batches(send, batches, on_outcome=advance, in_flight=in_flight):
            if batch.error is not None:
                ids = [id_of(item) for item in batch.items] if id_of else cast("list[DeviceId]", batch.items)
                outcome.fail(ids, batch.error)
            elif batch.result is not None:
                record(batch.items, batch.result)

    def retrying(self, context: Context) -> bool:
        """Whether an earlier try of this task instance ran (and may have done part of the work)."""
        try_number = getattr(context.get("ti"), "try_number", 1)
        return isinstance(try_number, int) and try_number > 1

    def journal(self, context: Context, name: str, *, flush_every: float = 5.0) -> TaskJournal:
        """What earlier tries of this task instance recorded under ``name``, and where this try
        records what it does (see :class:`TaskJournal`; ``flush_every=0`` writes each record at once)."""
        journal = TaskJournal(
            context.get("task_state_store"), f"iotfleet.{name}", self.log, flush_every=flush_every
        )
        self.__dict__.setdefault("_journals", []).append(journal)
        return journal

    def _log_outcome(self, outcome: FleetOutcome, elapsed: float) -> None:
        if outcome.dry_run:
            self.log.info(
                "%s: DRY RUN done in %s, nothing was changed; a real run would leave: %s",
                self.vendor,
                _duration(elapsed),
                outcome.summary(),
            )
            for line in outcome.failure_lines(EXAMPLES_PER_GROUP):
                self.log.warning("%s: would be %s", self.vendor, line)
            return
        self.log.info("%s: done in %s: %s", self.vendor, _duration(elapsed), outcome.summary())
        for line in outcome.failure_lines(EXAMPLES_PER_GROUP):
            self.log.error("%s: %s", self.vendor, line)


class TaskJournal:
    """What a task instance's tries did, kept in Airflow's task state store so that a retry (even
    on another worker, after the earlier try was killed) knows it.

    Entries are ``key -> JSON value``, written in chunks of up to ``chunk_size`` entries: a flush
    rewrites the chunk being filled with what is new, so a retry loads a few chunks, not one per
    flush. A try that is killed (out of memory, a lost worker) flushes nothing more: its retry does
    not know what it recorded in its last ``flush_every`` seconds. The write operators clear the
    journal when a try leaves nothing undone, so a cleared and re-run task starts afresh.

    The journal is off (:meth:`load` finds nothing, :meth:`flush` keeps nothing, and a retry sends
    again what only the journal could have told) without a task state store (Airflow before 3.3, or
    a hook used outside a task), and from the first time the store fails: a journal helps a retry,
    it must never fail the run.

    Thread-safe: per-device operations record from their worker threads.

    :param store: ``context["task_state_store"]``, or ``None``.
    :param flush_every: seconds between the writes :meth:`record` makes on its own (0: each record).
    :param chunk_size: entries per chunk.
    """

    def __init__(
        self,
        store: Any,
        name: str,
        log: Any,
        *,
        flush_every: float = 5.0,
        chunk_size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._name = name
        self._log = log
        self._flush_every = flush_every
        self._chunk_size = chunk_size
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, Any] = {}
        #: the chunks written before this try (known after the first look at the store)
        self._chunks: int | None = None
        #: the chunk this try is filling: its index and its entries so far
        self._open: dict[str, Any] = {}
        self._last_flush = clock()

    @property
    def available(self) -> bool:
        """Whether the journal is on: this Airflow keeps task state across tries, and it answers."""
        return self._store is not None

    def load(self) -> dict[str, Any]:
        """Every entry earlier tries recorded (later chunks win), ``{}`` when the journal is off."""
        with self._lock:
            if self._store is None:
                return {}
            entries: dict[str, Any] = {}
            try:
                for index in range(self._count()):
                    chunk = self._store.get(f"{self._name}.{index}", {})
                    if isinstance(chunk, dict):
                        entries.update(chunk)
            except Exception as error:  # any failure of the store turns the journal off
                self._off("read", error)
                return {}
            return entries

    def record(self, key: str, value: Any) -> None:
        """Note that ``key`` is done (with ``value``); written at the next flush, at most
        ``flush_every`` seconds from now."""
        if self._store is None:
            return
        with self._lock:
            self._pending[key] = value
            due = self._clock() - self._last_flush >= self._flush_every
        if due:
            self.flush()

    def flush(self) -> None:
        """Write what was recorded since the last flush into the chunk being filled."""
        with self._lock:
            if self._store is None or not self._pending:
                return
            pending, self._pending = self._pending, {}
            try:
                index = self._count()
                self._open.update(pending)
                self._store.set(f"{self._name}.{index}", self._open)
                self._store.set(f"{self._name}.chunks", index + 1)
                if len(self._open) >= self._chunk_size:
                    self._chunks, self._open = index + 1, {}
            except Exception as error:  # any failure of the store turns the journal off
                self._off("write", error)
            self._last_flush = self._clock()

    def clear(self) -> None:
        """Forget every entry (the work is done: a cleared and re-run task starts afresh)."""
        with self._lock:
            if self._store is None:
                return
            try:
                chunks = self._store.get(f"{self._name}.chunks", 0)
                for index in range(chunks if isinstance(chunks, int) else 0):
                    self._store.delete(f"{self._name}.{index}")
                self._store.delete(f"{self._name}.chunks")
            except Exception as error:  # any failure of the store turns the journal off
                self._off("clear", error)
            self._chunks, self._open, self._pending = 0, {}, {}

    def _count(self) -> int:
        """The chunks earlier tries wrote; this try fills the next one (the store is read once)."""
        if self._chunks is None:
            chunks = self._store.get(f"{self._name}.chunks", 0)
            self._chunks = chunks if isinstance(chunks, int) else 0
        return self._chunks

    def _off(self, doing: str, error: Exception) -> None:
        self._log.warning(
            "the task state store failed to %s %s (%s: %s); a retry of this task will send again what "
            "this one did",
            doing,
            self._name,
            type(error).__name__,
            error,
        )
        self._store = None


def _counts(counts: dict[str, int]) -> str:
    # The first count always shows (it is what the operator is for); the others only when not 0.
    shown = ", ".join(f"{count} {what}" for n, (what, count) in enumerate(counts.items()) if count or n == 0)
    return shown or "nothing to do"


def _failure_message(outcome: FleetOutcome, unit: str) -> str:
    groups = "; ".join(
        f"{len(error.devices)} {error.status}{'' if error.attempted else ' (not sent)'} with {error.label}"
        + (f": {_shorten(error.message)}" if error.message and error.message != error.error_code else "")
        for error in outcome.errors
    )
    not_sent = sum(len(error.devices) for error in outcome.errors if not error.attempted)
    tried = (
        f"Every {unit} was tried; "
        if not not_sent
        else f"{outcome.requested - not_sent} of {plural(outcome.requested, unit)} tried, {not_sent} not sent; "
    )
    return (
        f"{outcome.not_done} of {plural(outcome.requested, unit)} not done: {ended(groups)} "
        + tried
        + f"the outcome is in XCom key {OUTCOME_KEY!r} (set fail_on_error=False to succeed with failures)"
    )


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
