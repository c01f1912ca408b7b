"""Huawei Cloud ROMA Connect LINK: force devices offline, read devices."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any
from urllib.parse import quote

from airflow_provider_iotfleet.exceptions import (
    IoTFleetError,
    IoTFleetNotAttemptedError,
    IoTFleetValidationError,
)
from airflow_provider_iotfleet.hooks.base import IoTFleetBaseHook
from airflow_provider_iotfleet.hooks.huawei.answers import (
    HUAWEI_ERRORS,
    MISSING_FROM_ANSWER,
    NEVER,
    NEVER_CONNECTED,
    NEVER_CONNECTED_MESSAGE,
    NOT_FORCED,
    NOT_FORCED_OFFLINE,
    OFFLINE,
    ONLINE_STATUS,
    STATUS_NAMES,
    VENDOR,
    ForceOfflineResult,
    answered_id,
    failed_entry,
)
from airflow_provider_iotfleet.hooks.huawei.auth import HuaweiAkSkAuth, iam_token
from airflow_provider_iotfleet.hooks.huawei.connection import CONNECTION_FORM, DEFAULT_REQUESTS_PER_SECOND
from airflow_provider_iotfleet.hooks.readback import (
    Applied,
    LostAnswerWording,
    NotApplied,
    Verdict,
    write_with_read_back,
)
from airflow_provider_iotfleet.hooks.reads import NOT_FOUND, DeviceReads
from airflow_provider_iotfleet.http import (
    SYSTEM_CLOCK,
    Auth,
    Call,
    Clock,
    ConnectionSettings,
)
from airflow_provider_iotfleet.http.auth import TokenAuth
from airflow_provider_iotfleet.http.concurrency import affects_every_item
from airflow_provider_iotfleet.http.errors import malformed_response
from airflow_provider_iotfleet.http.plans import Each, SettlingPlan, arun_plan, replies, run_plan
from airflow_provider_iotfleet.http.retry import is_transient
from airflow_provider_iotfleet.validation import (
    check_batch_size,
    path_segment_problem,
    validate_roma_device_ids,
    validate_whole_number,
)

DEFAULT_MAX_DEVICES_PER_REQUEST = 1000
MAX_PAGE_SIZE = 999
#: Up to this many devices, a status poll reads each one; beyond, it may page the filtered listing.
PER_DEVICE_READS = 10


def _still_online(ids: list[int], error: IoTFleetError) -> ForceOfflineResult:
    """Devices not forced offline because the answers kept being lost (a 5xx, a dropped connection):
    failed, and retryable when that error is, since the same request may well pass later (what a
    retry of the task needs to know)."""
    return ForceOfflineResult(
        succeeded=[],
        failed=[
            {
                **failed_entry(
                    device_id,
                    error.error_code or NOT_FORCED,
                    f"still online after the force-offline's answer was lost: {error.bare_message}",
                ),
                "http_status": error.http_status,
                "retryable": is_transient(error),
            }
            for device_id in ids
        ],
    )


_FORCE_OFFLINE_WORDING = LostAnswerWording[list[int]](
    vendor=VENDOR,
    write=lambda ids: f"a force-offline of {len(ids)} devices",
    bare_write="the force-offline",
    read="their status",
    bare_read="the devices",
    risk="ROMA may have forced them offline",
    advice="check them before sending again",
)


class HuaweiRomaConnectHook(IoTFleetBaseHook):
    """Bring ROMA Connect LINK devices offline and read them.

    Connection: ``host`` is ``https://roma.<region>.myhuaweicloud.com`` (derived from ``region`` when
    empty). ``login`` / ``password`` are the AK / SK (``auth_type=aksk``) or the IAM user name and
    password (``iam_token``). Extras: ``project_id`` and ``instance_id`` (required), ``region``,
    ``security_token`` (temporary AK/SK), ``iam_endpoint`` and ``domain_name`` (IAM),
    ``requests_per_second`` (10, not published by Huawei), ``timeout``, ``max_retries``.

    :param huawei_roma_conn_id: the Airflow connection id.
    :param rate_limit_share: this hook's share of the connection's rate limit (see
        :class:`~airflow_provider_iotfleet.hooks.base.IoTFleetBaseHook`).
    :param max_devices_per_request: the most ids one force-offline request carries.
    """

    conn_name_attr = "huawei_roma_conn_id"
    connection_form = CONNECTION_FORM
    secret_extras = ("security_token",)

    def __init__(
        self,
        huawei_roma_conn_id: str = CONNECTION_FORM.default_conn_id,
        *,
        max_devices_per_request: int = DEFAULT_MAX_DEVICES_PER_REQUEST,
        clock: Clock = SYSTEM_CLOCK,
        rate_limit_share: float = 1.0,
    ) -> None:
        super().__init__(huawei_roma_conn_id, clock=clock, rate_limit_share=rate_limit_share)
        self.max_devices_per_request = max_devices_per_request

    @cached_property
    def _devices_path(self) -> str:
        """``v2/{project_id}/link/instances/{instance_id}/devices``, from the connection's extras.

        :raises IoTFleetConfigurationError: when an extra is missing or not one plain path segment
            (``..`` or a ``/`` would send the signed request to another path).
        """
        segments = []
        for key, what in (
            ("project_id", "Huawei Cloud project id"),
            ("instance_id", "ROMA Connect instance id"),
        ):
            value = self.settings.require_str(key, what)
            if problem := path_segment_problem(value):
                raise self.settings.error(f"extra {key!r} {value!r} is not a {what}: it {problem}")
            segments.append(quote(value, safe=""))
        project_id, instance_id = segments
        return f"v2/{project_id}/link/instances/{instance_id}/devices"

    def _client_options(self, settings: ConnectionSettings) -> dict[str, Any]:
        region = settings.get_str("region")
        base_url = settings.base_url(default=f"https://roma.{region}.myhuaweicloud.com" if region else None)
        project_id = settings.require_str("project_id", "Huawei Cloud project id")
        auth_type = settings.get_choice("auth_type", ("aksk", "iam_token"), "aksk")
        auth: Auth
        if auth_type == "aksk":
            auth = HuaweiAkSkAuth(
                settings.require_login("access key (AK)"),
                settings.require_password("secret key (SK)"),
                project_id=project_id,
                security_token=settings.get_str("security_token"),
                clock=self.clock,
                log=self.log,
            )
        else:
            if not settings.get_str("iam_endpoint") and not region:
                raise settings.error("set extra 'iam_endpoint' or 'region' for auth_type iam_token")
            iam_endpoint = settings.url("iam_endpoint", f"https://iam.{region}.myhuaweicloud.com")
            token = iam_token(
                f"{iam_endpoint}/v3/auth/tokens",
                user_name=settings.require_login("IAM user name"),
                password=settings.require_password("IAM user password"),
                domain_name=settings.require_str("domain_name", "account (domain) name of the IAM user"),
                project_id=project_id,
                clock=self.clock,
            )
            auth = TokenAuth(token, header="X-Auth-Token", prefix="")
        return {
            "base_url": base_url,
            "errors": HUAWEI_ERRORS,
            "auth": auth,
            **self._transport_options(
                settings, settings.get_float("requests_per_second", DEFAULT_REQUESTS_PER_SECOND)
            ),
        }

    def force_offline(
        self,
        device_ids: Sequence[int | str],
        *,
        read_first: bool = False,
        read_back: bool = True,
        validated: bool = False,
    ) -> ForceOfflineResult:
        """Bring devices offline in one request (``POST .../devices/force-offline``).

        Devices ROMA refuses are read back: those already offline are ``unchanged`` (as asked, and
        what an earlier try of a retried task did), the others ``failed``.

        :param device_ids: ROMA device ids (1..99999999999999999), at most ``max_devices_per_request``.
        :param read_first: read the devices' online status before sending, and send only those not
            offline yet (a never-connected device is not sent: ROMA would refuse it). What a retried
            task does, so that a retry costs what is left.
        :param read_back: read back the devices ROMA refused (see :meth:`read_back_refused`). A
            caller sending many batches passes ``False`` and reads them all back once, since a read
            of many devices pages the instance's listing, whatever their number.
        :param validated: ``device_ids`` are ints that
            :func:`~airflow_provider_iotfleet.validation.validate_roma_device_ids` returned, not checked
            again (the operator validates its whole input once, before the first batch).
        :return: the devices ROMA brought offline, those already offline, and those it could not.
        :raises IoTFleetValidationError: listing every bad id, before any request.
        :raises IoTFleetNotFoundError: when the instance or project does not exist.
        :raises IoTFleetNotAttemptedError: with ``read_first``, when the read failed: nothing was sent.
        :raises IoTFleetOutcomeUnknownError: when the answer was lost and reading the devices back
            failed too: ROMA may have forced them offline.
        """
        ids = (
            [int(device_id) for device_id in device_ids]
            if validated
            else validate_roma_device_ids(device_ids)
        )
        check_batch_size(len(ids), self.max_devices_per_request, "device_ids")
        unchanged, never, to_send = self.split_offline(ids, validated=True) if read_first else ([], [], ids)
        sent = self._force_offline(to_send) if to_send else ForceOfflineResult(succeeded=[], failed=[])
        if read_back:
            sent = self.read_back_refused(sent)
        result = ForceOfflineResult(
            succeeded=sent.succeeded, failed=sent.failed + never, unchanged=sent.unchanged + unchanged
        )
        self.log.debug(
            "%s: %d of %d devices forced offline, %d already offline, %d failed",
            VENDOR,
            len(result.succeeded),
            len(ids),
            len(result.unchanged),
            len(result.failed),
        )
        return result.in_order(ids)

    def split_offline(
        self, device_ids: Sequence[int | str], *, validated: bool = False
    ) -> tuple[list[int], list[dict[str, Any]], list[int]]:
        """Read the devices' online status before a force-offline: return those already offline, a
        ``failed`` entry (``never_connected``, not sent) for each that never connected, and those to
        send. One read for any number of devices (the listing is paged once).

        :param validated: ``device_ids`` are already checked ints, as for :meth:`force_offline`.
        :raises IoTFleetValidationError: listing every bad id, before any request.
        :raises IoTFleetNotAttemptedError: when the read failed (refused credentials and the like
            are raised as they are, as by any call).
        """
        ids = (
            [int(device_id) for device_id in device_ids]
            if validated
            else validate_roma_device_ids(device_ids)
        )
        try:
            statuses = self._offline_or_not(ids)
        except IoTFleetError as error:
            if affects_every_item(error):
                raise  # refused credentials and the like: the run stops on it, as on any call
            # The force-offline was not sent: say so, or the outcome would call it attempted.
            raise IoTFleetNotAttemptedError.after(error) from error
        unchanged = [device_id for device_id in ids if statuses.get(device_id) == OFFLINE]
        never = [
            failed_entry(device_id, NEVER_CONNECTED, NEVER_CONNECTED_MESSAGE, attempted=False)
            for device_id in ids
            if statuses.get(device_id) == NEVER
        ]
        to_send = [device_id for device_id in ids if statuses.get(device_id) not in (OFFLINE, NEVER)]
        self.log.info(
            "%s: %d of %d devices already offline, %d never connected; forcing %d offline",
            VENDOR,
            len(unchanged),
            len(ids),
            len(never),
            len(to_send),
        )
        return unchanged, never, to_send

    def _force_offline(self, ids: list[int]) -> ForceOfflineResult:
        """Send one force-offline; should its answer be lost, read the devices back rather than send
        it again (see :func:`~airflow_provider_iotfleet.hooks.readback.write_with_read_back`).

        Devices found offline succeeded (this call, or an earlier event, took them offline), devices
        that never connected failed, and the others surely were not forced, so they are sent again,
        a round per try the connection gives any call; still online after the last round, they fail.
        """
        return write_with_read_back(
            ids,
            send=self._send_force_offline,
            read_back=self._force_offline_read_back,
            wording=_FORCE_OFFLINE_WORDING,
            rounds=self.client.retry.max_retries + 1,
            log=self.log,
            merge=ForceOfflineResult.merged,
            give_up=_still_online,
        )

    def _send_force_offline(self, ids: list[int]) -> ForceOfflineResult:
        # Sent again only when it surely did not reach ROMA: a repeat finds the devices offline, which
        # the read-back of refused devices then reports as unchanged rather than forced by this call.
        call = Call(
            "POST", f"{self._devices_path}/force-offline", json={"device_ids": ids}, repeat="if-not-received"
        )
        reply = self.client.send(call)
        return self._reconcile(
            ids, reply.objects("success", required=False), reply.objects("failed", required=False)
        )

    def _force_offline_read_back(self, ids: list[int]) -> Verdict[list[int], ForceOfflineResult]:
        """Offline devices succeeded and never-connected ones failed; the rest is not forced yet."""
        statuses = self._offline_or_not(ids)
        settled = ForceOfflineResult(
            succeeded=[
                {"id": device_id, "device_name": None}
                for device_id in ids
                if statuses.get(device_id) == OFFLINE
            ],
            failed=[
                failed_entry(device_id, NEVER_CONNECTED, NEVER_CONNECTED_MESSAGE)
                for device_id in ids
                if statuses.get(device_id) == NEVER
            ],
        )
        # Online, or "not offline" when read from the filtered listing, or unknown to ROMA: not
        # forced, so sent again; ROMA itself then says which ones cannot be forced.
        still_online = [device_id for device_id in ids if statuses.get(device_id) not in (OFFLINE, NEVER)]
        return NotApplied(still_online, settled) if still_online else Applied(settled)

    def read_back_refused(self, result: ForceOfflineResult) -> ForceOfflineResult:
        """Read the devices ROMA refused in ``result`` (one read, for any number: the listing is
        paged once): an offline one was already as asked (``unchanged``), a never-connected one can
        never be forced (``never_connected``); the rest stay refused. A read that fails leaves them
        refused, with a warning."""
        refused = [entry["id"] for entry in result.failed if entry["error_code"] == NOT_FORCED]
        if not refused:
            return result
        try:
            # Never-connected devices first: usually few, so their listing is short, and a refusal is
            # often one of them. A filtered listing tells only "never" from "not never": which of the
            # others are offline takes one more read (of those alone, when few).
            statuses = self._offline_or_not(refused, NEVER)
            undecided = [device_id for device_id in refused if statuses.get(device_id) == f"not {NEVER}"]
            if undecided:  # none of them is never connected: no need to page that listing again
                statuses.update(self._offline_or_not(undecided, with_never=False))
        except IoTFleetError as error:
            self.log.warning(
                "%s: could not read back the %d devices ROMA refused to force offline (%s); reporting them "
                "as refused",
                VENDOR,
                len(refused),
                error,
            )
            return result
        failed = []
        unchanged = list(result.unchanged)
        for entry in result.failed:
            status = statuses.get(entry["id"]) if entry["error_code"] == NOT_FORCED else None
            if status == OFFLINE:
                unchanged.append(entry["id"])
            elif status == NEVER:
                failed.append({**entry, "error_code": NEVER_CONNECTED, "message": NEVER_CONNECTED_MESSAGE})
            else:
                failed.append(entry)
        return ForceOfflineResult(succeeded=result.succeeded, failed=failed, unchanged=unchanged)

    def _offline_or_not(
        self, ids: list[int], online_status: str = OFFLINE, *, with_never: bool = True
    ) -> dict[int, str]:
        """:meth:`read_online_statuses` for a force-offline's reads: waiting for ``offline``, the
        never-connected devices show as ``"never"`` (their listing is paged too); a device ROMA does
        not know is left out rather than failing the read of every other device (the caller treats
        it as neither offline nor never connected: ROMA refuses it, and it fails so)."""
        plan = self._statuses_plan(ids, ONLINE_STATUS[online_status], watching=True, with_never=with_never)
        values = run_plan(self.client, plan).values
        return {device_id: value for device_id, value in values.items() if value is not None}

    def _reconcile(
        self, ids: list[int], success: list[dict[str, Any]], failure: list[dict[str, Any]]
    ) -> ForceOfflineResult:
        """Put each requested id in exactly one list: what ROMA said, or failed when it said nothing.

        Items for ids that were not requested are ignored (and logged): they must not count as done.
        """
        requested = set(ids)
        names: dict[int, Any] = {}
        done: set[int] = set()
        refused: set[int] = set()
        for items, bucket in ((success, done), (failure, refused)):
            for item in items:
                device_id = answered_id(item)
                if device_id not in requested:
                    self.log.warning("%s: ignoring an answer item for unrequested device %r", VENDOR, item)
                    continue
                bucket.add(device_id)
                names.setdefault(device_id, item.get("device_name"))
        succeeded, failed = [], []
        for device_id in ids:
            entry = {"id": device_id, "device_name": names.get(device_id)}
            if device_id in done and device_id not in refused:
                succeeded.append(entry)
            elif device_id in refused:
                failed.append(
                    failed_entry(device_id, NOT_FORCED, NOT_FORCED_OFFLINE, name=entry["device_name"])
                )
            else:
                failed.append(
                    failed_entry(
                        device_id,
                        MISSING_FROM_ANSWER,
                        f"missing from {VENDOR}'s answer",
                        name=entry["device_name"],
                    )
                )
        return ForceOfflineResult(succeeded=succeeded, failed=failed)

    def get_device(self, device_id: int | str) -> dict[str, Any]:
        """Return one device as ROMA Connect describes it (``online_status``: 0 never, 1 online, 2 offline).

        :raises IoTFleetValidationError: for a bad id, before any request.
        :raises IoTFleetNotFoundError: when the device does not exist.
        """
        (checked_id,) = validate_roma_device_ids([device_id], "device_id")
        return self.client.send(self._device_call(checked_id)).object()

    async def aget_device(self, device_id: int | str) -> dict[str, Any]:
        """:meth:`get_device` for triggers: the same call, without blocking the event loop."""
        (checked_id,) = validate_roma_device_ids([device_id], "device_id")
        client = await self.aclient()
        return (await client.send(self._device_call(checked_id))).object()

    def online_statuses(self, device_ids: Sequence[int | str], online_status: int | str) -> dict[int, str]:
        """Return, for the devices in ``device_ids``, which are in ``online_status`` and which not.

        Few devices are read one by one; for more, the instance's listing filtered on
        ``online_status`` is paged through instead, whichever takes fewer requests.

        :return: ``{id: "online" | "offline" | "never"}`` for devices read one by one; with the
            listing, the status name for devices in ``online_status`` and ``"not <status>"`` for the
            others.
        :raises IoTFleetNotFoundError: when a device read one by one does not exist.
        """
        reads = run_plan(self.client, self._online_statuses_plan(device_ids, online_status))
        return {device_id: str(status) for device_id, status in reads.values.items()}

    async def aonline_statuses(
        self, device_ids: Sequence[int | str], online_status: int | str
    ) -> dict[int, str]:
        """:meth:`online_statuses` for triggers."""
        client = await self.aclient()
        reads = await arun_plan(client, self._online_statuses_plan(device_ids, online_status))
        return {device_id: str(status) for device_id, status in reads.values.items()}

    def read_online_statuses(
        self, device_ids: Sequence[int | str], online_status: int | str, *, with_never: bool = True
    ) -> DeviceReads[int]:
        """Read the devices as :meth:`online_statuses` does, for a wait on ``online_status``: a device
        ROMA does not know no longer fails the read, and waiting for ``offline``, the listing of
        never-connected devices is paged too, so that they show as ``"never"`` rather than
        ``"not offline"`` (what a status sensor polls with), unless ``with_never`` is ``False``: the
        caller knows every device has connected before (a device that has cannot be ``never`` again).

        :return: ``values``: ``{id: "online" | "offline" | "never"}`` for devices read one by one;
            from the listings, ``"offline"``/``"never"``/... for the devices found in them and
            ``"not <status>"`` for the others. ``missing``: the ids ROMA answered 404 for when read
            one by one, each with the reason ``"not_found"`` (an unknown id is simply absent from a
            listing, so it shows as ``"not <status>"`` until few enough devices are left to read
            them one by one).
        :raises IoTFleetValidationError: for a bad id or status, before any request.
        :raises IoTFleetError: for any other failed call.
        """
        plan = self._online_statuses_plan(device_ids, online_status, watching=True, with_never=with_never)
        return run_plan(self.client, plan)

    async def aread_online_statuses(
        self, device_ids: Sequence[int | str], online_status: int | str, *, with_never: bool = True
    ) -> DeviceReads[int]:
        """:meth:`read_online_statuses` for triggers."""
        client = await self.aclient()
        plan = self._online_statuses_plan(device_ids, online_status, watching=True, with_never=with_never)
        return await arun_plan(client, plan)

    def _device_call(self, device_id: int) -> Call:
        return Call("GET", f"{self._devices_path}/{device_id}")

    def _listing_call(self, online_status: int, offset: int) -> Call:
        params = {"offset": offset, "limit": MAX_PAGE_SIZE, "online_status": online_status}
        return Call("GET", self._devices_path, params=params)

    def _online_statuses_plan(
        self,
        device_ids: Sequence[int | str],
        status: int | str,
        *,
        watching: bool = False,
        with_never: bool = True,
    ) -> SettlingPlan[DeviceReads[int]]:
        """:meth:`_statuses_plan` for a caller's ids and status, checked first.

        :raises IoTFleetValidationError: for a bad id or status, before any request.
        """
        ids = validate_roma_device_ids(device_ids)
        code = self._online_status_code(status)
        return self._statuses_plan(ids, code, watching=watching, with_never=with_never)

    def _statuses_plan(
        self, ids: list[int], code: int, *, watching: bool = False, with_never: bool = True
    ) -> SettlingPlan[DeviceReads[int]]:
        """Per-device reads, or the listing(s) filtered on the status, whichever takes fewer requests.

        :param ids: checked device ids.
        :param code: the online status waited on, as ROMA's integer.
        :param watching: for a wait: unknown ids read one by one are reported in ``missing`` instead
            of failing the read, and for ``offline`` the never-connected listing is paged too (unless
            ``with_never`` is ``False``: the caller knows none of the devices is never connected).
        """
        target = STATUS_NAMES[code]
        # A device that never connected is not connected either: for a wait on "offline" it is
        # found in its own listing (online_status=0), or it would show as "not offline" forever.
        codes = [code, ONLINE_STATUS[NEVER]] if watching and with_never and target == OFFLINE else [code]
        if len(ids) > PER_DEVICE_READS:
            firsts = replies((yield [self._listing_call(listed, 0) for listed in codes]))
            pages = [
                math.ceil((first.field("total", int, required=False) or 0) / MAX_PAGE_SIZE)
                for first in firsts
            ]
            if sum(pages) <= len(ids):
                later = [
                    (listed, page)
                    for listed, count in zip(codes, pages, strict=True)
                    for page in range(1, count)
                ]
                more = [self._listing_call(listed, page * MAX_PAGE_SIZE) for listed, page in later]
                rest = replies((yield more)) if more else []
                members = set(ids)
                found: dict[int, str] = {}
                for listed, reply in [
                    *zip(codes, firsts, strict=True),
                    *zip((c for c, _ in later), rest, strict=True),
                ]:
                    for item in reply.objects("items"):
                        device_id = answered_id({"id": item.get("device_id", item.get("id"))})
                        if device_id in members:
                            found[device_id] = STATUS_NAMES[listed]
                return DeviceReads({device_id: found.get(device_id, f"not {target}") for device_id in ids})
        calls = [self._device_call(device_id) for device_id in ids]
        answers = yield (Each(calls) if watching else calls)
        statuses: dict[int, str | None] = {}
        missing: dict[int, str] = {}
        for device_id, answer in zip(ids, answers, strict=True):
            if isinstance(answer, IoTFleetError):
                missing[device_id] = NOT_FOUND
            else:
                statuses[device_id] = STATUS_NAMES.get(answer.field("online_status", int), "unknown")
        return DeviceReads(statuses, missing)

    def iter_devices(
        self, online_status: int | str | None = None, page_size: int = MAX_PAGE_SIZE
    ) -> Iterator[dict[str, Any]]:
        """Return an iterator over the instance's devices, requesting one page (``limit`` items from
        ``offset``) at a time as it is consumed. Arguments are checked at once, before any request.

        :param online_status: ``"online"``, ``"offline"``, ``"never"`` or ROMA's integer code.
        :param page_size: devices per request, 1..999.
        """
        validate_whole_number(page_size, "page_size", 1, MAX_PAGE_SIZE)
        params: dict[str, Any] = {"limit": page_size}
        if online_status is not None:
            params["online_status"] = self._online_status_code(online_status)
        return self._device_pages(params, page_size)

    def _device_pages(self, params: dict[str, Any], page_size: int) -> Iterator[dict[str, Any]]:
        offset = 0
        previous: set[Any] = set()
        while True:
            reply = self.client.send(Call("GET", self._devices_path, params={**params, "offset": offset}))
            items = reply.objects("items")  # required: an answer without it is not an empty instance
            ids = {item.get("device_id", item.get("id")) for item in items}
            if ids & previous:
                # A gateway that ignores offset sends the same page again: it would page forever.
                raise malformed_response(
                    VENDOR,
                    reply.action,
                    f"devices of the previous page again at offset {offset}",
                    request_id=reply.request_id,
                )
            previous = ids
            yield from items
            offset += len(items)
            total = reply.field("total", int, required=False)
            if len(items) < page_size or (total is not None and offset >= total):
                return

    @staticmethod
    def _online_status_code(value: int | str) -> int:
        if isinstance(value, str) and value.lower() in ONLINE_STATUS:
            return ONLINE_STATUS[value.lower()]
        if isinstance(value, int) and not isinstance(value, bool) and value in ONLINE_STATUS.values():
            return value
        raise IoTFleetValidationError(
            "online_status is invalid", [f"{value!r} is not one of {', '.join(ONLINE_STATUS)} or 0, 1, 2"]
        )

    def _check_connection(self) -> str:
        reply = self.client.send(Call("GET", self._devices_path, params={"offset": 0, "limit": 1}))
        total = reply.field("total", int, required=False)
        return f"Authenticated to {VENDOR} instance {self.settings.get_str('instance_id')} ({total} devices)"
