"""The exceptions every hook, operator and sensor of this provider raises.

All of them derive from :class:`IoTFleetError`, so one ``except IoTFleetError`` catches anything the
provider raises on purpose. Errors that come from a vendor's answer carry what the vendor said:
``http_status``, the vendor's ``error_code``, its ``message`` and the ``request_id`` to quote to its
support desk. None of them ever carries a credential: messages are built from vendor error bodies,
paths and identifiers only.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Self, TypedDict, Unpack

from airflow.exceptions import AirflowException

from airflow_provider_iotfleet._compat import redact

#: The most problems a validation error's message lists; ``problems`` keeps them all.
MAX_LISTED_PROBLEMS = 20


class AnswerDetails(TypedDict, total=False):
    """What an error carries of the vendor's answer (:meth:`IoTFleetError.answer_details`)."""

    http_status: int | None
    error_code: str | None
    request_id: str | None


class ErrorDetails(AnswerDetails, total=False):
    """The keyword arguments of :class:`IoTFleetError` besides its message, for subclasses that add
    their own and pass these on."""

    vendor: str | None
    bare_message: str | None


class IoTFleetError(AirflowException):
    """Base class of every error this provider raises.

    :param message: what went wrong, in words a person on call can act on.
    :param http_status: the vendor's HTTP status, when the error comes from an answer.
    :param error_code: the vendor's own error code (always a string: ``"10000005"``, ``"APIGW.0308"``).
    :param request_id: the vendor's request id, when it sent one.
    :param vendor: the vendor platform's display name.
    :param bare_message: what went wrong without naming the request or the device (the vendor's own
        message, "connection reset"): what groups the same error on many devices. Default: ``message``.
    """

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        error_code: str | None = None,
        request_id: str | None = None,
        vendor: str | None = None,
        bare_message: str | None = None,
    ) -> None:
        # Every message passes through Airflow's secrets masker: a vendor error body that echoes the
        # request, or a value quoted by a library, must not carry a credential out.
        message = redact(message)
        super().__init__(message)
        self.message = message
        self.bare_message = redact(bare_message) if bare_message else message
        self.http_status = http_status
        self.error_code = error_code
        self.request_id = request_id
        self.vendor = vendor
        #: the connection fields to check when the vendor refused credentials, set by whoever knows
        #: which credential it was; the client names them and the connection in the final message.
        self.credential_hint: str | None = None
        #: the vendor's clock, from its answer's ``Date`` header, when it sent one.
        self.server_time: datetime | None = None

    def __str__(self) -> str:
        details = []
        if self.http_status is not None:
            details.append(f"HTTP {self.http_status}")
        if self.error_code:
            details.append(f"error code {self.error_code}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def to_dict(self) -> dict[str, object]:
        """Return the JSON-safe fields operators put into XCom for a failed item."""
        return {
            "http_status": self.http_status,
            "error_code": self.error_code,
            "message": self.message,
            "request_id": self.request_id,
        }

    def answer_details(self) -> AnswerDetails:
        """Return the vendor's HTTP status, error code and request id this error carries, for a new
        error that reports it: what the vendor's support desk can look up, and what groups failures
        under their cause."""
        return {"http_status": self.http_status, "error_code": self.error_code, "request_id": self.request_id}

    def with_hint(self, credential_hint: str) -> Self:
        """Return a copy of this error that says which connection fields hold the refused credential."""
        clone = copy.copy(self)
        clone.credential_hint = credential_hint
        return clone

    def with_message(self, message: str, *, bare_message: str | None = None) -> Self:
        """Return a copy of this error (same class and vendor fields) that says ``message`` instead,
        and ``bare_message`` (default: unchanged, or ``message`` if the two were the same)."""
        clone = copy.copy(self)
        clone.message = redact(message)
        clone.args = (clone.message,)
        if bare_message is not None:
            clone.bare_message = redact(bare_message)
        elif self.bare_message == self.message:
            clone.bare_message = clone.message
        return clone


class IoTFleetConfigurationError(IoTFleetError):
    """The Airflow connection is missing a field or holds a value the hook cannot use."""


class IoTFleetValidationError(IoTFleetError, ValueError):
    """Input was rejected before any request was sent.

    :param problems: one line per bad item, all kept in :attr:`problems`; the message lists the
        first :data:`MAX_LISTED_PROBLEMS` and says how many more there are.
    """

    def __init__(self, summary: str, problems: Sequence[str]) -> None:
        self.summary = summary
        self.problems = list(problems)
        lines = [f"  - {problem}" for problem in self.problems[:MAX_LISTED_PROBLEMS]]
        if len(self.problems) > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {len(self.problems) - MAX_LISTED_PROBLEMS} more")
        super().__init__(f"{summary}:\n" + "\n".join(lines) if self.problems else summary)


#: The XCom key under which every fleet operator (and the campaign sensor) pushes its outcome, also
#: when it then fails.
OUTCOME_KEY = "outcome"


class IoTFleetOperationFailedError(IoTFleetError):
    """Some items of a fleet operation failed; every item was tried first.

    :ivar outcome: the operation's outcome, as pushed to XCom under ``outcome``.
    """

    def __init__(self, message: str, outcome: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.outcome = dict(outcome)


class IoTFleetSensorError(IoTFleetError):
    """A device-status wait ended without every device matching (a timeout, or a lasting vendor error)."""


class IoTFleetUnreachableDevicesError(IoTFleetSensorError, IoTFleetOperationFailedError):
    """A device-status wait ended with devices that can never reach the target (``fail_on_unreachable``).

    :ivar outcome: the sensor's XCom value, also pushed under XCom key ``outcome`` before raising.
    """


class IoTFleetNotAttemptedError(IoTFleetError):
    """An item was not sent because an earlier error made sending it pointless (refused credentials,
    a broken connection): it carries that error's status, code and request id, so failures group
    under their cause.
    """

    #: the error that stopped the run.
    cause: IoTFleetError

    @classmethod
    def after(cls, cause: IoTFleetError) -> IoTFleetNotAttemptedError:
        """Return the error for items skipped because of ``cause``."""
        error = cls(
            f"not attempted after an earlier error: {cause.message}",
            vendor=cause.vendor,
            bare_message=f"not attempted after an earlier error: {cause.bare_message}",
            **cause.answer_details(),
        )
        error.cause = cause
        return error


class IoTFleetTransportError(IoTFleetError):
    """The vendor could not be reached (connection refused, reset or timed out) after every retry.

    :param may_have_reached_vendor: ``False`` only when the request surely never left (the
        connection was refused or could not be opened in time), so that even a write may be resent.
    """

    def __init__(
        self,
        message: str,
        *,
        may_have_reached_vendor: bool = True,
        vendor: str | None = None,
        bare_message: str | None = None,
    ) -> None:
        super().__init__(message, vendor=vendor, bare_message=bare_message)
        self.may_have_reached_vendor = may_have_reached_vendor


class IoTFleetCertificateError(IoTFleetTransportError):
    """The vendor's TLS certificate could not be verified: never retried, nothing was sent."""

    def __init__(self, message: str, *, vendor: str | None = None) -> None:
        super().__init__(message, may_have_reached_vendor=False, vendor=vendor)


class IoTFleetVendorResponseError(IoTFleetError):
    """The vendor answered with an error, or with a body that is not what its API documents."""


class IoTFleetOutcomeUnknownError(IoTFleetVendorResponseError):
    """A write's answer was lost after the vendor may have applied it, and reading back could not tell.

    It is not sent again: that could apply it twice. Check the device before retrying.
    """


class IoTFleetAuthError(IoTFleetVendorResponseError):
    """The vendor refused the credentials, or the token or login exchange failed."""


class IoTFleetNotFoundError(IoTFleetVendorResponseError):
    """The vendor says the device, account or instance does not exist."""


class IoTFleetRateLimitError(IoTFleetVendorResponseError):
    """The vendor kept throttling the request after every retry.

    :param retry_after: seconds the vendor asked to wait last, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        **details: Unpack[ErrorDetails],
    ) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class IoTFleetCampaignDevicesError(IoTFleetVendorResponseError):
    """Devices could not be added to (or removed from) a firmware campaign.

    :ivar devices: every IMEI not added (or not removed): refused by the vendor, in a request that
        failed, or not sent after it.
    :ivar campaign_status: the campaign's status after it was cancelled because of this (so that it
        never runs with part of its devices), else ``None``.
    :ivar refused: ``{imei: the vendor's reason}`` for the devices the vendor refused one by one in an
        answer (the others of :attr:`devices` were in or after a request that failed as a whole).
    :ivar not_sent: the devices of :attr:`devices` in the requests after the one that failed, which
        were never sent.
    """

    def __init__(
        self,
        message: str,
        *,
        # A default, because copying (with_message) and pickling rebuild an exception from its
        # message alone before they restore its fields: without one, that raised TypeError.
        devices: Sequence[str] = (),
        refused: Mapping[str, str] | None = None,
        not_sent: Sequence[str] = (),
        campaign_status: str | None = None,
        **details: Unpack[ErrorDetails],
    ) -> None:
        super().__init__(message, **details)
        self.devices = list(devices)
        self.refused = dict(refused or {})
        self.not_sent = list(not_sent)
        self.campaign_status = campaign_status


class IoTFleetOutputError(IoTFleetError):
    """An operator's output file (the FOTA export) could not be written or put in place; the
    target is as it was, and the temporary file was removed.

    :ivar path: where the output was to go, as the operator reports it.
    """

    def __init__(self, message: str, *, path: str, vendor: str | None = None) -> None:
        super().__init__(message, vendor=vendor)
        self.path = path
