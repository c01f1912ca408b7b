"""The fleet operators' shared plumbing: input lists, batching helpers, progress lines, failure groups.

Everything here goes through the base module's public helpers, or through ``execute`` of a minimal
operator built on :class:`IoTFleetBaseOperator` the way a vendor operator is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from typing import Any, overload

import pytest
import requests_mock as rm
import structlog

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetNotFoundError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.operators.base import (
    OUTCOME_KEY,
    Failure,
    IoTFleetBaseOperator,
    IoTFleetOperationFailedError,
    OperationResult,
    Progress,
)
from airflow_provider_iotfleet.validation import as_item_list, chunks, distinct, validate_batch_size
from tests.fakes import ICCID, ICCID_19, FakeClock, operator_context

HOST = "https://rws.example.com"
CONN_ID = "fleet_base_cisco"


class LineLog:
    """Records what :class:`Progress` logs, formatted as the log line would read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


class LazySequence(Sequence[str]):
    """Like the lazy sequence Airflow hands over for a mapped upstream's output: not a list."""

    def __init__(self, items: list[str]) -> None:
        self._items = items

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)


# --- as_item_list ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param([ICCID, ICCID_19], [ICCID, ICCID_19], id="list"),
        pytest.param((ICCID, ICCID_19), [ICCID, ICCID_19], id="tuple"),
        pytest.param((i for i in (ICCID, ICCID_19)), [ICCID, ICCID_19], id="generator"),
        pytest.param(LazySequence([ICCID, ICCID_19]), [ICCID, ICCID_19], id="lazy-sequence"),
        pytest.param(f'["{ICCID}", "{ICCID_19}"]', [ICCID, ICCID_19], id="json-list-string"),
        pytest.param(f"['{ICCID}', '{ICCID_19}']", [ICCID, ICCID_19], id="python-literal-string"),
        pytest.param(f"  ['{ICCID}']\n", [ICCID], id="literal-string-with-whitespace"),
        pytest.param("[1, 2]", [1, 2], id="json-ints"),
        pytest.param("[{'iccid': 'x', 'status': 'ACTIVATED'}]", [{"iccid": "x", "status": "ACTIVATED"}]),
        pytest.param("[]", [], id="empty-list-string"),
        pytest.param([], [], id="empty-list"),
    ],
)
def test_as_item_list_accepts_what_a_dag_author_passes(value: Any, expected: list[Any]) -> None:
    result = as_item_list(value, "iccids")
    assert result == expected
    assert type(result) is list


def test_as_item_list_returns_a_new_list() -> None:
    given = [ICCID]
    result = as_item_list(given, "iccids")
    result.append(ICCID_19)
    assert given == [ICCID]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(ICCID, id="plain-digits"),
        pytest.param("a", id="one-letter"),
        pytest.param("[not, a list", id="unparsable-list-literal"),
        pytest.param("", id="empty-string"),
    ],
)
def test_as_item_list_rejects_a_plain_string_and_says_what_to_do(value: str) -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        as_item_list(value, "iccids")
    message = str(caught.value)
    assert message.startswith("iccids must be a list:")
    assert f"got the string {value.strip()!r}" in message
    # It tells the DAG author how to fix it.
    assert "pass a list, an upstream task's output, or a template that renders a list literal" in message
    assert "render_template_as_native_obj=True" in message
    assert len(caught.value.problems) == 1


def test_as_item_list_shortens_a_long_string_in_its_message() -> None:
    long_text = "x" * 500
    with pytest.raises(IoTFleetValidationError) as caught:
        as_item_list(long_text, "imeis")
    assert f"got the string {'x' * 60!r}" in str(caught.value)
    assert "x" * 61 not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        pytest.param({"iccid": ICCID}, "dict", id="dict"),
        pytest.param(f'["{ICCID}"]'.encode(), "bytes", id="bytes"),
        pytest.param(None, "NoneType", id="none"),
        pytest.param(42, "int", id="int"),
    ],
)
def test_as_item_list_rejects_what_is_not_a_list(value: Any, type_name: str) -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        as_item_list(value, "edits")
    assert str(caught.value) == f"edits must be a list:\n  - got {type_name}"
    assert caught.value.problems == [f"got {type_name}"]


def test_as_item_list_errors_are_value_errors_too() -> None:
    # Callers catching ValueError (as for any bad argument) catch these as well.
    with pytest.raises(ValueError, match="must be a list"):
        as_item_list({"a": 1}, "edits")


# --- distinct, chunks, validate_batch_size ---------------------------------------------------------


def test_distinct_keeps_first_occurrences_in_order_and_counts_the_rest() -> None:
    assert distinct([3, 1, 3, 2, 1, 3], key=lambda item: item) == ([3, 1, 2], 3)


def test_distinct_compares_by_key_and_keeps_the_first_item_itself() -> None:
    devices = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 1, "name": "c"}]
    kept, dropped = distinct(devices, key=lambda device: device["id"])
    assert kept == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert dropped == 1


def test_distinct_of_nothing_and_of_all_different() -> None:
    assert distinct([], key=str) == ([], 0)
    assert distinct(iter("abc"), key=str) == (["a", "b", "c"], 0)


@pytest.mark.parametrize(
    ("items", "size", "expected"),
    [
        (list(range(5)), 2, [[0, 1], [2, 3], [4]]),
        (list(range(4)), 2, [[0, 1], [2, 3]]),
        (list(range(3)), 100, [[0, 1, 2]]),
        ([], 3, []),
        (("a", "b", "c"), 1, [["a"], ["b"], ["c"]]),
    ],
)
def test_chunks(items: Sequence[Any], size: int, expected: list[list[Any]]) -> None:
    result = list(chunks(items, size))
    assert result == expected
    assert all(type(chunk) is list for chunk in result)


@pytest.mark.parametrize("size", [1, 50, 100])
def test_validate_batch_size_accepts_1_to_the_maximum(size: int) -> None:
    assert validate_batch_size(size, 100, "Huawei ROMA Connect") == size


@pytest.mark.parametrize(
    "size",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(101, id="max-plus-one"),
        pytest.param(True, id="bool"),
        pytest.param(10.0, id="float"),
        pytest.param("10", id="string"),
        pytest.param(None, id="none"),
    ],
)
def test_validate_batch_size_rejects_and_names_the_limit(size: Any) -> None:
    with pytest.raises(IoTFleetValidationError) as caught:
        validate_batch_size(size, 100, "Huawei ROMA Connect")
    assert str(caught.value) == (
        f"batch_size is invalid:\n  - {size!r}: Huawei ROMA Connect takes 1 to 100 per request"
    )


# --- Progress -------------------------------------------------------------------------------------


def test_progress_logs_at_most_every_interval_with_rate_and_eta(clock: FakeClock) -> None:
    log = LineLog()
    progress = Progress(log, "Cisco IoT Control Center", 100, "device", interval=30, clock=clock.monotonic)
    clock.advance(10)
    progress.advance(10)
    assert log.lines == []  # 10 s since the start: not due
    clock.advance(20)
    progress.advance(10)
    assert log.lines == [
        "Cisco IoT Control Center: 20/100 devices (20%), 0.7/s, about 2 min left; 0 failed so far"
    ]
    clock.advance(10)
    progress.advance(10, failed=2)
    assert len(log.lines) == 1  # 10 s since the last line
    clock.advance(20)
    progress.advance(20)
    assert log.lines[1:] == [
        "Cisco IoT Control Center: 50/100 devices (50%), 0.8/s, about 60 s left; 2 failed so far"
    ]
    assert (progress.done, progress.failed) == (50, 2)


def test_progress_logs_every_n_batches(clock: FakeClock) -> None:
    log = LineLog()
    progress = Progress(log, "Huawei", 10, "device", interval=3600, every_batches=2, clock=clock.monotonic)
    for _ in range(4):
        clock.advance(1)
        progress.advance(1, batch=True)
    assert log.lines == [
        "Huawei: 2/10 devices (20%), 1.0/s, about 8.0 s left; 0 failed so far",
        "Huawei: 4/10 devices (40%), 1.0/s, about 6.0 s left; 0 failed so far",
    ]
    # Items that are not batches do not count towards every_batches.
    clock.advance(1)
    progress.advance(1)
    progress.advance(1)
    assert len(log.lines) == 2
    assert progress.batches == 4


def test_progress_logs_no_line_once_everything_is_done(clock: FakeClock) -> None:
    log = LineLog()
    progress = Progress(log, "Cisco", 3, "device", interval=0, every_batches=1, clock=clock.monotonic)
    clock.advance(1)
    progress.advance(1, batch=True)
    clock.advance(1)
    progress.advance(1, batch=True)
    clock.advance(100)
    progress.advance(1, batch=True)  # the last one: the summary line covers it
    assert [line.split(":")[1].strip().split(" ")[0] for line in log.lines] == ["1/3", "2/3"]


def test_progress_with_unknown_total_gives_count_and_rate_without_eta(clock: FakeClock) -> None:
    log = LineLog()
    progress = Progress(log, "ThingSpace", None, "device", interval=10, clock=clock.monotonic)
    clock.advance(5)
    progress.advance(25)
    assert log.lines == []
    clock.advance(5)
    progress.advance(25)
    clock.advance(10)
    progress.advance(10_000)  # no total: never "done", lines keep coming
    assert log.lines == ["ThingSpace: 50 devices so far, 5.0/s", "ThingSpace: 10050 devices so far, 502.5/s"]


@pytest.mark.parametrize(
    ("total", "done", "elapsed", "eta"),
    [
        (100_000, 10, 30.0, "about 83.3 h left"),
        (1_000, 10, 30.0, "about 50 min left"),
        (100, 0, 30.0, "about an unknown time left"),
    ],
)
def test_progress_eta_text(clock: FakeClock, total: int, done: int, elapsed: float, eta: str) -> None:
    log = LineLog()
    progress = Progress(log, "V", total, "IMEI", interval=1, clock=clock.monotonic)
    clock.advance(elapsed)
    progress.advance(done)
    (line,) = log.lines
    assert eta in line
    assert f"{done}/{total} IMEIs" in line


def test_progress_counts_advances_from_many_threads(clock: FakeClock) -> None:
    progress = Progress(LineLog(), "V", None, "device", interval=3600, clock=clock.monotonic)

    def work() -> None:
        for _ in range(500):
            progress.advance(1, failed=1, batch=True)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (progress.done, progress.failed, progress.batches) == (4000, 4000, 4000)


# --- Failure.from_error ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        pytest.param(
            IoTFleetVendorResponseError("Invalid status.", http_status=400, error_code="10000005"),
            "10000005",
            id="vendor-code-wins-over-status",
        ),
        pytest.param(IoTFleetNotFoundError("no such device", http_status=404), "HTTP 404", id="http-status"),
        pytest.param(IoTFleetTransportError("Connection refused"), "transport", id="kind-transport"),
        pytest.param(IoTFleetRateLimitError("throttled"), "ratelimit", id="kind-rate-limit"),
        pytest.param(IoTFleetVendorResponseError("garbled"), "vendorresponse", id="kind-vendor-response"),
        pytest.param(IoTFleetError("odd"), "error", id="kind-base"),
    ],
)
def test_failure_groups_by_vendor_code_else_status_else_kind(error: IoTFleetError, code: str) -> None:
    failure = Failure.from_error(ICCID, error)
    assert failure.code == code
    assert (failure.item, failure.message, failure.items) == (ICCID, error.message, 1)
    assert failure.http_status == error.http_status


def test_failure_keeps_status_request_id_and_item_count() -> None:
    error = IoTFleetVendorResponseError(
        "Bad gateway", http_status=502, error_code=None, request_id="req-7", vendor="Huawei"
    )
    failure = Failure.from_error("batch 3", error, items=50)
    assert failure == Failure(
        item="batch 3", message="Bad gateway", code="HTTP 502", items=50, http_status=502, request_id="req-7"
    )


@pytest.mark.parametrize(
    "cause",
    [
        pytest.param(
            IoTFleetAuthError(
                "Invalid credentials.", http_status=401, error_code="10000001", request_id="r-1"
            ),
            id="vendor-code",
        ),
        pytest.param(IoTFleetAuthError("Authentication required", http_status=401), id="http-status"),
    ],
)
def test_not_attempted_items_group_under_their_cause(cause: IoTFleetError) -> None:
    first = Failure.from_error(ICCID, cause)
    skipped = Failure.from_error(ICCID_19, IoTFleetNotAttemptedError.after(cause))
    assert skipped.code == first.code
    assert skipped.request_id == cause.request_id
    assert skipped.message == f"not attempted after an earlier error: {cause.message}"


def test_not_attempted_items_group_under_a_cause_without_code_or_status() -> None:
    cause = IoTFleetConfigurationError("Connection 'x' (Cisco): password is empty; set it to the API key")
    first = Failure.from_error(ICCID, cause)
    skipped = Failure.from_error(ICCID_19, IoTFleetNotAttemptedError.after(cause))
    assert first.code == "configuration"
    assert skipped.code == first.code


# --- execute, through a minimal operator built on the base -----------------------------------------


class StubOperator(IoTFleetBaseOperator[CiscoControlCenterHook]):
    """A vendor operator reduced to its contract: log the start, hand back a prepared result."""

    hook_class = CiscoControlCenterHook
    unit = "IMEI"

    def __init__(
        self,
        *,
        result: OperationResult,
        start: Callable[[StubOperator], object] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=CONN_ID, **kwargs)
        self.result = result
        self.on_start = start

    def operate(self, context: Any) -> OperationResult:
        if self.on_start is not None:
            self.on_start(self)
        return self.result


@pytest.fixture
def events(set_connection: Callable[..., None]) -> Iterator[list[MutableMapping[str, Any]]]:
    """Every structlog event (operators and hooks log through structlog), formatted."""
    set_connection(CONN_ID, "cisco_control_center", host=HOST, login="bot", password="base-test-key-42")
    with structlog.testing.capture_logs() as captured:
        yield captured


def _lines(events: list[MutableMapping[str, Any]], level: str | None = None) -> list[str]:
    return [str(e["event"]) for e in events if level is None or e["log_level"] == level]


def _batch_failure(index: int, items: int = 10) -> Failure:
    return Failure.from_error(
        f"batch {index}", IoTFleetVendorResponseError("Bad gateway", http_status=502), items=items
    )


def test_start_line_names_vendor_count_batches_duplicates_and_connection(
    events: list[MutableMapping[str, Any]],
) -> None:
    op = StubOperator(
        task_id="stub",
        result=OperationResult(outcome={"requested": 10}, counts={"synced": 10}),
        start=lambda op: op.start("syncing", 10, batches=3, duplicates=2, detail="account 0042"),
    )
    op.execute(operator_context())
    assert _lines(events, "info")[0] == (
        "Cisco IoT Control Center: syncing 10 IMEIs in 3 requests (2 duplicates dropped), account 0042, "
        f"at {HOST}/rws/api/v1 (connection '{CONN_ID}')"
    )


def test_start_line_without_a_known_total(events: list[MutableMapping[str, Any]]) -> None:
    op = StubOperator(
        task_id="stub",
        result=OperationResult(outcome={}, counts={"listed": 0}),
        start=lambda op: op.start("listing", None, detail="whole account"),
    )
    op.execute(operator_context())
    assert _lines(events, "info")[0] == (
        f"Cisco IoT Control Center: listing, whole account, at {HOST}/rws/api/v1 (connection '{CONN_ID}')"
    )


def test_summary_line_shows_the_first_count_always_and_others_when_not_zero(
    events: list[MutableMapping[str, Any]],
) -> None:
    op = StubOperator(
        task_id="stub",
        result=OperationResult(outcome={"requested": 3}, counts={"synced": 0, "skipped": 0, "pending": 3}),
    )
    assert op.execute(operator_context()) == {"requested": 3}
    (summary,) = [line for line in _lines(events, "info") if " done in " in line]
    assert summary.startswith("Cisco IoT Control Center: done in ")
    assert summary.endswith(": 0 synced, 3 pending")


def test_failed_batches_count_all_their_items_and_are_logged_once_per_code(
    events: list[MutableMapping[str, Any]],
) -> None:
    failures = [_batch_failure(i) for i in range(5)] + [
        Failure.from_error("batch 7", IoTFleetVendorResponseError("No such firmware", error_code="FW.404"))
    ]
    outcome = {"requested": 80, "failed_batches": [{"index": i} for i in (0, 1, 2, 3, 4, 7)]}
    ctx = operator_context()
    op = StubOperator(
        task_id="stub", result=OperationResult(outcome=outcome, counts={"ok": 29}, failures=failures)
    )
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        op.execute(ctx)
    assert str(caught.value) == (
        "51 of 80 IMEIs failed: 50 x HTTP 502 (Bad gateway); 1 x FW.404 (No such firmware). "
        "Every IMEI was tried; the outcome is in XCom key 'outcome' (set fail_on_error=False to "
        "succeed with failures)"
    )
    assert caught.value.outcome == outcome
    assert ctx["ti"].xcom == {OUTCOME_KEY: outcome}  # type: ignore[attr-defined]
    assert _lines(events, "error") == [
        "Cisco IoT Control Center: 50 failed with HTTP 502: Bad gateway "
        "(e.g. batch 0, batch 1, batch 2 and 2 more)",
        "Cisco IoT Control Center: 1 failed with FW.404: No such firmware (e.g. batch 7)",
    ]


def test_fail_on_error_false_returns_the_outcome_with_its_failures(
    events: list[MutableMapping[str, Any]],
) -> None:
    outcome = {"requested": 20, "failed_batches": [{"index": 1}]}
    ctx = operator_context()
    op = StubOperator(
        task_id="stub",
        fail_on_error=False,
        result=OperationResult(outcome=outcome, counts={"ok": 10}, failures=[_batch_failure(1)]),
    )
    assert op.execute(ctx) == outcome
    assert ctx["ti"].xcom == {OUTCOME_KEY: outcome}  # type: ignore[attr-defined]
    assert len(_lines(events, "error")) == 1


def test_run_batches_keeps_going_after_a_failed_batch_and_stops_after_refused_credentials(
    events: list[MutableMapping[str, Any]], requests_mock: rm.Mocker
) -> None:
    sent: list[list[int]] = []

    def send(batch: list[int]) -> int:
        sent.append(batch)
        if batch[0] == 3:
            raise IoTFleetVendorResponseError("Bad batch", http_status=400)
        if batch[0] == 7:
            raise IoTFleetAuthError("Invalid credentials.", http_status=401, error_code="10000001")
        return len(batch)

    op = StubOperator(task_id="stub", result=OperationResult(outcome={}, counts={}))
    progress = Progress(LineLog(), "V", 10, "device", interval=3600)
    outcomes = op.run_batches(list(chunks(list(range(1, 11)), 2)), send, progress)
    assert sent == [[1, 2], [3, 4], [5, 6], [7, 8]]  # nothing sent after the refusal
    assert [o.result for o in outcomes] == [2, None, 2, None, None]
    assert [type(o.error).__name__ for o in outcomes] == [
        "NoneType",
        "IoTFleetVendorResponseError",
        "NoneType",
        "IoTFleetAuthError",
        "IoTFleetNotAttemptedError",
    ]
    assert (progress.done, progress.failed, progress.batches) == (10, 6, 5)
    assert requests_mock.call_count == 0


def test_nothing_to_do_is_a_warning(events: list[MutableMapping[str, Any]]) -> None:
    op = StubOperator(
        task_id="stub",
        result=OperationResult(outcome={"requested": 0}, counts={"synced": 0}),
        start=lambda op: op.nothing_to_do("imeis"),
    )
    op.execute(operator_context())
    assert _lines(events, "warning")[-1] == "Cisco IoT Control Center: imeis is empty; nothing to do"
