"""Palo Alto Networks IoT Security: bulk update of cellular device attributes.

Two ways in, from one connection type: the tenant portal's v4.0 API with ``X-Key-Id`` /
``X-Access-Key`` headers (``auth_type=api_key``), and Strata Cloud Manager with OAuth2 client
credentials scoped to a tenant service group (``auth_type=scm``), required for tenants created since
mid-2025.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal
from urllib.parse import urlsplit

from airflow_provider_iotfleet.exceptions import IoTFleetVendorResponseError
from airflow_provider_iotfleet.hooks.base import RATE_HEADROOM, IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.paloalto.connection import (
    CONNECTION_FORM,
    DEFAULT_DEVICE_READS_PER_MINUTE,
    DEFAULT_REQUESTS_PER_MINUTE,
    SCM_TOKEN_URL,
)
from airflow_provider_iotfleet.hooks.paloalto.reads import (
    DEVICE_LIST_PAGE_LENGTH,
    DeviceListMatcher,
)
from airflow_provider_iotfleet.hooks.paloalto.rules import validate_cellular_devices
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Auth,
    Call,
    Clock,
    ConnectionSettings,
    ErrorMapping,
    TokenBucket,
    VendorErrorBody,
    text_or_none,
)
from airflow_provider_iotfleet.http.auth import HeaderAuth, TokenAuth, oauth_client_credentials
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.validation import (
    check_batch_size,
)

VENDOR = "Palo Alto Networks IoT Security"
SCM_API_URL = "https://api.strata.paloaltonetworks.com"
#: Not published by the vendor; the connection's batch size overrides it.
DEFAULT_MAX_DEVICES_PER_REQUEST = 1000
_TENANT_IN_HOST = re.compile(r"^([^.]+)\.iot\.", re.IGNORECASE)


def _parse_error(body: Any) -> VendorErrorBody:
    # {"code": 403, "msg": "Forbidden access..."}; code arrives as a number or a string.
    # The SCM token endpoint answers in OAuth2's shape: {"error": ..., "error_description": ...}.
    if not isinstance(body, dict):
        return VendorErrorBody()
    return VendorErrorBody(
        code=text_or_none(body.get("code", body.get("error"))),
        message=text_or_none(body.get("msg", body.get("error_description"))),
    )


PALOALTO_ERRORS = ErrorMapping(vendor=VENDOR, parse_body=_parse_error)


@dataclass(frozen=True)
class BulkUpdateResult:
    """What IoT Security reported for one bulk update request.

    :ivar requested: devices sent.
    :ivar updated: ``updatedDeviceNum``, the devices IoT Security updated.
    :ivar message: the vendor's message (``"OK"``).
    """

    requested: int
    updated: int
    message: str


class PaloAltoIoTSecurityHook(IoTFleetBaseHook):
    """Update cellular device attributes in Palo Alto Networks IoT Security.

    Connection: ``host`` is ``https://<tenant>.iot.paloaltonetworks.com`` (``api_key``) or the Strata
    API (``scm``, default ``https://api.strata.paloaltonetworks.com``); ``login`` / ``password`` are the
    key id and access key, or the SCM client id and secret. Extras: ``auth_type``, ``customer_id``
    (defaults to the tenant label in the host), ``tsg_id`` and ``auth_url`` for ``scm``,
    ``requests_per_minute`` (180), ``device_reads_per_minute`` (60, the published limit of device
    reads: :meth:`read_devices` keeps under it as well as under ``requests_per_minute``),
    ``timeout``, ``max_retries``.

    :param paloalto_iot_conn_id: the Airflow connection id.
    :param rate_limit_share: this hook's share of the connection's rate limit (see
        :class:`~airflow_provider_iotfleet.hooks.base.IoTFleetBaseHook`).
    :param max_devices_per_request: the largest ``devicelist`` one request may carry.
    """

    conn_name_attr = "paloalto_iot_conn_id"
    connection_form = CONNECTION_FORM

    def __init__(
        self,
        paloalto_iot_conn_id: str = CONNECTION_FORM.default_conn_id,
        *,
        max_devices_per_request: int = DEFAULT_MAX_DEVICES_PER_REQUEST,
        clock: Clock = SYSTEM_CLOCK,
        rate_limit_share: float = 1.0,
    ) -> None:
        super().__init__(paloalto_iot_conn_id, clock=clock, rate_limit_share=rate_limit_share)
        self.max_devices_per_request = max_devices_per_request

    @cached_property
    def auth_type(self) -> Literal["api_key", "scm"]:
        """``api_key`` (tenant portal, v4.0) or ``scm`` (Strata Cloud Manager OAuth2)."""
        choice = self.settings.get_choice("auth_type", ("api_key", "scm"), "api_key")
        return "scm" if choice == "scm" else "api_key"

    @cached_property
    def customer_id(self) -> str:
        """The tenant the v4.0 API addresses: the ``customer_id`` extra, else the host's first label."""
        configured = self.settings.get_str("customer_id")
        if configured:
            return configured
        match = _TENANT_IN_HOST.match(urlsplit(self.settings.base_url()).hostname or "")
        if not match:
            raise self.settings.error(
                "extra 'customer_id' is missing and the host is not <tenant>.iot.paloaltonetworks.com"
            )
        return match.group(1)

    @property
    def _api_prefix(self) -> str:
        return "iot/pub/v1" if self.auth_type == "scm" else "pub/v4.0"

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        options = self._transport_options(
            settings, settings.get_float("requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE) / 60.0
        )
        if self.auth_type == "api_key":
            auth: Auth = HeaderAuth(
                {
                    "X-Key-Id": settings.require_login("API key id (X-Key-Id)"),
                    "X-Access-Key": settings.require_password("API access key (X-Access-Key)"),
                },
                "the login (key id), password (access key) and the key's API role",
            )
            return {"base_url": settings.base_url(), "errors": PALOALTO_ERRORS, "auth": auth, **options}
        token = oauth_client_credentials(
            settings.url("auth_url", SCM_TOKEN_URL),
            settings.require_login("SCM service account client id"),
            settings.require_password("SCM service account client secret"),
            clock=self.clock,
            scope=f"tsg_id:{settings.require_str('tsg_id', 'tenant service group id')}",
            default_lifetime=899.0,
            credential_hint="the login (client id), password (client secret) and tsg_id extra",
        )
        return {
            "base_url": settings.base_url(default=SCM_API_URL),
            "errors": PALOALTO_ERRORS,
            "auth": TokenAuth(token),
            **options,
        }

    def bulk_update(
        self,
        devices: Sequence[Mapping[str, Any]],
        update_source: str = "cellular",
        customer_id: str | None = None,
        *,
        validated: bool = False,
    ) -> BulkUpdateResult:
        """Update attributes of up to ``max_devices_per_request`` cellular devices in one request.

        :param devices: entries with any of ipAddress, ipv6Address, imei, iccid, imsi, apn, msisdn and
            SessionEvtType, at least one identifier each.
        :param update_source: the ``updateSource`` query value; this API takes ``cellular``.
        :param customer_id: the tenant, overriding the connection's (``api_key`` mode only).
        :param validated: the devices are entries that :func:`validate_cellular_devices` returned,
            not checked again (the operator validates its whole input once, before the first batch).
        :return: how many devices were sent and how many IoT Security updated.
        :raises IoTFleetValidationError: listing every bad device, before any request.
        :raises IoTFleetAuthError: for a bad key or a key without the RBAC permission (403).
        :raises IoTFleetVendorResponseError: for other refusals, or a success body without code 1.
        """
        devicelist = list(devices) if validated else validate_cellular_devices(devices)
        check_batch_size(len(devicelist), self.max_devices_per_request, "devices")
        params = {"updateSource": update_source}
        if self.auth_type == "api_key":
            params["customerid"] = customer_id or self.customer_id
        reply = self.client.send(
            Call(
                "PUT", f"{self._api_prefix}/device/bulkUpdate", params=params, json={"devicelist": devicelist}
            )
        )
        code = reply.field("code", (int, str))
        message = str(reply.field("message", str, required=False) or "")
        if str(code) != "1":
            raise IoTFleetVendorResponseError(
                f"{VENDOR} did not confirm the bulk update: {message or 'no message'} "
                f"(answer to {reply.action})",
                http_status=reply.status,
                error_code=str(code),
                request_id=reply.request_id,
                vendor=VENDOR,
            )
        updated = reply.field("updatedDeviceNum", (int, str))
        try:
            updated_count = int(updated)
        except ValueError:
            updated_count = -1
        if not 0 <= updated_count <= len(devicelist):
            raise malformed_response(
                VENDOR,
                reply.action,
                f"updatedDeviceNum {updated!r} for {len(devicelist)} devices sent",
                request_id=reply.request_id,
            )
        self.log.debug("%s: %d of %d devices updated", VENDOR, updated_count, len(devicelist))
        return BulkUpdateResult(requested=len(devicelist), updated=updated_count, message=message)

    @cached_property
    def _device_reads(self) -> TokenBucket:
        """The device read limit, apart from the client's: the transport core has one limit per
        client, and IoT Security allows device reads a third of the rate of other calls."""
        per_minute = self.settings.get_float("device_reads_per_minute", DEFAULT_DEVICE_READS_PER_MINUTE)
        return TokenBucket(
            per_minute / 60.0 * self.rate_limit_share * RATE_HEADROOM,
            clock=self.clock.monotonic,
            sleep=self.clock.sleep,
        )

    def read_devices(
        self, devices: Sequence[Mapping[str, str]], customer_id: str | None = None
    ) -> list[dict[str, Any] | None]:
        """Find ``devices`` in IoT Security's device list (``GET .../device/list``, 1000 entries a
        page), paging once for all of them and stopping as soon as every one is found. Each page waits
        for the device read limit (``device_reads_per_minute``) and the client's own.

        Only the tenant portal's v4.0 API documents the device list: with ``auth_type=scm`` nothing is
        read and no device is found.

        :param devices: validated ``devicelist`` entries; an entry of the list is a device's when it
            shows one of the device's identifiers with the same value.
        :param customer_id: the tenant, overriding the connection's.
        :return: for each device, in order, its device list entry, or ``None`` when not listed.
        :raises IoTFleetError: when a read fails.
        """
        matcher = DeviceListMatcher(devices)
        if self.auth_type == "scm":
            self.log.warning(
                "%s: the device list is documented for the v4.0 API only, not with auth_type=scm: "
                "no device is read back",
                VENDOR,
            )
            return matcher.found
        offset = 0
        while matcher.missing:
            params = {
                "customerid": customer_id or self.customer_id,
                "offset": offset,
                "pagelength": DEVICE_LIST_PAGE_LENGTH,
            }
            self._device_reads.acquire()
            reply = self.client.send(Call("GET", f"{self._api_prefix}/device/list", params=params))
            entries = reply.objects("devices")
            matcher.add_page(entries)
            offset += len(entries)
            total = reply.field("total", int, required=False)
            if len(entries) < DEVICE_LIST_PAGE_LENGTH or (total is not None and offset >= total):
                break
        self.log.info(
            "%s: %d of %d devices found in the device list (%d entries read)",
            VENDOR,
            len(devices) - matcher.missing,
            len(devices),
            offset,
        )
        return matcher.found

    def _check_connection(self) -> str:
        if self.auth_type == "scm":
            # Obtaining a token proves the client id, secret and TSG scope; SCM has no cheaper read
            # endpoint documented for IoT Security.
            self.client.obtain()
            return f"Obtained a Strata Cloud Manager token for {self.settings.get_str('tsg_id')}"
        self.client.send(
            Call(
                "GET",
                f"{self._api_prefix}/device/list",
                params={"customerid": self.customer_id, "offset": 0, "pagelength": 1},
            )
        )
        return f"Authenticated to {VENDOR} tenant {self.customer_id}"
