"""A local, stateful simulator of the four vendor APIs, for trying the provider, demos and tests.

Start it from Python::

    from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(devices=2000)) as sim:
        os.environ.update(sim.airflow_env())  # AIRFLOW_CONN_* for the four default connection ids
        ...
        sim.state.advance(3600)               # move the simulator clock
        sim.state.snapshot()                  # what changed
        sim.state.requests                    # who sent what (sim.state.per_device_writes(): how often)
        sim.state.revoke("verizon", "session")  # every ThingSpace session expires now
        sim.state.inject_faults(Faults(server_error=0.6), ["cisco"], writes_only=True)  # an outage...
        sim.state.clear_faults()              # ...until now
        sim.state.snapshot()["campaigns"]     # ThingSpace firmware campaigns and their devices

or from a shell: ``python -m airflow_provider_iotfleet.simulator --port 8765``.

Every vendor API is served under a prefix (``/cisco/rws/api/v1/...``, what :meth:`Simulator.connections`
use) and at the vendor's real path at the root (``/rws/api/v1/...``), for the vendors' own SDKs.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn

from airflow_provider_iotfleet.simulator.app import create_app
from airflow_provider_iotfleet.simulator.core import Credentials, Faults, SimulatorConfig, SimulatorState

__all__ = ["Credentials", "Faults", "Simulator", "SimulatorConfig", "SimulatorState", "connections_for"]


def connections_for(base_url: str, credentials: Credentials) -> dict[str, dict[str, Any]]:
    """Return the JSON-form Airflow connections that reach a simulator at ``base_url``."""
    return {
        "paloalto_iot_default": {
            "conn_type": "paloalto_iot",
            "host": f"{base_url}/paloalto",
            "login": credentials.paloalto_key_id,
            "password": credentials.paloalto_access_key,
            "extra": {"customer_id": credentials.paloalto_customer_id},
        },
        "cisco_control_center_default": {
            "conn_type": "cisco_control_center",
            "host": f"{base_url}/cisco",
            "login": credentials.cisco_username,
            "password": credentials.cisco_api_key,
        },
        "huawei_roma_default": {
            "conn_type": "huawei_roma",
            "host": f"{base_url}/huawei",
            "login": credentials.huawei_access_key,
            "password": credentials.huawei_secret_key,
            "extra": {
                "project_id": credentials.huawei_project_id,
                "instance_id": credentials.huawei_instance_id,
            },
        },
        "verizon_thingspace_default": {
            "conn_type": "verizon_thingspace",
            "host": f"{base_url}/verizon",
            "login": credentials.verizon_key,
            "password": credentials.verizon_secret,
            "extra": {
                "m2m_username": credentials.verizon_m2m_username,
                "m2m_password": credentials.verizon_m2m_password,
                "account_name": credentials.verizon_account,
            },
        },
    }


class Simulator:
    """The simulator served by uvicorn on 127.0.0.1 from a background thread.

    :param config: fleet size, seed and knobs.
    :param port: the port to listen on; 0 picks a free one.
    """

    def __init__(self, config: SimulatorConfig | None = None, port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.state = SimulatorState(self.config)
        self.app = create_app(self.state)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", port))
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, log_level="warning", lifespan="off", access_log=False, timeout_keep_alive=30
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; return once the server accepts connections."""
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="iotfleet-simulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start on port {self.port} within {timeout} s")
            time.sleep(0.01)
        return self

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C interrupts the wait)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stop serving and wait for the server thread to end."""
        self.state.stopping.set()  # answers held by applied_then_delayed go out now
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def connections(self) -> dict[str, dict[str, Any]]:
        """The JSON-form Airflow connections for the four default connection ids."""
        return connections_for(self.url, self.config.credentials)

    def airflow_env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` environment variables for the four default connection ids."""
        return {
            f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(conn)
            for conn_id, conn in self.connections().items()
        }
