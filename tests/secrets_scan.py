"""The secrets scan's tools: distinctive credentials (:class:`Book`), a record of every token a
simulator issues, a trap that keeps everything logged or printed meanwhile, a record of what
``dag.test()`` ran, the texts an exception or an object shows, and the scan for secrets in all of
them. The session's run of the example DAGs (``tests/example_runs.py``) and
``tests/examples/test_secrets_scan.py`` use them.

Every credential is ``PREFIX`` and 29 random letters and digits, so no log line, message or id holds
one by chance. The scan looks for each secret whole and for its first ``PARTIAL`` characters (a
truncated secret); the prefix is shorter than that, so the truncated form is random too. Simulator
tokens (``paloalto-<32 hex>``, ``verizon-session-<32 hex>``) are looked for whole and by the first
``PARTIAL`` characters of their random part.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import string
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import pytest
import structlog

from airflow_provider_iotfleet.simulator import Credentials, Simulator, SimulatorState, connections_for

PREFIX = "Zqx"
ALPHABET = string.ascii_letters + string.digits
#: A secret's first this many characters must not show either.
PARTIAL = 8
#: Characters of context shown around a hit (the secret itself replaced by its label).
CONTEXT = 100

Piece = tuple[str, str]  # (where, text)


def distinctive(rng: random.Random) -> str:
    return PREFIX + "".join(rng.choice(ALPHABET) for _ in range(29))


@dataclass(frozen=True)
class Secret:
    """A value that must show nowhere, and its truncated form (``None``: only the whole value)."""

    label: str
    value: str = field(repr=False)
    partial: str | None = field(default=None, repr=False)

    @classmethod
    def credential(cls, label: str, value: str) -> Secret:
        assert value.startswith(PREFIX), value
        return cls(label, value, value[:PARTIAL])

    @classmethod
    def token(cls, label: str, value: str) -> Secret:
        """A simulator token ``<kind>-<random hex>``; truncated, its random part's start."""
        random_part = value.rpartition("-")[2]
        assert len(random_part) >= 2 * PARTIAL, value
        return cls(label, value, random_part[:PARTIAL])


#: The simulator's secrets: field of ``Credentials`` -> label. Each has a wrong twin, as distinctive:
#: a secret the vendor refused must not show either.
SECRET_FIELDS = {
    "paloalto_access_key": "Palo Alto access key",
    "paloalto_client_secret": "Palo Alto SCM client secret",
    "cisco_api_key": "Cisco API key",
    "huawei_secret_key": "Huawei SK",
    "huawei_iam_password": "Huawei IAM password",
    "verizon_secret": "Verizon OAuth secret",
    "verizon_m2m_password": "Verizon M2M password",
}


@dataclass(frozen=True)
class Book:
    """A session's credentials: what the simulators accept, and the wrong ones."""

    credentials: Credentials
    wrong: dict[str, str] = field(repr=False)
    security_token: str = field(repr=False)  # Huawei temporary AK/SK's X-Security-Token

    @classmethod
    def draw(cls) -> Book:
        """Distinctive credentials, right and wrong, drawn afresh."""
        rng = random.SystemRandom()
        right = {name: distinctive(rng) for name in SECRET_FIELDS}
        wrong = {name: distinctive(rng) for name in SECRET_FIELDS}
        return cls(replace(Credentials(), **right), wrong, distinctive(rng))

    def secrets(self) -> list[Secret]:
        """Every secret of the book, right and wrong, and the HTTP Basic headers made of them."""
        c = self.credentials
        found = [Secret.credential(label, getattr(c, name)) for name, label in SECRET_FIELDS.items()]
        found += [
            Secret.credential(f"wrong {label}", self.wrong[name]) for name, label in SECRET_FIELDS.items()
        ]
        found.append(Secret.credential("Huawei security token", self.security_token))
        # HTTP Basic headers, right and wrong: a leaked Authorization header is a leaked secret.
        for user, name in (
            (c.cisco_username, "cisco_api_key"),
            (c.paloalto_client_id, "paloalto_client_secret"),
            (c.verizon_key, "verizon_secret"),
        ):
            for kind, password in (("", getattr(c, name)), ("wrong ", self.wrong[name])):
                basic = base64.b64encode(f"{user}:{password}".encode()).decode()
                found.append(Secret(f"{kind}{SECRET_FIELDS[name]}, HTTP Basic", basic))
        return found

    def default_connections(self, simulator: Simulator) -> dict[str, dict[str, Any]]:
        """The four default connections on ``simulator`` with the book's credentials (JSON form), as
        the example DAGs use them: Control Center at the rate ``scripts/demo.py`` gives it (the
        simulator enforces no rate limit), and ROMA Connect with a temporary AK/SK's security token."""
        default = connections_for(simulator.url, self.credentials)
        default["cisco_control_center_default"]["extra"] = {"requests_per_second": 100, "max_concurrency": 4}
        default["huawei_roma_default"]["extra"]["security_token"] = self.security_token
        return default


def env_name(conn_id: str) -> str:
    """The environment variable that defines connection ``conn_id``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


class IssuedTokens:
    """Every access token and ThingSpace session the watched simulators hand out, as ``(kind, token)``
    with kind ``paloalto``, ``huawei``, ``verizon`` or ``verizon-session`` (kept even after the
    simulator forgets a token it revoked or expired)."""

    def __init__(self) -> None:
        self.issued: list[tuple[str, str]] = []

    def watch(self, state: SimulatorState) -> None:
        issue_token, open_session = state.issue_token, state.open_session

        def recording_issue_token(kind: str, lifetime: float) -> str:
            token = issue_token(kind, lifetime)
            self.issued.append((kind, token))
            return token

        def recording_open_session() -> str:
            session = open_session()
            self.issued.append(("verizon-session", session))
            return session

        # Instance attributes shadow the methods, for this simulator only.
        setattr(state, "issue_token", recording_issue_token)  # noqa: B010
        setattr(state, "open_session", recording_open_session)  # noqa: B010

    def secrets(self) -> list[Secret]:
        return [Secret.token(f"{kind} token #{n}", token) for n, (kind, token) in enumerate(self.issued)]


def _airflows_mask_request(text: str) -> bool:
    """Whether a log line is Airflow's own ``Sending request`` debug line of a ``MaskSecret`` request.

    ``dag.test()``'s in-process supervisor logs the body of every request a task sends it, the secret
    the task asks it to mask included (a real supervisor logs these with the body omitted). Airflow's
    line under ``dag.test()`` only, not this provider's: left out of the scan.
    """
    return "Sending request" in text and "MaskSecret" in text


class _Tee:
    """A text stream that keeps a copy of everything written through it."""

    def __init__(self, stream: TextIO, sink: list[str]) -> None:
        self._stream = stream
        self._sink = sink

    def write(self, text: str) -> int:
        self._sink.append(text)
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Keep(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:  # the whole line (message, arguments, traceback), and the arguments as given
            self._sink.append(f"{self.format(record)} {record.args!r}")
        except Exception as error:  # a record that cannot be formatted is still looked at
            self._sink.append(f"{record.__dict__!r} (not formattable: {error!r})")


class Trap:
    """Keeps everything said while it is set, with the root logger at DEBUG:

    * ``records``: stdlib log records of every logger (urllib3, httpcore, Airflow), formatted;
    * ``raw_events``: structlog events as logged, before any processor (Airflow's secret masker
      included) touched them, so that the scan does not rely on the masker;
    * ``rendered``: structlog events as rendered for output, which under ``dag.test()`` is the task
      log (it writes no log files: the task logger renders to the console);
    * ``printed``: whatever went through ``sys.stdout`` / ``sys.stderr``.
    """

    def __init__(self) -> None:
        self.records: list[str] = []
        self.raw_events: list[str] = []
        self.rendered: list[str] = []
        self.printed: list[str] = []
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> Trap:
        handler = _Keep(self.records)
        root = logging.getLogger()
        level = root.level
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        self._undo += [lambda: root.removeHandler(handler), lambda: root.setLevel(level)]

        # Airflow does not cache loggers under pytest, so every logger runs this very list: changed
        # in place, and restored in place on exit.
        processors = structlog.get_config()["processors"]
        before, last = list(processors), processors[-1]

        def raw(logger: Any, name: str, event: Any) -> Any:
            self.raw_events.append(repr(event))
            return event

        def rendering(logger: Any, name: str, event: Any) -> Any:
            out = last(logger, name, event)
            self.rendered.append(out if isinstance(out, str) else repr(out))
            return out

        processors[:] = [raw, *before[:-1], rendering]
        self._processors = processors
        self._undo.append(lambda: processors.__setitem__(slice(None), before))

        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = (_Tee(stream, self.printed) for stream in streams)  # type: ignore[assignment]

        def restore_streams() -> None:
            sys.stdout, sys.stderr = streams

        self._undo.append(restore_streams)
        return self

    def __exit__(self, *exc_info: object) -> None:
        still_live = structlog.get_config()["processors"] is self._processors
        while self._undo:
            self._undo.pop()()
        # Had something reconfigured structlog meanwhile, events would have gone past the trap.
        assert still_live, "structlog was reconfigured while the trap was set"

    def pieces(self) -> dict[str, list[Piece]]:
        def kept(kind: str, texts: Iterable[str]) -> list[Piece]:
            return [(f"{kind} {n}", t) for n, t in enumerate(texts) if not _airflows_mask_request(t)]

        return {
            "stdlib log records": kept("record", self.records),
            "structlog events, raw": kept("event", self.raw_events),
            "task log, as rendered": kept("line", self.rendered),
            "stdout and stderr": kept("printed line", "".join(self.printed).splitlines()),
        }


# --- what dag.test() ran ----------------------------------------------------------------------


@dataclass
class Ran:
    """What ``dag.test()`` ran in this process: each task try's outcome (its error, its operator
    after use), and each trigger with its event."""

    tasks: list[tuple[str, Any]] = field(default_factory=list)  # ("dag_id.task_id[map]", TaskRunResult)
    triggers: list[tuple[str, Any, Any]] = field(default_factory=list)  # (task, trigger, event)

    def errors(self, dag_id: str) -> dict[str, BaseException]:
        """The error of each task of ``dag_id`` that raised one, by task id."""
        return {
            name.split(".", 1)[1]: result.error
            for name, result in self.tasks
            if name.startswith(f"{dag_id}.") and result.error is not None
        }


@contextmanager
def watching_dag_test(ran: Ran, turned: dict[str, str] | None = None) -> Iterator[None]:
    """Meanwhile, keep each task run's result and each inline trigger with its event in ``ran``;
    before a trigger runs, switch its connection to ``turned[conn_id]`` (JSON), if any."""
    from airflow.sdk.definitions import dag as dag_module
    from airflow.sdk.execution_time import supervisor

    turned = turned or {}
    run_task_in_process = supervisor.run_task_in_process
    run_inline_trigger = dag_module._run_inline_trigger

    def keeping_run_task_in_process(ti: Any, task: Any, *args: Any, **kwargs: Any) -> Any:
        result = run_task_in_process(ti, task, *args, **kwargs)
        index = "" if ti.map_index < 0 else f"[{ti.map_index}]"
        ran.tasks.append((f"{ti.dag_id}.{ti.task_id}{index}", result))
        return result

    def keeping_run_inline_trigger(trigger: Any, ti: Any) -> Any:
        conn_id = getattr(trigger, "conn_id", None)
        if conn_id in turned:
            os.environ[env_name(conn_id)] = turned[conn_id]
        event = run_inline_trigger(trigger, ti)
        ran.triggers.append((f"{ti.dag_id}.{ti.task_id}", trigger, event))
        return event

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(supervisor, "run_task_in_process", keeping_run_task_in_process)
        mp.setattr(dag_module, "_run_inline_trigger", keeping_run_inline_trigger)
        yield


# --- what an exception and an object show ------------------------------------------------------


def exception_texts(error: BaseException, where: str) -> list[Piece]:
    """Everything ``error`` shows: ``str``, ``repr``, traceback as printed, each attribute's ``repr``,
    and the same for its ``__cause__`` / ``__context__`` chain and exceptions held in attributes."""
    texts: list[Piece] = []
    seen: set[int] = set()
    queue: list[tuple[BaseException, str]] = [(error, where)]
    while queue:
        exc, label = queue.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        label = f"{label} ({type(exc).__name__})"
        texts += [
            (f"{label}: str", str(exc)),
            (f"{label}: repr", repr(exc)),
            (f"{label}: traceback", "".join(traceback.format_exception(exc))),
        ]
        for attribute, value in vars(exc).items():
            if isinstance(value, BaseException):
                queue.append((value, f"{label}.{attribute}"))
            else:
                texts.append((f"{label}.{attribute}", repr(value)))
        queue += [
            (linked, f"{label}.{link}")
            for link in ("__cause__", "__context__")
            if (linked := getattr(exc, link))
        ]
    return texts


def object_reprs(obj: object, where: str, depth: int = 4) -> list[Piece]:
    """``repr`` and ``str`` of ``obj`` and of every provider object it holds (its hook, the hook's
    settings, clients, auth strategies, token sources and caches), ``depth`` levels down.

    Plain values the objects hold (an auth's header dict, a cache's token) are not shown: keeping a
    credential is what they are for; showing it is what must not happen.
    """
    texts: list[Piece] = []
    seen: set[int] = set()

    def visit(value: object, label: str, level: int) -> None:
        if id(value) in seen:
            return
        seen.add(id(value))
        label = f"{label} ({type(value).__name__})"
        texts.extend([(f"{label}: repr", repr(value)), (f"{label}: str", str(value))])
        if level < depth:
            for name, held in _held(value):
                for item in _flatten(held):
                    if type(item).__module__.startswith("airflow_provider_iotfleet."):
                        visit(item, f"{label}.{name}", level + 1)

    visit(obj, where, 0)
    return texts


def _held(value: object) -> Iterator[tuple[str, object]]:
    yield from getattr(value, "__dict__", {}).items()
    for name in getattr(type(value), "__slots__", ()):
        if hasattr(value, name):
            yield name, getattr(value, name)


def _flatten(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


# --- the scan ----------------------------------------------------------------------------------


def scan(secrets: Iterable[Secret], pieces: Iterable[Piece]) -> list[str]:
    """One line per secret found: which, whole or truncated, where, and the text around it (the
    secret replaced by its label)."""
    pieces = list(pieces)
    everything = "\0".join(text for _, text in pieces)
    hits = []
    for secret in secrets:
        for form, needle in (("whole", secret.value), (f"first {PARTIAL} characters", secret.partial)):
            if not needle or needle not in everything:
                continue
            where, text = next(piece for piece in pieces if needle in piece[1])
            at = text.index(needle)
            context = text[max(0, at - CONTEXT) : at + len(needle) + CONTEXT]
            context = context.replace(secret.value, f"<{secret.label}>").replace(
                needle, f"<{secret.label}[:{PARTIAL}]>"
            )
            hits.append(f"{secret.label} ({form}) in {where}: ...{context}...")
            break  # the whole secret holds its truncated form
    return hits
