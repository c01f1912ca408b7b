"""Cisco IoT Control Center (formerly Jasper): the hook and what it returns, importable from this one path."""

from airflow_provider_iotfleet.hooks.cisco.hook import (
    ALREADY_ACTIVATED,
    CISCO_ERRORS,
    IP_COMPANION_FIELDS,
    IP_FIELDS,
    MAX_CONCURRENCY,
    MAX_SEARCH_PAGE_SIZE,
    READ_BACK_FIELDS,
    VENDOR,
    CiscoControlCenterHook,
    CiscoEditResult,
    EditOutcome,
)

__all__ = [
    "ALREADY_ACTIVATED",
    "CISCO_ERRORS",
    "IP_COMPANION_FIELDS",
    "IP_FIELDS",
    "MAX_CONCURRENCY",
    "MAX_SEARCH_PAGE_SIZE",
    "READ_BACK_FIELDS",
    "VENDOR",
    "CiscoControlCenterHook",
    "CiscoEditResult",
    "EditOutcome",
]
