"""The shared transport core, driven directly and through a minimal vendor mapping."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import requests_mock as rm

from airflow_provider_iotfleet.exceptions import (
    IoTFleetAuthError,
    IoTFleetConfigurationError,
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetNotFoundError,
    IoTFleetRateLimitError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.http import (
    BackoffPolicy,
    Call,
    ErrorMapping,
    TokenBucket,
    VendorErrorBody,
    VendorHttpClient,
    map_batches,
    map_bounded,
    parse_retry_after,
)
from airflow_provider_iotfleet.http.config import normalise_base_url
from tests.fakes import FakeClock

BASE = "https://api.example.test"


def _parse(body: Any) -> VendorErrorBody:
    if not isinstance(body, dict):
        return VendorErrorBody()
    return VendorErrorBody(code=body.get("code"), message=body.get("msg"), request_id=body.get("rid"))


ERRORS = ErrorMapping(vendor="Example", parse_body=_parse, retryable_codes=frozenset({"BUSY"}))


def make_client(clock: FakeClock, **kwargs: Any) -> VendorHttpClient:
    return VendorHttpClient(
        base_url=BASE, errors=ERRORS, clock=clock, uniform=lambda low, high: high, **kwargs
    )


# --- retry policy and Retry-After -------------------------------------------------------------


def test_backoff_doubles_with_jitter_and_caps() -> None:
    policy = BackoffPolicy(backoff_base=1.0, backoff_max=8.0)
    assert [policy.delay(n, uniform=lambda lo, hi: hi) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert [policy.delay(n, uniform=lambda lo, hi: lo) for n in range(3)] == [0.5, 1.0, 2.0]


def test_retry_after_wins_over_backoff() -> None:
    policy = BackoffPolicy(max_retries=2, max_retry_after=60.0)
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert policy.next_delay(1, 60.0, waited_for_vendor=0.0, elapsed=0.0) == 60.0
    assert policy.next_delay(2, 1.0, waited_for_vendor=0.0, elapsed=0.0) is None
    assert policy.next_delay(0, 3600.0, waited_for_vendor=0.0, elapsed=0.0) is None


def test_a_long_retry_after_is_handed_to_airflow_not_slept_through(
    requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    requests_mock.get(
        f"{BASE}/things", status_code=429, headers={"Retry-After": "3600"}, json={"msg": "quota"}
    )
    with pytest.raises(IoTFleetRateLimitError) as caught:
        make_client(clock).send(Call("GET", "things"))
    assert caught.value.retry_after == 3600.0
    assert requests_mock.call_count == 1
    assert clock.sleeps == []


def test_parse_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT", now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2026 07:00:00 GMT", now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- the client's retry loop ------------------------------------------------------------------


def test_429_waits_as_retry_after_says_then_succeeds(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(
        f"{BASE}/things",
        [
            {
                "status_code": 429,
                "headers": {"Retry-After": "7"},
                "json": {"code": "429", "msg": "slow down"},
            },
            {"status_code": 200, "json": {"ok": True}},
        ],
    )
    reply = make_client(clock).send(Call("GET", "things"))
    assert reply.object() == {"ok": True}
    assert clock.sleeps == [7.0]


def test_retry_after_as_http_date_is_measured_from_the_clock(
    requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    requests_mock.get(
        f"{BASE}/things",
        [
            {"status_code": 503, "headers": {"Retry-After": "Sat, 21 Nov 2026 12:00:12 GMT"}},
            {"status_code": 200, "json": {}},
        ],
    )
    make_client(clock).send(Call("GET", "things"))
    assert clock.sleeps == [12.0]


def test_5xx_and_connection_errors_back_off_exponentially(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(
        f"{BASE}/things",
        [
            {"status_code": 500, "json": {"code": "E", "msg": "boom"}},
            {"exc": requests.ConnectionError("reset by peer")},
            {"status_code": 502, "text": "<html>bad gateway</html>"},
            {"status_code": 200, "json": {"n": 1}},
        ],
    )
    assert make_client(clock).send(Call("GET", "things")).field("n", int) == 1
    assert clock.sleeps == [1.0, 2.0, 4.0]


def test_retries_run_out_with_a_typed_error(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(
        f"{BASE}/things",
        status_code=429,
        headers={"Retry-After": "1", "X-Request-Id": "req-9"},
        json={"msg": "busy"},
    )
    with pytest.raises(IoTFleetRateLimitError) as caught:
        make_client(clock, retry=BackoffPolicy(max_retries=2)).send(Call("GET", "things"))
    assert requests_mock.call_count == 3
    error = caught.value
    assert (error.http_status, error.request_id, error.retry_after) == (429, "req-9", 1.0)
    assert "Example rejected GET /things: busy" in str(error)


def test_transport_failure_after_retries(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", exc=requests.ConnectTimeout("timed out"))
    with pytest.raises(IoTFleetTransportError, match="could not be completed: ConnectTimeout: timed out"):
        make_client(clock, retry=BackoffPolicy(max_retries=1)).send(Call("GET", "things"))
    assert requests_mock.call_count == 2


def test_vendor_named_throttling_code_is_retried(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", [{"status_code": 400, "json": {"code": "BUSY"}}, {"json": {}}])
    make_client(clock).send(Call("GET", "things"))
    assert requests_mock.call_count == 2


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, IoTFleetVendorResponseError),
        (401, IoTFleetAuthError),
        (403, IoTFleetAuthError),
        (404, IoTFleetNotFoundError),
        (409, IoTFleetVendorResponseError),
    ],
)
def test_client_errors_are_not_retried_and_carry_vendor_fields(
    requests_mock: rm.Mocker, clock: FakeClock, status: int, error_class: type[IoTFleetError]
) -> None:
    requests_mock.put(
        f"{BASE}/things/1", status_code=status, json={"code": "C1", "msg": "nope", "rid": "r-1"}
    )
    with pytest.raises(error_class) as caught:
        make_client(clock).send(Call("PUT", "things/1", json={}))
    assert requests_mock.call_count == 1
    assert (caught.value.http_status, caught.value.error_code, caught.value.request_id) == (
        status,
        "C1",
        "r-1",
    )
    assert caught.value.message == "Example rejected PUT /things/1: nope"


def test_non_json_success_is_a_clear_error_not_a_keyerror(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", text="<html>maintenance</html>")
    with pytest.raises(
        IoTFleetVendorResponseError, match="a body that is not JSON: '<html>maintenance</html>'"
    ):
        make_client(clock, retry=BackoffPolicy(max_retries=1)).send(Call("GET", "things"))
    assert requests_mock.call_count == 2  # a garbled 2xx is retried once, like a 5xx


def test_an_undecoded_answer_is_bytes_until_decoded_and_errors_stay_mapped(
    requests_mock: rm.Mocker, clock: FakeClock
) -> None:
    requests_mock.get(f"{BASE}/things", content=b'{"count": 3}')
    reply = make_client(clock).send(Call("GET", "things", decode=False))
    assert (reply.data, reply.body) == (None, b'{"count": 3}')
    assert reply.decoded().field("count", int) == 3
    assert reply.decoded().body is None
    requests_mock.get(f"{BASE}/garbled", text="<html>maintenance</html>")
    garbled = make_client(clock).send(Call("GET", "garbled", decode=False))
    assert requests_mock.call_count == 2  # not decoded, so not known to be garbled: not retried
    with pytest.raises(
        IoTFleetVendorResponseError, match="a body that is not JSON: '<html>maintenance</html>'"
    ):
        garbled.decoded()
    requests_mock.get(f"{BASE}/empty", text="")
    with pytest.raises(IoTFleetVendorResponseError, match="an empty body"):
        make_client(clock, retry=BackoffPolicy(max_retries=1)).send(Call("GET", "empty", decode=False))
    requests_mock.get(f"{BASE}/gone", status_code=404, json={"code": "C1", "message": "nope"})
    with pytest.raises(IoTFleetVendorResponseError) as caught:
        make_client(clock).send(Call("GET", "gone", decode=False))
    assert caught.value.http_status == 404


def test_wrongly_shaped_answers_name_the_field(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", json={"count": "three", "items": [1]})
    reply = make_client(clock).send(Call("GET", "things"))
    with pytest.raises(IoTFleetVendorResponseError, match="'count' of type str"):
        reply.field("count", int)
    with pytest.raises(IoTFleetVendorResponseError, match="no 'total' field"):
        reply.field("total", int)
    with pytest.raises(IoTFleetVendorResponseError, match="'items' items that are not JSON objects"):
        reply.objects("items")
    requests_mock.get(f"{BASE}/list", json=[1, 2])
    with pytest.raises(IoTFleetVendorResponseError, match="a list where a JSON object was expected"):
        make_client(clock).send(Call("GET", "list")).object()


def test_redirects_are_not_followed(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", status_code=302, headers={"Location": "https://elsewhere.test/"})
    with pytest.raises(IoTFleetVendorResponseError):
        make_client(clock).send(Call("GET", "things"))
    assert [r.url for r in requests_mock.request_history] == [f"{BASE}/things"]


def test_user_agent_names_the_provider(requests_mock: rm.Mocker, clock: FakeClock) -> None:
    requests_mock.get(f"{BASE}/things", json={})
    make_client(clock).send(Call("GET", "things"))
    assert requests_mock.last_request.headers["User-Agent"].startswith("airflow-provider-iotfleet/")


# --- rate limiter -----------------------------------------------------------------------------


def test_token_bucket_spaces_requests_at_the_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(5.0, clock=clock.monotonic, sleep=clock.sleep)
    start = clock.monotonic()
    for _ in range(11):
        bucket.acquire()
    assert clock.monotonic() - start == pytest.approx(2.0)


def test_token_bucket_refills_after_idle_time(clock: FakeClock) -> None:
    bucket = TokenBucket(2.0, capacity=3, clock=clock.monotonic, sleep=clock.sleep)
    for _ in range(3):
        assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(0.5)
    clock.advance(10.0)
    assert [bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]


def test_token_bucket_is_thread_safe() -> None:
    lock = threading.Lock()
    fake_time = [0.0]

    def now() -> float:
        with lock:
            return fake_time[0]

    def sleep(seconds: float) -> None:
        with lock:
            fake_time[0] += seconds

    bucket = TokenBucket(10.0, clock=now, sleep=sleep)
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(25)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 100 tokens at 10/s with one available at the start: at least 9.9 s of (fake) time must pass.
    assert fake_time[0] >= 9.9 - 1e-9


# --- bounded concurrency ----------------------------------------------------------------------


def test_map_bounded_keeps_order_and_every_outcome() -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()
    release = threading.Barrier(3)

    def work(n: int) -> int:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        if n < 3:
            release.wait(timeout=5)  # the first three run together: concurrency really is 3
        with lock:
            in_flight -= 1
        if n == 5:
            raise IoTFleetNotFoundError("no such device")
        return n * 10

    outcomes = map_bounded(work, range(8), max_concurrency=3)
    assert [o.item for o in outcomes] == list(range(8))
    assert [o.result for o in outcomes if o.ok] == [0, 10, 20, 30, 40, 60, 70]
    assert isinstance(outcomes[5].error, IoTFleetNotFoundError)
    assert most == 3


def test_map_bounded_lets_bugs_propagate() -> None:
    with pytest.raises(ZeroDivisionError):
        map_bounded(lambda n: 1 // n, [1, 0], max_concurrency=2)


# --- base URLs --------------------------------------------------------------------------------


def test_base_url_requires_https_except_on_loopback() -> None:
    assert normalise_base_url("https://rws.example.com/", None, "c") == "https://rws.example.com"
    assert normalise_base_url("http://127.0.0.1", 8080, "c") == "http://127.0.0.1:8080"
    assert normalise_base_url("http://localhost:9/cisco", None, "c") == "http://localhost:9/cisco"
    with pytest.raises(IoTFleetConfigurationError, match="must use https"):
        normalise_base_url("http://rws.example.com", None, "c")


def test_a_host_without_scheme_is_refused_not_guessed() -> None:
    # Guessing https for the simulator's 127.0.0.1:8765 used to end in slow, retried TLS errors.
    with pytest.raises(IoTFleetConfigurationError) as caught:
        normalise_base_url("127.0.0.1:8765", None, "Connection 'sim' (Example)")
    assert str(caught.value) == (
        "Connection 'sim' (Example): host '127.0.0.1:8765' has no scheme; write it as "
        "https://127.0.0.1:8765 (in a URI-form connection, percent-encode it: https%3A%2F%2F...)"
    )


def test_map_batches_with_two_in_flight_keeps_input_order_and_stops_after_refused_credentials() -> None:
    started = threading.Event()
    sent: list[int] = []
    lock = threading.Lock()

    def send(batch: list[int]) -> int:
        with lock:
            sent.append(batch[0])
        if batch[0] == 0:
            started.wait(5)  # the first answer lands after the second batch was sent
            return 0
        started.set()
        if batch[0] == 2:
            raise IoTFleetAuthError("refused", http_status=401)
        return batch[0]

    outcomes = map_batches(send, [[n] for n in range(8)], in_flight=2)
    assert [outcome.index for outcome in outcomes] == list(range(8))
    assert [outcome.items for outcome in outcomes] == [[n] for n in range(8)]
    assert outcomes[0].result == 0 and outcomes[1].result == 1
    assert isinstance(outcomes[2].error, IoTFleetAuthError)
    # at most one batch more was on its way when the credentials were refused; the rest were not sent
    assert len(sent) <= 4
    assert all(isinstance(outcome.error, IoTFleetNotAttemptedError) for outcome in outcomes[len(sent) :])


def test_map_batches_refuses_nothing_in_flight() -> None:
    with pytest.raises(ValueError, match="in_flight"):
        map_batches(lambda batch: batch, [[1]], in_flight=0)
