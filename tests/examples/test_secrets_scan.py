"""No credential and no token the simulator issued ever shows: not in a task log, an XCom or anything
else of the metadata DB, a raised error, a trigger's event or arguments, a ``test_connection()``
message, a log line of any logger, nor the ``repr`` of an operator, a trigger or what they hold.

Two runs with the same distinctive credentials, each under a ``Trap`` that keeps everything logged
and printed:

1. the session's one run of every DAG of ``example_dags/`` with ``dag.test()`` (``example_runs``,
   shared with ``test_example_dags.py``: ``tests/example_runs.py`` says how each DAG runs);
2. this module's run (``scan_run``) against two simulators: ``sim``, and ``expiring``, on which every
   token and session expires as soon as it is presented (the ``token_expiry`` fault). A generated DAG
   of failing tasks runs with ``dag.test()``: each vendor's operator with a wrong secret (Palo Alto's
   403, 401 elsewhere, 400 for a ThingSpace M2M login) or a token that expires, a sensor failing in
   its first poke, and deferred sensors whose connection turns bad before their trigger runs (the
   async client's logins and refusals); and a task that plants a secret, which the scan must find.
   Then ``test_connection()`` of each failing connection.

Then every secret and every issued token is looked for, whole and by its first 8 characters.

The end of the module checks transport safety end to end, where the unit tests (``test_http.py``,
``test_http_hardening.py``) use mocks: plain http is refused through every hook unless the host is
loopback (hosts that only look local included), and against a real HTTPS server on loopback, sync and
async, TLS is verified by default, no extra turns it off, and the ``ca_bundle`` extra is what is trusted.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_iotfleet.exceptions import (
    IoTFleetCertificateError,
    IoTFleetConfigurationError,
    IoTFleetError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.hooks.paloalto import PaloAltoIoTSecurityHook
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.simulator import (
    Credentials,
    Faults,
    Simulator,
    SimulatorConfig,
    connections_for,
)
from airflow_provider_iotfleet.simulator.fleet import ONLINE, ROMA_ID_BASE, iccid_of, imei_of
from tests.dag_runs import bundle_environment
from tests.example_runs import FLEET_SIZE, VERIZON_PAGE_SIZE, ExampleRun, ExampleRuns, run_example
from tests.secrets_scan import (
    Book,
    IssuedTokens,
    Piece,
    Ran,
    Secret,
    Trap,
    distinctive,
    env_name,
    exception_texts,
    object_reprs,
    scan,
    watching_dag_test,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600, method="thread")]

FAILURES = "iotfleet_secrets_scan_failures"

# --- connections -------------------------------------------------------------------------------


class Conn:
    """The ``secscan_*`` connections, each named for what it does."""

    PA_WRONG_KEY = "secscan_paloalto_wrong_access_key"
    PA_SCM_WRONG = "secscan_paloalto_scm_wrong_client_secret"
    PA_SCM_EXPIRING = "secscan_paloalto_scm_expiring"
    CISCO_WRONG = "secscan_cisco_wrong_api_key"
    HUAWEI_WRONG_SK = "secscan_huawei_wrong_secret_key"
    HUAWEI_IAM = "secscan_huawei_iam"
    HUAWEI_IAM_WRONG = "secscan_huawei_iam_wrong_password"
    HUAWEI_IAM_EXPIRING = "secscan_huawei_iam_expiring"
    VERIZON_WRONG_SECRET = "secscan_verizon_wrong_oauth_secret"
    VERIZON_WRONG_M2M = "secscan_verizon_wrong_m2m_password"
    VERIZON_EXPIRING = "secscan_verizon_expiring"
    # Working for a deferred sensor's first poke, failing when its trigger runs (``TURNING``).
    CISCO_TURNS_WRONG = "secscan_cisco_then_wrong_api_key"
    HUAWEI_TURNS_WRONG = "secscan_huawei_then_wrong_iam_password"
    HUAWEI_TURNS_EXPIRING = "secscan_huawei_then_iam_token_expires"
    VERIZON_TURNS_WRONG = "secscan_verizon_then_wrong_m2m_password"
    VERIZON_TURNS_EXPIRING = "secscan_verizon_then_session_expires"


#: Connections a deferred sensor's first poke works with (the second one named here), which then
#: turn into the failing one (the third) before its trigger runs (``watching_dag_test``).
TURNING = {
    Conn.CISCO_TURNS_WRONG: ("cisco_control_center_default", Conn.CISCO_WRONG),
    Conn.HUAWEI_TURNS_WRONG: (Conn.HUAWEI_IAM, Conn.HUAWEI_IAM_WRONG),
    Conn.HUAWEI_TURNS_EXPIRING: (Conn.HUAWEI_IAM, Conn.HUAWEI_IAM_EXPIRING),
    Conn.VERIZON_TURNS_WRONG: ("verizon_thingspace_default", Conn.VERIZON_WRONG_M2M),
    Conn.VERIZON_TURNS_EXPIRING: ("verizon_thingspace_default", Conn.VERIZON_EXPIRING),
}
#: Each failing connection and its hook (``test_connection()`` is run on each).
FAILING: dict[str, type[IoTFleetBaseHook]] = {
    Conn.PA_WRONG_KEY: PaloAltoIoTSecurityHook,
    Conn.PA_SCM_WRONG: PaloAltoIoTSecurityHook,
    Conn.PA_SCM_EXPIRING: PaloAltoIoTSecurityHook,
    Conn.CISCO_WRONG: CiscoControlCenterHook,
    Conn.HUAWEI_WRONG_SK: HuaweiRomaConnectHook,
    Conn.HUAWEI_IAM_WRONG: HuaweiRomaConnectHook,
    Conn.HUAWEI_IAM_EXPIRING: HuaweiRomaConnectHook,
    Conn.VERIZON_WRONG_SECRET: VerizonThingSpaceHook,
    Conn.VERIZON_WRONG_M2M: VerizonThingSpaceHook,
    Conn.VERIZON_EXPIRING: VerizonThingSpaceHook,
}


def connections(sim: Simulator, expiring: Simulator, book: Book) -> dict[str, dict[str, Any]]:
    """Every connection of the module, JSON form: the four defaults (as the example DAGs use them)
    and the ``secscan_*`` ones, on ``sim`` except the ``*_expiring`` ones."""
    c, wrong = book.credentials, book.wrong
    default = book.default_connections(sim)
    pa, cisco, huawei, verizon = (
        default[f"{name}_default"]
        for name in ("paloalto_iot", "cisco_control_center", "huawei_roma", "verizon_thingspace")
    )

    def scm(base: Simulator, secret: str) -> dict[str, Any]:
        return {
            "conn_type": "paloalto_iot",
            "host": f"{base.url}/paloalto",
            "login": c.paloalto_client_id,
            "password": secret,
            "extra": {
                "auth_type": "scm",
                "tsg_id": c.paloalto_tsg_id,
                "auth_url": f"{base.url}/paloalto/oauth2/access_token",
            },
        }

    def iam(base: Simulator, password: str) -> dict[str, Any]:
        return {
            "conn_type": "huawei_roma",
            "host": f"{base.url}/huawei",
            "login": c.huawei_iam_user,
            "password": password,
            "extra": {
                "auth_type": "iam_token",
                "project_id": c.huawei_project_id,
                "instance_id": c.huawei_instance_id,
                "iam_endpoint": f"{base.url}/huawei",
                "domain_name": c.huawei_domain,
            },
        }

    failing = {
        Conn.PA_WRONG_KEY: {**pa, "password": wrong["paloalto_access_key"]},
        Conn.PA_SCM_WRONG: scm(sim, wrong["paloalto_client_secret"]),
        Conn.PA_SCM_EXPIRING: scm(expiring, c.paloalto_client_secret),
        Conn.CISCO_WRONG: {**cisco, "password": wrong["cisco_api_key"]},
        Conn.HUAWEI_WRONG_SK: {**huawei, "password": wrong["huawei_secret_key"]},
        Conn.HUAWEI_IAM: iam(sim, c.huawei_iam_password),
        Conn.HUAWEI_IAM_WRONG: iam(sim, wrong["huawei_iam_password"]),
        Conn.HUAWEI_IAM_EXPIRING: iam(expiring, c.huawei_iam_password),
        Conn.VERIZON_WRONG_SECRET: {**verizon, "password": wrong["verizon_secret"]},
        Conn.VERIZON_WRONG_M2M: {
            **verizon,
            "extra": {**verizon["extra"], "m2m_password": wrong["verizon_m2m_password"]},
        },
        Conn.VERIZON_EXPIRING: connections_for(expiring.url, c)["verizon_thingspace_default"],
    }
    working = {**default, **failing}
    return {**working, **{conn_id: working[first] for conn_id, (first, _) in TURNING.items()}}


# --- the failing DAG ---------------------------------------------------------------------------

#: Where the plant task finds the secret it plants (not in the DAG file, which the DB keeps).
PLANTED_ENV = "IOTFLEET_SECRETS_SCAN_PLANTED"
FAILING_DAG = '''"""Tasks that fail on credentials or tokens: written and run by test_secrets_scan.py."""
from __future__ import annotations

import logging
import os

import pendulum
import structlog
from airflow.sdk import dag, task

from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.sensors.cisco import CiscoControlCenterDeviceStatusSensor
from airflow_provider_iotfleet.sensors.huawei import HuaweiRomaDeviceStatusSensor
from airflow_provider_iotfleet.sensors.verizon import VerizonThingSpaceFirmwareSensor

ICCIDS, ROMA_IDS, IMEIS = {iccids!r}, {roma_ids!r}, {imeis!r}
DEVICES = [{{"imei": IMEIS[0], "iccid": ICCIDS[0], "apn": "iot.fleet.apn"}}]
WAIT = {{"poke_interval": 1, "timeout": 120}}


@dag(
    dag_id="{dag_id}",
    schedule=None,
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    default_args={{"retries": 0}},
)
def failures() -> None:
    for task_id, conn_id in [
        ("paloalto_wrong_access_key", "{Conn.PA_WRONG_KEY}"),
        ("paloalto_scm_wrong_client_secret", "{Conn.PA_SCM_WRONG}"),
        ("paloalto_scm_token_expires", "{Conn.PA_SCM_EXPIRING}"),
    ]:
        PaloAltoIoTBulkUpdateOperator(task_id=task_id, paloalto_iot_conn_id=conn_id, devices=DEVICES)
    CiscoControlCenterEditDevicesOperator(
        task_id="cisco_wrong_api_key",
        cisco_control_center_conn_id="{Conn.CISCO_WRONG}",
        iccids=ICCIDS,
        changes={{"accountCustom2": "secrets-scan"}},
    )
    for task_id, conn_id in [
        ("huawei_wrong_secret_key", "{Conn.HUAWEI_WRONG_SK}"),
        ("huawei_wrong_iam_password", "{Conn.HUAWEI_IAM_WRONG}"),
        ("huawei_iam_token_expires", "{Conn.HUAWEI_IAM_EXPIRING}"),
    ]:
        HuaweiRomaForceOfflineOperator(task_id=task_id, huawei_roma_conn_id=conn_id, device_ids=ROMA_IDS)
    for task_id, conn_id in [
        ("verizon_wrong_oauth_secret", "{Conn.VERIZON_WRONG_SECRET}"),
        ("verizon_wrong_m2m_password", "{Conn.VERIZON_WRONG_M2M}"),
    ]:
        VerizonThingSpaceFotaDevicesOperator(task_id=task_id, verizon_thingspace_conn_id=conn_id, imeis=IMEIS)
    VerizonThingSpaceSyncFirmwareOperator(
        task_id="verizon_session_expires", verizon_thingspace_conn_id="{Conn.VERIZON_EXPIRING}", imeis=IMEIS
    )
    # Fails in its first poke, in the worker.
    HuaweiRomaDeviceStatusSensor(
        task_id="huawei_sensor_wrong_iam_password",
        huawei_roma_conn_id="{Conn.HUAWEI_IAM_WRONG}",
        device_ids=ROMA_IDS,
        target_online_status="offline",
        mode="poke",
        **WAIT,
    )
    # Their first poke works and they defer (nothing is at the target); their connection has turned
    # bad when their trigger runs.
    CiscoControlCenterDeviceStatusSensor(
        task_id="cisco_trigger_wrong_api_key",
        cisco_control_center_conn_id="{Conn.CISCO_TURNS_WRONG}",
        iccids=ICCIDS,
        target_status="RETIRED",
        deferrable=True,
        **WAIT,
    )
    for task_id, conn_id in [
        ("huawei_trigger_wrong_iam_password", "{Conn.HUAWEI_TURNS_WRONG}"),
        ("huawei_trigger_iam_token_expires", "{Conn.HUAWEI_TURNS_EXPIRING}"),
    ]:
        HuaweiRomaDeviceStatusSensor(
            task_id=task_id,
            huawei_roma_conn_id=conn_id,
            device_ids=ROMA_IDS,
            target_online_status="offline",
            deferrable=True,
            **WAIT,
        )
    for task_id, conn_id in [
        ("verizon_trigger_wrong_m2m_password", "{Conn.VERIZON_TURNS_WRONG}"),
        ("verizon_trigger_session_expires", "{Conn.VERIZON_TURNS_EXPIRING}"),
    ]:
        VerizonThingSpaceFirmwareSensor(
            task_id=task_id,
            verizon_thingspace_conn_id=conn_id,
            imeis=IMEIS,
            target_firmware="SR9.9.9.9-0",
            deferrable=True,
            **WAIT,
        )

    @task
    def plant_secret(*, ti):
        """Shows a secret everywhere the scan looks, as a leak would: the scan must find it."""
        secret = os.environ["{planted_env}"]
        logging.getLogger("iotfleet.secrets_scan").warning("planted %s", secret)
        structlog.get_logger("iotfleet.secrets_scan").warning("planted", secret=secret)
        ti.xcom_push(key="planted", value=secret[:8])  # truncated: found by its first 8 characters
        raise RuntimeError(f"planted {{secret}}")

    plant_secret()


failures()
'''
#: Each failing task and the vendor's refusal its error must name.
FAILING_TASKS = {
    "paloalto_wrong_access_key": "Forbidden access",
    "paloalto_scm_wrong_client_secret": "Client authentication failed",
    "paloalto_scm_token_expires": "The access token is missing, invalid or expired",
    "cisco_wrong_api_key": "Invalid credentials",
    "huawei_wrong_secret_key": "verify aksk signature fail",
    "huawei_wrong_iam_password": "The username or password is wrong",
    "huawei_iam_token_expires": "token expired or invalid",
    "verizon_wrong_oauth_secret": "Invalid Credentials",
    "verizon_wrong_m2m_password": "Invalid username or password",
    "verizon_session_expires": "SessionToken.Expired",
    "huawei_sensor_wrong_iam_password": "The username or password is wrong",
    "cisco_trigger_wrong_api_key": "Invalid credentials",
    "huawei_trigger_wrong_iam_password": "The username or password is wrong",
    "huawei_trigger_iam_token_expires": "token expired or invalid",
    "verizon_trigger_wrong_m2m_password": "Invalid username or password",
    "verizon_trigger_session_expires": "SessionToken.Expired",
}


def failing_dag(sim: Simulator) -> str:
    """The failing DAG's file, on devices the example DAGs leave alone (in the fleet's second half)
    and that are online and active, so that the sensors' first poke finds them short of the target."""
    fleet = sim.state.fleet
    devices = [
        i
        for i in range(FLEET_SIZE // 2, FLEET_SIZE)
        if (fleet.device(i)["online_status"], fleet.device(i)["status"]) == (ONLINE, "ACTIVATED")
    ][:2]
    return FAILING_DAG.format(
        dag_id=FAILURES,
        iccids=[iccid_of(i) for i in devices],
        roma_ids=[ROMA_ID_BASE + i for i in devices],
        imeis=[imei_of(i) for i in devices],
        planted_env=PLANTED_ENV,
        Conn=Conn,
    )


def run_failing_dag(folder: Path, source: str) -> ExampleRun:
    """Run ``FAILURES`` from ``folder`` with ``run_example`` (its DB read-back), the bundle on ``folder``."""
    (folder / f"{FAILURES}.py").write_text(source)
    with pytest.MonkeyPatch.context() as mp:
        bundle_environment(mp, folder)
        return run_example(FAILURES, logical_date=datetime.now(UTC), folder=folder)


# --- the module's run --------------------------------------------------------------------------


@dataclass
class ScanRun:
    """This module's run of the failing DAG, and the session's run of the example DAGs before it."""

    examples: ExampleRuns
    planted: Secret
    sims: tuple[Simulator, Simulator]
    tokens: IssuedTokens
    trap: Trap
    ran: Ran
    failing: ExampleRun
    messages: dict[str, str]  # test_connection()'s, per failing connection

    @property
    def simulators(self) -> list[Simulator]:
        return [*self.examples.simulators, *self.sims]

    @property
    def issued(self) -> list[tuple[str, str]]:
        """Every token the simulators of both runs issued, as ``(kind, token)``."""
        return self.examples.tokens.issued + self.tokens.issued

    @property
    def tasks(self) -> list[tuple[str, Any]]:
        return self.examples.ran.tasks + self.ran.tasks

    @property
    def triggers(self) -> list[tuple[str, Any, Any]]:
        return self.examples.ran.triggers + self.ran.triggers

    def trapped(self) -> dict[str, list[Piece]]:
        """What both runs' traps kept, by kind."""
        mine = self.trap.pieces()
        return {kind: pieces + mine[kind] for kind, pieces in self.examples.trap.pieces().items()}

    def secrets(self) -> list[Secret]:
        return self.examples.book.secrets() + self.examples.tokens.secrets() + self.tokens.secrets()


@pytest.fixture(scope="module")
def scan_run(example_runs: ExampleRuns, tmp_path_factory: pytest.TempPathFactory) -> ScanRun:
    book = example_runs.book
    planted = Secret.credential("planted secret", distinctive(random.SystemRandom()))
    # Seeds of their own: simulators of one seed draw the same random tokens and request ids.
    seeds = example_runs.unused_seeds()
    config = SimulatorConfig(
        devices=FLEET_SIZE,
        verizon_page_size=VERIZON_PAGE_SIZE,
        credentials=book.credentials,
        seed=next(seeds),
    )
    sim = Simulator(config)
    expiring = Simulator(replace(config, seed=next(seeds), faults=Faults(token_expiry=1.0)))
    tokens, ran = IssuedTokens(), Ran()
    for each in (sim, expiring):
        tokens.watch(each.state)
    with sim, expiring, pytest.MonkeyPatch.context() as mp, Trap() as trap:
        conns = connections(sim, expiring, book)
        for conn_id, conn in conns.items():
            mp.setenv(env_name(conn_id), json.dumps(conn))
        mp.setenv(PLANTED_ENV, planted.value)
        turned = {conn_id: json.dumps(conns[then]) for conn_id, (_, then) in TURNING.items()}
        with watching_dag_test(ran, turned):
            failing = run_failing_dag(tmp_path_factory.mktemp("secrets_scan_dags"), failing_dag(sim))
        messages = {conn_id: hook(conn_id).test_connection()[1] for conn_id, hook in FAILING.items()}
    return ScanRun(example_runs, planted, (sim, expiring), tokens, trap, ran, failing, messages)


# --- what ran ----------------------------------------------------------------------------------


def test_every_example_dag_ran_successfully(example_runs: ExampleRuns) -> None:
    assert example_runs.runs  # every DAG that example_dags/ defines, which parses without errors
    for dag_id, run in example_runs.runs.items():
        # Skipped: a branch not taken (the planned change's rollback, once verified).
        failed = {
            task: state for task, state in run.result.states.items() if state not in ("success", "skipped")
        }
        assert run.result.state == "success" and not failed, (
            f"{dag_id} did not succeed ({failed}): does it need a recipe in tests/example_runs.py's RECIPES?"
        )


def test_every_failure_path_failed_on_its_credentials(scan_run: ScanRun) -> None:
    assert scan_run.failing.states == dict.fromkeys([*FAILING_TASKS, "plant_secret"], "failed")
    errors = scan_run.ran.errors(FAILURES)
    assert set(errors) == {*FAILING_TASKS, "plant_secret"}
    for task_id, refusal in FAILING_TASKS.items():
        assert isinstance(errors[task_id], IoTFleetError), (task_id, errors[task_id])
        assert refusal in str(errors[task_id]), (task_id, errors[task_id])
    # The deferred sensors failed in their trigger, each on its connection turned bad.
    failed_in_trigger = {
        task.split(".", 1)[1] for task, _, event in scan_run.triggers if event.payload["status"] == "error"
    }
    assert failed_in_trigger == {task for task in FAILING_TASKS if "_trigger_" in task}
    # test_connection() fails for each wrong secret; where tokens only expire once used, it may pass.
    for conn_id, message in scan_run.messages.items():
        assert conn_id.endswith("_expiring") or "(HTTP 40" in message, (conn_id, message)


def test_the_simulators_issued_tokens_of_every_kind_and_all_were_recorded(scan_run: ScanRun) -> None:
    issued = scan_run.issued
    assert {kind for kind, _ in issued} == {"paloalto", "huawei", "verizon", "verizon-session"}
    recorded = {token for _, token in issued}
    for sim in scan_run.simulators:  # whatever the simulators still hold was recorded
        with sim.state.lock:
            live = {token for held in sim.state.tokens.values() for token in held} | set(sim.state.sessions)
        assert live <= recorded


# --- the scan ----------------------------------------------------------------------------------


def _metadata_db() -> list[Piece]:
    """Every row of every table of the session's metadata DB (XComs, rendered fields, asset events...)."""
    pieces: list[Piece] = []
    with sqlite3.connect(Path(os.environ["AIRFLOW_HOME"]) / "airflow.db") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for n, row in enumerate(db.execute(f'SELECT * FROM "{table}"')):  # noqa: S608 - names from the DB
                text = " ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row)
                pieces.append((f"table {table}, row {n}", text))
    return pieces


def _log_files() -> list[Piece]:
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return [
        (f"log file {path}", path.read_text(errors="replace")) for path in logs.rglob("*") if path.is_file()
    ]


@pytest.fixture(scope="module")
def haystacks(scan_run: ScanRun) -> dict[str, list[Piece]]:
    return {
        **scan_run.trapped(),
        "task log files": _log_files(),
        "metadata DB": _metadata_db(),
        "raised errors": [
            piece
            for name, result in scan_run.tasks
            if result.error is not None
            for piece in exception_texts(result.error, f"task {name}")
        ],
        "test_connection() messages": [(f"test_connection of {k}", v) for k, v in scan_run.messages.items()],
        "trigger events and arguments": [
            piece
            for task, trigger, event in scan_run.triggers
            for piece in [
                (f"{task}: trigger event", repr(event.payload if event else None)),
                (f"{task}: trigger arguments", repr(trigger.serialize())),
            ]
        ],
        "reprs of operators and triggers after use, and what they hold": [
            piece for name, result in scan_run.tasks for piece in object_reprs(result.ti.task, f"task {name}")
        ]
        + [
            piece
            for task, trigger, _ in scan_run.triggers
            for piece in object_reprs(trigger, f"trigger of {task}")
        ],
    }


HAYSTACKS = (
    "stdlib log records",
    "structlog events, raw",
    "task log, as rendered",
    "stdout and stderr",
    "task log files",
    "metadata DB",
    "raised errors",
    "test_connection() messages",
    "trigger events and arguments",
    "reprs of operators and triggers after use, and what they hold",
)


@pytest.mark.parametrize("where", HAYSTACKS)
def test_no_secret_and_no_issued_token_shows(
    scan_run: ScanRun, haystacks: dict[str, list[Piece]], where: str
) -> None:
    assert sorted(haystacks) == sorted(HAYSTACKS)
    pieces = haystacks[where]
    if where != "task log files":  # dag.test() writes none: its task log is the one rendered
        assert any(text for _, text in pieces), f"nothing was collected as {where}"
    hits = scan(scan_run.secrets(), pieces)
    assert not hits, f"{len(hits)} secrets found in {where}:\n" + "\n".join(hits)


@pytest.mark.parametrize(
    ("where", "form", "at"),
    [
        ("stdlib log records", "whole", "record"),
        ("structlog events, raw", "whole", "event"),
        ("task log, as rendered", "whole", "line"),
        ("raised errors", "whole", "task iotfleet_secrets_scan_failures.plant_secret"),
        ("metadata DB", "first 8 characters", "table xcom"),  # the XCom, which holds only those
    ],
)
def test_the_scan_finds_the_planted_secret(
    scan_run: ScanRun, haystacks: dict[str, list[Piece]], where: str, form: str, at: str
) -> None:
    [hit] = scan([scan_run.planted], haystacks[where])
    assert hit.startswith(f"planted secret ({form}) in {at}"), hit


# --- transport safety: plain http only to loopback, TLS verified unless told which CA to trust ---

HOOKS: dict[str, type[IoTFleetBaseHook]] = {
    "paloalto_iot_default": PaloAltoIoTSecurityHook,
    "cisco_control_center_default": CiscoControlCenterHook,
    "huawei_roma_default": HuaweiRomaConnectHook,
    "verizon_thingspace_default": VerizonThingSpaceHook,
}


def _define(monkeypatch: pytest.MonkeyPatch, conn_id: str, conn: dict[str, Any]) -> None:
    monkeypatch.setenv(env_name(conn_id), json.dumps(conn))


@pytest.mark.parametrize(
    "base_url",
    [
        "http://iot.example.com",
        "http://127.0.0.1.example.com",  # only looks like loopback
        "http://localhost.example.com",
        "http://127.0.0.1@iot.example.com",  # user info that looks like loopback; the host is remote
        "http://0.0.0.0:8765",  # every interface, not loopback
    ],
)
def test_plain_http_to_a_host_that_is_not_loopback_is_refused_by_every_hook(
    monkeypatch: pytest.MonkeyPatch, base_url: str
) -> None:
    book = Book.draw()
    for conn_id, conn in connections_for(base_url, book.credentials).items():
        _define(monkeypatch, conn_id, conn)
        with pytest.raises(IoTFleetConfigurationError, match="must use https") as refused:
            HOOKS[conn_id](conn_id).client  # noqa: B018 - building the client checks the base URL
        assert not scan(book.secrets(), exception_texts(refused.value, "refusal"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
def test_plain_http_to_loopback_is_accepted_by_every_hook(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    base_url = f"http://{host}:8765"
    for conn_id, conn in connections_for(base_url, Credentials()).items():
        _define(monkeypatch, conn_id, conn)
        assert HOOKS[conn_id](conn_id).client.base_url.startswith(base_url)


@dataclass(frozen=True)
class Authority:
    """A self-signed certificate for 127.0.0.1 and localhost, which is its own CA."""

    cert: Path
    key: Path


def _authority(folder: Path, name: str) -> Authority:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    paths = Authority(folder / f"{name}.pem", folder / f"{name}.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@dataclass
class TlsSimulator:
    """The simulator's app served over HTTPS on loopback with a self-signed certificate."""

    sim: Simulator
    url: str
    authority: Authority
    stranger: Authority  # another self-signed CA, which did not sign the server's certificate

    def connection(self, extra: dict[str, Any]) -> dict[str, Any]:
        conn = connections_for(self.url, self.sim.config.credentials)["cisco_control_center_default"]
        return {**conn, "extra": extra}


@pytest.fixture(scope="module")
def tls_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsSimulator]:
    import uvicorn

    folder = tmp_path_factory.mktemp("tls")
    authority, stranger = _authority(folder, "iotfleet-test-ca"), _authority(folder, "iotfleet-other-ca")
    sim = Simulator(SimulatorConfig(devices=10))  # not started: its app is served here, over TLS
    config = uvicorn.Config(
        sim.app,
        ssl_certfile=str(authority.cert),
        ssl_keyfile=str(authority.key),
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    # Listening before the server runs: connections made before it serves wait in the backlog.
    with socket.create_server(("127.0.0.1", 0)) as sock:
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            yield TlsSimulator(sim, f"https://127.0.0.1:{sock.getsockname()[1]}", authority, stranger)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def _get_device_sync_and_async(conn_id: str) -> list[Any]:
    """``get_device`` through the sync client and ``aget_device`` through the async one (triggers')."""
    outcomes: list[Any] = []
    with CiscoControlCenterHook(conn_id) as hook:
        try:
            outcomes.append(hook.get_device(iccid_of(1)))
        except IoTFleetError as error:
            outcomes.append(error)

    async def asynchronously() -> Any:
        hook = CiscoControlCenterHook(conn_id)
        try:
            return await hook.aget_device(iccid_of(1))
        except IoTFleetError as error:
            return error
        finally:
            await hook.aclose()

    outcomes.append(asyncio.run(asynchronously()))
    return outcomes


#: Extras other clients switch verification off with: ignored or refused, never obeyed.
VERIFY_OFF_EXTRAS: list[dict[str, Any]] = [
    {},
    {"verify": False},
    {"verify": "false"},
    {"verify_ssl": False},
    {"ssl_verify": "false"},
    {"insecure": True},
    {"insecure_skip_verify": True},
    {"tls_verify": False},
    {"ca_bundle": ""},
]


def test_tls_is_verified_by_default_and_no_extra_switches_it_off(
    tls_simulator: TlsSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tls_simulator.sim.state.requests_seen
    for extra in VERIFY_OFF_EXTRAS:
        _define(monkeypatch, "tls_cisco", tls_simulator.connection(extra))
        for outcome in _get_device_sync_and_async("tls_cisco"):
            assert isinstance(outcome, (IoTFleetCertificateError, IoTFleetConfigurationError)), (
                extra,
                outcome,
            )
    assert tls_simulator.sim.state.requests_seen == seen  # no request got past the handshake


def test_only_the_ca_bundle_extra_changes_what_is_trusted(
    tls_simulator: TlsSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    _define(
        monkeypatch, "tls_cisco", tls_simulator.connection({"ca_bundle": str(tls_simulator.authority.cert)})
    )
    for outcome in _get_device_sync_and_async("tls_cisco"):
        assert isinstance(outcome, dict) and outcome["iccid"] == iccid_of(1), outcome
    # A bundle of another CA trusts that CA only: the server's certificate is still refused.
    _define(
        monkeypatch, "tls_cisco", tls_simulator.connection({"ca_bundle": str(tls_simulator.stranger.cert)})
    )
    for outcome in _get_device_sync_and_async("tls_cisco"):
        assert isinstance(outcome, IoTFleetCertificateError), outcome
