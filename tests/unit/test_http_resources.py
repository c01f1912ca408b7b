"""Transport resources are always given back: a garbled answer can neither leak a connection nor make
the next call wait forever, and environment settings are resolved once per host, not per request."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import IoTFleetOutcomeUnknownError, IoTFleetTransportError
from airflow_provider_iotfleet.hooks.cisco import CiscoControlCenterHook
from airflow_provider_iotfleet.http import (
    BackoffPolicy,
    Call,
    ErrorMapping,
    VendorErrorBody,
    VendorHttpClient,
)
from tests.fakes import ICCID, FakeClock

# requests reads bodies in 10 KiB chunks; the bug needed a broken body larger than one chunk.
BROKEN_GZIP = gzip.compress(json.dumps({"iccid": "x" * 50_000}).encode())[:10] + b"\0" * 30_000


class _BrokenGzipHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(BROKEN_GZIP)))
        self.end_headers()
        self.wfile.write(BROKEN_GZIP)

    do_GET = do_PUT  # the read-back after a lost answer meets the same broken body

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on the broken body is the point of the test


@pytest.fixture
def broken_gzip_server() -> Iterator[str]:
    server = _QuietServer(("127.0.0.1", 0), _BrokenGzipHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(30)
def test_a_broken_gzip_answer_is_a_typed_error_and_the_next_call_does_not_hang(
    set_connection: Callable[..., None], broken_gzip_server: str
) -> None:
    # One connection slot, as Control Center's default: before the fix the first call leaked it
    # (ContentDecodingError escaped the client) and the second call waited for it forever.
    set_connection(
        "cisco_control_center_default",
        "cisco_control_center",
        host=broken_gzip_server,
        login="fleet-bot",
        password="api-key-1234567890",
        extra={"max_concurrency": 1, "max_retries": 0, "requests_per_second": 1000},
    )
    with CiscoControlCenterHook() as hook:
        for _ in range(3):  # each call gets the slot back: none waits for one the last call leaked
            (outcome,) = hook.edit_devices([{"iccid": ICCID, "status": "ACTIVATED"}])
            # The edit's answer is garbled and so is the read-back's: whether it applied is unknown,
            # and the cause is still the typed transport error, not a ContentDecodingError.
            error = outcome.error
            assert isinstance(error, IoTFleetOutcomeUnknownError)
            assert "ContentDecodingError" in error.message
            assert isinstance(error.__cause__, IoTFleetTransportError)
            assert "ContentDecodingError" in error.__cause__.message


def _client(clock: FakeClock, **kwargs: Any) -> VendorHttpClient:
    return VendorHttpClient(
        base_url="https://api.example.test",
        errors=ErrorMapping(vendor="Example", parse_body=lambda body: VendorErrorBody()),
        clock=clock,
        **kwargs,
    )


@pytest.mark.timeout(30)
def test_waiting_for_a_connection_slot_is_bounded(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get("https://api.example.test/things", json={"ok": True})
    client = _client(clock, max_connections=1, pool_timeout=0.2, retry=BackoffPolicy(max_retries=0))
    # A slot held elsewhere and never given back (the shape of a leak): the call gives up, typed.
    assert client._slots.acquire()
    with pytest.raises(IoTFleetTransportError, match=r"no free connection slot within 0\.2 s"):
        client.send(Call("GET", "things"))
    assert requests_mock.call_count == 0
    client._slots.release()
    assert client.send(Call("GET", "things")).object() == {"ok": True}


def test_environment_settings_are_resolved_once_per_host(
    requests_mock: rm.Mocker, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bundle = tmp_path / "corporate-ca.pem"
    bundle.write_text("not read by requests-mock")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.test:3128")
    requests_mock.get("https://api.example.test/things", json={})
    requests_mock.post("https://auth.example.test/token", json={})
    client = _client(clock)
    lookups: list[str] = []
    merge = client.session.merge_environment_settings

    def counting_merge(url: str, *args: Any) -> Any:
        lookups.append(url)
        return merge(url, *args)

    monkeypatch.setattr(client.session, "merge_environment_settings", counting_merge)
    for _ in range(5):
        client.send(Call("GET", "things"))
    client.send(Call("POST", "https://auth.example.test/token"))
    assert lookups == ["https://api.example.test", "https://auth.example.test"]
    first = requests_mock.request_history[0]
    assert first.verify == str(bundle)  # Session.send alone would have ignored REQUESTS_CA_BUNDLE
    assert first.proxies == {"https": "http://proxy.example.test:3128"}
