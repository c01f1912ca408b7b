"""What ROMA Connect answers, read: its error bodies, its online statuses, and what came of a
force-offline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_iotfleet.exceptions import IoTFleetRateLimitError
from airflow_provider_iotfleet.http import ErrorMapping, VendorErrorBody, text_or_none

VENDOR = "Huawei ROMA Connect"
#: The API gateway's throttling codes (both spellings are seen); answered with 429, retried.
THROTTLING_CODES = frozenset({"APIGW.0308", "APIG.0308"})
ONLINE_STATUS = {"never": 0, "online": 1, "offline": 2}
STATUS_NAMES = {code: name for name, code in ONLINE_STATUS.items()}
NOT_FORCED_OFFLINE = "not forced offline (only online MQTT devices can be)"
#: What a read of the devices' online status says of one that is offline.
OFFLINE = "offline"
NEVER = "never"


def _parse_error(body: Any) -> VendorErrorBody:
    # ROMA: {"error_code", "error_msg", "request_id"} (some answers say "requestId").
    # IAM: {"error": {"code": 401, "message": "...", "title": "Unauthorized"}}.
    if not isinstance(body, dict):
        return VendorErrorBody()
    if isinstance(body.get("error"), dict):
        body = body["error"]
        return VendorErrorBody(code=text_or_none(body.get("code")), message=text_or_none(body.get("message")))
    return VendorErrorBody(
        code=text_or_none(body.get("error_code")),
        message=text_or_none(body.get("error_msg")),
        request_id=text_or_none(body.get("request_id") or body.get("requestId")),
    )


HUAWEI_ERRORS = ErrorMapping(
    vendor=VENDOR,
    parse_body=_parse_error,
    code_classes=dict.fromkeys(THROTTLING_CODES, IoTFleetRateLimitError),
    retryable_codes=THROTTLING_CODES,
)


def answered_id(item: Mapping[str, Any]) -> int | None:
    """Return the device id an answer item names (``id``, or its duplicate ``device_id``), if an int."""
    device_id = item.get("id", item.get("device_id"))
    if isinstance(device_id, int) and not isinstance(device_id, bool):
        return device_id
    if isinstance(device_id, str) and device_id.isascii() and device_id.isdigit():
        return int(device_id)
    return None


#: Why a device was not forced offline, as the ``error_code`` of its ``failed`` entry.
NOT_FORCED = "not_forced_offline"
NEVER_CONNECTED = "never_connected"
MISSING_FROM_ANSWER = "missing_from_answer"
NEVER_CONNECTED_MESSAGE = "never connected: only online MQTT devices can be forced offline"


@dataclass(frozen=True)
class ForceOfflineResult:
    """What came of one force-offline request: every requested id is in exactly one list.

    :ivar succeeded: ``{"id", "device_name"}`` for each device brought offline.
    :ivar unchanged: ids of devices already offline (ROMA refuses them, or a read found them so):
        already as asked, not failed.
    :ivar failed: ``{"id", "device_name", "error_code", "message", "attempted"}`` for each device not
        brought offline: :data:`NOT_FORCED` (ROMA refused it and it is not offline: only online MQTT
        devices can be), :data:`NEVER_CONNECTED` (never sent when a read found it so first),
        :data:`MISSING_FROM_ANSWER`, or the vendor's code of the error that kept it from being sent
        again after lost answers (such entries add that error's ``http_status`` and ``retryable``).
    """

    succeeded: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    unchanged: list[int] = field(default_factory=list)

    def merged(self, other: ForceOfflineResult) -> ForceOfflineResult:
        """This result and ``other`` (of other devices), list by list."""
        return ForceOfflineResult(
            succeeded=self.succeeded + other.succeeded,
            failed=self.failed + other.failed,
            unchanged=self.unchanged + other.unchanged,
        )

    def in_order(self, ids: list[int]) -> ForceOfflineResult:
        """This result with each list in the order of ``ids``."""
        order = {device_id: position for position, device_id in enumerate(ids)}
        return ForceOfflineResult(
            succeeded=sorted(self.succeeded, key=lambda entry: order[entry["id"]]),
            failed=sorted(self.failed, key=lambda entry: order[entry["id"]]),
            unchanged=sorted(self.unchanged, key=order.__getitem__),
        )


def failed_entry(
    device_id: int, error_code: str, message: str, *, name: Any = None, attempted: bool = True
) -> dict[str, Any]:
    """One entry of :attr:`ForceOfflineResult.failed`."""
    return {
        "id": device_id,
        "device_name": name,
        "error_code": error_code,
        "message": message,
        "attempted": attempted,
    }
