"""A fast ThingSpace peer for the FOTA benchmark: a threaded stdlib HTTP server in the benchmark's own
process that answers precomputed device pages, so a listing's figure shows the client's cost and not
the simulator's.

It answers only what a FOTA listing asks: the OAuth token, the M2M session login (both trivially,
any credentials) and ``GET /api/fota/v3/devices/{account}?lastSeenDeviceId=...``. No rate limit, no
validation; ``latency_s`` delays every device page (a tenant far away).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE_SIZE = 1000
#: The first IMEI's first 14 digits; each device adds one, and a Luhn check digit completes it.
_FIRST_IMEI_BODY = 35_000_000_000_000
_EPOCH = datetime(2021, 3, 1, tzinfo=UTC)


def _luhn_digit(body: str) -> int:
    total = 0
    for position, char in enumerate(reversed(body)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10


def _imei(index: int) -> str:
    body = str(_FIRST_IMEI_BODY + index)
    return body + str(_luhn_digit(body))


def _timestamp(value: datetime) -> str:
    # ThingSpace's own format, as the simulator writes it: 2020-11-10 15:35:00.122 +0000 UTC
    return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d} +0000 UTC"


def _device(index: int) -> dict[str, Any]:
    """One device as ThingSpace lists it, with timestamps of its own (no two devices alike)."""
    added = _EPOCH + timedelta(seconds=index * 37, milliseconds=index % 1000)
    updated = added + timedelta(days=30, seconds=index * 11)
    protocol = ("LWM2M", "OMADM", "HTTP")[index % 3]
    return {
        "deviceId": _imei(index),
        "mdn": f"{5550000000 + index}",
        "model": "GM01Q",
        "make": "SEQUANS COMMUNICATIONS",
        "firmware": f"SEQUANS-GM01Q-{index % 5}.0",
        "fotaEligible": protocol != "HTTP",
        "licenseAssigned": True,
        "status": "Active" if index % 10 else "Suspended",
        "protocol": protocol,
        "softwareList": [],
        ("filesList" if index % 2 == 0 else "fileList"): [],
        "createTime": _timestamp(added),
        "upgradeTime": _timestamp(updated),
        "statusTime": _timestamp(updated),
        "refreshTime": _timestamp(updated),
        "lastConnectionTime": "N/A" if index % 10 == 0 else _timestamp(updated + timedelta(days=3)),
    }


def build_pages(devices: int, account: str) -> dict[str, bytes]:
    """Return every page's JSON body, keyed by the ``lastSeenDeviceId`` that asks for it."""
    pages: dict[str, bytes] = {}
    last_seen = "0"
    for start in range(0, devices, PAGE_SIZE):
        page = [_device(index) for index in range(start, min(start + PAGE_SIZE, devices))]
        more = start + PAGE_SIZE < devices
        body: dict[str, Any] = {
            "accountName": account,
            "deviceCount": len(page),
            "deviceList": page,
            "hasMoreData": more,
        }
        if more:
            body["lastSeenDeviceId"] = page[-1]["deviceId"]
        pages[last_seen] = json.dumps(body).encode()
        last_seen = page[-1]["deviceId"]
    return pages


class FastPeer:
    """The server, started in a daemon thread: ``with FastPeer(devices, account) as peer: peer.url``.

    :param latency_s: how long each device page waits before it is answered.
    """

    def __init__(self, devices: int, account: str, *, latency_s: float = 0.0) -> None:
        self.pages = build_pages(devices, account)
        self.latency_s = latency_s
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server's root, ``http://127.0.0.1:PORT``."""
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FastPeer:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real tenant

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drain(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)

            def do_POST(self) -> None:
                self._drain()
                path = urlsplit(self.path).path
                if path == "/api/ts/v1/oauth2/token":
                    self._answer(
                        200, b'{"access_token":"fast-token","token_type":"Bearer","expires_in":3600}'
                    )
                elif path == "/api/m2m/v1/session/login":
                    self._answer(200, b'{"sessionToken":"fast-session"}')
                else:
                    self._answer(404, b'{"errorCode":"NotFound","errorMessage":"not here"}')

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                last_seen = parse_qs(parts.query).get("lastSeenDeviceId", ["0"])[0]
                body = peer.pages.get(last_seen) if parts.path.startswith("/api/fota/v3/devices/") else None
                if body is None:
                    self._answer(404, b'{"errorCode":"NotFound","errorMessage":"no such page"}')
                    return
                peer.requests += 1
                if peer.latency_s:
                    time.sleep(peer.latency_s)
                self._answer(200, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fast-peer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
