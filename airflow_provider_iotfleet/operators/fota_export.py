"""The FOTA listing's file output: where ``output_path`` points, and a JSON Lines file written under a
temporary name of the try's own, then renamed whole over the target."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_iotfleet.exceptions import IoTFleetOutputError, IoTFleetValidationError

if TYPE_CHECKING:
    from airflow.sdk import Context, ObjectStoragePath

#: ``json.dumps(device, separators=(",", ":"))`` without building an encoder per device.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def write_json_lines(
    pages: Iterable[list[dict[str, Any]]],
    location: str,
    target: ObjectStoragePath,
    context: Context,
    vendor: str,
) -> None:
    """Stream ``pages`` of devices to ``target`` as JSON Lines under a temporary name of this try's
    own (:func:`_attempt_key`), then rename that whole file over ``target``.

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
                    out.write("\n".join(map(_encode, page)) + "\n")
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
    from airflow.sdk import ObjectStoragePath  # fsspec and friends: not paid on every DAG parse

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
    target = ObjectStoragePath(location if is_uri else f"file://{location}")
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
