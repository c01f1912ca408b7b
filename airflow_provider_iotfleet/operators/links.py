"""Console links: a button on a task's page in the Airflow UI that opens the vendor's console at what
the task changed (the ThingSpace campaign, the Control Center SIM, the ROMA Connect instance, the IoT
Security inventory).

The operator pushes the URL to XCom under :data:`CONSOLE_URL_KEY` as soon as it knows it (as dbt
Cloud's ``DbtCloudRunJobOperatorLink`` reads its run URL from XCom); the link reads it back, and
Airflow stores it for the UI when the task ends. The URL comes from the connection's ``console_url``
extra, a template whose ``{placeholders}`` are filled with what the task changed (each value
URL-quoted), or from the vendor's default. A link is a convenience: a template that cannot be filled
logs a warning and leaves the task without a link, it never fails the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from airflow.sdk import BaseOperatorLink

from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

    from airflow_provider_iotfleet.outcome import FleetOutcome

__all__ = [
    "CONSOLE_URL_EXTRA",
    "CONSOLE_URL_KEY",
    "ConsoleLink",
    "ControlCenterDeviceLink",
    "IoTSecurityInventoryLink",
    "RomaInstanceLink",
    "ThingSpaceCampaignLink",
    "push_console_url",
    "render_console_url",
]

#: The XCom key the operators push their console URL under.
CONSOLE_URL_KEY = "console_url"
#: The connection extra that holds the console URL template.
CONSOLE_URL_EXTRA = "console_url"


class ConsoleLink(BaseOperatorLink):
    """The console URL an operator pushed under :data:`CONSOLE_URL_KEY`; each vendor's link names it."""

    name: ClassVar[str] = "Console"  # type: ignore[misc]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """Return the URL the task pushed, or ``""`` (no button) when it pushed none.

        Called in the worker when the task ends; Airflow keeps what it returns for the UI.
        """
        from airflow.providers.common.compat.sdk import XCom  # wherever this Airflow release keeps it

        url = XCom.get_value(ti_key=ti_key, key=CONSOLE_URL_KEY)
        return url if isinstance(url, str) else ""


class ThingSpaceCampaignLink(ConsoleLink):
    """The firmware upgrade campaign the task scheduled, in ThingSpace."""

    name = "ThingSpace campaign"


class ControlCenterDeviceLink(ConsoleLink):
    """The first SIM the task changed (or the SIM list), in Cisco Control Center."""

    name = "Control Center"


class RomaInstanceLink(ConsoleLink):
    """The ROMA Connect instance whose devices the task forced offline, in the Huawei Cloud console."""

    name = "ROMA Connect instance"


class IoTSecurityInventoryLink(ConsoleLink):
    """The tenant's device inventory, in Palo Alto Networks IoT Security."""

    name = "IoT Security inventory"


def render_console_url(template: str, fields: Mapping[str, str], where: str) -> str:
    """Fill the ``{placeholders}`` of ``template`` with ``fields``, each value URL-quoted.

    :param where: how errors name the template (the connection and its extra).
    :return: the URL.
    :raises IoTFleetConfigurationError: naming every placeholder that is not one of ``fields`` (and
        the ones that are), for a template that is not a ``http(s)`` URL, or one that holds a user
        name or password (a link is shown to everyone who can see the task).
    """
    try:
        names = [name for _, name, _, _ in Formatter().parse(template) if name is not None]
    except ValueError as error:  # a lone "{" or "}"
        raise IoTFleetConfigurationError(
            f"{where} is not a URL template ({error}); write a literal brace as {{{{ or }}}}"
        ) from None
    unknown = sorted({name for name in names if name not in fields})
    if unknown:
        raise IoTFleetConfigurationError(
            f"{where} has unknown placeholders {', '.join('{' + name + '}' for name in unknown)}; "
            f"it can use {', '.join('{' + name + '}' for name in fields) or 'none'}"
        )
    url = template.format_map({name: quote(str(value), safe="") for name, value in fields.items()})
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise IoTFleetConfigurationError(f"{where} does not start with https:// and a host")
    if "@" in parts.netloc:
        raise IoTFleetConfigurationError(
            f"{where} holds a user name or password; a console link must not carry credentials"
        )
    return url


def push_console_url(operator: Any, context: Context, outcome: FleetOutcome) -> str | None:
    """Push the console URL of what ``operator`` changed to XCom (:data:`CONSOLE_URL_KEY`).

    :param operator: a write operator: its ``console_link_fields(outcome)`` fill the template, which
        is its connection's ``console_url`` or its ``console_url_default``.
    :return: the URL pushed, or ``None``: nothing to link to, no template, or one that cannot be
        filled (logged as a warning: a link never fails the task).
    """
    settings = operator.hook.settings
    template = settings.get_str(CONSOLE_URL_EXTRA) or operator.console_url_default
    if not template:
        return None
    try:
        fields = operator.console_link_fields(outcome)
        if fields is None:
            return None
        url = render_console_url(template, fields, f"{settings.label}: extra {CONSOLE_URL_EXTRA!r}")
    except IoTFleetConfigurationError as error:
        operator.log.warning("%s: no console link: %s", operator.vendor, error)
        return None
    context["ti"].xcom_push(key=CONSOLE_URL_KEY, value=url)
    return url
