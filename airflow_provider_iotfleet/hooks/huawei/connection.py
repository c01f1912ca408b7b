"""The Huawei Cloud ROMA Connect connection type: its form, and the defaults the hook applies.

Data only, no Airflow import: Airflow reads it while discovering providers.
"""

from __future__ import annotations

from airflow_provider_iotfleet.forms import REQUIRED_STRING, ConnectionForm, rate_field

#: The connection's ``requests_per_second`` when it sets none (Huawei publishes no limit).
DEFAULT_REQUESTS_PER_SECOND = 10
#: The console a force-offline task's link opens when the connection sets no ``console_url``.
DEFAULT_CONSOLE_URL = "https://console.huaweicloud.com/roma/?region={region}"

CONNECTION_FORM = ConnectionForm(
    conn_type="huawei_roma",
    hook_name="Huawei Cloud ROMA Connect",
    default_conn_id="huawei_roma_default",
    fields={
        "auth_type": {
            "label": "Auth type",
            "description": "aksk: SDK-HMAC-SHA256 request signing. iam_token: IAM user "
            "password exchanged for a 24 h token.",
            "schema": {"type": ["string", "null"], "enum": ["aksk", "iam_token"], "default": "aksk"},
        },
        "project_id": {"label": "Project ID (required)", "schema": REQUIRED_STRING},
        "instance_id": {
            "label": "ROMA Connect instance ID (required)",
            "description": "In the ROMA Connect console, under the instance's details; older "
            "deployments use 'default'.",
            "schema": REQUIRED_STRING,
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
        "requests_per_second": rate_field("second", DEFAULT_REQUESTS_PER_SECOND),
        "console_url": {
            "label": "Console link (URL template)",
            "description": "Where a force-offline task's 'ROMA Connect instance' link goes; may use "
            "{region}, {project_id} and {instance_id}. The address of an instance's page is not "
            "public: the default opens ROMA Connect in the region's console (use "
            "console-intl.huaweicloud.com outside China).",
            "schema": {"type": ["string", "null"], "default": DEFAULT_CONSOLE_URL},
        },
    },
    relabeling={"login": "AK / IAM user name", "password": "SK / IAM password"},
    placeholders={"host": "https://roma.cn-north-4.myhuaweicloud.com"},
)
