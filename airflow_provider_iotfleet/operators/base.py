"""What every fleet operator shares, so that a vendor operator is only its arguments and its calls.

:class:`IoTFleetBaseOperator` owns the plumbing: the hook bound to the operator's connection id,
input lists taken from XCom or rendered templates, duplicates dropped, validation before the first
request, batching with the vendor's maximum, progress logs, one summary line, failures grouped by
vendor error code, the ``outcome`` XCom pushed before failing, and ``fail_on_error``. A vendor
operator implements :meth:`~IoTFleetBaseOperator.operate`: validate, send through the hook, and
return an :class:`OperationResult`.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from airflow.sdk import BaseOperator

from airflow_provider_iotfleet.exceptions import (
    OUTCOME_KEY,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetOperationFailedError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.http.concurrency import BatchOutcome, map_batches
from airflow_provider_iotfleet.validation import plural, validate_share

if TYPE_CHECKING:
    from airflow.sdk import Context

# OUTCOME_KEY and IoTFleetOperationFailedError live in exceptions; they are still importable here.
__all__ = [
    "OUTCOME_KEY",
    "Failure",
    "IoTFleetBaseOperator",
    "IoTFleetOperationFailedError",
    "OperationResult",
    "Progress",
]

HookT = TypeVar("HookT", bound=IoTFleetBaseHook)
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

#: How many example items a failure group names in the log.
EXAMPLES_PER_GROUP = 3


@dataclass(frozen=True)
class Failure:
    """One failed item (or batch) as the logs and the final error report it.

    :ivar item: what failed, as a user finds it again ("89014103211118510720", "batch 3").
    :ivar items: how many input items it stands for (a failed batch stands for all of its devices).
    :ivar code: what groups failures: the vendor's error code, else the HTTP status or the vendor's
        per-device status.
    """

    item: str
    message: str
    code: str
    items: int = 1
    http_status: int | None = None
    request_id: str | None = None

    @classmethod
    def from_error(cls, item: str, error: IoTFleetError, items: int = 1) -> Failure:
        """Describe ``item`` failed with ``error``; not-attempted items group under their cause."""
        code = error.error_code or (f"HTTP {error.http_status}" if error.http_status else None)
        if code is None:
            cause = error.cause if isinstance(error, IoTFleetNotAttemptedError) else error
            code = type(cause).__name__.removeprefix("IoTFleet").removesuffix("Error").lower() or "error"
        return cls(
            item=item,
            message=error.message,
            code=code,
            items=items,
            http_status=error.http_status,
            request_id=error.request_id,
        )


@dataclass
class OperationResult:
    """What an operator's :meth:`~IoTFleetBaseOperator.operate` hands back to the base.

    :ivar outcome: the JSON-safe dict returned to XCom (and pushed under ``outcome``).
    :ivar counts: items per outcome for the summary line, in display order (``{"updated": 9}``).
    :ivar failures: every failed item or batch, for the grouped report and ``fail_on_error``.
    """

    outcome: dict[str, Any]
    counts: dict[str, int]
    failures: list[Failure] = field(default_factory=list)


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


class IoTFleetBaseOperator(BaseOperator, Generic[HookT]):
    """Base of the provider's operators: one hook, validated input, an accounted outcome.

    Subclasses set :attr:`hook_class`, declare their arguments and ``template_fields``, and implement
    :meth:`operate`. :meth:`execute` then logs the summary and each failure group once, pushes the
    outcome under the ``outcome`` XCom key, fails the task if ``fail_on_error`` and anything failed,
    and otherwise returns the outcome (the task's ``return_value``).

    :param conn_id: the Airflow connection id (each operator names it ``<vendor>_conn_id``).
    :param fail_on_error: fail the task, after every item was tried and the outcome pushed, when any
        item failed. ``False`` succeeds and leaves the failures in the outcome.
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
        fail_on_error: bool = True,
        progress_interval: float = 30.0,
        rate_limit_share: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.fail_on_error = fail_on_error
        self.progress_interval = progress_interval
        self.rate_limit_share = validate_share(rate_limit_share, f"{self.task_id}: rate_limit_share")

    @cached_property
    def hook(self) -> HookT:
        """The vendor hook for this operator's connection, built once per task run."""
        return self.hook_class(self.conn_id, rate_limit_share=self.rate_limit_share)  # type: ignore[return-value]

    @property
    def vendor(self) -> str:
        return self.hook_class.hook_name

    def operate(self, context: Context) -> OperationResult:
        """Validate the inputs, run the operation through :attr:`hook`, and return its result."""
        raise NotImplementedError

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the operation; return its outcome (also pushed under ``outcome``).

        :raises IoTFleetValidationError: for bad input, before any request.
        :raises IoTFleetOperationFailedError: with ``fail_on_error`` when any item failed.
        """
        started = time.monotonic()
        try:
            result = self.operate(context)
        finally:
            self.hook.close()
        self._report(result, time.monotonic() - started)
        context["ti"].xcom_push(key=OUTCOME_KEY, value=result.outcome)
        failed = sum(failure.items for failure in result.failures)
        if failed and self.fail_on_error:
            requested = result.outcome.get("requested", failed)
            raise IoTFleetOperationFailedError(
                f"{failed} of {plural(requested, self.unit)} failed: {_group_summary(result.failures)}. "
                f"Every {self.unit} was tried; the outcome is in XCom key {OUTCOME_KEY!r} (set "
                "fail_on_error=False to succeed with failures)",
                result.outcome,
            )
        return result.outcome

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

    def run_batches(
        self,
        batches: Sequence[list[ItemT]],
        send: Callable[[list[ItemT]], ResultT],
        progress: Progress,
        failed_in: Callable[[ResultT], int] = lambda result: 0,
    ) -> list[BatchOutcome[ItemT, ResultT]]:
        """Send each batch (see :func:`map_batches`: a failed batch stops nothing, refused
        credentials stop the rest), advancing ``progress`` as each one lands.

        :param failed_in: how many items of a successful batch's result failed, for progress lines.
        """

        def advance(outcome: BatchOutcome[ItemT, ResultT]) -> None:
            failed = len(outcome.items) if outcome.result is None else failed_in(outcome.result)
            progress.advance(len(outcome.items), failed=failed, batch=True)

        return map_batches(send, batches, on_outcome=advance)

    def _report(self, result: OperationResult, elapsed: float) -> None:
        # The first count always shows (it is what the operator is for); the others only when not 0.
        counts = ", ".join(
            f"{count} {what}" for n, (what, count) in enumerate(result.counts.items()) if count or n == 0
        )
        self.log.info("%s: done in %s: %s", self.vendor, _duration(elapsed), counts or "nothing to do")
        groups: dict[str, list[Failure]] = defaultdict(list)
        for failure in result.failures:
            groups[failure.code].append(failure)
        for code, failures in groups.items():
            first = failures[0]
            examples = ", ".join(failure.item for failure in failures[:EXAMPLES_PER_GROUP])
            more = (
                f" and {len(failures) - EXAMPLES_PER_GROUP} more"
                if len(failures) > EXAMPLES_PER_GROUP
                else ""
            )
            request_ids = sorted({f.request_id for f in failures if f.request_id})
            self.log.error(
                "%s: %d failed with %s%s (e.g. %s%s)%s",
                self.vendor,
                sum(f.items for f in failures),
                code,
                "" if first.message == code else f": {first.message}",
                examples,
                more,
                f"; request id {', '.join(request_ids[:EXAMPLES_PER_GROUP])}" if request_ids else "",
            )


def _group_summary(failures: Sequence[Failure]) -> str:
    counts: dict[str, int] = defaultdict(int)
    messages: dict[str, str] = {}
    for failure in failures:
        counts[failure.code] += failure.items
        messages.setdefault(failure.code, _shorten(failure.message))
    return "; ".join(
        f"{count} x {code}" + ("" if messages[code] == code else f" ({messages[code]})")
        for code, count in counts.items()
    )


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
