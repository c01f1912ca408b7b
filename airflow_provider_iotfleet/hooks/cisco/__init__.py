"""Cisco IoT Control Center (formerly Jasper): the hook, what it returns and the edit rules it checks,
importable from this one path.

Names are imported from their part on first use, so that Airflow can read :mod:`.connection`
while it is itself being imported.
"""

from typing import TYPE_CHECKING

from airflow_provider_iotfleet.utils import exports_of

if TYPE_CHECKING:
    from airflow_provider_iotfleet.hooks.cisco.connection import CONNECTION_FORM
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
    from airflow_provider_iotfleet.hooks.cisco.planning import CiscoEditPlan, edit_difference
    from airflow_provider_iotfleet.hooks.cisco.rules import (
        CISCO_CUSTOM_FIELD_MAX_LENGTH,
        CISCO_CUSTOM_FIELDS,
        CISCO_EDITABLE_FIELDS,
        CISCO_KNOWN_STATUSES,
        CISCO_MAX_SCHEDULE_DAYS,
        CISCO_OVERAGE_VALUES,
        cisco_change_problems,
        validate_cisco_changes,
        validate_cisco_edits,
        validate_effective_date,
    )

__all__ = [
    "ALREADY_ACTIVATED",
    "CISCO_CUSTOM_FIELDS",
    "CISCO_CUSTOM_FIELD_MAX_LENGTH",
    "CISCO_EDITABLE_FIELDS",
    "CISCO_ERRORS",
    "CISCO_KNOWN_STATUSES",
    "CISCO_MAX_SCHEDULE_DAYS",
    "CISCO_OVERAGE_VALUES",
    "CONNECTION_FORM",
    "IP_COMPANION_FIELDS",
    "IP_FIELDS",
    "MAX_CONCURRENCY",
    "MAX_SEARCH_PAGE_SIZE",
    "READ_BACK_FIELDS",
    "VENDOR",
    "CiscoControlCenterHook",
    "CiscoEditPlan",
    "CiscoEditResult",
    "EditOutcome",
    "cisco_change_problems",
    "edit_difference",
    "validate_cisco_changes",
    "validate_cisco_edits",
    "validate_effective_date",
]

__getattr__, __dir__ = exports_of(__name__, ("connection", "hook", "planning", "rules"))
