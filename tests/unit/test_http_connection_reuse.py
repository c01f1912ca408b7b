"""One hook, one pool: sequential calls share a TCP connection; a concurrent batch opens no more
connections than its concurrency. Counted on a real local socket server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from tests.fakes import luhn_complete
from tests.localserver import counting_server

ICCIDS = [luhn_complete(f"89011234567890{n:05d}") for n in range(40)]


def _connection(set_connection: Callable[..., None], url: str, max_concurrency: int) -> None:
    set_connection(
        "cisco_control_center_default",
        "cisco_control_center",
        host=url,
        login="fleet-bot",
        password="api-key-1234567890",
        extra={"requests_per_second": 10_000, "max_concurrency": max_concurrency},
    )


def test_sequential_calls_reuse_one_connection(set_connection: Callable[..., None]) -> None:
    def respond(method: str, path: str, body: bytes) -> tuple[int, Any]:
        return 200, {"iccid": path.rsplit("/", 1)[-1], "status": "ACTIVATED"}

    with counting_server(respond) as server:
        _connection(set_connection, server.url, 1)
        with CiscoControlCenterHook() as hook:
            statuses = [hook.get_device(iccid)["status"] for iccid in ICCIDS[:25]]
        assert statuses == ["ACTIVATED"] * 25
        assert server.requests == 25
        assert server.connections == 1


def test_concurrent_batch_opens_at_most_its_concurrency(set_connection: Callable[..., None]) -> None:
    concurrency = 4
    # The first `concurrency` requests wait for each other: proof that they were in flight together.
    all_in_flight = threading.Barrier(concurrency)
    seen = 0
    lock = threading.Lock()

    def respond(method: str, path: str, body: bytes) -> tuple[int, Any]:
        nonlocal seen
        with lock:
            seen += 1
            first_wave = seen <= concurrency
        if first_wave:
            all_in_flight.wait(timeout=10)
        return 200, {"iccid": path.rsplit("/", 1)[-1], **json.loads(body)}

    with counting_server(respond) as server:
        _connection(set_connection, server.url, concurrency)
        with CiscoControlCenterHook() as hook:
            outcomes = hook.edit_devices([{"iccid": iccid, "status": "ACTIVATED"} for iccid in ICCIDS])
        assert [o.item for o in outcomes] == ICCIDS
        assert all(o.ok and o.result and not o.result.scheduled for o in outcomes)
        assert not all_in_flight.broken
        assert server.requests == len(ICCIDS)
        assert server.connections == concurrency
