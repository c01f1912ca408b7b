"""A write whose answer was lost: read back what really happened rather than send it again blindly.

A lost answer (the connection failed after the request may have left, a 2xx body was garbled, a 5xx
other than 503: see :func:`~airflow_provider_iotfleet.http.retry.answer_lost`) says nothing of
whether the vendor applied the write, and sending it again could apply it twice (schedule a change
twice, or answer the second activation "already activated"). So the hook reads back, sends again only
what the read shows surely not applied, and does so a bounded number of rounds. Whatever cannot be
told is an :class:`~airflow_provider_iotfleet.exceptions.IoTFleetOutcomeUnknownError`, worded here
for every vendor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetOutcomeUnknownError
from airflow_provider_iotfleet.http.retry import answer_lost

WriteT = TypeVar("WriteT")
ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class Applied(Generic[ResultT]):
    """The read-back shows the write applied; ``result`` is what the caller gets, as if answered."""

    result: ResultT


@dataclass(frozen=True)
class NotApplied(Generic[WriteT, ResultT]):
    """The read-back shows ``rest`` surely not applied (the whole write, or what is left of it), so it
    may be sent again; ``settled`` is what it found of the other part of the write (devices already
    done, say), when it settled some."""

    rest: WriteT
    settled: ResultT | None = None


@dataclass(frozen=True)
class CannotTell:
    """The read-back cannot tell whether the write applied.

    :ivar reason: why, as the error says it after "and": ``"no campaign of that name can be found"``.
    """

    reason: str


#: What a read-back found, for :func:`write_with_read_back` (``Verdict[WriteT, ResultT]``).
Verdict: TypeAlias = NotApplied[WriteT, ResultT] | Applied[ResultT] | CannotTell


@dataclass(frozen=True)
class LostAnswerWording(Generic[WriteT]):
    """How the log lines and errors about one kind of write name it and say what to do.

    Every ``bare_`` text goes into an error's ``bare_message``: it names no device, path or count,
    so that the same failure of many devices is one group in an outcome.

    :ivar vendor: the vendor's display name, which starts every message.
    :ivar write: names a write, or the part of it sent again: ``"the edit of 8988..."``.
    :ivar bare_write: ``"the edit"``.
    :ivar read: what a read-back reads, as in "reading the device back".
    :ivar risk: what the vendor may have done: ``"Control Center may have applied it"``.
    :ivar bare_read: ``read`` for ``bare_message``, when ``read`` names something; default: ``read``.
    :ivar advice: what to do about it: ``"check the device before sending it again"``.
    :ivar bare_advice: the same for ``bare_message``; without it, read-back failures say only
        what failed.
    :ivar bare_read_failure_says_risk: whether a failed read-back's ``bare_message`` says ``risk``
        too, as every other ``bare_message`` does; for a risk that names nothing
        (``"some may be changed"``), so that it still groups.
    """

    vendor: str
    write: Callable[[WriteT], str]
    bare_write: str
    read: str
    risk: str
    bare_read: str | None = None
    advice: str | None = None
    bare_advice: str | None = None
    bare_read_failure_says_risk: bool = False

    def cannot_tell(
        self, write: WriteT, lost: IoTFleetError, reason: str | None
    ) -> IoTFleetOutcomeUnknownError:
        """The error for a lost answer that cannot be read back, or whose read-back cannot tell
        (``reason``)."""
        because = f"{reason}: " if reason else ""
        return self._unknown(
            lost,
            f"the answer to {self.write(write)} was lost ({lost.message}) and {because}{self.risk}"
            + _then("; ", self.advice),
            f"the answer to {self.bare_write} was lost ({lost.bare_message}) and {because}{self.risk}"
            + _then("; ", self.bare_advice),
        )

    def unreadable(
        self, write: WriteT, lost: IoTFleetError, failure: IoTFleetError
    ) -> IoTFleetOutcomeUnknownError:
        """The error for a lost answer whose read-back failed too (``failure``)."""
        bare_read = self.bare_read or self.read
        return self._unknown(
            lost,
            f"the answer to {self.write(write)} was lost ({lost.message}) and reading {self.read} back "
            f"failed too ({failure.message}); {self.risk}" + _then(": ", self.advice),
            f"the answer to {self.bare_write} was lost ({lost.bare_message}) and reading {bare_read} "
            f"back failed too ({failure.bare_message})"
            + _then("; ", self.risk if self.bare_read_failure_says_risk else None)
            + _then("; ", self.bare_advice),
        )

    def lost_every_time(
        self, write: WriteT, lost: IoTFleetError, answers: int
    ) -> IoTFleetOutcomeUnknownError:
        """The error for a write whose ``answers`` answers were all lost (``lost`` the last one)."""

        def how_often(last: str) -> str:
            return f"twice ({last})" if answers == 2 else f"again and again (last: {last})"

        return self._unknown(
            lost,
            f"the answers to {self.write(write)} were lost {how_often(lost.message)}; {self.risk}"
            + _then(": ", self.advice),
            f"the answers to {self.bare_write} were lost {how_often(lost.bare_message)}; {self.risk}"
            + _then(": ", self.bare_advice),
        )

    def _unknown(self, lost: IoTFleetError, message: str, bare_message: str) -> IoTFleetOutcomeUnknownError:
        # The lost answer's status, code and request id: what the vendor's support desk can look up.
        return IoTFleetOutcomeUnknownError(
            f"{self.vendor}: {message}",
            vendor=self.vendor,
            bare_message=bare_message,
            **lost.answer_details(),
        )


def _then(separator: str, text: str | None) -> str:
    return f"{separator}{text}" if text else ""


def write_with_read_back(
    write: WriteT,
    *,
    send: Callable[[WriteT], ResultT],
    read_back: Callable[[WriteT], Verdict[WriteT, ResultT]] | None,
    wording: LostAnswerWording[WriteT],
    rounds: int,
    log: logging.Logger,
    conclusive: tuple[type[IoTFleetError], ...] = (),
    merge: Callable[[ResultT, ResultT], ResultT] | None = None,
    give_up: Callable[[WriteT, IoTFleetError], ResultT] | None = None,
) -> ResultT:
    """Send ``write``; when its answer is lost, read back, and send again only what surely did not apply.

    Each round reads back once: applied ends it with that result; not applied sends the rest again,
    and a lost answer to that starts the next round. Without ``give_up``, the answer to the last
    round's send being lost too leaves the outcome unknown; with it, the last round sends nothing
    and ``give_up`` reports what is still not applied.

    :param send: sends a write (``repeat="if-not-received"``: the client must not repeat it either)
        and returns what the vendor answered.
    :param read_back: tells what became of a write whose answer was lost; ``None`` when the write
        cannot be read back (a scheduled change), so that a lost answer is unknown at once.
    :param wording: how log lines and errors name the write.
    :param rounds: read-backs at most, at least 1.
    :param log: where to say that an answer was lost and what reading back found.
    :param conclusive: read-back errors that settle the write and are raised as they are (a device
        the vendor does not know: no write to it can have applied); any other read-back error
        leaves the outcome unknown.
    :param merge: joins what a partial read-back settled (:attr:`NotApplied.settled`) with what
        came of the rest; needed only by read-backs that settle part of a write.
    :param give_up: reports a write the last round shows not applied (with the last lost answer's
        error), instead of sending it once more.
    :return: the vendor's answer to the write, or what reading back showed, with ``merge``.
    :raises IoTFleetOutcomeUnknownError: when the write may have applied and reading back cannot
        tell: it cannot be read, reading failed, it said so, or every answer was lost.
    :raises IoTFleetError: any error of a send that is not a lost answer, and ``conclusive`` ones.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    try:
        return send(write)
    except IoTFleetError as error:
        if not answer_lost(error):
            raise
        lost = error
    if read_back is None:
        raise wording.cannot_tell(write, lost, None) from lost
    pending = write
    settled: ResultT | None = None
    for round_number in range(1, rounds + 1):
        log.warning(
            "%s: the answer to %s was lost (%s); reading %s back",
            wording.vendor,
            wording.write(pending),
            lost.message,
            wording.read,
        )
        try:
            verdict = read_back(pending)
        except conclusive:
            raise
        except IoTFleetError as failure:
            raise wording.unreadable(pending, lost, failure) from failure
        if isinstance(verdict, CannotTell):
            raise wording.cannot_tell(pending, lost, verdict.reason) from lost
        if isinstance(verdict, Applied):
            log.warning(
                "%s: the answer to %s was lost; reading it back shows it applied",
                wording.vendor,
                wording.write(pending),
            )
            return _joined(settled, verdict.result, merge)
        if verdict.settled is not None:
            settled = _joined(settled, verdict.settled, merge)
        if round_number == rounds and give_up is not None:
            return _joined(settled, give_up(verdict.rest, lost), merge)
        if verdict.rest == pending:
            log.warning(
                "%s: the answer to %s was lost before it applied; sending it again",
                wording.vendor,
                wording.write(pending),
            )
        else:
            log.warning(
                "%s: the answer to %s was lost and reading it back settled part of it; sending %s again",
                wording.vendor,
                wording.write(pending),
                wording.write(verdict.rest),
            )
        pending = verdict.rest
        try:
            return _joined(settled, send(pending), merge)
        except IoTFleetError as again:
            if not answer_lost(again):
                raise
            lost = again
    raise wording.lost_every_time(pending, lost, rounds + 1) from lost


def _joined(
    settled: ResultT | None, result: ResultT, merge: Callable[[ResultT, ResultT], ResultT] | None
) -> ResultT:
    """``result`` with what earlier read-backs settled, if any."""
    if settled is None:
        return result
    if merge is None:
        raise TypeError("a read-back that settles part of a write needs merge")
    return merge(settled, result)
