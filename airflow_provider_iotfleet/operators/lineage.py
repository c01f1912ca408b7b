"""OpenLineage for the fleet operators: what a finished run read and wrote, described without the
openlineage provider (:class:`FleetLineage`), and turned into the provider's ``OperatorLineage`` only
when it is installed (:func:`to_operator_lineage`).

Datasets are named so that the tasks touching one fleet meet in the lineage graph: the namespace is
the vendor's host as the connection reaches it (``https://thingspace.verizon.com``), the name says
which account or tenant on it (``accounts/<account>/devices``, ``instances/<id>/devices``,
``customers/<id>/devices``, or ``devices`` where the host is the account, as in Cisco Control Center).
A file the FOTA export writes is named as common.io names a path: its scheme and bucket (or ``file``),
and its key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The key of the provider's run facet in an OpenLineage event.
RUN_FACET_KEY = "iotfleet"


@dataclass(frozen=True)
class FleetDataset:
    """One dataset a run read or wrote.

    :ivar row_count: for an output, the devices the run changed (or wrote): OpenLineage's
        ``outputStatistics`` row count; ``None`` for an input.
    """

    namespace: str
    name: str
    row_count: int | None = None


@dataclass(frozen=True)
class FleetLineage:
    """What a finished run read and wrote, and what came of it.

    :ivar run: the provider's run facet (:data:`RUN_FACET_KEY`): ``operation``, ``vendor``,
        ``account``, ``requested``, ``counts`` and ``dryRun``.
    """

    inputs: list[FleetDataset] = field(default_factory=list)
    outputs: list[FleetDataset] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)


def vendor_namespace(base_url: str) -> str:
    """Return the namespace of a vendor's datasets: the scheme and host (with a port, if any) of the
    URL the connection reaches it at, without the API's path (``https://thingspace.verizon.com``)."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def account_devices(account: str) -> str:
    """Return the dataset name of a ThingSpace account's devices: ``accounts/<account>/devices``."""
    return f"accounts/{account}/devices"


def storage_dataset(path: ObjectStoragePath, row_count: int | None = None) -> FleetDataset:
    """Return the dataset of a file: the path's namespace (``s3://bucket``, ``file``) and key, as
    common.io's file transfer operator names it; a local file by its absolute path (``/data/x``), as
    common.io names a ``file://`` asset, which is what a downstream task that reads it reports."""
    name = f"/{path.key}" if path.namespace == "file" else path.key
    return FleetDataset(namespace=path.namespace, name=name, row_count=row_count)


def to_operator_lineage(lineage: FleetLineage | None) -> Any:
    """Return ``lineage`` as the openlineage provider's ``OperatorLineage``.

    :return: ``None`` when there is nothing to report (no run finished) or the openlineage provider
        is not installed; never raises for a missing provider.
    """
    if lineage is None:
        return None
    try:
        from airflow.providers.common.compat.openlineage.facet import (
            InputDataset,
            OutputDataset,
            OutputStatisticsOutputDatasetFacet,
        )
        from airflow.providers.openlineage.extractors import OperatorLineage

        from airflow_provider_iotfleet.operators.lineage_facets import IoTFleetRunFacet
    except ImportError:
        return None
    return OperatorLineage(
        inputs=[InputDataset(namespace=item.namespace, name=item.name) for item in lineage.inputs],
        outputs=[
            OutputDataset(
                namespace=item.namespace,
                name=item.name,
                outputFacets=(
                    {}
                    if item.row_count is None
                    else {"outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=item.row_count)}
                ),
            )
            for item in lineage.outputs
        ],
        run_facets={RUN_FACET_KEY: IoTFleetRunFacet(**lineage.run)} if lineage.run else {},
    )


def write_lineage(namespace: str, account: str, name: str, outcome: dict[str, Any]) -> FleetLineage:
    """Return the lineage of a write operator's run from its outcome (``FleetOutcome.to_xcom()``).

    The devices' dataset (``namespace``, ``name``) is the input (the operators read it: the state
    before a change, what a retry finds) and, unless the run was a dry run, the output, whose row
    count is the devices changed: succeeded, scheduled and accepted (not unchanged, failed or unknown).
    """
    counts: dict[str, int] = dict(outcome.get("counts", {}))
    dry_run = bool(outcome.get("dry_run"))
    changed = sum(counts.get(status, 0) for status in ("succeeded", "scheduled", "accepted"))
    devices = FleetDataset(namespace=namespace, name=name)
    return FleetLineage(
        inputs=[devices],
        outputs=[] if dry_run else [FleetDataset(namespace=namespace, name=name, row_count=changed)],
        run={
            "operation": str(outcome.get("operation", "")),
            "vendor": str(outcome.get("vendor", "")),
            "account": account,
            "requested": outcome.get("requested"),
            "counts": counts,
            "dryRun": dry_run,
        },
    )


class OpenLineageMixin:
    """``get_openlineage_facets_on_complete`` for the fleet operators, from what :meth:`lineage`
    made of the run's result when :meth:`remember_lineage` was called at the end of ``execute``.

    The openlineage provider calls the method on the operator that ran, after ``execute``, on
    success and on failure (there is no ``get_openlineage_facets_on_failure``): a write operator that
    fails for failed devices still reports what it changed. Reporting datasets also keeps the
    provider from falling back to hook lineage, which for the FOTA export would name the temporary
    ``.partial`` file the Task SDK's ``ObjectStoragePath`` saw written, not the file renamed over the
    target.
    """

    log: Any

    def lineage(self, result: dict[str, Any]) -> FleetLineage | None:
        """Return what the run read and wrote, from its XCom ``result``; sends no request.

        :return: ``None`` (nothing to report) unless an operator says which datasets it touches.
        """
        return None

    def remember_lineage(self, result: dict[str, Any]) -> None:
        """Keep :meth:`lineage` of ``result`` for the openlineage provider. Lineage must never fail a
        task: an error here is logged and the run reports no lineage."""
        try:
            self.__dict__["_fleet_lineage"] = self.lineage(result)
        except Exception as error:
            self.log.warning("could not describe this run's lineage (%s: %s)", type(error).__name__, error)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return the run's datasets and facets for OpenLineage (called by the openlineage provider).

        :return: an ``OperatorLineage``, or ``None`` when the run reported nothing (it stopped before
            a result) or the openlineage provider is not installed.
        """
        return to_operator_lineage(self.__dict__.get("_fleet_lineage"))
