"""The Palo Alto IoT Security connection type: its form, and the defaults the hook applies.

Data only, no Airflow import: Airflow reads it while discovering providers.
"""

from __future__ import annotations

from airflow_provider_iotfleet.forms import ConnectionForm, rate_field

SCM_TOKEN_URL = "https://auth.apps.paloaltonetworks.com/oauth2/access_token"  # noqa: S105 (a URL)
#: The connection's ``requests_per_minute`` when it sets none.
DEFAULT_REQUESTS_PER_MINUTE = 180
#: The connection's ``device_reads_per_minute`` when it sets none: the published limit of device reads.
DEFAULT_DEVICE_READS_PER_MINUTE = 60
#: The console a bulk update task's link opens when the connection sets no ``console_url``.
DEFAULT_CONSOLE_URL = "https://{customer_id}.iot.paloaltonetworks.com"

CONNECTION_FORM = ConnectionForm(
    conn_type="paloalto_iot",
    hook_name="Palo Alto Networks IoT Security",
    default_conn_id="paloalto_iot_default",
    fields={
        "auth_type": {
            "label": "Auth type",
            "description": "api_key: X-Key-Id / X-Access-Key on the tenant portal (v4.0). "
            "scm: Strata Cloud Manager OAuth2 client credentials.",
            "schema": {"type": ["string", "null"], "enum": ["api_key", "scm"], "default": "api_key"},
        },
        "customer_id": {
            "label": "Customer ID",
            "description": "Tenant name; defaults to the label before '.iot' in the host.",
            "schema": {"type": ["string", "null"]},
        },
        "tsg_id": {"label": "TSG ID (scm only)", "schema": {"type": ["string", "null"]}},
        "auth_url": {
            "label": "SCM token URL (scm only)",
            "schema": {"type": ["string", "null"], "default": SCM_TOKEN_URL},
        },
        "requests_per_minute": rate_field("minute", DEFAULT_REQUESTS_PER_MINUTE),
        "device_reads_per_minute": {
            "label": "Device reads per minute",
            "description": "Client-side limit of device list reads (a dry run's read-back); "
            "IoT Security publishes 60.",
            "schema": {"type": ["number", "null"], "default": DEFAULT_DEVICE_READS_PER_MINUTE},
        },
        "console_url": {
            "label": "Console link (URL template)",
            "description": "Where a bulk update task's 'IoT Security inventory' link goes; may use "
            "{customer_id}. The default opens the tenant's portal; the inventory page's address is "
            "not public.",
            "schema": {"type": ["string", "null"], "default": DEFAULT_CONSOLE_URL},
        },
    },
    relabeling={"login": "Key ID / client ID", "password": "Access key / client secret"},
    placeholders={
        "host": "https://<tenant>.iot.paloaltonetworks.com",
        "login": "X-Key-Id (api_key) or SCM client id",
        "password": "X-Access-Key (api_key) or SCM client secret",
    },
)
