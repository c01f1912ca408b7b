"""The Cisco IoT Control Center connection type: its form, and the defaults the hook applies.

Data only, no Airflow import: Airflow reads it while discovering providers.
"""

from __future__ import annotations

from airflow_provider_iotfleet.forms import ConnectionForm, rate_field

#: The connection's ``requests_per_second`` when it sets none.
DEFAULT_REQUESTS_PER_SECOND = 5

CONNECTION_FORM = ConnectionForm(
    conn_type="cisco_control_center",
    hook_name="Cisco IoT Control Center",
    default_conn_id="cisco_control_center_default",
    fields={
        "api_version": {"label": "API version", "schema": {"type": ["integer", "null"], "default": 1}},
        "requests_per_second": rate_field("second", DEFAULT_REQUESTS_PER_SECOND),
        "console_url": {
            "label": "Console link (URL template)",
            "description": "Where an edit task's 'Control Center' link goes, e.g. your company's "
            "Control Center address; may use {iccid} (the first SIM the task changed). Each "
            "company has its own Control Center address and the SIM page's format is not public, "
            "so there is no default: without it, tasks show no link.",
            "schema": {"type": ["string", "null"]},
        },
        "max_concurrency": {
            "label": "Calls in flight at once",
            "description": "Control Center allows one active call per account unless your "
            "contract says otherwise.",
            "schema": {"type": ["integer", "null"], "default": 1, "minimum": 1},
        },
    },
    relabeling={"login": "Username", "password": "API key"},
    placeholders={"host": "https://restapi3.jasper.com", "login": "Control Center user name"},
)
