"""A stand-in for ``airflow standalone``, and a driver that runs it under ``scripts/demo.py``'s ``serve``.

``python fake_standalone.py serve BEHAVIOUR HOME PORT STARTUP_TIMEOUT STOP_GRACE`` runs
``serve([python, this file, "standalone", BEHAVIOUR, HOME, PORT], ...)`` and exits with its code.
The stand-in then behaves as BEHAVIOUR says, in a second or less instead of a real Airflow's minute:

* ``parts-cannot-start``: as Airflow 3.3's standalone when ``airflow`` is not on PATH: it starts each
  part's process from a thread named after the part (``subprocess.Popen(["airflow", "scheduler"])``),
  each of which ends with ``FileNotFoundError`` (Python prints the tracebacks, interleaved), and goes
  on waiting, forever.
* ``garbled-reports``: prints the reports ``parts-cannot-start`` printed in one CI run, where the
  interleaving garbled half of the exception lines (``FileNotFoundErrorFileNotFoundError: ...``,
  ``FileNotFoundError:     [Errno 2] ...``), and goes on waiting, forever.
* ``exits``: exits with code 3.
* ``silent``: waits forever; no api-server ever answers.
* ``triggerer-down``: answers the health check with the triggerer unhealthy, forever.
* ``up``: answers the health check with every part healthy, has generated a password for ``admin``
  (``fake-password``), and started two processes that wait forever: one in its process group, one in a
  process group of its own that ignores SIGTERM (as Airflow's task processes each have a group).

Every process here has HOME in its command line, so that a test can look for what is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
PASSWORD = "fake-password"
#: A process that waits forever; the HOME argument marks it.
WAITER = (
    "import signal, sys\nif sys.argv[1] == 'stubborn': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "while True: signal.pause()"
)


#: Exactly as one CI run printed them (the tail of four tracebacks, interleaved).
GARBLED_REPORTS = """\
Exception in thread scheduler:
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1045, in _bootstrap_inner
    Exception in thread api-server:
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1045, in _bootstrap_inner
    Exception in thread Exception in thread dag-processor:
Traceback (most recent call last):
  File "/usr/lib/python3.11/threading.py", line 1045, in _bootstrap_inner
    triggerer:
Traceback (most recent call last):
  File "/usr/lib/python3.11/subprocess.py", line 1950, in _execute_child
FileNotFoundError:     [Errno 2] No such file or directory: 'airflow'
        raise child_exception_type(errno_num, err_msg, err_filename)
FileNotFoundError: [Errno 2] No such file or directory: 'airflow'
raise child_exception_type(errno_num, err_msg, err_filename)
raise child_exception_type(errno_num, err_msg, err_filename)
FileNotFoundErrorFileNotFoundError: [Errno 2] No such file or directory: 'airflow'
: [Errno 2] No such file or directory: 'airflow'
"""


def health_report(triggerer: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": now},
        "triggerer": {"status": triggerer, "latest_triggerer_heartbeat": now},
        "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": now},
    }


def answer_health(port: int, triggerer: str) -> None:
    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(health_report(triggerer)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()


def standalone(behaviour: str, home: str, port: int) -> int:
    print("standalone | Starting Airflow Standalone", flush=True)
    if behaviour == "exits":
        return 3
    if behaviour == "parts-cannot-start":
        empty = Path(home) / "no-airflow"
        empty.mkdir()
        for part in ("scheduler", "dag-processor", "api-server", "triggerer"):
            threading.Thread(
                target=subprocess.Popen,
                args=(["airflow", part],),
                kwargs={"env": {"PATH": str(empty)}},
                name=part,
            ).start()
    elif behaviour == "garbled-reports":
        print(GARBLED_REPORTS, end="", flush=True)
    elif behaviour == "triggerer-down":
        answer_health(port, "unhealthy")
    elif behaviour == "up":
        for kind, new_group in (("waiter", False), ("stubborn", True)):
            subprocess.Popen(
                [sys.executable, "-c", WAITER, kind, home], process_group=0 if new_group else None
            )
        Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).write_text(
            json.dumps({"admin": PASSWORD})
        )
        answer_health(port, "healthy")
        print("scheduler  | Starting the scheduler", flush=True)
    while True:  # up until a signal ends it, as standalone is
        signal.pause()


def serve(behaviour: str, home: str, port: int, startup_timeout: float, stop_grace: float) -> int:
    spec = importlib.util.spec_from_file_location("iotfleet_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.STOP_GRACE = stop_grace
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(Path(home) / "passwords.json"),
    }
    command = [sys.executable, __file__, "standalone", behaviour, home, str(port)]
    code: int = demo.serve(command, env, Path(home), port, startup_timeout)
    return code


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    role, behaviour, home, port, *times = sys.argv[1:]
    if role == "serve":
        sys.exit(serve(behaviour, home, int(port), float(times[0]), float(times[1])))
    sys.exit(standalone(behaviour, home, int(port)))
