"""Verizon ThingSpace FOTA v3: the hook. Device firmware listing (paginated) and firmware sync here;
the connection in :mod:`airflow_provider_iotfleet.hooks.verizon.base`, campaign calls in
:mod:`airflow_provider_iotfleet.hooks.verizon.campaigns`, their orchestration in
:mod:`airflow_provider_iotfleet.hooks.verizon.upgrades`."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from airflow_provider_iotfleet.hooks.verizon.answers import (
    MISSING_FROM_ANSWER,
    SYNC_SUCCESS,
    VENDOR,
    DeviceLines,
    FirmwareSyncResult,
    device_json_lines,
    is_device_id,
    normalise_device,
    normalise_timestamp,
    sync_failure,
)
from airflow_provider_iotfleet.hooks.verizon.base import ThingSpaceBaseHook, segment
from airflow_provider_iotfleet.hooks.verizon.campaigns import FirmwareCampaigns
from airflow_provider_iotfleet.hooks.verizon.connection import CONNECTION_FORM
from airflow_provider_iotfleet.hooks.verizon.paging import CursorPager, ItemCheck
from airflow_provider_iotfleet.hooks.verizon.previews import FirmwarePreviews
from airflow_provider_iotfleet.hooks.verizon.rules import MAX_LIST_IMEIS, MAX_SYNC_IMEIS, validate_protocol
from airflow_provider_iotfleet.hooks.verizon.upgrades import FirmwareUpgrades
from airflow_provider_iotfleet.http import SYSTEM_CLOCK, Call, Clock, Reply
from airflow_provider_iotfleet.http.concurrency import map_batches
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Plan, arun_plan, run_plan
from airflow_provider_iotfleet.utils import chunks
from airflow_provider_iotfleet.validation import check_batch_size, validate_imeis

Page = TypeVar("Page")


def _pages_ahead(
    hook: ThingSpaceBaseHook, listings: list[CursorPager], shape: Callable[[list[dict[str, Any]]], Page]
) -> Generator[Page, None, None]:
    """Return the pages of ``listings``, one after the other, each page's items as ``shape`` makes
    them, each listing read one page ahead (:meth:`.CursorPager.pages_ahead`); closing the
    generator ends the look-ahead's thread."""
    for listing in listings:
        pages = listing.pages_ahead(hook, name="thingspace-fota-pages")
        try:
            for page in pages:
                yield shape(page)
        finally:
            pages.close()


def _normalised(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [normalise_device(item) for item in items]


def _as_json_lines(items: list[dict[str, Any]]) -> DeviceLines:
    return DeviceLines(device_json_lines(items), [item.get("deviceId") for item in items])


class VerizonThingSpaceHook(FirmwarePreviews, FirmwareUpgrades, FirmwareCampaigns, ThingSpaceBaseHook):
    """List FOTA devices and sync their firmware on Verizon ThingSpace; schedule, follow and cancel
    firmware upgrade campaigns (the calls of :class:`.campaigns.FirmwareCampaigns`), or get devices
    into one in a single call (:meth:`ensure_campaign`); see what a sync or an upgrade would do by
    reads only (:meth:`preview_sync`, :meth:`preview_upgrade`).

    Connection: ``host`` is the ThingSpace root (default ``https://thingspace.verizon.com``; the FOTA,
    OAuth and M2M paths are appended), ``login`` / ``password`` the OAuth key and secret. Extras:
    ``m2m_username`` and ``m2m_password`` (required), ``account_name`` (default account),
    ``oauth_url`` and ``m2m_login_url`` (override the derived endpoints), ``requests_per_second``
    (10; ThingSpace publishes no limit), ``timeout``, ``max_retries``.

    :param verizon_thingspace_conn_id: the Airflow connection id.
    :param rate_limit_share: this hook's share of the connection's rate limit (see
        :class:`~airflow_provider_iotfleet.hooks.base.IoTFleetBaseHook`).
    """

    conn_name_attr = "verizon_thingspace_conn_id"
    secret_extras = ("m2m_password",)
    connection_form = CONNECTION_FORM

    def __init__(
        self,
        verizon_thingspace_conn_id: str = CONNECTION_FORM.default_conn_id,
        *,
        clock: Clock = SYSTEM_CLOCK,
        rate_limit_share: float = 1.0,
    ) -> None:
        super().__init__(verizon_thingspace_conn_id, clock=clock, rate_limit_share=rate_limit_share)

    def iter_fota_device_pages(
        self,
        imeis: Sequence[str] | None = None,
        *,
        account_name: str | None = None,
        protocol: str | None = None,
        prefetch: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Return an iterator over the account's FOTA devices, one normalised page (up to 1000) at a time.

        Each page is requested only when the previous one has been consumed, so the whole account is
        never held in memory. With ``prefetch``, the next page is fetched and normalised in a thread
        of its own while the caller works on the current one: one page ahead at most, an error
        raised when the caller reaches its page (see :class:`.LookAhead`); a caller stopping early
        should ``close()`` the iterator, which ends the look-ahead's thread. Arguments are checked at once, before any request.

        :param imeis: only these devices (``POST``, :data:`MAX_LIST_IMEIS` per request body);
            ``None`` lists the whole account (``GET``). IMEIs the account does not have are absent.
        :param account_name: the billing account (leading zeros included); default: the connection's.
        :param protocol: ``LWM2M``, ``OMADM`` or ``HTTP`` to filter on.
        :param prefetch: fetch the next page while the caller works on the current one.
        :raises IoTFleetValidationError: for a bad IMEI or protocol, before any request.
        """
        listings = self._fota_listings(imeis, account_name, protocol)
        if prefetch:
            # The next request goes out as soon as this page's cursor is read from its raw answer;
            # decoding, checking and normalising the page is the caller's thread's work, overlapping it.
            return _pages_ahead(self, listings, _normalised)
        return (_normalised(page) for listing in listings for page in listing.pages(self))

    def iter_fota_device_json_lines(
        self,
        imeis: Sequence[str] | None = None,
        *,
        account_name: str | None = None,
        protocol: str | None = None,
    ) -> Iterator[DeviceLines]:
        """Return an iterator over the account's FOTA devices as :meth:`iter_fota_device_pages` with
        ``prefetch`` does (one page ahead; ``close()`` it when stopping early), each page as JSON
        Lines: ``DeviceLines(text, device_ids)``, ``text`` holding one line per device,
        ``json.dumps(device, separators=(",", ":"))`` of the normalised device, byte for byte, made
        without building the normalised devices (:func:`.device_json_lines`).

        :raises IoTFleetValidationError: for a bad IMEI or protocol, before any request.
        """
        return _pages_ahead(self, self._fota_listings(imeis, account_name, protocol), _as_json_lines)

    def _fota_listings(
        self, imeis: Sequence[str] | None, account_name: str | None, protocol: str | None
    ) -> list[CursorPager]:
        """The listings of the FOTA devices :meth:`iter_fota_device_pages` reads, arguments checked."""
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis) if imeis is not None else None
        if protocol is not None:
            protocol = validate_protocol(protocol)
        path = f"devices/{segment(account)}"
        # The whole account in one listing (GET), or a listing (POST) per body of the IMEIs asked for.
        bodies: list[dict[str, Any] | None] = [None]
        if checked is not None:
            bodies = [{"deviceList": batch} for batch in chunks(checked, MAX_LIST_IMEIS)]
        return [_device_listing(path, body, protocol, check=_every_device_has_an_id) for body in bodies]

    def firmware_versions(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> dict[str, str | None]:
        """Return the firmware each device in ``imeis`` reports (POST listing, 1000 IMEIs per body).

        :return: ``{imei: firmware}`` for the devices the account has; IMEIs it does not have are absent.
        :raises IoTFleetValidationError: for a bad IMEI or a missing account, before any request.
        """
        return run_plan(self.client, self._firmware_plan(imeis, account_name))

    async def afirmware_versions(
        self, imeis: Sequence[str], *, account_name: str | None = None
    ) -> dict[str, str | None]:
        """:meth:`firmware_versions` for triggers."""
        client = await self.aclient()
        return await arun_plan(client, self._firmware_plan(imeis, account_name))

    def _firmware_plan(self, imeis: Sequence[str], account_name: str | None) -> Plan[dict[str, str | None]]:
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis)
        path = f"devices/{segment(account)}"
        firmware: dict[str, str | None] = {}
        for batch in chunks(checked, MAX_LIST_IMEIS):
            items = yield from _device_listing(path, {"deviceList": batch}).read_all()
            firmware.update((str(item.get("deviceId")), item.get("firmware")) for item in items)
        return firmware

    def iter_fota_devices(
        self,
        imeis: Sequence[str] | None = None,
        *,
        account_name: str | None = None,
        protocol: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over the account's FOTA devices one by one; see :meth:`iter_fota_device_pages`."""
        pages = self.iter_fota_device_pages(imeis, account_name=account_name, protocol=protocol)
        return (device for page in pages for device in page)

    def sync_firmware(self, imeis: Sequence[str], *, account_name: str | None = None) -> FirmwareSyncResult:
        """Ask ThingSpace to read the firmware reported by each device (``PUT /firmware/{acc}/devices``).

        IMEIs are sent 100 per request, the documented cap. A request that fails puts its IMEIs in
        ``failed`` with the error's code and message; it never loses what earlier requests synced.
        Refused credentials stop the run: later IMEIs fail as not attempted.

        :param imeis: the devices, 15-digit IMEIs.
        :param account_name: the billing account; default: the connection's.
        :return: every IMEI once, in ``synced`` or ``failed``.
        :raises IoTFleetValidationError: listing every bad IMEI, before any request.
        """
        account = self.resolve_account(account_name)
        checked = validate_imeis(imeis)
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for outcome in map_batches(
            lambda batch: self.sync_firmware_batch(batch, account_name=account, validated=True),
            chunks(checked, MAX_SYNC_IMEIS),
        ):
            if outcome.result is not None:
                synced.extend(outcome.result.synced)
                failed.extend(outcome.result.failed)
            elif outcome.error is not None:
                failed.extend(sync_failure(imei, outcome.error) for imei in outcome.items)
        self.log.info("%s: firmware synced for %d of %d devices", VENDOR, len(synced), len(checked))
        return FirmwareSyncResult(account_name=account, synced=synced, failed=failed)

    def sync_firmware_batch(
        self, imeis: Sequence[str], *, account_name: str | None = None, validated: bool = False
    ) -> FirmwareSyncResult:
        """Sync the firmware of at most 100 devices in one request; see :meth:`sync_firmware`.

        :param validated: ``imeis`` are what :func:`~airflow_provider_iotfleet.validation.validate_imeis`
            returned, not checked again (a caller sending many batches validates its input once).

        :return: every IMEI once: ``synced``, or ``failed`` with ThingSpace's per-device status and
            reason (or as missing from its answer). Answers for devices not sent are ignored.
        :raises IoTFleetValidationError: for a bad IMEI or more than 100 of them, before any request.
        :raises IoTFleetVendorResponseError: when ThingSpace refused the request as a whole.
        """
        account = self.resolve_account(account_name)
        batch = list(imeis) if validated else validate_imeis(imeis)
        check_batch_size(len(batch), MAX_SYNC_IMEIS, "imeis")
        # Idempotent (ThingSpace reads the devices' firmware again): retried like a read, on 5xx too.
        reply = self.client.send(
            Call("PUT", f"firmware/{segment(account)}/devices", json={"deviceList": batch}, repeat="always")
        )
        key = "deviceFirmwarVersionList"  # sic: the vendor's spelling
        if key not in reply.object() and "deviceFirmwareVersionList" in reply.object():
            key = "deviceFirmwareVersionList"
        requested = set(batch)
        answers: dict[str, dict[str, Any]] = {}
        for item in reply.objects(key):
            device_id = item.get("deviceId")
            if isinstance(device_id, str | int) and str(device_id) in requested:
                answers.setdefault(str(device_id), item)
            else:
                self.log.warning("%s: ignoring an answer for unrequested device %r", VENDOR, device_id)
        synced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for imei in batch:
            answer = answers.get(imei)
            if answer is None:
                failed.append(
                    {
                        "device_id": imei,
                        "status": None,
                        "reason": MISSING_FROM_ANSWER,
                        "error_code": None,
                    }
                )
            elif answer.get("status") == SYNC_SUCCESS:
                synced.append(
                    {
                        "device_id": imei,
                        "firmware_version": answer.get("firmwareVersion"),
                        "version_update_time": normalise_timestamp(
                            answer.get("VersionUpdateTime", answer.get("firmwareVersionUpdateTime"))
                        ),
                        "status": SYNC_SUCCESS,
                    }
                )
            else:
                failed.append(
                    {
                        "device_id": imei,
                        "status": answer.get("status"),
                        "reason": answer.get("reason", answer.get("Reason")),
                        "error_code": None,
                    }
                )
        return FirmwareSyncResult(account_name=account, synced=synced, failed=failed)


def _device_listing(
    path: str, body: dict[str, Any] | None, protocol: str | None = None, *, check: ItemCheck | None = None
) -> CursorPager:
    """The FOTA device listing at ``path``: the whole account (``GET``), or the devices a ``body``
    names (``POST``), filtered on ``protocol`` when given."""

    def ask(last_seen: str) -> Call:
        params = {"lastSeenDeviceId": last_seen}
        if protocol:
            params["protocol"] = protocol
        if body is None:
            return Call("GET", path, params=params)
        return Call("POST", path, params=params, json=body)

    return CursorPager(ask, check=check)


def _every_device_has_an_id(reply: Reply, devices: list[dict[str, Any]]) -> None:
    """Refuse a page with a device without its IMEI: it would go to XCom as a listed device that is none."""
    if not all(is_device_id(device.get("deviceId")) for device in devices):
        raise malformed_response(
            VENDOR, reply.action, "a device without a deviceId", request_id=reply.request_id
        )
