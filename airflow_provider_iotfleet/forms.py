"""How a hook describes its connection form to Airflow: the ``conn-fields`` and ``ui-field-behaviour``
of ``get_provider_info()`` (the Airflow 3.2+ way; the old hook methods for this are deprecated).

Each vendor declares its own :class:`ConnectionForm` in ``hooks/<vendor>/connection.py``, beside its
auth and endpoints; its hook takes its connection type from it, and
:func:`airflow_provider_iotfleet.get_provider_info` assembles the four. Free of Airflow and HTTP
imports, like those modules: Airflow reads them while it is itself being imported.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: A field the hook cannot work without: not nullable and not empty, so the form refuses to save it
#: empty (a nullable field saves as null, and "Extra Fields JSON" stores null for every empty one).
REQUIRED_STRING: Mapping[str, Any] = {"type": "string", "minLength": 1}

#: The transport settings every connection has (see ``http/config.py``).
COMMON_FIELDS: Mapping[str, Mapping[str, Any]] = {
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


def rate_field(unit: str, default: float) -> dict[str, Any]:
    """The client-side rate limit field, ``requests_per_<unit>``, with the vendor's default."""
    return {"label": f"Requests per {unit}", "schema": {"type": ["number", "null"], "default": default}}


@dataclass(frozen=True)
class ConnectionForm:
    """One vendor's connection type and its form: the vendor's extras (the common transport ones are
    added), and how the standard fields are labelled.

    :ivar conn_type: the Airflow connection type, e.g. ``cisco_control_center``.
    :ivar hook_name: the name the UI shows for it.
    :ivar default_conn_id: the connection id a hook uses when given none.
    :ivar fields: the vendor's extras, as Airflow's ``conn-fields`` (label, description, JSON schema).
    :ivar relabeling: the standard fields' labels, e.g. ``{"login": "Username", "password": "API key"}``.
    :ivar placeholders: example values shown in empty standard fields.
    :ivar hidden_fields: standard fields the vendor does not use.
    """

    conn_type: str
    hook_name: str
    default_conn_id: str
    fields: Mapping[str, Mapping[str, Any]]
    relabeling: Mapping[str, str]
    placeholders: Mapping[str, str] = field(default_factory=dict)
    hidden_fields: tuple[str, ...] = ("schema", "port", "extra")

    def provider_entry(self, hook_class_name: str) -> dict[str, Any]:
        """The ``connection-types`` entry of ``get_provider_info()`` for the hook at ``hook_class_name``."""
        return {
            "connection-type": self.conn_type,
            "hook-class-name": hook_class_name,
            "hook-name": self.hook_name,
            "conn-fields": self.conn_fields(),
            "ui-field-behaviour": self.ui_field_behaviour(),
        }

    def conn_fields(self) -> dict[str, Any]:
        """The ``conn-fields`` entry: the vendor's extras, then the common transport settings."""
        return copy.deepcopy({**self.fields, **COMMON_FIELDS})

    def ui_field_behaviour(self) -> dict[str, Any]:
        """The ``ui-field-behaviour`` entry."""
        return {
            "hidden-fields": list(self.hidden_fields),
            "relabeling": dict(self.relabeling),
            "placeholders": dict(self.placeholders),
        }
