"""The fleet operators' shared plumbing: input lists, batching helpers, progress lines, the outcome
every write operator returns (error groups, its helpers, where it is pushed), and the journal retries
read.

Everything here goes through the public helpers of the base module and of outcome.py, or through
``execute`` of minimal operators built on :class:`IoTFleetBaseOperator` and
:class:`IoTFleetWriteOperator` the way a vendor operator is.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, overload

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetNotFoundError,
    IoTFleetOutcomeUnknownError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
    IoTFleetValidationError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.operators.base import (
    OUTCOME_KEY,
    IoTFleetBaseOperator,
    IoTFleetOperationFailedError,
    IoTFleetWriteOperator,
    OperationResult,
    Progress,
    TaskJournal,
)
from airflow_provider_iotfleet.outcome import FleetOutcome, OutcomeBuilder, pull_outcome
from airflow_provider_iotfleet.utils import chunks, distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_batch_size
from tests.fakes import ICCID, ICCID_19, FakeClock, FakeTaskStateStore, operator_context

HOST = "https://rws.example.com"
CONN_ID = "fleet_base_cisco"


class LineLog:
    """Records what :class:`Progress` logs, formatted as the log line would read."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)

    warning = info


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


# --- error groups: what OutcomeBuilder.fail makes of an error --------------------------------------


@pytest.mark.parametrize(
    ("error", "label", "retryable"),
    [
        pytest.param(
            IoTFleetVendorResponseError("Invalid status.", http_status=400, error_code="10000005"),
            "10000005 (HTTP 400)",
            False,
            id="vendor-code-and-status",
        ),
        pytest.param(IoTFleetNotFoundError("no such device", http_status=404), "HTTP 404", False, id="404"),
        pytest.param(IoTFleetVendorResponseError("Bad gateway", http_status=502), "HTTP 502", True, id="5xx"),
        pytest.param(IoTFleetRateLimitError("throttled", http_status=429), "HTTP 429", True, id="throttled"),
        pytest.param(IoTFleetTransportError("Connection refused"), "error", True, id="transport"),
        pytest.param(IoTFleetVendorResponseError("garbled", error_code="FW.404"), "FW.404", False, id="code"),
        pytest.param(IoTFleetError("odd"), "error", False, id="base"),
    ],
)
def test_an_error_group_carries_the_error_its_label_and_whether_to_retry(
    error: IoTFleetError, label: str, retryable: bool
) -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 2)
    builder.fail([ICCID, ICCID_19], error)
    (group,) = builder.build().errors
    assert (group.status, group.label, group.retryable, group.attempted) == ("failed", label, retryable, True)
    assert (group.error_code, group.http_status) == (error.error_code, error.http_status)
    assert group.devices == [ICCID, ICCID_19]


def test_the_group_message_is_the_bare_message_so_the_same_error_is_one_group() -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    for iccid, request_id in ((ICCID, "r-1"), (ICCID_19, "r-2")):
        builder.fail(
            [iccid],
            IoTFleetNotFoundError(
                f"Cisco IoT Control Center rejected PUT /devices/{iccid}: Invalid ICCID.",
                http_status=404,
                error_code="20000001",
                request_id=request_id,
                bare_message="Invalid ICCID.",
            ),
        )
    builder.fail(["8901"], IoTFleetNotFoundError("Invalid ICCID.", http_status=404, error_code="20000002"))
    first, other = builder.build().errors
    assert (first.message, first.request_id, first.devices) == ("Invalid ICCID.", "r-1", [ICCID, ICCID_19])
    assert (other.error_code, other.devices) == ("20000002", ["8901"])  # another code: another group


def test_an_outcome_unknown_error_is_unknown_and_never_retryable() -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 1)
    builder.fail([ICCID], IoTFleetOutcomeUnknownError("the answer was lost", http_status=500))
    (group,) = builder.build().errors
    assert (group.status, group.retryable) == ("unknown", False)
    assert builder.build().counts["unknown"] == 1


@pytest.mark.parametrize(
    ("cause", "retryable"),
    [
        pytest.param(
            IoTFleetAuthError(
                "Invalid credentials.", http_status=401, error_code="10000001", request_id="r-1"
            ),
            False,
            id="refused-credentials",
        ),
        pytest.param(IoTFleetAuthError("Authentication required", http_status=401), False, id="status-only"),
        pytest.param(
            IoTFleetConfigurationError("Connection 'x' (Cisco): password is empty; set it to the API key"),
            False,
            id="no-code-or-status",
        ),
        pytest.param(IoTFleetTransportError("Connection reset"), True, id="broken-connection"),
    ],
)
def test_devices_not_sent_group_under_their_cause_as_not_attempted(
    cause: IoTFleetError, retryable: bool
) -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 3)
    builder.fail([ICCID], cause)
    builder.fail([ICCID_19], IoTFleetNotAttemptedError.after(cause))
    builder.fail(["8944"], IoTFleetNotAttemptedError.after(cause))
    tried, not_sent = builder.build().errors
    assert (tried.attempted, tried.devices) == (True, [ICCID])
    assert (not_sent.attempted, not_sent.devices) == (False, [ICCID_19, "8944"])
    for group in (tried, not_sent):
        assert (group.label, group.request_id, group.retryable) == (
            tried.label,
            cause.request_id,
            retryable,  # not sent because of a transient error: as retryable as that error
        )
    assert not_sent.message == f"not attempted after an earlier error: {cause.message}"


# --- FleetOutcome helpers --------------------------------------------------------------------------


def _outcome() -> FleetOutcome:
    """Eight devices, one in each done status and four failed or unknown three ways."""
    builder = OutcomeBuilder("force_offline", "Huawei Cloud ROMA Connect", 8)
    for status, device in (("succeeded", 1), ("unchanged", 2), ("scheduled", 3), ("accepted", 4)):
        builder.add(status, device)  # type: ignore[arg-type]
    unavailable = IoTFleetVendorResponseError("Service unavailable", http_status=503, request_id="r-5")
    builder.fail([5], unavailable)
    builder.fail([6], IoTFleetOutcomeUnknownError("the answer was lost", http_status=500))
    builder.fail([7], IoTFleetNotAttemptedError.after(unavailable))
    builder.refuse([8], "never_connected", "never connected", attempted=False)
    return builder.build(account="0042")


def test_ids_to_go_on_are_the_done_devices_and_ids_to_retry_the_retryable_errors() -> None:
    outcome = _outcome()
    assert outcome.ids_to_go_on() == [1, 2, 3, 4]
    assert outcome.ids_to_retry() == [5, 7]  # not 6 (may have applied) nor 8 (will not pass)
    assert outcome.counts == {
        "succeeded": 1,
        "unchanged": 1,
        "scheduled": 1,
        "accepted": 1,
        "failed": 3,
        "unknown": 1,
    }
    assert outcome.summary() == "1 succeeded, 1 unchanged, 1 scheduled, 1 accepted, 3 failed, 1 unknown"


def test_an_outcome_survives_its_trip_through_xcom() -> None:
    outcome = _outcome()
    xcom = json.loads(json.dumps(outcome.to_xcom()))
    assert xcom["account"] == "0042"  # operation-specific fields at the top level
    assert FleetOutcome.from_xcom(xcom) == outcome
    with pytest.raises(ValueError, match="not a fleet outcome"):
        FleetOutcome.from_xcom({"requested": 3, "updated": [ICCID]})  # the shape before the contract


def test_failure_lines_give_one_line_per_error_naming_a_few_devices() -> None:
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 9)
    missing = list(range(1, 8))
    builder.fail(missing, IoTFleetNotFoundError("Invalid ICCID", http_status=404, error_code="20000001"))
    cause = IoTFleetAuthError("Invalid credentials", http_status=401, error_code="10000001", request_id="r-9")
    builder.fail([8], cause)
    builder.fail([9], IoTFleetNotAttemptedError.after(cause))
    outcome = builder.build()
    assert outcome.failure_lines() == [
        "failed: 7 devices, 20000001 (HTTP 404): Invalid ICCID. e.g. 1, 2, 3, 4, 5 and 2 more",
        "failed: 1 device, 10000001 (HTTP 401): Invalid credentials (request id r-9). e.g. 8",
        "failed (not sent): 1 device, 10000001 (HTTP 401): not attempted after an earlier error: "
        "Invalid credentials (request id r-9). e.g. 9",
    ]
    assert outcome.failure_lines(examples=1)[0].endswith("e.g. 1 and 6 more")
    assert OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 0).build().failure_lines() == []


def test_a_message_ending_a_sentence_is_not_followed_by_a_second_period() -> None:
    # As the docstring shows: "failed: 2 devices, 20000001 (HTTP 404): Invalid ICCID. e.g. ..."
    builder = OutcomeBuilder("edit_devices", "Cisco IoT Control Center", 2)
    builder.fail([1, 2], IoTFleetNotFoundError("Invalid ICCID.", http_status=404, error_code="20000001"))
    assert builder.build().failure_lines() == [
        "failed: 2 devices, 20000001 (HTTP 404): Invalid ICCID. e.g. 1, 2"
    ]


def test_combine_adds_up_the_parts_and_merges_the_same_error() -> None:
    def batch(devices: list[int], missing: list[int], request_id: str, campaign: str) -> dict[str, Any]:
        builder = OutcomeBuilder("upgrade_firmware", "Verizon ThingSpace", len(devices) + len(missing))
        builder.add_many("scheduled", devices)
        builder.fail(
            missing,
            IoTFleetNotFoundError(
                "Device not found", http_status=404, error_code="DEV.404", request_id=request_id
            ),
        )
        return builder.build(campaign_id=campaign, batches=1, firmware_to="2.0").to_xcom()

    first, second = batch([1, 2], [3], "r-1", "c-1"), batch([4], [5, 6], "r-2", "c-2")
    second["errors"].append(
        {
            "status": "failed",
            "error_code": None,
            "http_status": 503,
            "message": "Service unavailable",
            "request_id": None,
            "retryable": True,
            "attempted": True,
            "devices": [7],
        }
    )
    second["requested"] += 1
    combined = FleetOutcome.combine([first, FleetOutcome.from_xcom(second)])
    assert combined.requested == 7
    assert combined.devices["scheduled"] == [1, 2, 4]
    assert [(e.error_code, e.http_status, e.request_id, e.devices) for e in combined.errors] == [
        ("DEV.404", 404, "r-1", [3, 5, 6]),  # one group: the request id does not make another error
        (None, 503, None, [7]),
    ]
    assert combined.details == {"campaign_id": ["c-1", "c-2"], "batches": 2, "firmware_to": "2.0"}
    assert combined.ids_to_retry() == [7]


def test_combine_refuses_nothing_and_different_operations() -> None:
    with pytest.raises(ValueError, match="no outcomes to combine"):
        FleetOutcome.combine([])
    parts = [OutcomeBuilder(operation, "V", 0).build() for operation in ("force_offline", "edit_devices")]
    with pytest.raises(ValueError, match="different operations"):
        FleetOutcome.combine(parts)


class XComTaskInstance:
    """A downstream task's ``ti``: ``xcom_pull`` answers from what the upstream task left, and
    records what it was asked."""

    def __init__(self, left: dict[tuple[str, str, int | None], Any]) -> None:
        self.left = left
        self.pulls: list[tuple[str, str, int | None]] = []

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: int | None = None) -> Any:
        self.pulls.append((task_ids, key, map_indexes))
        return self.left.get((task_ids, key, map_indexes))


def test_pull_outcome_finds_the_outcome_of_a_failed_task_under_outcome() -> None:
    pushed = _outcome().to_xcom()
    ti = XComTaskInstance({("force_offline", OUTCOME_KEY, None): pushed})
    outcome = pull_outcome(ti, "force_offline")
    assert outcome is not None and outcome.to_xcom() == pushed


def test_pull_outcome_finds_the_outcome_of_a_successful_task_as_its_return_value() -> None:
    returned = _outcome().to_xcom()
    ti = XComTaskInstance({("force_offline", "return_value", None): returned})
    outcome = pull_outcome(ti, "force_offline")
    assert outcome is not None and outcome.to_xcom() == returned
    assert ti.pulls == [("force_offline", OUTCOME_KEY, None), ("force_offline", "return_value", None)]


def test_pull_outcome_of_one_mapped_task_instance_and_of_a_task_that_pushed_none() -> None:
    returned = _outcome().to_xcom()
    ti = XComTaskInstance({("force_offline", "return_value", 2): returned})
    outcome = pull_outcome(ti, "force_offline", map_index=2)
    assert outcome is not None and outcome.to_xcom() == returned
    assert pull_outcome(ti, "force_offline", map_index=1) is None
    assert pull_outcome(ti, "never_ran") is None


# --- TaskJournal: what earlier tries did ------------------------------------------------------------


def test_a_journal_writes_a_chunk_only_when_something_new_was_recorded(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    journal = TaskJournal(store, "iotfleet.j", LineLog(), clock=clock.monotonic)
    journal.flush()
    assert store.writes == 0
    journal.record("a", 1)
    journal.record("b", 2)
    assert store.writes == 0  # not due yet: written at the next flush
    journal.flush()
    assert store.writes == 2  # the chunk, and the number of chunks
    journal.flush()
    assert store.writes == 2
    journal.record("c", 3)
    journal.flush()
    assert store.writes == 4  # the chunk being filled, rewritten with what is new
    assert store.get("iotfleet.j.0") == {"a": 1, "b": 2, "c": 3}
    assert store.get("iotfleet.j.chunks") == 1


def test_a_full_chunk_is_left_as_it_is_and_the_next_one_filled(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    journal = TaskJournal(store, "iotfleet.j", LineLog(), flush_every=0, chunk_size=2, clock=clock.monotonic)
    for key in "abcde":
        journal.record(key, 1)
    assert [store.get(f"iotfleet.j.{n}") for n in range(3)] == [{"a": 1, "b": 1}, {"c": 1, "d": 1}, {"e": 1}]
    assert store.get("iotfleet.j.chunks") == 3
    assert TaskJournal(store, "iotfleet.j", LineLog()).load() == dict.fromkeys("abcde", 1)


def test_a_cleared_journal_finds_nothing(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    journal = TaskJournal(store, "iotfleet.j", LineLog(), flush_every=0, chunk_size=2, clock=clock.monotonic)
    for key in "abc":
        journal.record(key, 1)
    journal.clear()
    assert store.values == {}
    assert TaskJournal(store, "iotfleet.j", LineLog()).load() == {}


class BrokenStore(FakeTaskStateStore):
    """A task state store whose every call fails, as when the API server is unreachable."""

    def get(self, key: str, default: Any = None) -> Any:
        raise RuntimeError("task state store unreachable")

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        raise RuntimeError("task state store unreachable")


def test_a_failing_store_turns_the_journal_off_without_failing_the_run(clock: FakeClock) -> None:
    log = LineLog()
    journal = TaskJournal(BrokenStore(), "iotfleet.j", log, flush_every=0, clock=clock.monotonic)
    assert journal.load() == {}
    assert not journal.available
    journal.record("a", 1)  # nothing raised, nothing kept
    journal.flush()
    assert any("task state store failed to read iotfleet.j" in line for line in log.lines)


def test_load_merges_the_chunks_of_every_earlier_try(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    first = TaskJournal(store, "iotfleet.j", LineLog(), clock=clock.monotonic)
    assert first.load() == {}
    first.record("a", 1)
    first.record("b", 1)
    first.flush()
    # The second try records before loading: it still adds a chunk rather than overwrite the first.
    second = TaskJournal(store, "iotfleet.j", LineLog(), clock=clock.monotonic)
    second.record("b", 2)
    second.record("c", 1)
    second.flush()
    third = TaskJournal(store, "iotfleet.j", LineLog(), clock=clock.monotonic)
    assert third.load() == {"a": 1, "b": 2, "c": 1}  # later chunks win
    assert TaskJournal(store, "iotfleet.other", LineLog()).load() == {}  # each name its own


def test_a_journal_without_a_task_state_store_is_off(clock: FakeClock) -> None:
    journal = TaskJournal(None, "iotfleet.j", LineLog(), flush_every=0, clock=clock.monotonic)
    assert not journal.available
    journal.record("a", 1)
    journal.flush()
    assert journal.load() == {}


def test_record_writes_on_its_own_every_flush_every_seconds(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    journal = TaskJournal(store, "iotfleet.j", LineLog(), flush_every=5, clock=clock.monotonic)
    journal.record("a", 1)
    clock.advance(4.9)
    journal.record("b", 1)
    assert store.writes == 0
    clock.advance(0.1)
    journal.record("c", 1)  # 5 s since the journal started: everything so far
    assert (store.writes, store.get("iotfleet.j.0")) == (2, {"a": 1, "b": 1, "c": 1})
    clock.advance(4)
    journal.record("d", 1)
    assert store.writes == 2
    clock.advance(1)
    journal.record("e", 1)  # 5 s since the last write
    assert (store.writes, store.get("iotfleet.j.0")) == (4, {"a": 1, "b": 1, "c": 1, "d": 1, "e": 1})


def test_a_journal_takes_records_from_many_threads(clock: FakeClock) -> None:
    store = FakeTaskStateStore()
    journal = TaskJournal(store, "iotfleet.j", LineLog(), flush_every=0, clock=clock.monotonic)

    def work(worker: int) -> None:
        for n in range(100):
            journal.record(f"{worker}.{n}", n)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    journal.flush()
    assert len(TaskJournal(store, "iotfleet.j", LineLog()).load()) == 800
    assert store.get("iotfleet.j.chunks") == 1  # 800 records, one chunk (of up to 1000)


# --- execute, through minimal operators built on the bases ----------------------------------------


class StubOperator(IoTFleetBaseOperator[CiscoControlCenterHook]):
    """A read operator reduced to its contract: log the start, hand back a prepared result."""

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


class StubWriteOperator(IoTFleetWriteOperator[CiscoControlCenterHook]):
    """A write operator reduced to its contract: hand back a prepared outcome."""

    hook_class = CiscoControlCenterHook
    operation = "sync_firmware"
    unit = "IMEI"

    def __init__(self, *, outcome: FleetOutcome, **kwargs: Any) -> None:
        super().__init__(conn_id=CONN_ID, **kwargs)
        self.outcome = outcome

    def operate(self, context: Any) -> FleetOutcome:
        return self.outcome


@pytest.fixture(autouse=True)
def minimal_operators_connection(set_connection: Callable[..., None]) -> None:
    """``CONN_ID``, the connection of the minimal operators above, which their log lines name."""
    set_connection(CONN_ID, "cisco_control_center", host=HOST, login="bot", password="base-test-key-42")


def _lines(events: list[MutableMapping[str, Any]], level: str | None = None) -> list[str]:
    return [str(e["event"]) for e in events if level is None or e["log_level"] == level]


def _sync_outcome() -> FleetOutcome:
    """80 IMEIs: 29 synced, 50 in five batches the vendor answered 502, one unknown firmware."""
    builder = OutcomeBuilder("sync_firmware", "Cisco IoT Control Center", 80)
    builder.add_many("succeeded", range(1, 30))
    for batch in range(5):
        devices = list(range(30 + 10 * batch, 40 + 10 * batch))
        builder.fail(
            devices, IoTFleetVendorResponseError("Bad gateway", http_status=502, request_id=f"r-{batch}")
        )
    builder.fail([80], IoTFleetVendorResponseError("No such firmware", error_code="FW.404"))
    return builder.build()


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
    ctx = operator_context()
    assert op.execute(ctx) == {"requested": 3}
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]  # a read operator pushes nothing itself
    (summary,) = [line for line in _lines(events, "info") if " done in " in line]
    assert summary.startswith("Cisco IoT Control Center: done in ")
    assert summary.endswith(": 0 synced, 3 pending")


def test_a_write_that_fails_logs_each_error_once_pushes_the_outcome_once_and_fails(
    events: list[MutableMapping[str, Any]],
) -> None:
    outcome = _sync_outcome()
    ctx = operator_context()
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        StubWriteOperator(task_id="stub", outcome=outcome).execute(ctx)
    assert str(caught.value) == (
        "51 of 80 IMEIs not done: 50 failed with HTTP 502: Bad gateway; 1 failed with FW.404: No such "
        "firmware. Every IMEI was tried; the outcome is in XCom key 'outcome' (set fail_on_error=False to "
        "succeed with failures)"
    )
    assert caught.value.outcome == outcome.to_xcom()
    assert ctx["ti"].xcom == {OUTCOME_KEY: outcome.to_xcom()}  # type: ignore[attr-defined]
    assert _lines(events, "error") == [
        "Cisco IoT Control Center: failed: 50 devices, HTTP 502: Bad gateway (request id r-0). "
        "e.g. 30, 31, 32 and 47 more",
        "Cisco IoT Control Center: failed: 1 device, FW.404: No such firmware. e.g. 80",
    ]
    (summary,) = [line for line in _lines(events, "info") if " done in " in line]
    assert summary.endswith(": 29 succeeded, 51 failed")


def test_a_write_with_devices_not_sent_does_not_claim_every_device_was_tried() -> None:
    cause = IoTFleetAuthError("Invalid credentials.", http_status=401, error_code="10000001")
    builder = OutcomeBuilder("sync_firmware", "Cisco IoT Control Center", 3)
    builder.fail([1], cause)
    builder.fail([2, 3], IoTFleetNotAttemptedError.after(cause))
    with pytest.raises(IoTFleetOperationFailedError) as caught:
        StubWriteOperator(task_id="stub", outcome=builder.build()).execute(operator_context())
    message = str(caught.value)
    assert message.startswith(
        "3 of 3 IMEIs not done: 1 failed with 10000001 (HTTP 401): Invalid credentials.; 2 failed (not sent) "
        "with 10000001 (HTTP 401): not attempted after an earlier error: Invalid credentials. 1 of 3 IMEIs tried, "
    )
    assert "Every IMEI was tried" not in message
    assert "1 of 3 IMEIs tried, 2 not sent; the outcome is in XCom key 'outcome'" in message


def test_a_write_with_only_unknown_outcomes_fails_too() -> None:
    builder = OutcomeBuilder("sync_firmware", "Cisco IoT Control Center", 2)
    builder.add("succeeded", 1)
    builder.fail([2], IoTFleetOutcomeUnknownError("the answer was lost", http_status=500))
    with pytest.raises(
        IoTFleetOperationFailedError, match=r"^1 of 2 IMEIs not done: 1 unknown with HTTP 500: "
    ):
        StubWriteOperator(task_id="stub", outcome=builder.build()).execute(operator_context())


def test_a_write_with_fail_on_error_false_returns_the_outcome_and_pushes_nothing_itself(
    events: list[MutableMapping[str, Any]],
) -> None:
    outcome = _sync_outcome()
    ctx = operator_context()
    assert StubWriteOperator(task_id="stub", outcome=outcome, fail_on_error=False).execute(ctx) == (
        outcome.to_xcom()
    )
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]  # Airflow pushes the return value
    assert len(_lines(events, "error")) == 2


def test_a_write_that_succeeds_returns_the_outcome_and_pushes_nothing_itself(
    events: list[MutableMapping[str, Any]],
) -> None:
    builder = OutcomeBuilder("sync_firmware", "Cisco IoT Control Center", 3)
    builder.add_many("succeeded", [1, 2])
    builder.add("unchanged", 3)
    ctx = operator_context()
    result = StubWriteOperator(task_id="stub", outcome=builder.build()).execute(ctx)
    assert result["counts"] == {
        "succeeded": 2,
        "unchanged": 1,
        "scheduled": 0,
        "accepted": 0,
        "failed": 0,
        "unknown": 0,
    }
    assert ctx["ti"].xcom == {}  # type: ignore[attr-defined]
    assert _lines(events, "error") == []
    assert _lines(events, "info")[-1].endswith(": 2 succeeded, 1 unchanged")


@pytest.mark.parametrize(("try_number", "retrying"), [(1, False), (2, True), (5, True)])
def test_retrying_is_any_try_after_the_first(try_number: int, retrying: bool) -> None:
    op = StubWriteOperator(task_id="stub", outcome=_sync_outcome())
    assert op.retrying(operator_context(try_number=try_number)) is retrying  # type: ignore[arg-type]
    assert op.retrying({}) is False  # type: ignore[arg-type]  # outside a task


def test_journal_uses_the_task_state_store_of_the_context() -> None:
    op = StubWriteOperator(task_id="stub", outcome=_sync_outcome())
    store = FakeTaskStateStore()
    journal = op.journal(operator_context(state_store=store), "sync")  # type: ignore[arg-type]
    assert journal.available
    journal.record("imei-1", "done")
    journal.flush()
    # A later try of the same task instance reads it back.
    later = op.journal(operator_context(try_number=2, state_store=store), "sync")  # type: ignore[arg-type]
    assert later.load() == {"imei-1": "done"}
    # Airflow 3.2 has no task state store: the journal is off.
    assert not op.journal(operator_context(), "sync").available  # type: ignore[arg-type]


def test_send_in_batches_keeps_going_after_a_failed_batch_and_stops_after_refused_credentials(
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

    recorded: list[tuple[list[int], int]] = []
    op = StubWriteOperator(task_id="stub", outcome=_sync_outcome())
    outcome = op.new_outcome(10)
    progress = Progress(LineLog(), "V", 10, "device", interval=3600)
    op.send_in_batches(
        outcome,
        list(chunks(list(range(1, 11)), 2)),
        send,
        lambda batch, result: recorded.append((batch, result)),
        progress,
    )
    assert sent == [[1, 2], [3, 4], [5, 6], [7, 8]]  # nothing sent after the refusal
    assert recorded == [([1, 2], 2), ([5, 6], 2)]  # each answered batch's result, once
    errors = outcome.build().errors
    assert [(error.devices, error.attempted) for error in errors] == [
        ([3, 4], True),
        ([7, 8], True),
        ([9, 10], False),
    ]
    assert [error.http_status for error in errors] == [400, 401, 401]
    assert (progress.done, progress.failed, progress.batches) == (10, 6, 5)
    assert requests_mock.call_count == 0


def test_send_in_batches_fails_a_batch_under_the_ids_of_its_items() -> None:
    def send(batch: list[dict[str, str]]) -> int:
        raise IoTFleetVendorResponseError("Bad batch", http_status=400)

    op = StubWriteOperator(task_id="stub", outcome=_sync_outcome())
    outcome = op.new_outcome(2)
    progress = Progress(LineLog(), "V", 2, "device", interval=3600)
    batches = [[{"imei": "1"}, {"imei": "2"}]]
    op.send_in_batches(outcome, batches, send, lambda *_: None, progress, id_of=lambda item: item["imei"])
    assert outcome.build().errors[0].devices == ["1", "2"]


def test_an_outcome_given_the_input_order_keeps_it_whatever_the_order_of_recording() -> None:
    builder = OutcomeBuilder("force_offline", "Huawei Cloud ROMA Connect", 6, order=[6, 5, 4, 3, 2, 1])
    builder.add_many("succeeded", [1, 3])
    builder.refuse([2], "not_forced_offline", "refused")
    builder.fail([4, 1_000], IoTFleetVendorResponseError("Bad gateway", http_status=502))
    builder.add("unchanged", 5)
    builder.refuse([6], "not_forced_offline", "refused")
    builder.add("succeeded", 999)
    outcome = builder.build()
    assert outcome.devices["succeeded"] == [3, 1, 999]  # a device not in the order comes last
    assert outcome.devices["unchanged"] == [5]
    # Groups come by their first device in input order, each group's devices in input order.
    assert [error.devices for error in outcome.errors] == [[6, 2], [4, 1_000]]
    # Without an order, the order of recording.
    unordered = OutcomeBuilder("force_offline", "Huawei Cloud ROMA Connect", 2)
    unordered.add_many("succeeded", [2, 1])
    assert unordered.build().devices["succeeded"] == [2, 1]


def test_nothing_to_do_is_a_warning(events: list[MutableMapping[str, Any]]) -> None:
    op = StubOperator(
        task_id="stub",
        result=OperationResult(outcome={"requested": 0}, counts={"synced": 0}),
        start=lambda op: op.nothing_to_do("imeis"),
    )
    op.execute(operator_context())
    assert _lines(events, "warning")[-1] == "Cisco IoT Control Center: imeis is empty; nothing to do"
