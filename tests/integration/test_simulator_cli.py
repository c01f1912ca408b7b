"""``python -m airflow_provider_iotfleet.simulator`` serves on loopback and prints usable connections."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys

import pytest

from airflow_provider_iotfleet.hooks.huawei import HuaweiRomaConnectHook
from airflow_provider_iotfleet.simulator.__main__ import parse_args
from airflow_provider_iotfleet.simulator.core import Faults

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cli_knobs_become_config() -> None:
    _, config = parse_args(
        [
            "--devices",
            "1000000",
            "--seed",
            "3",
            "--latency",
            "0.05",
            "--rate-limit",
            "cisco=5",
            "--rate-limit",
            "huawei=20",
            "--fault-server-error",
            "0.1",
            "--fault-token-expiry",
            "0.02",
        ]
    )
    assert (config.devices, config.seed, config.latency) == (1_000_000, 3, 0.05)
    assert config.rate_limits == {"cisco": 5.0, "huawei": 20.0}
    assert config.faults == Faults(server_error=0.1, token_expiry=0.02)
    with pytest.raises(SystemExit):
        parse_args(["--rate-limit", "nokia=5"])
    with pytest.raises(SystemExit):
        parse_args(["--devices", "2000000"])
    with pytest.raises(SystemExit):
        parse_args(["--fault-server-error", "0.7", "--fault-malformed-json", "0.7"])


def test_cli_prints_connections_that_work(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_iotfleet.simulator", "--port", str(port), "--devices", "50"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        exports = {}
        for line in process.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = shlex.split(value)[0]
            if line.startswith("# state:"):
                break
        assert set(exports) == {
            "AIRFLOW_CONN_PALOALTO_IOT_DEFAULT",
            "AIRFLOW_CONN_CISCO_CONTROL_CENTER_DEFAULT",
            "AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT",
            "AIRFLOW_CONN_VERIZON_THINGSPACE_DEFAULT",
        }
        assert (
            json.loads(exports["AIRFLOW_CONN_HUAWEI_ROMA_DEFAULT"])["host"]
            == f"http://127.0.0.1:{port}/huawei"
        )
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        ok, message = HuaweiRomaConnectHook().test_connection()
        assert ok, message
        assert "(50 devices)" in message
    finally:
        process.terminate()
        process.wait(timeout=10)
