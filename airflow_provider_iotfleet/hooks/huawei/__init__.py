"""Huawei Cloud ROMA Connect LINK: the hook, its two ways in and what it returns, importable from this
one path.

Names are imported from their part on first use, so that Airflow can read :mod:`.connection`
while it is itself being imported.
"""

from typing import TYPE_CHECKING

from airflow_provider_iotfleet.utils import exports_of

if TYPE_CHECKING:
    from airflow_provider_iotfleet.hooks.huawei.answers import (
        HUAWEI_ERRORS,
        MISSING_FROM_ANSWER,
        NEVER,
        NEVER_CONNECTED,
        NEVER_CONNECTED_MESSAGE,
        NOT_FORCED,
        NOT_FORCED_OFFLINE,
        OFFLINE,
        ONLINE_STATUS,
        STATUS_NAMES,
        THROTTLING_CODES,
        VENDOR,
        ForceOfflineResult,
    )
    from airflow_provider_iotfleet.hooks.huawei.auth import (
        CLOCK_SKEW_TOLERANCE,
        IAM_TOKEN_LIFETIME,
        SDK_DATE_FORMAT,
        SIGNING_ALGORITHM,
        HuaweiAkSkAuth,
        canonical_request,
        iam_token,
        request_signature,
        sign,
        string_to_sign,
    )
    from airflow_provider_iotfleet.hooks.huawei.connection import CONNECTION_FORM
    from airflow_provider_iotfleet.hooks.huawei.hook import (
        DEFAULT_MAX_DEVICES_PER_REQUEST,
        MAX_PAGE_SIZE,
        PER_DEVICE_READS,
        HuaweiRomaConnectHook,
    )

__all__ = [
    "CLOCK_SKEW_TOLERANCE",
    "CONNECTION_FORM",
    "DEFAULT_MAX_DEVICES_PER_REQUEST",
    "HUAWEI_ERRORS",
    "IAM_TOKEN_LIFETIME",
    "MAX_PAGE_SIZE",
    "MISSING_FROM_ANSWER",
    "NEVER",
    "NEVER_CONNECTED",
    "NEVER_CONNECTED_MESSAGE",
    "NOT_FORCED",
    "NOT_FORCED_OFFLINE",
    "OFFLINE",
    "ONLINE_STATUS",
    "PER_DEVICE_READS",
    "SDK_DATE_FORMAT",
    "SIGNING_ALGORITHM",
    "STATUS_NAMES",
    "THROTTLING_CODES",
    "VENDOR",
    "ForceOfflineResult",
    "HuaweiAkSkAuth",
    "HuaweiRomaConnectHook",
    "canonical_request",
    "iam_token",
    "request_signature",
    "sign",
    "string_to_sign",
]

__getattr__, __dir__ = exports_of(__name__, ("connection", "hook", "answers", "auth"))
