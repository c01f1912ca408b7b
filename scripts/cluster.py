"""``make cluster``: the example DAGs on a small Airflow cluster, as deployments run them.

Everything runs on this machine under one throwaway folder, as the current user (PostgreSQL, which
refuses to run as root, as the ``postgres`` user when the script runs as root):

- PostgreSQL, a private cluster (``initdb``) on a free loopback port: the metadata DB;
- Redis on a free loopback port, without persistence: the Celery broker;
- Airflow with the CeleryExecutor: scheduler, dag-processor, triggerer, api-server, and
  :data:`WORKERS` ``airflow celery worker`` processes with distinct Celery hostnames (also the
  hostname each records on the task instances it runs);
- the vendor simulator (``scripts/demo.py``'s), its connections exported to every part.

Each part runs in a session (process group) of its own, its output in ``logs/<part>.log``; stopping
(Ctrl-C, SIGTERM or SIGHUP) ends every process of every group and every process below them, so that
nothing is left running. The tests (``tests/cluster``) use :class:`Cluster` with a simulator of their own.
"""

from __future__ import annotations

import argparse
import base64
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil  # an Airflow dependency

sys.path.insert(0, str(Path(__file__).resolve().parent))
# scripts/ is no package: demo.py is imported as the module beside this one.
from demo import (
    AIRFLOW,
    advance_past_pending,
    airflow_env,
    free_port,
    interrupting,
    scale_out_pool,
    simulator_running,
)

#: Celery worker processes, and the tasks each runs at once.
WORKERS = 2
WORKER_CONCURRENCY = 2
#: The Airflow parts other than the workers, each run as ``airflow <part>``.
PARTS = ("scheduler", "dag-processor", "triggerer", "api-server")
#: How long PostgreSQL and Redis may take to accept connections, s.
SERVICE_TIMEOUT = 60.0
#: Seconds the processes get to end on SIGTERM before SIGKILL.
STOP_GRACE = 15.0
POLL_INTERVAL = 0.25
#: The Debian packages that provide what the cluster needs, by the program looked for.
PROGRAMS = {"initdb": "postgresql", "postgres": "postgresql", "redis-server": "redis-server"}
#: The hostname callable the workers are given (``[core] hostname_callable``): each records its own
#: name on the task instances it runs, although all run on this machine.
HOSTNAME_MODULE = """import os


def hostname() -> str:
    return os.environ["IOTFLEET_CLUSTER_HOSTNAME"]
"""


def find_program(name: str) -> str | None:
    """The path of ``name``: on PATH, else in Debian's PostgreSQL folders (not on PATH there)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def missing_programs() -> dict[str, str]:
    """The programs the cluster needs that are not installed, each with the package that has it."""
    return {name: package for name, package in PROGRAMS.items() if find_program(name) is None}


class ClusterError(RuntimeError):
    """A part of the cluster could not be set up or started; the message says which and where to look."""


class Cluster:
    """PostgreSQL, Redis and Airflow on the CeleryExecutor, under ``home``.

    :param home: an empty folder for everything (the AIRFLOW_HOME, the databases, the logs).
    :param extra_env: more environment for every Airflow process (the connections, the DAG folder).
    :param workers: how many Celery worker processes to start.
    :param concurrency: the tasks each worker runs at once.
    """

    def __init__(
        self,
        home: Path,
        extra_env: dict[str, str],
        workers: int = WORKERS,
        concurrency: int = WORKER_CONCURRENCY,
    ) -> None:
        self.home = home
        self.logs = home / "logs"
        self.workers = [f"worker-{n}" for n in range(1, workers + 1)]
        self.concurrency = concurrency
        self.pg_port = free_port()
        self.redis_port = free_port()
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.db_url = f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"
        self.broker_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = self._environment(extra_env)
        self.pg_data: Path | None = None
        #: the parts :meth:`kill` ended
        self.killed: set[str] = set()
        #: part name -> its process (each the leader of its own process group)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    # --- configuration --------------------------------------------------------------------------

    def _environment(self, extra_env: dict[str, str]) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW_", "AIRFLOW__", "PYTEST_"))
        }
        env.update(extra_env)
        env.update(
            {
                "PATH": os.pathsep.join(filter(None, (str(AIRFLOW.parent), os.environ.get("PATH")))),
                "PYTHONUNBUFFERED": "1",
                "NO_COLOR": "1",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.db_url,
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": self.broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.db_url}",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.home / "passwords.json"),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                # A task whose worker died is failed (and retried) after this long without a
                # heartbeat, not after Airflow's default of 5 minutes.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            }
        )
        return env

    def worker_env(self, worker: str) -> dict[str, str]:
        return {
            **self.env,
            "IOTFLEET_CLUSTER_HOSTNAME": worker,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "iotfleet_cluster_hostname.hostname",
            "PYTHONPATH": os.pathsep.join(
                filter(None, (str(self.home / "python"), self.env.get("PYTHONPATH")))
            ),
            # Each worker serves its task logs on a port of its own.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }

    # --- start -----------------------------------------------------------------------------------

    def start(self, pools: dict[str, int] | None = None) -> None:
        """Start PostgreSQL and Redis, create the metadata DB and ``pools`` (name -> slots), then
        every Airflow part.

        :raises ClusterError: naming the part that failed and its log, or the programs missing.
        """
        if missing := missing_programs():
            raise ClusterError(
                "not installed: "
                + ", ".join(f"{name} (Debian package {package})" for name, package in missing.items())
                + ": run scripts/cluster_deps.sh"
            )
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.home / "python").mkdir(exist_ok=True)
        (self.home / "python" / "iotfleet_cluster_hostname.py").write_text(HOSTNAME_MODULE)
        self._start_postgres()
        self._start_redis()
        self._airflow("db", "migrate")
        for name, slots in (pools or {}).items():
            self._airflow("pools", "set", name, str(slots), f"{name}: tasks at once")
        for part in PARTS:
            self._spawn(part, [str(AIRFLOW), *part.split()], self.env)
        for worker in self.workers:
            command = [str(AIRFLOW), "celery", "worker", "--celery-hostname", worker]
            command += ["--concurrency", str(self.concurrency)]
            self._spawn(worker, command, self.worker_env(worker))

    def _spawn(
        self, part: str, command: list[str], env: dict[str, str], user: str | None = None
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{part}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                cwd=self.home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=user,
            )
        self.processes[part] = process
        return process

    def _start_postgres(self) -> None:
        # PostgreSQL refuses to run as root: then its files and process belong to "postgres".
        user = "postgres" if os.geteuid() == 0 else None
        # Outside the home, which only the current user may enter; removed when the cluster stops.
        data = self.pg_data = Path(tempfile.mkdtemp(prefix="iotfleet-cluster-pg-"))
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(data, account.pw_uid, account.pw_gid)
        initdb = subprocess.run(
            [str(find_program("initdb")), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"],
            capture_output=True,
            user=user,
            check=False,
        )
        (self.logs / "initdb.log").write_bytes(initdb.stdout + initdb.stderr)
        if initdb.returncode:
            raise ClusterError(f"initdb failed: see {self.logs / 'initdb.log'}")
        self._spawn(
            "postgres",
            [
                str(find_program("postgres")),
                "-D",
                str(data),
                "-p",
                str(self.pg_port),
                "-k",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=200",
                # Throwaway data: no need to survive a crash.
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            dict(os.environ),
            user=user,
        )
        self._wait_for_service("postgres", lambda: self._create_database())

    def _create_database(self) -> bool:
        import psycopg2

        try:
            connection = psycopg2.connect(
                host="127.0.0.1", port=self.pg_port, user="airflow", dbname="postgres"
            )
        except psycopg2.OperationalError:
            return False
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = 'airflow'")
            if cursor.fetchone() is None:
                cursor.execute("CREATE DATABASE airflow")
        connection.close()
        return True

    def _start_redis(self) -> None:
        redis_dir = self.home / "redis"
        redis_dir.mkdir()
        self._spawn(
            "redis",
            [
                str(find_program("redis-server")),
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir),
            ],
            dict(os.environ),
        )

        def answers() -> bool:
            import redis

            try:
                return bool(redis.Redis(port=self.redis_port, socket_timeout=2).ping())
            except redis.RedisError:
                return False

        self._wait_for_service("redis", answers)

    def _wait_for_service(self, part: str, ready: Any) -> None:
        deadline = time.monotonic() + SERVICE_TIMEOUT
        while not ready():
            process = self.processes[part]
            if process.poll() is not None:
                raise ClusterError(f"{part} exited with {process.returncode}: see {self.logs / part}.log")
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{part} did not answer within {SERVICE_TIMEOUT:g} s: see {self.logs / part}.log"
                )
            time.sleep(POLL_INTERVAL)

    def _airflow(self, *args: str) -> None:
        log = self.logs / f"airflow-{args[0]}-{args[1]}.log"
        with log.open("ab") as out:
            code = subprocess.run(
                [str(AIRFLOW), *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, check=False
            ).returncode
        if code:
            raise ClusterError(f"airflow {' '.join(args[:2])} failed: see {log}")

    # --- run -------------------------------------------------------------------------------------

    def exited(self) -> dict[str, int]:
        """The parts whose process has ended, with its exit code."""
        return {
            part: code for part, process in self.processes.items() if (code := process.poll()) is not None
        }

    def tree(self, part: str | None = None) -> list[psutil.Process]:
        """The processes of ``part`` (every part when None), with every process below them."""
        found = []
        for name, process in self.processes.items():
            if part is not None and name != part:
                continue
            with suppress(psutil.Error):
                root = psutil.Process(process.pid)
                found += [root, *root.children(recursive=True)]
        return found

    def kill(self, part: str) -> None:
        """SIGKILL a part's process group and every process below it, as a lost machine ends them."""
        self.killed.add(part)
        self._signal(part, self.tree(part), signal.SIGKILL)

    def _signal(self, part: str, tree: list[psutil.Process], signum: int) -> None:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.processes[part].pid, signum)
        for process in tree:
            with suppress(psutil.Error):
                process.send_signal(signum)  # psutil checks that the pid is still that process's

    # --- stop ------------------------------------------------------------------------------------

    def stop(self) -> list[psutil.Process]:
        """End every process the cluster started: Airflow's parts first, then Redis and PostgreSQL;
        SIGTERM, then SIGKILL for whatever is left after :data:`STOP_GRACE` s.

        :returns: every process seen while stopping (all ended, unless one could not be killed).
        """
        seen: list[psutil.Process] = []
        order = [part for part in self.processes if part not in ("redis", "postgres")]
        for group in (order, [part for part in ("redis", "postgres") if part in self.processes]):
            trees = {part: self.tree(part) for part in group}
            seen += [process for tree in trees.values() for process in tree]
            for part, tree in trees.items():
                # PostgreSQL's fast shutdown is SIGINT; SIGTERM waits for every client to leave.
                self._signal(part, tree, signal.SIGINT if part == "postgres" else signal.SIGTERM)
            deadline = time.monotonic() + STOP_GRACE
            while any(_alive(p) for tree in trees.values() for p in tree) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
            for part, tree in trees.items():
                self._signal(part, tree + self.tree(part), signal.SIGKILL)
                with suppress(subprocess.TimeoutExpired):
                    self.processes[part].wait(timeout=STOP_GRACE)
        if self.pg_data is not None:
            shutil.rmtree(self.pg_data, ignore_errors=True)
        return seen


def _alive(process: psutil.Process) -> bool:
    with suppress(psutil.Error):
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=WORKERS, help="Celery worker processes")
    args = parser.parse_args()
    if missing := missing_programs():
        print(
            "missing: "
            + ", ".join(f"{name} (Debian package {package})" for name, package in missing.items())
            + "; run scripts/cluster_deps.sh (apt-get, as root)"
        )
        return 1
    home = Path(tempfile.mkdtemp(prefix="iotfleet-cluster-"))
    print(f"cluster home: {home} (logs in {home / 'logs'})", flush=True)
    try:
        with interrupting(signal.SIGTERM, signal.SIGHUP), simulator_running() as simulator:
            env = {**airflow_env(home, simulator), "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
            cluster = Cluster(
                home,
                {k: v for k, v in env.items() if k.startswith("AIRFLOW") or k.startswith("IOTFLEET")},
                args.workers,
            )
            stop = threading.Event()
            threading.Thread(target=advance_past_pending, args=(simulator, stop), daemon=True).start()
            try:
                pool, slots = scale_out_pool()
                cluster.start({pool: slots})
                print(
                    f"CeleryExecutor, PostgreSQL on port {cluster.pg_port}, Redis on port {cluster.redis_port}, "
                    f"{len(cluster.workers)} workers; the API at {cluster.api_url} (user admin, password in "
                    f"{home / 'passwords.json'}); Ctrl-C stops everything",
                    flush=True,
                )
                while not (exited := cluster.exited()):
                    time.sleep(1.0)
                print(f"stopped by itself: {exited}; see {cluster.logs}")
                return 1
            except ClusterError as error:
                print(f"the cluster could not start: {error}")
                return 1
            finally:
                stop.set()
                print("stopping the cluster ...", flush=True)
                cluster.stop()
                print("cluster stopped", flush=True)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
