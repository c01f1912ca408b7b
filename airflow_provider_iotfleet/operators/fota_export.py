"""Verizon ThingSpace FOTA inventory: :class:`VerizonThingSpaceFotaDevicesOperator` (also importable
from :mod:`airflow_provider_iotfleet.operators.verizon`) and its file output: where ``output_path``
points, and a JSON Lines file written under a temporary name of the try's own, then renamed whole
over the target."""

from __future__ import annotations

import gc
import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from airflow.sdk import Asset

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetOutputError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.verizon import VerizonThingSpaceHook
from airflow_provider_iotfleet.hooks.verizon.answers import DeviceLines
from airflow_provider_iotfleet.operators.base import IoTFleetBaseOperator, OperationResult, Progress
from airflow_provider_iotfleet.operators.lineage import (
    FleetDataset,
    FleetLineage,
    account_devices,
    storage_dataset,
    vendor_namespace,
)
from airflow_provider_iotfleet.utils import distinct
from airflow_provider_iotfleet.validation import as_item_list, validate_imeis

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath


def write_json_lines(
    pages: Iterable[str],
    location: str,
    target: ObjectStoragePath,
    context: Context,
    vendor: str,
) -> None:
    """Stream ``pages`` of JSON Lines (each ``""`` or whole lines) to ``target`` under a temporary
    name of this try's own (:func:`_attempt_key`), then rename that whole file over ``target``.

    :param location: ``target`` as the outcome reports it, named in errors.
    :raises IoTFleetOutputError: naming ``location`` when the file cannot be written or renamed
        (the temporary file is removed first; the target is as it was).
    """
    partial = target.parent / f".{target.name}.{_attempt_key(context)}.partial"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with partial.open("w") as out, _collecting_only_new_objects():
            # One write per page: each write on an ObjectStoragePath file is also tracked for lineage.
            for page in pages:
                if page:
                    out.write(page)
        _rename(partial, target)
    # The listing raises only IoTFleetErrors (the transport maps requests' OSErrors): an OSError
    # here is the file's.
    except OSError as error:
        _discard(partial)
        raise IoTFleetOutputError(
            f"{vendor}: could not write the FOTA devices to {location}: {error}",
            path=location,
            vendor=vendor,
        ) from error
    except BaseException:
        _discard(partial)
        raise


@contextmanager
def _collecting_only_new_objects() -> Iterator[None]:
    """While the export runs, let the garbage collector's full collections look only at objects made
    since it started (:func:`gc.freeze`), then put the others back (:func:`gc.unfreeze`).

    Each page makes thousands of containers that live through a few collections, so a full
    collection comes every few dozen pages; in a task process each one walks every object Airflow
    and its imports hold (a few hundred thousand), about a third of the export's CPU time against a
    fast server. Cycles made during the export are still collected. Left alone when the collector
    is off or objects are already frozen (a process that forks workers).
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _attempt_key(context: Context) -> str:
    """Return what names this try's temporary file: the task instance (hashed), the try number, and
    this process's id with a random suffix, so that no two tries ever write one file, not even two
    runs of the same try (a zombie and its replacement)."""
    ti = context["ti"]
    identity = f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{getattr(ti, 'map_index', -1)}"
    task_instance = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{task_instance}.try{getattr(ti, 'try_number', 0)}.{os.getpid()}-{secrets.token_hex(4)}"


def output_target(output_path: Any) -> tuple[str, ObjectStoragePath]:
    """Return where the FOTA export goes: ``(location as the outcome reports it, path to write)``.

    A plain path is made absolute (from the working directory); a URI is kept as given.

    :raises IoTFleetValidationError: for a ``file://`` URI that is not absolute, a path that names a
        directory (an existing one, or one ending in ``/``), before any request.
    :raises IoTFleetOutputError: when the storage cannot say whether the path is a directory.
    """
    text = str(output_path)
    parts = urlsplit(text)
    is_uri = len(parts.scheme) > 1  # "s3://b/k", "file:///x"; not "C:\\x"
    if is_uri and parts.scheme.lower() == "file" and (parts.netloc or not parts.path.startswith("/")):
        # ObjectStoragePath reads "file://data/x" from the working directory and "file:data/x" from
        # the root: neither is what a reader of the DAG would guess.
        raise IoTFleetValidationError(
            "output_path is invalid",
            [
                f"{text!r} is not an absolute file:// URI; write file:///absolute/path (three slashes), "
                "or a plain path"
            ],
        )
    if text.endswith(("/", os.sep)):
        raise IoTFleetValidationError(
            "output_path is invalid",
            [f"{text!r} names a directory; give the file to write, e.g. {text}fota.jsonl"],
        )
    location = text if is_uri else os.path.abspath(os.path.expanduser(text))
    target = storage_path(location)
    try:
        is_directory = target.is_dir()
    except OSError as error:
        raise IoTFleetOutputError(
            f"could not look at output_path {location}: {error}", path=location
        ) from error
    if is_directory:
        # Renamed "over" a directory, the file would land inside it as a hidden dot-file.
        raise IoTFleetValidationError(
            "output_path is invalid",
            [
                f"{location!r} is an existing directory; give the file to write, e.g. {location.rstrip('/')}/fota.jsonl"
            ],
        )
    return location, target


def storage_path(location: str) -> ObjectStoragePath:
    """Return the ``ObjectStoragePath`` of ``location`` as :func:`output_target` reports it: a URI
    as given, an absolute local path as a ``file://`` URI. Looks at nothing in the storage."""
    from airflow.sdk import ObjectStoragePath  # fsspec and friends: not paid on every DAG parse

    is_uri = len(urlsplit(location).scheme) > 1
    return ObjectStoragePath(location if is_uri else f"file://{location}")


def _rename(partial: ObjectStoragePath, target: ObjectStoragePath) -> None:
    """Rename ``partial`` over ``target``. A local file goes by one atomic ``os.replace``, which fails
    on a directory: fsspec's local move would put the file inside it."""
    if partial.protocol in ("file", "local"):
        os.replace(partial.path, target.path)
    else:
        partial.replace(target)


def _discard(partial: ObjectStoragePath) -> None:
    """Remove a temporary file, if it is there; what went wrong before matters more than this."""
    with suppress(Exception):
        partial.unlink(missing_ok=True)


DEFAULT_MAX_XCOM_DEVICES = 10_000


class VerizonThingSpaceFotaDevicesOperator(IoTFleetBaseOperator[VerizonThingSpaceHook]):
    """List an account's FOTA devices (firmware, make, model, eligibility), page by page.

    Without ``output_path`` the devices go to XCom, up to ``max_xcom_devices``::

        {"account_name", "device_count", "pages", "devices": [normalised device dicts]}

    With ``output_path`` they are streamed to a JSON Lines file as the pages arrive (one page in
    memory at a time, whatever the fleet size), written under a temporary name of the try's own and
    renamed over the target when complete, so the target only ever holds a whole listing, even when
    tries of one task instance overlap (the last rename wins). A try that fails removes its
    temporary file; one killed outright leaves it (``.{file name}.*.partial`` beside the target),
    and no later try removes it, since it could belong to a try still running::

        {"account_name", "device_count", "pages", "path"}

    With ``imeis``, only those devices are listed (``POST``) and the XCom adds ``"requested"`` and
    ``"missing"`` (the IMEIs the account did not return). Every :class:`~airflow.sdk.Asset` in
    ``outlets`` gets an asset event whose extra carries ``account_name``, ``device_count`` and
    ``path``, for data-aware scheduling of the DAGs that read the inventory.

    :param account_name: the billing account (templated); default: the connection's ``account_name``.
    :param imeis: only these devices (templated, or an upstream task's output).
    :param protocol: ``LWM2M``, ``OMADM`` or ``HTTP`` (templated).
    :param output_path: the file to write: a local path (relative ones are taken from the
        worker's working directory) or any ``ObjectStoragePath`` URI (``s3://...``,
        ``file:///absolute/path``), templated, e.g. ``"/data/fota/{{ ds }}.jsonl"``. Not an existing
        directory; ``file://`` URIs must be absolute (``file://data/x`` is refused, not guessed).
    :param max_xcom_devices: the most devices returned in XCom without ``output_path``.
    :param verizon_thingspace_conn_id: the Airflow connection.
    """

    hook_class = VerizonThingSpaceHook
    template_fields = ("account_name", "imeis", "protocol", "output_path")

    def __init__(
        self,
        *,
        account_name: str | None = None,
        imeis: Any = None,
        protocol: str | None = None,
        output_path: str | None = None,
        max_xcom_devices: int = DEFAULT_MAX_XCOM_DEVICES,
        verizon_thingspace_conn_id: str = VerizonThingSpaceHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(conn_id=verizon_thingspace_conn_id, **kwargs)
        self.account_name = account_name
        self.imeis = imeis
        self.protocol = protocol
        self.output_path = output_path
        self.max_xcom_devices = max_xcom_devices

    def operate(self, context: Context) -> OperationResult:
        account = self.hook.resolve_account(self.account_name)
        output = output_target(self.output_path) if self.output_path else None
        requested: list[str] | None = None
        duplicates = 0
        if self.imeis is not None:
            given = as_item_list(self.imeis, "imeis")
            if not given:
                self.nothing_to_do("imeis")
                nothing = {
                    "account_name": account,
                    "device_count": 0,
                    "pages": 0,
                    "requested": 0,
                    "missing": [],
                }
                return OperationResult(outcome=nothing, counts={"listed": 0})
            requested, duplicates = distinct(validate_imeis(given), key=str)
        # Written to a file, the next page is fetched while this one is written (the listing only
        # reads, so a page fetched and never written costs nothing but the request), each page
        # written as JSON Lines straight from the answer. To XCom, each page is asked for only once
        # the one before is taken: past max_xcom_devices none is asked.
        pages: Iterator[DeviceLines] | Iterator[list[dict[str, Any]]]
        if output is not None:
            pages = self.hook.iter_fota_device_json_lines(
                requested, account_name=account, protocol=self.protocol
            )
        else:
            pages = self.hook.iter_fota_device_pages(requested, account_name=account, protocol=self.protocol)
        try:
            return self._list(context, account, output, pages, requested, duplicates)
        except BaseException:
            # A failed export leaves no file: its lineage is the account it read. Without one, the
            # openlineage provider would fall back to hook lineage, which names the temporary file.
            self.remember_lineage({"account_name": account})
            raise
        finally:
            close = getattr(pages, "close", None)
            if close is not None:
                close()  # stopped early (an error): no page left in flight, no thread left behind

    def _list(
        self,
        context: Context,
        account: str,
        output: tuple[str, ObjectStoragePath] | None,
        pages: Iterator[DeviceLines] | Iterator[list[dict[str, Any]]],
        requested: list[str] | None,
        duplicates: int,
    ) -> OperationResult:
        """List ``pages`` (:class:`DeviceLines` with ``output``, else normalised devices) to
        ``output`` (or XCom), as :meth:`operate` says.

        :return: the outcome and counts of the listing.
        """
        total = len(requested) if requested is not None else None
        progress = self.start(
            "listing the FOTA devices" + (" of" if total is not None else ""),
            total,
            detail=f"account {account}" + (f", protocol {self.protocol}" if self.protocol else ""),
            duplicates=duplicates,
        )
        listing = _Listing(progress, track_ids=requested is not None)
        outcome: dict[str, Any] = {"account_name": account}
        if output is not None:
            lines = listing.json_lines(cast("Iterator[DeviceLines]", pages))
            outcome["path"] = self._write_json_lines(listing, lines, *output, context)
        else:
            outcome["devices"] = self._collect(listing.devices(cast("Iterator[list[dict[str, Any]]]", pages)))
        outcome.update(device_count=listing.device_count, pages=listing.pages)
        counts = {"listed": listing.device_count}
        if requested is not None:
            missing = [imei for imei in requested if imei not in listing.seen]
            outcome.update(requested=len(requested), missing=missing)
            counts["not in the account"] = len(missing)
            if missing:
                self.log.warning(
                    "%s: %d of %d IMEIs are not in account %s, e.g. %s",
                    self.vendor,
                    len(missing),
                    len(requested),
                    account,
                    ", ".join(missing[:3]),
                )
        self._record_asset_events(context, outcome)
        return OperationResult(outcome=outcome, counts=counts)

    def _collect(self, devices: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        collected: list[dict[str, Any]] = []
        for device in devices:
            collected.append(device)
            if len(collected) > self.max_xcom_devices:
                raise IoTFleetError(
                    f"{self.vendor}: the listing has more than max_xcom_devices={self.max_xcom_devices} "
                    "devices, too many for XCom; set output_path to stream them to a file (or object "
                    "storage) instead",
                    vendor=self.vendor,
                )
        return collected

    def _write_json_lines(
        self,
        listing: _Listing,
        lines: Iterable[str],
        location: str,
        target: ObjectStoragePath,
        context: Context,
    ) -> str:
        """Stream ``lines`` to ``target`` (see :func:`.fota_export.write_json_lines`).

        :return: ``location``, how the outcome reports the file.
        """
        write_json_lines(lines, location, target, context, self.vendor)
        self.log.info("%s: wrote %d devices to %s", self.vendor, listing.device_count, location)
        return location

    def lineage(self, result: dict[str, Any]) -> FleetLineage | None:
        """The account's devices as input; with ``output_path``, the file as output, named by its
        final path (never the temporary file renamed over it), its row count the devices written.
        The run facet names the account and the count (none when the export failed).

        :return: the lineage of a finished export, or of a failed one from ``{"account_name": ...}``.
        """
        account = result["account_name"]
        namespace = vendor_namespace(self.hook.client_options["base_url"])
        outputs: list[FleetDataset] = []
        if "path" in result:
            outputs.append(storage_dataset(storage_path(result["path"]), row_count=result["device_count"]))
        return FleetLineage(
            inputs=[FleetDataset(namespace=namespace, name=account_devices(account))],
            outputs=outputs,
            run={
                "operation": "list_fota_devices",
                "vendor": self.vendor,
                "account": account,
                "requested": result.get("requested"),
                "counts": {"listed": result["device_count"]} if "device_count" in result else {},
                "dryRun": False,
            },
        )

    def _record_asset_events(self, context: Context, outcome: dict[str, Any]) -> None:
        extra = {key: outcome.get(key) for key in ("account_name", "device_count", "path")}
        for outlet in self.outlets:
            if isinstance(outlet, Asset):
                context["outlet_events"][outlet].extra.update(extra)


class _Listing:
    """Pages of a listing as they stream past, counted (pages, devices, and with ``track_ids`` the
    ids seen), progress logged as each page is done with."""

    def __init__(self, progress: Progress, *, track_ids: bool) -> None:
        self._progress = progress
        self.seen: set[str] = set()
        self._track_ids = track_ids
        self.pages = 0
        self.device_count = 0

    def _count(self, device_ids: list[Any]) -> None:
        self.pages += 1
        self.device_count += len(device_ids)
        if self._track_ids:
            self.seen.update(map(str, device_ids))

    def devices(self, pages: Iterable[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        """The normalised devices of ``pages``, one by one."""
        for page in pages:
            self._count([device["device_id"] for device in page])
            yield from page
            self._progress.advance(len(page), batch=True)

    def json_lines(self, pages: Iterable[DeviceLines]) -> Iterator[str]:
        """The JSON Lines text of each of ``pages``."""
        for page in pages:
            self._count(page.device_ids)
            yield page.text
            self._progress.advance(len(page.device_ids), batch=True)
