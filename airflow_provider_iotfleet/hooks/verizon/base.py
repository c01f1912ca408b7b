"""What every ThingSpace call needs: the connection's client (FOTA base URL, both credentials,
ThingSpace's error bodies) and the account the call is for."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from airflow_provider_iotfleet.exceptions import IoTFleetValidationError
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.verizon.answers import VERIZON_ERRORS
from airflow_provider_iotfleet.hooks.verizon.auth import thingspace_auth
from airflow_provider_iotfleet.hooks.verizon.connection import DEFAULT_HOST, DEFAULT_REQUESTS_PER_SECOND
from airflow_provider_iotfleet.http import ConnectionSettings
from airflow_provider_iotfleet.validation import path_segment_problem

FOTA_PATH = "/api/fota/v3"


def segment(value: str) -> str:
    """Return ``value`` as one path segment: account names and campaign ids are quoted whole."""
    return quote(value, safe="")


class ThingSpaceBaseHook(IoTFleetBaseHook):
    """The connection part of :class:`~airflow_provider_iotfleet.hooks.verizon.VerizonThingSpaceHook`,
    which its device, campaign and upgrade parts build on."""

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        root = settings.base_url(default=DEFAULT_HOST)
        return {
            "base_url": f"{root}{FOTA_PATH}",
            "errors": VERIZON_ERRORS,
            "auth": thingspace_auth(settings, root, self.clock),
            **self._transport_options(
                settings, settings.get_float("requests_per_second", DEFAULT_REQUESTS_PER_SECOND)
            ),
        }

    def resolve_account(self, account_name: str | None = None) -> str:
        """Return ``account_name``, or the connection's ``account_name`` extra when it is not given.

        :raises IoTFleetValidationError: when neither is set, or the name is blank, not a string, or
            not one plain path segment (``.``, ``..``, a ``/`` or ``%`` would send the request, with
            its credentials, to another path).
        """
        account = account_name if account_name is not None else self.settings.get_str("account_name")
        if not isinstance(account, str) or not account.strip():
            raise IoTFleetValidationError(
                "account_name is missing",
                [f"pass account_name or set the 'account_name' extra of {self.settings.label}"],
            )
        if problem := path_segment_problem(account.strip()):
            source = (
                "" if account_name is not None else f" (the 'account_name' extra of {self.settings.label})"
            )
            raise IoTFleetValidationError(
                "account_name is invalid",
                [f"{account!r}{source} is not a ThingSpace account name: it {problem}"],
            )
        return account.strip()

    def _check_connection(self) -> str:
        self.client.obtain()
        return (
            f"Obtained a ThingSpace access token and M2M session for {self.settings.get_str('m2m_username')}"
        )
