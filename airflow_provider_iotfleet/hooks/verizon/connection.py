"""The Verizon ThingSpace connection type: its form, and the defaults the hook applies.

Data only, no Airflow import: Airflow reads it while discovering providers.
"""

from __future__ import annotations

from airflow_provider_iotfleet.forms import REQUIRED_STRING, ConnectionForm, rate_field

DEFAULT_HOST = "https://thingspace.verizon.com"
#: The console an upgrade task's link opens when the connection sets no ``console_url``.
DEFAULT_CONSOLE_URL = "https://thingspace.verizon.com"
#: The connection's ``requests_per_second`` when it sets none (ThingSpace publishes no limit).
DEFAULT_REQUESTS_PER_SECOND = 10

CONNECTION_FORM = ConnectionForm(
    conn_type="verizon_thingspace",
    hook_name="Verizon ThingSpace",
    default_conn_id="verizon_thingspace_default",
    fields={
        "m2m_username": {"label": "M2M (UWS) user name (required)", "schema": REQUIRED_STRING},
        "m2m_password": {
            "label": "M2M (UWS) password (required)",
            "description": "Five failed logins in a row lock the user; a refused login is "
            "never repeated by a task.",
            "schema": {**REQUIRED_STRING, "format": "password"},
        },
        "account_name": {"label": "Default account name", "schema": {"type": ["string", "null"]}},
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
        "requests_per_second": rate_field("second", DEFAULT_REQUESTS_PER_SECOND),
        "console_url": {
            "label": "Console link (URL template)",
            "description": "Where a firmware upgrade task's 'ThingSpace campaign' link goes; may use "
            "{campaign_id} and {account_name}. The address of a campaign's page is not public: "
            "the default opens the console; put your console's campaign address here, with those "
            "placeholders, to go to the campaign.",
            "schema": {"type": ["string", "null"], "default": DEFAULT_CONSOLE_URL},
        },
    },
    relabeling={"login": "OAuth key", "password": "OAuth secret"},
    placeholders={"host": DEFAULT_HOST},
)
