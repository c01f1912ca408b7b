"""Apache Airflow provider for cellular IoT fleet operations.

Hooks, operators and sensors for Palo Alto Networks IoT Security, Cisco IoT Control Center,
Huawei Cloud ROMA Connect LINK and Verizon ThingSpace FOTA. Importing this module imports nothing
else of the package: Airflow loads it while discovering providers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_iotfleet.forms import ConnectionForm

__version__ = "0.1.0"

#: Where the project lives; ``[project.urls]`` in pyproject.toml repeats these (a test checks they agree).
SOURCE_URL = "https://github.com/iotfleet/airflow-provider-iotfleet"
DOCUMENTATION_URL = "https://airflow-provider-iotfleet.readthedocs.io/"
CHANGELOG_URL = f"{SOURCE_URL}/blob/main/CHANGELOG.md"
ISSUES_URL = f"{SOURCE_URL}/issues"

_HOOKS = "airflow_provider_iotfleet.hooks"
_OPERATORS = "airflow_provider_iotfleet.operators"
_SENSORS = "airflow_provider_iotfleet.sensors"
_TRIGGERS = "airflow_provider_iotfleet.triggers"
#: Integration display names, one per vendor module name.
_INTEGRATIONS = {
    "paloalto": "Palo Alto Networks IoT Security",
    "cisco": "Cisco IoT Control Center",
    "huawei": "Huawei Cloud ROMA Connect",
    "verizon": "Verizon ThingSpace",
}


def how_to_guide_url(vendor: str) -> str:
    """Return the URL of the docs site's how-to page for ``vendor`` (a module name: ``cisco``)."""
    return f"{DOCUMENTATION_URL}en/latest/howto/{vendor}.html"


#: The hook class of each vendor package (whose ``connection`` module declares its form).
_HOOK_CLASSES = {
    "paloalto": "PaloAltoIoTSecurityHook",
    "cisco": "CiscoControlCenterHook",
    "huawei": "HuaweiRomaConnectHook",
    "verizon": "VerizonThingSpaceHook",
}

#: Vendors without a sensor (Palo Alto has nothing to wait for).
_WITHOUT_WAITS = ("paloalto",)

#: The operators' console links (``operators/links.py``): buttons to the vendor consoles.
_EXTRA_LINKS = (
    "ThingSpaceCampaignLink",
    "ControlCenterDeviceLink",
    "RomaInstanceLink",
    "IoTSecurityInventoryLink",
)


def _modules(package: str, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"integration-name": name, "python-modules": [f"{package}.{module}"]}
        for module, name in _INTEGRATIONS.items()
        if module not in skip
    ]


def _connection_type(vendor: str, class_name: str) -> dict[str, Any]:
    """One ``connection-types`` entry, from the form the vendor declares beside its hook."""
    form: ConnectionForm = import_module(f"{_HOOKS}.{vendor}.connection").CONNECTION_FORM
    return form.provider_entry(f"{_HOOKS}.{vendor}.{class_name}")


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

    Each vendor declares its connection form in ``hooks/<vendor>/connection.py``, beside its auth
    and endpoints (see :class:`~airflow_provider_iotfleet.forms.ConnectionForm`); this assembles
    them into ``conn-fields`` and ``ui-field-behaviour``, the Airflow 3.2+ way, so the UI draws each
    form without importing the hooks. Those modules import nothing of Airflow: Airflow calls this
    while it is itself being imported (provider discovery during its configuration's set-up).
    """
    return {
        "package-name": "airflow-provider-iotfleet",
        "name": "IoT Fleet (cellular IoT platforms)",
        "description": "Run cellular IoT fleet operations on Palo Alto Networks IoT Security, Cisco IoT "
        "Control Center, Huawei Cloud ROMA Connect and Verizon ThingSpace from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": name,
                "external-doc-url": how_to_guide_url(vendor),
                "how-to-guide": [how_to_guide_url(vendor)],
                "tags": ["service"],
            }
            for vendor, name in _INTEGRATIONS.items()
        ],
        "hooks": _modules(_HOOKS),
        "operators": _modules(_OPERATORS),
        "sensors": _modules(_SENSORS, skip=_WITHOUT_WAITS),
        "triggers": _modules(_TRIGGERS, skip=_WITHOUT_WAITS),
        "connection-types": [_connection_type(module, name) for module, name in _HOOK_CLASSES.items()],
        "extra-links": [f"{_OPERATORS}.links.{name}" for name in _EXTRA_LINKS],
    }
