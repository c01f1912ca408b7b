"""The one mechanism for a write whose answer was lost: what it sends, reads, returns and raises."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetNotFoundError,
    IoTFleetOutcomeUnknownError,
    IoTFleetTransportError,
    IoTFleetVendorResponseError,
)
from airflow_provider_iotfleet.hooks.readback import (
    Applied,
    CannotTell,
    LostAnswerWording,
    NotApplied,
    Verdict,
    write_with_read_back,
)

LOG = logging.getLogger(__name__)
WORDING = LostAnswerWording[list[int]](
    vendor="Vendor",
    write=lambda ids: f"the change of {len(ids)} devices",
    bare_write="the change",
    read="the devices",
    risk="the vendor may have applied it",
    advice="check the devices before sending it again",
    bare_advice="check the devices",
)


def lost(message: str = "Unknown server error.") -> IoTFleetError:
    return IoTFleetVendorResponseError(
        f"Vendor: PUT /things failed: {message}",
        http_status=500,
        error_code="E500",
        request_id="rid-1",
        bare_message=message,
    )


def dropped() -> IoTFleetError:
    return IoTFleetTransportError("connection reset", may_have_reached_vendor=True)


@dataclass
class Vendor:
    """Answers each send and each read-back from a script, and records what was asked."""

    answers: list[IoTFleetError | str]
    verdicts: list[Verdict[list[int], str] | IoTFleetError] = field(default_factory=list)
    sent: list[list[int]] = field(default_factory=list)
    read: list[list[int]] = field(default_factory=list)

    def send(self, ids: list[int]) -> str:
        self.sent.append(ids)
        answer = self.answers.pop(0)
        if isinstance(answer, IoTFleetError):
            raise answer
        return answer

    def read_back(self, ids: list[int]) -> Verdict[list[int], str]:
        self.read.append(ids)
        verdict = self.verdicts.pop(0)
        if isinstance(verdict, IoTFleetError):
            raise verdict
        return verdict


def run(vendor: Vendor, rounds: int = 2, **options: object) -> str:
    return write_with_read_back(
        [1, 2, 3],
        send=vendor.send,
        read_back=vendor.read_back,
        wording=WORDING,
        rounds=rounds,
        log=LOG,
        **options,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("answers", "verdicts", "result", "sent", "read"),
    [
        pytest.param(["done"], [], "done", [[1, 2, 3]], [], id="answered"),
        pytest.param([lost()], [Applied("as read")], "as read", [[1, 2, 3]], [[1, 2, 3]], id="applied"),
        pytest.param(
            [dropped(), "done"],
            [NotApplied([1, 2, 3])],
            "done",
            [[1, 2, 3], [1, 2, 3]],
            [[1, 2, 3]],
            id="not-applied-sent-again",
        ),
        pytest.param(
            [lost(), lost(), "done"],
            [NotApplied([1, 2, 3]), NotApplied([3])],
            "done",
            [[1, 2, 3], [1, 2, 3], [3]],
            [[1, 2, 3], [1, 2, 3]],
            id="only-the-rest-sent-again",
        ),
    ],
)
def test_a_write_is_sent_again_only_when_a_read_back_shows_it_not_applied(
    answers: list[IoTFleetError | str],
    verdicts: list[Verdict[list[int], str]],
    result: str,
    sent: list[list[int]],
    read: list[list[int]],
) -> None:
    vendor = Vendor(answers, list(verdicts))
    assert run(vendor) == result
    assert (vendor.sent, vendor.read) == (sent, read)


def test_a_refusal_is_raised_as_it_is_and_never_read_back() -> None:
    refused = IoTFleetVendorResponseError("Vendor: refused", http_status=400)
    vendor = Vendor([refused])
    with pytest.raises(IoTFleetVendorResponseError) as caught:
        run(vendor)
    assert caught.value is refused
    assert vendor.read == []


@pytest.mark.parametrize(
    ("rounds", "sends", "how_often"),
    [(1, 2, "twice ({})"), (3, 4, "again and again (last: {})")],
)
def test_answers_lost_every_round_are_unknown_after_the_last_send(
    rounds: int, sends: int, how_often: str
) -> None:
    vendor = Vendor([lost()] * sends, [NotApplied([1, 2, 3])] * rounds)
    with pytest.raises(IoTFleetOutcomeUnknownError) as caught:
        run(vendor, rounds=rounds)
    error = caught.value
    assert (len(vendor.sent), len(vendor.read)) == (sends, rounds)  # no read after the last send
    assert error.message == (
        "Vendor: the answers to the change of 3 devices were lost "
        + how_often.format("Vendor: PUT /things failed: Unknown server error.")
        + "; the vendor may have applied it: check the devices before sending it again"
    )
    assert error.bare_message == (
        "the answers to the change were lost "
        + how_often.format("Unknown server error.")
        + "; the vendor may have applied it: check the devices"
    )
    assert (error.http_status, error.error_code, error.request_id, error.vendor) == (
        500,
        "E500",
        "rid-1",
        "Vendor",
    )


def test_a_read_back_that_fails_leaves_the_outcome_unknown_with_the_lost_answers_details() -> None:
    unreadable = lost("read failed")
    vendor = Vendor([lost()], [unreadable])
    with pytest.raises(IoTFleetOutcomeUnknownError) as caught:
        run(vendor)
    error = caught.value
    assert error.message == (
        "Vendor: the answer to the change of 3 devices was lost (Vendor: PUT /things failed: Unknown server "
        "error.) and reading the devices back failed too (Vendor: PUT /things failed: read failed); the vendor "
        "may have applied it: check the devices before sending it again"
    )
    assert error.bare_message == (
        "the answer to the change was lost (Unknown server error.) and reading the devices back failed too "
        "(read failed); check the devices"
    )
    assert (error.http_status, error.request_id) == (500, "rid-1")
    assert error.__cause__ is unreadable
    assert len(vendor.sent) == 1


def test_a_read_back_failure_says_the_risk_in_its_bare_message_when_the_wording_asks() -> None:
    wording = dataclasses.replace(WORDING, risk="some may be changed", bare_read_failure_says_risk=True)
    vendor = Vendor([lost()], [lost("read failed")])
    with pytest.raises(IoTFleetOutcomeUnknownError) as caught:
        write_with_read_back(
            [1, 2, 3], send=vendor.send, read_back=vendor.read_back, wording=wording, rounds=2, log=LOG
        )
    assert caught.value.bare_message == (
        "the answer to the change was lost (Unknown server error.) and reading the devices back failed too "
        "(read failed); some may be changed; check the devices"
    )


def test_a_conclusive_read_back_error_is_raised_as_it_is() -> None:
    missing = IoTFleetNotFoundError("Vendor: no such device", http_status=404)
    vendor = Vendor([lost()], [missing])
    with pytest.raises(IoTFleetNotFoundError) as caught:
        run(vendor, conclusive=(IoTFleetNotFoundError,))
    assert caught.value is missing


@pytest.mark.parametrize(
    ("read_back", "says", "bare"),
    [
        pytest.param(
            None,
            "and the vendor may have applied it; check the devices before sending it again",
            "and the vendor may have applied it; check the devices",
            id="cannot-be-read-back",
        ),
        pytest.param(
            lambda ids: CannotTell("none of them can be found"),
            "and none of them can be found: the vendor may have applied it; check the devices before sending "
            "it again",
            "and none of them can be found: the vendor may have applied it; check the devices",
            id="read-back-cannot-tell",
        ),
    ],
)
def test_a_write_whose_read_back_cannot_tell_is_unknown_and_not_sent_again(
    read_back: Callable[[list[int]], Verdict[list[int], str]] | None, says: str, bare: str
) -> None:
    vendor = Vendor([lost()])
    with pytest.raises(IoTFleetOutcomeUnknownError) as caught:
        write_with_read_back(
            [1, 2, 3], send=vendor.send, read_back=read_back, wording=WORDING, rounds=2, log=LOG
        )
    assert caught.value.message.endswith(
        f"was lost (Vendor: PUT /things failed: Unknown server error.) {says}"
    )
    assert caught.value.bare_message == f"the answer to the change was lost (Unknown server error.) {bare}"
    assert len(vendor.sent) == 1


def test_a_partial_read_back_is_merged_and_give_up_reports_what_never_applied() -> None:
    vendor = Vendor(
        [lost(), dropped()],
        [NotApplied([2, 3], settled="1 applied"), NotApplied([3], settled="2 applied")],
    )
    result = run(
        vendor,
        merge=lambda first, second: f"{first}, {second}",
        give_up=lambda ids, error: f"{ids} not applied after {error.message}",
    )
    assert result == "1 applied, 2 applied, [3] not applied after connection reset"
    # The last round reads back and gives up instead of sending once more.
    assert (vendor.sent, vendor.read) == ([[1, 2, 3], [2, 3]], [[1, 2, 3], [2, 3]])


def test_rounds_must_allow_one_read_back() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        run(Vendor(["done"]), rounds=0)
