"""Apache Airflow provider for cellular IoT fleet operations.

Hooks, operators and sensors for Palo Alto Networks IoT Security, Cisco IoT Control Center,
Huawei Cloud ROMA Connect LINK and Verizon ThingSpace FOTA. This module stays import-light: Airflow
calls :func:`get_provider_info` while discovering providers.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

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


#: Vendors without a sensor (Palo Alto has nothing to wait for).
_WITHOUT_WAITS = ("paloalto",)


def _modules(package: str, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    return [
        {"integration-name": name, "python-modules": [f"{package}.{module}"]}
        for module, name in _INTEGRATIONS.items()
        if module not in skip
    ]


#: A field the hook cannot work without: not nullable and not empty, so the form refuses to save it
#: empty (a nullable field saves as null, and "Extra Fields JSON" stores null for every empty one).
_REQUIRED_STRING: dict[str, Any] = {"type": "string", "minLength": 1}


def _common_fields() -> dict[str, dict[str, Any]]:
    return {
        "timeout": {
            "label": "Request timeout (seconds)",
            "schema": {"type": ["number", "null"], "default": 30},
        },
        "max_retries": {
            "label": "Retries on connection errors, 429 and 5xx",
            "schema": {"type": ["integer", "null"], "default": 3, "minimum": 0},
        },
        "backoff_base": {
            "label": "First retry wait (seconds)",
            "description": "Doubles on each further retry, with jitter; a vendor's Retry-After wins.",
            "schema": {"type": ["number", "null"], "default": 1, "exclusiveMinimum": 0},
        },
        "ca_bundle": {
            "label": "CA bundle (path)",
            "description": "A PEM file of the certificate authorities to trust, e.g. a corporate proxy's; "
            "default: the system's, or REQUESTS_CA_BUNDLE. Verification is never turned off.",
            "schema": {"type": ["string", "null"]},
        },
    }


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow reads through the ``apache_airflow_provider`` entry point.

    Connection form fields are declared here (``conn-fields`` and ``ui-field-behaviour``), the Airflow
    3.2+ way, so the UI can draw each connection form without importing the hooks.
    """
    return {
        "package-name": "airflow-provider-iotfleet",
        "name": "IoT Fleet (cellular IoT platforms)",
        "description": "Run cellular IoT fleet operations on Palo Alto Networks IoT Security, Cisco IoT "
        "Control Center, Huawei Cloud ROMA Connect and Verizon ThingSpace from Airflow.",
        "versions": [__version__],
        "integrations": [{"integration-name": name, "tags": ["service"]} for name in _INTEGRATIONS.values()],
        "hooks": _modules(_HOOKS),
        "operators": _modules(_OPERATORS),
        "sensors": _modules(_SENSORS, skip=_WITHOUT_WAITS),
        "triggers": _modules(_TRIGGERS, skip=_WITHOUT_WAITS),
        "connection-types": [
            {
                "connection-type": "paloalto_iot",
                "hook-class-name": f"{_HOOKS}.paloalto.PaloAltoIoTSecurityHook",
                "hook-name": "Palo Alto Networks IoT Security",
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "api_key: X-Key-Id / X-Access-Key on the tenant portal (v4.0). "
                        "scm: Strata Cloud Manager OAuth2 client credentials.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["api_key", "scm"],
                            "default": "api_key",
                        },
                    },
                    "customer_id": {
                        "label": "Customer ID",
                        "description": "Tenant name; defaults to the label before '.iot' in the host.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "tsg_id": {
                        "label": "TSG ID (scm only)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "auth_url": {
                        "label": "SCM token URL (scm only)",
                        "schema": {
                            "type": ["string", "null"],
                            "default": "https://auth.apps.paloaltonetworks.com/oauth2/access_token",
                        },
                    },
                    "requests_per_minute": {
                        "label": "Requests per minute",
                        "schema": {"type": ["number", "null"], "default": 180},
                    },
                    **_common_fields(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "Key ID / client ID", "password": "Access key / client secret"},
                    "placeholders": {
                        "host": "https://<tenant>.iot.paloaltonetworks.com",
                        "login": "X-Key-Id (api_key) or SCM client id",
                        "password": "X-Access-Key (api_key) or SCM client secret",
                    },
                },
            },
            {
                "connection-type": "cisco_control_center",
                "hook-class-name": f"{_HOOKS}.cisco.CiscoControlCenterHook",
                "hook-name": "Cisco IoT Control Center",
                "conn-fields": {
                    "api_version": {
                        "label": "API version",
                        "schema": {"type": ["integer", "null"], "default": 1},
                    },
                    "requests_per_second": {
                        "label": "Requests per second",
                        "schema": {"type": ["number", "null"], "default": 5},
                    },
                    "max_concurrency": {
                        "label": "Calls in flight at once",
                        "description": "Control Center allows one active call per account unless your "
                        "contract says otherwise.",
                        "schema": {"type": ["integer", "null"], "default": 1, "minimum": 1},
                    },
                    **_common_fields(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "Username", "password": "API key"},
                    "placeholders": {
                        "host": "https://restapi3.jasper.com",
                        "login": "Control Center user name",
                    },
                },
            },
            {
                "connection-type": "huawei_roma",
                "hook-class-name": f"{_HOOKS}.huawei.HuaweiRomaConnectHook",
                "hook-name": "Huawei Cloud ROMA Connect",
                "conn-fields": {
                    "auth_type": {
                        "label": "Auth type",
                        "description": "aksk: SDK-HMAC-SHA256 request signing. iam_token: IAM user "
                        "password exchanged for a 24 h token.",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["aksk", "iam_token"],
                            "default": "aksk",
                        },
                    },
                    "project_id": {"label": "Project ID (required)", "schema": _REQUIRED_STRING},
                    "instance_id": {
                        "label": "ROMA Connect instance ID (required)",
                        "description": "In the ROMA Connect console, under the instance's details; older "
                        "deployments use 'default'.",
                        "schema": _REQUIRED_STRING,
                    },
                    "region": {
                        "label": "Region",
                        "description": "e.g. cn-north-4, ap-southeast-1; used for default endpoints.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "iam_endpoint": {
                        "label": "IAM endpoint (iam_token only)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "domain_name": {
                        "label": "Account (domain) name (iam_token only)",
                        "schema": {"type": ["string", "null"]},
                    },
                    "security_token": {
                        "label": "Security token (temporary AK/SK only)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "requests_per_second": {
                        "label": "Requests per second",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    **_common_fields(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "AK / IAM user name", "password": "SK / IAM password"},
                    "placeholders": {"host": "https://roma.cn-north-4.myhuaweicloud.com"},
                },
            },
            {
                "connection-type": "verizon_thingspace",
                "hook-class-name": f"{_HOOKS}.verizon.VerizonThingSpaceHook",
                "hook-name": "Verizon ThingSpace",
                "conn-fields": {
                    "m2m_username": {"label": "M2M (UWS) user name (required)", "schema": _REQUIRED_STRING},
                    "m2m_password": {
                        "label": "M2M (UWS) password (required)",
                        "description": "Five failed logins in a row lock the user; a refused login is "
                        "never repeated by a task.",
                        "schema": {**_REQUIRED_STRING, "format": "password"},
                    },
                    "account_name": {
                        "label": "Default account name",
                        "schema": {"type": ["string", "null"]},
                    },
                    "oauth_url": {
                        "label": "OAuth token URL",
                        "description": "Defaults to <host>/api/ts/v1/oauth2/token.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "m2m_login_url": {
                        "label": "M2M session login URL",
                        "description": "Defaults to <host>/api/m2m/v1/session/login.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "requests_per_second": {
                        "label": "Requests per second",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    **_common_fields(),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {"login": "OAuth key", "password": "OAuth secret"},
                    "placeholders": {"host": "https://thingspace.verizon.com"},
                },
            },
        ],
    }
