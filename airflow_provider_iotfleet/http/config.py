"""An Airflow connection read once into typed settings, with clear errors for bad fields."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from airflow_provider_iotfleet.exceptions import IoTFleetConfigurationError
from airflow_provider_iotfleet.validation import dot_segment_problem

if TYPE_CHECKING:
    from airflow.sdk import Connection


def is_loopback_host(hostname: str | None) -> bool:
    """Return whether ``hostname`` names this machine (``localhost``, 127.0.0.0/8 or ``::1``)."""
    if not hostname:
        return False
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname.strip("[]")).is_loopback
    except ValueError:
        return False


def normalise_base_url(host: str, port: int | None, connection: str, *, field: str = "host") -> str:
    """Return ``host`` as an absolute base URL without a trailing slash.

    The scheme must be written out: guessing ``https`` for a simulator on ``127.0.0.1:8765`` would
    only fail later, slowly, with retried TLS errors. Plain ``http`` is accepted only for loopback
    hosts (the local simulator): credentials must never cross a network in clear text. Messages
    quote the URL without any ``user:password@`` in it.

    :param connection: how errors name the connection ("Connection 'cisco_default' (Cisco ...)").
    :param field: how errors name the connection field ``host`` came from (``extra 'oauth_url'``).
    :raises IoTFleetConfigurationError: for a missing or other scheme, a URL that does not parse (an
        unclosed ``[`` of an IPv6 address), a bad port or host name, a ``user:password@`` part, a
        dot segment in the path, or plain http to a remote host.
    """
    url = host.strip().rstrip("/")
    shown = _without_userinfo(url)
    if "://" not in url:
        raise IoTFleetConfigurationError(
            f"{connection}: {field} {shown!r} has no scheme; write it as https://{shown} "
            "(in a URI-form connection, percent-encode it: https%3A%2F%2F...)"
        )
    where = f"{connection}: {field} {shown!r}"
    parts = _split(url, where)
    if port and parts.port is None:
        url = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}"
        where = f"{connection}: {field} {_without_userinfo(url)!r}"
        parts = _split(url, where)
    if any(dot_segment_problem(segment) for segment in parts.path.split("/")):
        raise IoTFleetConfigurationError(f"{where} has a '.' or '..' segment in its path; write the path out")
    if not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))):
        raise IoTFleetConfigurationError(
            f"{connection}: {field} {parts.scheme}://{parts.hostname} must use https "
            "(plain http is allowed only for localhost, where the simulator runs)"
        )
    if "@" in parts.netloc:
        # It would be sent to the vendor and logged with every start line: credentials have fields.
        raise IoTFleetConfigurationError(
            f"{where} holds a user name or password; put them in the connection's login and password"
        )
    return url


def _split(url: str, where: str) -> SplitResult:
    """``urlsplit(url)`` with its host and port checked; every ``ValueError`` becomes a typed error.

    :param where: how errors start: the connection, the field and the URL as it may be shown.
    """
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # "[::1" (Invalid IPv6 URL), "[foo]": the host is not a URL host at all
        raise IoTFleetConfigurationError(
            f"{where} is not a valid URL (an IPv6 address is written in "
            "closed brackets: https://[2001:db8::1]:8443)"
        ) from None
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0..65535
    except ValueError:
        raise IoTFleetConfigurationError(f"{where} has an invalid port") from None
    host_and_port = parts.netloc.rpartition("@")[2]
    if (
        not hostname
        or any(char.isspace() or char in '\\<>"{}|^`' for char in parts.netloc)
        # urlsplit takes "[::1]x" and "[::1]]": nothing but a port may follow the closing bracket
        or (host_and_port.startswith("[") and not _BRACKETED_HOST.fullmatch(host_and_port))
        or (not host_and_port.startswith("[") and ("[" in host_and_port or "]" in host_and_port))
    ):
        raise IoTFleetConfigurationError(f"{where} is not a valid host name")
    return parts


#: A bracketed IPv6 host, with an optional port: what may stand after ``https://`` when it starts with ``[``.
_BRACKETED_HOST = re.compile(r"\[[0-9A-Fa-f:.]+(?:%25[^\]]+)?\](?::[0-9]*)?")


def _without_userinfo(url: str) -> str:
    """``url`` with whatever stands before its last ``@`` (after the scheme) replaced by ``***``: a
    password pasted into a URL field must not reach an error message."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    if "@" not in rest:
        return url
    return f"{scheme}{separator}***@{rest.rpartition('@')[2]}"


@dataclass(frozen=True)
class ConnectionSettings:
    """What a hook needs from its Airflow connection, read once when the hook first talks to the vendor.

    Extras are kept as given and read through the typed accessors below, which accept both JSON values
    and the strings that URI-form connections turn every extra into. Extras a hook does not read are
    ignored: nothing from a connection is ever sent as a header just because it is there.
    """

    conn_id: str
    vendor: str
    host: str | None
    port: int | None
    login: str | None
    password: str | None = field(repr=False)
    extras: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_connection(
        cls, conn: Connection, vendor: str, conn_type: str | None = None
    ) -> ConnectionSettings:
        """Build settings from an Airflow ``Connection`` to ``vendor`` (a display name for errors).

        :param conn_type: the connection type the hook reads (``cisco_control_center``); a connection
            of another type is refused, so that its missing fields are not reported one by one.
        :return: the connection's fields and extras, read once.
        :raises IoTFleetConfigurationError: for a connection of another type than ``conn_type``, naming
            both, or an extra that is not a JSON object.
        """
        if conn_type and conn.conn_type and conn.conn_type != conn_type:
            raise IoTFleetConfigurationError(
                f"Connection {conn.conn_id!r} is of type {conn.conn_type!r}, expected {conn_type!r} "
                f"({vendor}): pass the id of a {vendor} connection, or change this one's type",
                vendor=vendor,
            )
        extras = conn.extra_dejson
        if not isinstance(extras, Mapping):
            raise IoTFleetConfigurationError(
                f"Connection {conn.conn_id!r} ({vendor}): extra must be a JSON object"
            )
        return cls(
            conn_id=conn.conn_id,
            vendor=vendor,
            host=conn.host or None,
            port=conn.port,
            # A credential pasted with a trailing newline would break the header it goes into.
            login=(conn.login or "").strip() or None,
            password=(conn.password or "").strip() or None,
            extras=dict(extras),
        )

    def error(self, message: str) -> IoTFleetConfigurationError:
        """Return (not raise) a configuration error that names this connection and its vendor."""
        return IoTFleetConfigurationError(f"{self.label}: {message}", vendor=self.vendor)

    @property
    def label(self) -> str:
        """How messages name this connection: ``Connection 'cisco_default' (Cisco IoT Control Center)``."""
        return f"Connection {self.conn_id!r} ({self.vendor})"

    def base_url(self, default: str | None = None) -> str:
        """Return the vendor base URL from ``host`` (or ``default``), checked by :func:`normalise_base_url`."""
        host = self.host or default
        if not host:
            raise self.error("host is empty; set it to the vendor's base URL")
        return normalise_base_url(host, self.port, self.label)

    def url(self, key: str, default: str) -> str:
        """Return extra ``key`` (an endpoint such as a token URL) or ``default``, checked like ``host``:
        credentials sent there must not cross a network in clear text either."""
        return normalise_base_url(self.get_str(key) or default, None, self.label, field=f"extra {key!r}")

    def ca_bundle(self) -> str | None:
        """The ``ca_bundle`` extra: a readable PEM file, or ``None`` (the system's trust store)."""
        path = self.get_str("ca_bundle")
        if path is None:
            return None
        expanded = os.path.expanduser(path)
        if not os.path.isfile(expanded) or not os.access(expanded, os.R_OK):
            raise self.error(f"extra 'ca_bundle' is {path!r}, which is not a readable file")
        return expanded

    def require_login(self, what: str) -> str:
        if not self.login:
            raise self.error(f"login is empty; set it to the {what}")
        return self.login

    def require_password(self, what: str) -> str:
        if not self.password:
            raise self.error(f"password is empty; set it to the {what}")
        return self.password

    def get_str(self, key: str, default: str | None = None) -> str | None:
        """Return extra ``key`` as a stripped string, or ``default`` when absent or empty."""
        value = self.extras.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return default
        return str(value).strip()

    def require_str(self, key: str, what: str) -> str:
        value = self.get_str(key)
        if value is None:
            raise self.error(f"extra {key!r} is missing; set it to the {what}")
        return value

    def get_choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = (self.get_str(key) or default).lower()
        if value not in choices:
            raise self.error(f"extra {key!r} is {value!r}; expected one of {', '.join(choices)}")
        return value

    def get_float(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        value = self.extras.get(key)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise self.error(f"extra {key!r} must be a number, got {value!r}") from None
        if not math.isfinite(number) or number <= minimum:
            raise self.error(f"extra {key!r} must be a finite number greater than {minimum:g}, got {value!r}")
        return number

    def get_int(self, key: str, default: int, *, minimum: int = 0) -> int:
        value = self.extras.get(key)
        if value is None or value == "":
            return default
        if isinstance(value, bool):
            raise self.error(f"extra {key!r} must be a whole number, got {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise self.error(f"extra {key!r} must be a whole number, got {value!r}") from None
        if number < minimum:
            raise self.error(f"extra {key!r} must be at least {minimum}, got {value!r}")
        return number
