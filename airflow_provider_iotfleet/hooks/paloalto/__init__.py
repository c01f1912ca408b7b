"""Palo Alto Networks IoT Security: the hook, what it returns and the devicelist rules it checks,
importable from this one path.

The parts: :mod:`.connection` (the connection type and its form), :mod:`.rules` (what a devicelist
entry may hold) and :mod:`.hook` (auth, endpoints, the bulk update). Names are imported from their
part on first use, so that Airflow can read :mod:`.connection` while it is itself being imported.
"""

from typing import TYPE_CHECKING

from airflow_provider_iotfleet.utils import exports_of

if TYPE_CHECKING:
    from airflow_provider_iotfleet.hooks.paloalto.connection import (
        CONNECTION_FORM,
        DEFAULT_REQUESTS_PER_MINUTE,
        SCM_TOKEN_URL,
    )
    from airflow_provider_iotfleet.hooks.paloalto.hook import (
        DEFAULT_MAX_DEVICES_PER_REQUEST,
        PALOALTO_ERRORS,
        SCM_API_URL,
        VENDOR,
        BulkUpdateResult,
        PaloAltoIoTSecurityHook,
    )
    from airflow_provider_iotfleet.hooks.paloalto.rules import (
        PALOALTO_DEVICE_FIELDS,
        PALOALTO_FIELD_MAX_LENGTH,
        PALOALTO_IDENTIFIERS,
        validate_cellular_devices,
    )

__all__ = [
    "CONNECTION_FORM",
    "DEFAULT_MAX_DEVICES_PER_REQUEST",
    "DEFAULT_REQUESTS_PER_MINUTE",
    "PALOALTO_DEVICE_FIELDS",
    "PALOALTO_ERRORS",
    "PALOALTO_FIELD_MAX_LENGTH",
    "PALOALTO_IDENTIFIERS",
    "SCM_API_URL",
    "SCM_TOKEN_URL",
    "VENDOR",
    "BulkUpdateResult",
    "PaloAltoIoTSecurityHook",
    "validate_cellular_devices",
]

__getattr__, __dir__ = exports_of(__name__, ("connection", "hook", "rules"))
