"""Each vendor's connection as the unit tests define it, in the JSON form an ``AIRFLOW_CONN_*``
variable holds, with the credentials and addresses tests assert on. The fixtures of
``tests/unit/conftest.py`` define these connections; tests that check a credential (sent, or never
logged) read it from here, so the fixture and the assertion cannot drift apart."""

from __future__ import annotations

from typing import Any

# --- Palo Alto Networks IoT Security: an API key on a tenant ---------------------------------------

PALOALTO_TENANT_HOST = "https://acme-iot.iot.paloaltonetworks.com"
PALOALTO_KEY_ID, PALOALTO_ACCESS_KEY = "key-id-0001", "access-key-s3cr3t-value"
#: ``paloalto_iot_default`` (the ``paloalto_connection`` fixture).
PALOALTO: dict[str, Any] = {
    "conn_type": "paloalto_iot",
    "host": PALOALTO_TENANT_HOST,
    "login": PALOALTO_KEY_ID,
    "password": PALOALTO_ACCESS_KEY,
}

# --- Cisco IoT Control Center: a user and its API key ---------------------------------------------

CISCO_HOST = "https://rws-jpotest.jasper.com"
CISCO_USER, CISCO_API_KEY = "fleet-bot", "4f1d2c3b-secret-api-key"
#: ``cisco_control_center_default`` (the ``cisco_connection`` fixture).
CISCO: dict[str, Any] = {
    "conn_type": "cisco_control_center",
    "host": CISCO_HOST,
    "login": CISCO_USER,
    "password": CISCO_API_KEY,
}

# --- Huawei ROMA Connect: an AK/SK, or an IAM user's password ----------------------------------------

ROMA_HOST = "https://roma.cn-north-4.myhuaweicloud.com"
ROMA_PROJECT, ROMA_INSTANCE = "397cd10b30544c588b2f4a56d83856c4", "f3bb386a-23ec-47aa-9943-4c60ac658611"
ROMA_AK, ROMA_SK = "HPUAL0EXAMPLEAK0001", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
ROMA_IAM_URL = "https://iam.cn-north-4.myhuaweicloud.com/v3/auth/tokens"
ROMA_IAM_USER, ROMA_IAM_PASSWORD = "fleet-ops", "iam-user-password-42"
#: ``huawei_roma_default``, signing with an AK/SK (the ``roma_connection`` fixture).
ROMA: dict[str, Any] = {
    "conn_type": "huawei_roma",
    "login": ROMA_AK,
    "password": ROMA_SK,
    "extra": {"region": "cn-north-4", "project_id": ROMA_PROJECT, "instance_id": ROMA_INSTANCE},
}
#: ``roma_iam``, logging in as an IAM user for a token (the ``roma_iam_connection`` fixture).
ROMA_IAM: dict[str, Any] = {
    "conn_type": "huawei_roma",
    "login": ROMA_IAM_USER,
    "password": ROMA_IAM_PASSWORD,
    "extra": {
        "auth_type": "iam_token",
        "region": "cn-north-4",
        "project_id": ROMA_PROJECT,
        "instance_id": ROMA_INSTANCE,
        "domain_name": "acme",
    },
}

# --- Verizon ThingSpace: an OAuth key and secret, an M2M user, one account ------------------------

THINGSPACE_ROOT = "https://thingspace.verizon.com"
THINGSPACE_TOKEN_URL = f"{THINGSPACE_ROOT}/api/ts/v1/oauth2/token"
THINGSPACE_LOGIN_URL = f"{THINGSPACE_ROOT}/api/m2m/v1/session/login"
THINGSPACE_ACCOUNT = "0000123456-00001"
THINGSPACE_KEY, THINGSPACE_SECRET = "oauth-key-abc", "oauth-secret-xyz-123"
THINGSPACE_M2M_USER, THINGSPACE_M2M_PASSWORD = "uws-fleet", "uws-password-987"
#: ``verizon_thingspace_default`` (the ``thingspace_connection`` fixture).
THINGSPACE: dict[str, Any] = {
    "conn_type": "verizon_thingspace",
    "login": THINGSPACE_KEY,
    "password": THINGSPACE_SECRET,
    "extra": {
        "m2m_username": THINGSPACE_M2M_USER,
        "m2m_password": THINGSPACE_M2M_PASSWORD,
        "account_name": THINGSPACE_ACCOUNT,
    },
}


def with_extra(connection: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``connection`` with ``extra`` on top of its extras (a host or a login stays as it is)."""
    return {**connection, "extra": {**connection.get("extra", {}), **extra}}
