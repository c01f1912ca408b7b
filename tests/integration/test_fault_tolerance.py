"""Fault tolerance of the five fleet operators, end to end against the simulator over HTTP.

Each operator runs as a task does (``operator.execute(context)``) on 5,000 devices while the simulator
answers 10% of API requests with a 5xx, 10% with a 429 and drops 2% of connections before applying
them, and applies 3% and then drops the connection mid-answer (``applied_then_dropped``: the change is
in, the client never learns it, and a blind retry would apply it twice). The tests then hold the
outcome (the documented shape of airflow_provider_iotfleet/outcome.py) against the simulator's own
record, device by device:

* every device is in the outcome exactly once (a done status, or one error group);
* what the outcome says was done is done in the simulator, what it says failed is not, and nothing
  is ``unknown`` where the product can tell (a lost answer is read back, or the request repeated);
* nothing the vendor would act on twice is applied twice (the simulator's per-device count of
  applied writes). Where a repeat changes nothing, sending again after a lost answer is by design
  and asserted as such: a Palo Alto bulk update (an idempotent PUT of absolute values) and a
  ThingSpace firmware sync (ThingSpace reads the firmware again) are repeated
  (``Call.repeat="always"``), so their devices are written once more per answer lost after applying;
  and a ROMA device that never connected reads back as "not offline" after a lost force-offline, so
  it is named again and refused again, never changed.

The fault dice repeat per seed. The batch operators send one request at a time, so their runs repeat
exactly; Control Center edits go out eight at a time, so which edit meets which fault varies, but
with 12 retries a device left in doubt would take 13 faults in a row. The simulator's 429s ask for
``Retry-After: 0`` and the connections back off from 10 ms, so the runs take seconds, not minutes.

Also here: access token and M2M session expiring in the middle of a 50-page ThingSpace listing; a
wrong M2M password that must cost exactly one failed login per task (ThingSpace locks the user after
five); a firmware sync of 1,000 devices under 10% 5xx that leaves none unknown; and 100,000 devices
failing with one error, whose outcome stays a few MiB.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import IoTFleetAuthError, IoTFleetError
from airflow_provider_iotfleet.operators.base import OUTCOME_KEY, IoTFleetOperationFailedError
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.simulator import Faults, Simulator
from airflow_provider_iotfleet.simulator.fleet import (
    NEVER_CONNECTED,
    OFFLINE,
    ONLINE,
    ROMA_ID_BASE,
    iccid_of,
    imei_of,
)
from tests.fakes import operator_context
from tests.simulator_harness import SimulatorFactory, accounted_once, connections_with, error_of, run_task

pytestmark = pytest.mark.slow

SetConnection = Callable[..., None]

DEVICES = 5000
FAULTS = Faults(server_error=0.10, rate_limited=0.10, dropped_connection=0.02, applied_then_dropped=0.03)
FAULT_KINDS = ("server_error", "rate_limited", "dropped_connection", "applied_then_dropped")
#: Faults after which the client has no usable answer, although the vendor may have applied the
#: request (a 5xx other than 503 says nothing of what was done).
LOST_ANSWER = frozenset({"server_error", "dropped_connection", "applied_then_dropped"})
#: With this seed every batch operator's run below meets every kind of fault, applied_then_dropped on
#: a write among them.
SEED = 5
#: Requests per batch operator run: 50 batches (or pages) of 100 devices.
BATCH = 100


@pytest.fixture(autouse=True)
def quiet_connection_pool() -> Iterator[None]:
    """No debug line per HTTP request from urllib3: thousands of them cost a fifth of a run's time."""
    logger = logging.getLogger("urllib3.connectionpool")
    level = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(level)


def _connect(simulator: Simulator, set_connection: SetConnection, **extra: Any) -> None:
    """Re-export the four default connections with generous client-side limits and quick retries."""
    fast = {
        "requests_per_second": 100_000,
        "requests_per_minute": 6_000_000,
        "max_concurrency": 8,
        "max_retries": 12,
        "backoff_base": 0.01,
    }
    for conn_id, conn in connections_with(simulator, **(fast | extra)).items():
        set_connection(conn_id, **conn)


def _faulty(start_simulator: SimulatorFactory, set_connection: SetConnection, **config: Any) -> Simulator:
    """A 5,000-device simulator with :data:`FAULTS` on and 429s asking for no wait."""
    simulator = start_simulator(devices=DEVICES, seed=SEED, faults=FAULTS, retry_after_seconds=0, **config)
    _connect(simulator, set_connection)
    return simulator


def _execute(operator: Any) -> dict[str, Any]:
    """Run ``operator`` as a task would; it must succeed, returning its outcome (pushed nowhere else)."""
    outcome, succeeded = run_task(operator)
    assert succeeded, outcome
    return outcome


def _counters(simulator: Simulator) -> dict[str, int]:
    return dict(simulator.state.snapshot()["counters"])


def _records(simulator: Simulator, vendor: str, method: str | None = None) -> list[dict[str, Any]]:
    """The vendor's API requests (logins included unless ``method`` leaves them out), oldest first."""
    log = simulator.state.request_log(vendor)
    assert len(log) < simulator.config.request_log_size, "the request log was trimmed"
    return [r for r in log if method is None or r["method"] == method]


def _assert_met_every_fault(simulator: Simulator, vendor: str, write_method: str | None) -> None:
    """Each kind of fault was met, and the dangerous one on a write (``write_method``) if any."""
    counters = _counters(simulator)
    met = {kind: counters.get(f"faults.{kind}", 0) for kind in FAULT_KINDS}
    assert all(met.values()), f"the run did not meet every kind of fault: {met}"
    if write_method is not None:
        dangerous = [
            r
            for r in _records(simulator, vendor, write_method)
            if r["write"] and r["fault"] == "applied_then_dropped"
        ]
        assert dangerous, "no write was applied and then had its answer dropped"
        assert all(r["applied"] for r in dangerous)


def _devices_of(records: Iterable[dict[str, Any]], faults: Iterable[str | None]) -> set[str]:
    """The device ids named by the requests that met one of ``faults``."""
    wanted = set(faults)
    return {device for r in records if r["fault"] in wanted for device in r["devices"]}


def _applied_writes(simulator: Simulator, vendor: str) -> Counter[str]:
    return simulator.state.per_device_writes(vendor=vendor, applied_only=True)


# --- Palo Alto Networks IoT Security ---------------------------------------------------------------


def test_paloalto_bulk_update_of_5000_devices_under_faults(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """Every device is updated as asked and counted once; a bulk update whose answer was lost is sent
    again (an idempotent PUT), so only its devices are written twice, with the same values."""
    simulator = _faulty(start_simulator, set_connection)
    fleet = simulator.state.fleet
    # Identified by IMEI, which the simulator's per-device write count follows.
    entries = {
        imei_of(i): {"imei": imei_of(i), "apn": f"ft-{i}.iot", "SessionEvtType": ("Start", "Stop")[i % 2]}
        for i in range(DEVICES)
    }
    outcome = _execute(
        PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=list(entries.values()), batch_size=BATCH)
    )

    _assert_met_every_fault(simulator, "paloalto", "PUT")
    status = accounted_once(outcome, operation="bulk_update", requested=list(entries))
    assert set(status.values()) == {"accepted"}  # in requests IoT Security accepted, input order
    assert outcome["devices"]["accepted"] == list(entries)
    assert (outcome["updated"], outcome["batches"], outcome["errors"]) == (DEVICES, DEVICES // BATCH, [])
    assert set(fleet.changed) == set(range(DEVICES))
    for i in range(DEVICES):
        assert fleet.device(i)["paloalto"] == entries[imei_of(i)], f"device {i}"

    puts = _records(simulator, "paloalto", "PUT")
    applied = _applied_writes(simulator, "paloalto")
    # Each batch was applied once with an answer that came back, plus once per answer lost after
    # applying it; a batch that met a fault before it applied was not applied by that attempt.
    resent = Counter(d for r in puts if r["fault"] == "applied_then_dropped" for d in r["devices"])
    assert resent, "no bulk update was applied twice: the dangerous case was not met"
    assert applied == Counter({imei: 1 + resent[imei] for imei in entries})
    answered = [r for r in puts if r["applied"] and r["fault"] is None]
    assert len(answered) == DEVICES // BATCH
    assert _counters(simulator)["paloalto.bulk_updates"] == sum(r["applied"] for r in puts)


# --- Cisco IoT Control Center ------------------------------------------------------------------------


def test_cisco_edits_of_5000_devices_under_faults(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """Every device is edited exactly once: an edit whose answer was lost is read back, and sent
    again only if it did not apply."""
    simulator = _faulty(start_simulator, set_connection)
    fleet = simulator.state.fleet
    unknown = [iccid_of(DEVICES + k) for k in range(3)]
    edits = [{"iccid": iccid_of(i), "accountCustom2": f"ft-{i}"} for i in range(DEVICES)]
    edits += [{"iccid": iccid, "accountCustom2": "never"} for iccid in unknown]
    outcome = _execute(
        # Blind writes: the faults hit the edits, and a GET is only ever a read-back.
        CiscoControlCenterEditDevicesOperator(
            task_id="cisco", edits=edits, fail_on_error=False, skip_unchanged=False
        )
    )

    _assert_met_every_fault(simulator, "cisco", "PUT")
    status = accounted_once(outcome, operation="edit_devices", requested=[edit["iccid"] for edit in edits])
    assert outcome["devices"]["succeeded"] == [iccid_of(i) for i in range(DEVICES)]
    # Control Center's "not found", whether it answered the edit so or, when the edit's answer was
    # lost, the read-back did: failed, never unknown, since no edit of a device it lacks can apply.
    assert {status[iccid] for iccid in unknown} == {"failed"}
    assert [(e["http_status"], e["error_code"], e["retryable"], e["devices"]) for e in outcome["errors"]] == [
        (404, "20000001", False, unknown)
    ]
    assert all(fleet.by_iccid(iccid) is None for iccid in unknown)
    for i in range(DEVICES):
        assert fleet.device(i)["custom"] == {"accountCustom2": f"ft-{i}"}, f"device {i}"
    assert set(fleet.changed) == set(range(DEVICES))

    applied = _applied_writes(simulator, "cisco")
    assert applied == Counter({iccid_of(i): 1 for i in range(DEVICES)})  # never two applied edits
    assert _counters(simulator)["cisco.edits"] == DEVICES
    # The lost answers were read back: without skip_unchanged a GET is only ever a read-back.
    records = _records(simulator, "cisco")
    lost = _devices_of([r for r in records if r["method"] == "PUT"], LOST_ANSWER)
    read_back = {d for r in records if r["method"] == "GET" for d in r["devices"]}
    assert lost and read_back == lost


# --- Huawei ROMA Connect -----------------------------------------------------------------------------


def test_huawei_force_offline_of_5000_devices_under_faults(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """Every online device is forced offline by exactly one applied request; a force-offline whose
    answer was lost is read back and only the devices still not offline are sent again."""
    simulator = _faulty(start_simulator, set_connection)
    fleet = simulator.state.fleet
    before = {i: fleet.device(i)["online_status"] for i in range(DEVICES)}
    ids = [ROMA_ID_BASE + i for i in range(DEVICES)]
    outcome = _execute(
        HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=ids, batch_size=BATCH, fail_on_error=False)
    )

    _assert_met_every_fault(simulator, "huawei", "POST")
    accounted_once(outcome, operation="force_offline", requested=ids)
    succeeded = {device - ROMA_ID_BASE for device in outcome["devices"]["succeeded"]}
    unchanged = {device - ROMA_ID_BASE for device in outcome["devices"]["unchanged"]}
    failed = {device - ROMA_ID_BASE: error for device, error in error_of(outcome).items()}

    online = {i for i in range(DEVICES) if before[i] == ONLINE}
    assert online <= succeeded  # this run took every online device offline, and says so
    assert all(fleet.device(i)["online_status"] == OFFLINE for i in succeeded | unchanged)
    assert set(fleet.changed) == online  # nothing else was touched
    # A device already offline is reported succeeded only after a lost answer, when reading back
    # cannot tell who took it offline; else ROMA refuses it and the read-back finds it unchanged.
    posts = [r for r in _records(simulator, "huawei", "POST") if r["write"]]
    lost = {int(d) - ROMA_ID_BASE for d in _devices_of(posts, LOST_ANSWER)}
    assert succeeded - online <= lost
    assert succeeded - online, "no answer for an already offline device was lost"
    assert unchanged == {i for i in range(DEVICES) if before[i] == OFFLINE} - succeeded
    # Every device that never connected fails as such, and nothing else fails: never as
    # "not forced offline", whichever way it was read back.
    assert set(failed) == {i for i in range(DEVICES) if before[i] == NEVER_CONNECTED}
    assert {(e["error_code"], e["retryable"]) for e in outcome["errors"]} == {("never_connected", False)}
    assert all(fleet.device(i)["online_status"] == NEVER_CONNECTED for i in failed)
    assert outcome["counts"]["unknown"] == 0

    applied = _applied_writes(simulator, "huawei")
    assert all(applied[str(ROMA_ID_BASE + i)] == 1 for i in online)  # never forced offline twice
    # A device that never connected reads back as "not offline" after a lost answer, so it is named
    # again; ROMA refuses it again and it stays as it was (checked above). Nothing is named a third time.
    assert max(applied.values()) <= 2
    twice = {int(d) - ROMA_ID_BASE for d, n in applied.items() if n == 2}
    assert twice <= {i for i in lost if before[i] == NEVER_CONNECTED}


# --- Verizon ThingSpace: firmware sync ---------------------------------------------------------------


def test_verizon_sync_firmware_of_5000_devices_under_faults(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """A sync is idempotent (ThingSpace reads each device's firmware again), so one whose answer was
    lost is sent again like a read: every online device ends synced and reported so, every other
    one failed as ThingSpace says, and none unknown. Only the devices of answers lost after applying
    are synced twice, which changes nothing."""
    simulator = _faulty(start_simulator, set_connection)
    fleet = simulator.state.fleet
    before = {i: fleet.device(i)["online_status"] for i in range(DEVICES)}
    imeis = [imei_of(i) for i in range(DEVICES)]
    outcome = _execute(
        VerizonThingSpaceSyncFirmwareOperator(
            task_id="sync", imeis=imeis, batch_size=BATCH, fail_on_error=False
        )
    )

    _assert_met_every_fault(simulator, "verizon", "PUT")
    status = accounted_once(outcome, operation="sync_firmware", requested=imeis)
    online = [imei_of(i) for i in range(DEVICES) if before[i] == ONLINE]
    assert outcome["devices"]["succeeded"] == online
    assert outcome["counts"]["unknown"] == 0
    for imei in online:
        device = fleet.device(fleet.by_imei(imei))
        assert "firmware_synced_at" in device, imei  # claimed synced: really synced
        assert outcome["firmware"][imei] == device["firmware"]
    assert list(outcome["firmware"]) == online
    (did_not_respond,) = outcome["errors"]
    assert (did_not_respond["error_code"], did_not_respond["message"]) == (
        "FirmwareVersionUpdateFailed",
        "Device did not respond",
    )
    assert did_not_respond["devices"] == [imei for imei in imeis if status[imei] == "failed"]
    for imei in did_not_respond["devices"]:
        index = fleet.by_imei(imei)
        assert before[index] != ONLINE and "firmware_synced_at" not in fleet.device(index), imei

    puts = [r for r in _records(simulator, "verizon", "PUT") if r["write"]]
    assert _devices_of(puts, LOST_ANSWER - {"applied_then_dropped"}), "no sync met a 5xx or a drop"
    resent = Counter(d for r in puts if r["fault"] == "applied_then_dropped" for d in r["devices"])
    assert any(before[fleet.by_imei(imei)] == ONLINE for imei in resent)
    # Each batch applied once with an answer that came back, plus once per answer lost after applying.
    assert _applied_writes(simulator, "verizon") == Counter({imei: 1 + resent[imei] for imei in imeis})
    assert sum(r["applied"] and r["fault"] is None for r in puts) == DEVICES // BATCH
    assert _counters(simulator)["verizon.firmware_syncs"] == sum(r["applied"] for r in puts)


# --- Verizon ThingSpace: FOTA listing ----------------------------------------------------------------


def test_verizon_fota_listing_of_5000_devices_under_faults(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """Every page is read again until answered: the listing holds each device once, in order, as the
    simulator has it, and a read never writes."""
    simulator = _faulty(start_simulator, set_connection, verizon_page_size=BATCH)
    fleet = simulator.state.fleet
    outcome = _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))

    _assert_met_every_fault(simulator, "verizon", None)
    assert (outcome["device_count"], outcome["pages"]) == (DEVICES, DEVICES // BATCH)
    assert [device["device_id"] for device in outcome["devices"]] == [imei_of(i) for i in range(DEVICES)]
    for i, device in enumerate(outcome["devices"]):
        state = fleet.device(i)
        assert (device["firmware"], device["make"], device["model"], device["protocol"]) == (
            state["firmware"],
            state["make"],
            state["model"],
            state["protocol"],
        ), f"device {i}"
    gets = _records(simulator, "verizon", "GET")
    assert any(r["fault"] == "applied_then_dropped" for r in gets), "no page was lost after serving"
    assert sum(r["fault"] is None for r in gets) == DEVICES // BATCH  # each page answered once
    assert simulator.state.per_device_writes(vendor="verizon") == Counter()
    assert fleet.changed == {}


# --- ThingSpace credentials expiring in the middle of a 50-page listing -------------------------------

#: 1,000 devices, 20 a page: a 50-page listing.
LISTED_DEVICES, PAGE_SIZE, PAGES = 1000, 20, 50
#: The page whose request finds its credentials expired.
MID_PAGE = 25


def _expire_on_page(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, expire: Callable[[], None]
) -> None:
    """Run ``expire`` on the simulator when the listing's :data:`MID_PAGE`-th page request arrives,
    before it is served (the request log records each request as it arrives)."""
    state = simulator.state
    log_request = state.log_request
    pages: list[dict[str, Any]] = []

    def expiring(*args: Any, **kwargs: Any) -> dict[str, Any]:
        record = log_request(*args, **kwargs)
        if record["method"] == "GET" and "/fota/v3/devices/" in record["path"]:
            pages.append(record)
            if len(pages) == MID_PAGE:
                expire()
        return record

    monkeypatch.setattr(state, "log_request", expiring)


def _what(record: dict[str, Any]) -> tuple[str, int | None]:
    """A ThingSpace request as ``(token | login | page, status)``."""
    path = record["path"]
    kind = (
        "token" if path.endswith("/oauth2/token") else "login" if path.endswith("/session/login") else "page"
    )
    return kind, record["status"]


OK = 200
ONE_PAGE = [("page", OK)]


@pytest.mark.parametrize(
    ("expire", "renewal"),
    [
        pytest.param(
            "access token and session",
            [("page", 401), ("token", OK), ("page", 400), ("login", OK), ("page", OK)],
            id="both",
        ),
        pytest.param("access token", [("page", 401), ("token", OK), ("page", OK)], id="access-token"),
        pytest.param("session", [("page", 400), ("login", OK), ("page", OK)], id="session"),
    ],
)
def test_fota_listing_renews_credentials_that_expire_mid_listing_once_each(
    start_simulator: SimulatorFactory,
    set_connection: SetConnection,
    monkeypatch: pytest.MonkeyPatch,
    expire: str,
    renewal: list[tuple[str, int]],
) -> None:
    """Page 25 of 50 finds its credentials expired: the access token (an hour old on the simulator's
    clock, or revoked) is renewed once, the M2M session (idle past its 20 minutes) is logged in again
    once, the page is asked again, and the listing completes with every device once, in order."""
    simulator = start_simulator(devices=LISTED_DEVICES, verizon_page_size=PAGE_SIZE)
    _connect(simulator, set_connection)
    state = simulator.state
    if expire == "access token and session":
        _expire_on_page(simulator, monkeypatch, lambda: state.advance(3600 + 1))
    elif expire == "access token":
        _expire_on_page(simulator, monkeypatch, lambda: state.revoke("verizon", "token"))
    else:
        _expire_on_page(
            simulator, monkeypatch, lambda: state.advance(simulator.config.session_idle_timeout + 1)
        )
    outcome = _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))

    assert (outcome["device_count"], outcome["pages"]) == (LISTED_DEVICES, PAGES)
    assert [d["device_id"] for d in outcome["devices"]] == [imei_of(i) for i in range(LISTED_DEVICES)]
    log = _records(simulator, "verizon")
    first = [("token", OK), ("login", OK)] + ONE_PAGE * (MID_PAGE - 1)
    assert [_what(r) for r in log] == first + renewal + ONE_PAGE * (PAGES - MID_PAGE)
    pages = [r for r in log if _what(r)[0] == "page"]
    refused = [r for r in pages if r["status"] != OK]
    asked_again = pages[MID_PAGE - 1 + len(refused)]
    assert asked_again["status"] == OK
    assert {r["query"] for r in refused} == {asked_again["query"]}  # the same page, not the next
    assert len({r["query"] for r in pages if r["status"] == OK}) == PAGES  # each page read once
    counters = _counters(simulator)
    relogins = {kind for kind, status in renewal if kind != "page"}
    assert counters["verizon.access_tokens"] == 1 + ("token" in relogins)
    assert counters["verizon.logins"] == 1 + ("login" in relogins)
    assert not any(state.login_failures.values())


def test_a_wrong_m2m_password_costs_one_failed_login_per_task(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """ThingSpace locks the M2M user after five failed logins: a task with a wrong password fails
    after exactly one, with an error that says which extras to check, whether it lists one account
    or syncs ten batches; the user stays far from the lockout and the right password works after."""
    simulator = start_simulator(devices=LISTED_DEVICES, verizon_page_size=PAGE_SIZE)
    _connect(simulator, set_connection, m2m_password="not-the-password")
    state = simulator.state
    user = simulator.config.credentials.verizon_m2m_username
    clear = "Check the m2m_username and m2m_password extras of connection 'verizon_thingspace_default'"

    context = operator_context("fota")
    with pytest.raises(IoTFleetAuthError) as refused:
        VerizonThingSpaceFotaDevicesOperator(task_id="fota").execute(context)
    assert (refused.value.http_status, refused.value.error_code) == (400, "REQUEST_FAILED.UnexpectedError")
    message = str(refused.value)
    assert message.startswith("Verizon ThingSpace: the M2M session login was refused: ")
    assert "POST /verizon/api/m2m/v1/session/login: Invalid username or password." in message
    assert clear in message
    assert context["ti"].xcom == {}  # type: ignore[attr-defined]
    assert state.login_failures[user] == 1

    context = operator_context("sync")
    imeis = [imei_of(i) for i in range(LISTED_DEVICES)]
    with pytest.raises(IoTFleetOperationFailedError) as failed:
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=imeis).execute(context)  # 10 batches
    outcome = failed.value.outcome
    assert context["ti"].xcom == {OUTCOME_KEY: outcome}  # type: ignore[attr-defined]
    accounted_once(outcome, operation="sync_firmware", requested=imeis)
    assert outcome["devices"]["succeeded"] == [] and outcome["firmware"] == {}
    # Two groups, each device once: the batch that met the refusal, and the batches not sent after it.
    refused, not_sent = outcome["errors"]
    assert (refused["devices"], not_sent["devices"]) == (imeis[:100], imeis[100:])
    assert {refused["error_code"], not_sent["error_code"]} == {"REQUEST_FAILED.UnexpectedError"}
    assert clear in refused["message"]
    assert not_sent["attempted"] is False
    assert not_sent["message"].startswith("not attempted after an earlier error")
    assert not refused["retryable"] and not not_sent["retryable"]  # a retry would fail the same way
    assert state.login_failures[user] == 2  # one per task, not one per batch

    log = _records(simulator, "verizon")
    assert [_what(r) for r in log] == [("token", OK), ("login", 400)] * 2  # no FOTA request sent
    _connect(simulator, set_connection)  # the password fixed: the user was never locked
    assert _execute(VerizonThingSpaceFotaDevicesOperator(task_id="fota"))["device_count"] == LISTED_DEVICES
    assert state.login_failures[user] == 0


# --- malformed answers from the simulator ------------------------------------------------------------

#: The simulator's faults that answer in the vendor's place with something no vendor documents, and
#: what the typed error then says.
MALFORMED = {
    "html_error_page": "502 Bad Gateway",
    "malformed_json": "a body that is not JSON",
    "huge_body": "more than 16 MiB",
    "gzip_garbage": "could not be completed: ContentDecodingError",
}


def _assert_names(message: str, vendor: str, path: str, says: str) -> None:
    assert vendor in message
    assert path in message
    assert says in message


def _failed_outcome(operator: Any) -> dict[str, Any]:
    """Run ``operator``: it must fail, the outcome pushed under ``outcome`` and nothing else."""
    outcome, succeeded = run_task(operator)
    assert not succeeded
    return outcome


def _assert_one_error(
    outcome: dict[str, Any], operation: str, devices: list[Any], vendor: str, says: str, status: str
) -> None:
    """Every device is in ``status`` (tried, never done) under one error that says what came back;
    the error names no request, so that the same answer to many devices is one error."""
    statuses = accounted_once(outcome, operation=operation, requested=devices)
    assert set(statuses.values()) == {status}
    assert outcome["vendor"] == vendor
    (error,) = outcome["errors"]
    assert error["devices"] == devices and error["attempted"]
    assert says in error["message"]
    assert not any(str(device) in error["message"] for device in devices)
    assert " /" not in error["message"]  # no request path


@pytest.mark.parametrize("fault", MALFORMED)
def test_every_operator_turns_malformed_answers_into_typed_errors(
    start_simulator: SimulatorFactory, set_connection: SetConnection, fault: str
) -> None:
    """Every API answer is an HTML error page, truncated JSON, 20 MiB of JSON or gzip that is not:
    each write operator fails with one typed error for all its devices, saying what came back, and
    claims nothing done. What a repeat cannot harm (the bulk update, the firmware sync) is sent again
    and then failed; an edit or a force-offline is read back instead, and since the read-back meets
    the same answer, it is unknown (it may have applied). The FOTA listing fails naming the vendor
    and the endpoint."""
    simulator = start_simulator(devices=50, faults=Faults(**{fault: 1.0}))
    _connect(simulator, set_connection, max_retries=1)
    says = MALFORMED[fault]
    creds = simulator.config.credentials

    pan_devices = [imei_of(i) for i in range(3)]
    pan = _failed_outcome(
        PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=[{"imei": imei} for imei in pan_devices])
    )
    _assert_one_error(pan, "bulk_update", pan_devices, "Palo Alto Networks IoT Security", says, "failed")
    assert (pan["updated"], pan["batches"]) == (0, 1)

    iccids = [iccid_of(1), iccid_of(2)]
    cisco = _failed_outcome(
        CiscoControlCenterEditDevicesOperator(
            # the write path: reading first (the default) would fail on the read, sending nothing
            task_id="cisco",
            iccids=iccids,
            changes={"accountCustom1": "x"},
            skip_unchanged=False,
        )
    )
    _assert_one_error(cisco, "edit_devices", iccids, "Cisco IoT Control Center", says, "unknown")

    roma_ids = [ROMA_ID_BASE + 1, ROMA_ID_BASE + 2]
    roma = _failed_outcome(HuaweiRomaForceOfflineOperator(task_id="roma", device_ids=roma_ids))
    _assert_one_error(roma, "force_offline", roma_ids, "Huawei Cloud ROMA Connect", says, "unknown")

    sync_imeis = [imei_of(1), imei_of(2)]
    sync = _failed_outcome(VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=sync_imeis))
    _assert_one_error(sync, "sync_firmware", sync_imeis, "Verizon ThingSpace", says, "failed")
    assert sync["firmware"] == {}

    context = operator_context("fota")
    with pytest.raises(IoTFleetError) as caught:
        VerizonThingSpaceFotaDevicesOperator(task_id="fota").execute(context)
    assert context["ti"].xcom == {}  # type: ignore[attr-defined]
    path = f"GET /verizon/api/fota/v3/devices/{creds.verizon_account}"
    _assert_names(str(caught.value), "Verizon ThingSpace", path, says)

    # These faults answer in the vendor's place: nothing was applied, and no write but the bulk
    # update and the sync (retried, except an answer over the limit, which is never read again) was
    # sent twice.
    assert simulator.state.fleet.changed == {}
    assert simulator.state.per_device_writes(applied_only=True) == Counter()
    sent = {
        vendor: simulator.state.per_device_writes(vendor)
        for vendor in ("paloalto", "cisco", "huawei", "verizon")
    }
    repeats = 1 if fault == "huge_body" else 2
    assert sent["paloalto"] == Counter({imei: repeats for imei in pan_devices})
    assert sent["cisco"] == Counter({iccid: 1 for iccid in iccids})
    assert sent["huawei"] == Counter({str(device): 1 for device in roma_ids})
    assert sent["verizon"] == Counter({imei: repeats for imei in sync_imeis})


# --- A firmware sync under server errors ------------------------------------------------------------


def test_verizon_sync_of_1000_online_devices_under_server_errors_leaves_none_unknown(
    start_simulator: SimulatorFactory, set_connection: SetConnection
) -> None:
    """A sync answered with a 5xx is sent again like a read (it only has ThingSpace read each
    device's firmware): every device ends synced or failed with an error worth retrying, none
    unknown, and what the outcome calls synced is synced."""
    simulator = start_simulator(devices=2000, seed=SEED, faults=Faults(server_error=0.10))
    _connect(simulator, set_connection, max_retries=1)
    fleet = simulator.state.fleet
    online = [imei_of(i) for i in range(fleet.size) if fleet.device(i)["online_status"] == ONLINE][:1000]
    assert len(online) == 1000
    outcome, _ = run_task(
        VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=online, fail_on_error=False)
    )

    puts = [r for r in _records(simulator, "verizon", "PUT") if r["write"]]
    assert any(r["fault"] == "server_error" for r in puts), "no sync met a server error"
    status = accounted_once(outcome, operation="sync_firmware", requested=online)
    assert set(status.values()) <= {"succeeded", "failed"}
    assert outcome["counts"]["unknown"] == 0
    assert all(
        (e["status"], e["http_status"], e["retryable"]) == ("failed", 500, True) for e in outcome["errors"]
    )
    for imei in online:
        synced = "firmware_synced_at" in fleet.device(fleet.by_imei(imei))
        assert synced == (status[imei] == "succeeded"), imei
    assert _applied_writes(simulator, "verizon") == Counter(
        {imei: 1 for imei in online if status[imei] == "succeeded"}
    )


# --- 100,000 devices failing the same way ------------------------------------------------------------

HUNDRED_THOUSAND = 100_000
MIB = 2**20


@pytest.mark.parametrize(
    ("vendor", "refusal"),
    [
        pytest.param("cisco", (401, "10000001"), id="cisco-wrong-api-key"),
        pytest.param("paloalto", (403, "403"), id="paloalto-wrong-access-key"),
    ],
)
def test_100000_devices_failing_with_one_error_push_each_id_once_in_a_few_mib(
    start_simulator: SimulatorFactory, set_connection: SetConnection, vendor: str, refusal: tuple[int, str]
) -> None:
    """A wrong API key on 100,000 SIMs: the vendor refuses the first requests, the rest are not sent,
    and the outcome the task pushes holds the error once and each id once, at most 3 MiB (not one
    message per device), with a task error of a few lines that says which connection fields to check."""
    simulator = start_simulator(devices=1000)
    conn_id = {"cisco": "cisco_control_center_default", "paloalto": "paloalto_iot_default"}[vendor]
    _connect(simulator, set_connection)
    conn = simulator.connections()[conn_id]
    fast = {"requests_per_second": 100_000, "requests_per_minute": 6_000_000, "max_concurrency": 8}
    set_connection(
        conn_id, **{**conn, "password": "not-the-key-0001", "extra": {**conn.get("extra", {}), **fast}}
    )
    operator: Any
    if vendor == "cisco":
        ids = [iccid_of(i) for i in range(HUNDRED_THOUSAND)]
        operator = CiscoControlCenterEditDevicesOperator(
            task_id="deactivate", iccids=ids, changes={"status": "DEACTIVATED"}, skip_unchanged=False
        )
        operation = "edit_devices"
    else:
        ids = [imei_of(i) for i in range(HUNDRED_THOUSAND)]
        operator = PaloAltoIoTBulkUpdateOperator(
            task_id="bulk_update", devices=[{"imei": imei} for imei in ids]
        )
        operation = "bulk_update"
    context = operator_context(operator.task_id)

    with pytest.raises(IoTFleetOperationFailedError) as failed:
        operator.execute(context)

    pushed = context["ti"].xcom  # type: ignore[attr-defined]
    assert list(pushed) == [OUTCOME_KEY]
    outcome = pushed[OUTCOME_KEY]
    assert len(json.dumps(outcome)) <= 3 * MIB
    status = accounted_once(outcome, operation=operation, requested=ids)  # each id once
    assert outcome["counts"]["failed"] == HUNDRED_THOUSAND
    assert set(status.values()) == {"failed"}
    # One refusal: the devices it was sent for, and those not sent after it.
    assert [
        (e["http_status"], e["error_code"], e["attempted"], e["retryable"]) for e in outcome["errors"]
    ] == [
        (*refusal, True, False),
        (*refusal, False, False),
    ]
    sent = len(outcome["errors"][0]["devices"])
    assert sum(r["write"] for r in simulator.state.request_log(vendor)) == (sent if vendor == "cisco" else 1)
    # Where to look is said once per error, in the outcome and in the task's error alike.
    hint = {
        "cisco": "Check the login (user name) and password (API key) of connection 'cisco_control_center_default'",
        "paloalto": "Check the login (key id), password (access key) and the key's API role of connection "
        "'paloalto_iot_default'",
    }[vendor]
    assert all(hint in e["message"] for e in outcome["errors"])
    message = str(failed.value)
    assert message.startswith(
        f"{HUNDRED_THOUSAND} of {HUNDRED_THOUSAND} devices not done: {sent} failed with "
    )
    assert hint in message
    assert len(message) < 2000
