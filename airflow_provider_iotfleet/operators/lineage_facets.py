"""The provider's OpenLineage run facet. Imports the OpenLineage client: imported only by
:func:`~airflow_provider_iotfleet.operators.lineage.to_operator_lineage`, when the openlineage
provider is installed."""

from __future__ import annotations

from attrs import define
from openlineage.client.facet_v2 import RunFacet


@define
class IoTFleetRunFacet(RunFacet):
    """What a fleet operation came to, under the run facet key ``iotfleet``.

    :ivar operation: the outcome's ``operation`` (``"edit_devices"``), or ``"list_fota_devices"``.
    :ivar vendor: the vendor's name, as the outcome gives it.
    :ivar account: the account or tenant the run addressed (ThingSpace account, ROMA instance id,
        IoT Security customer id, Control Center host).
    :ivar requested: the distinct devices asked for (``None`` for a whole account's listing).
    :ivar counts: devices per outcome status (``{"succeeded": 3, "failed": 1, ...}``, or ``{"listed": 9}``).
    :ivar dryRun: whether the run only planned (nothing was changed).
    """

    operation: str
    vendor: str
    account: str
    requested: int | None
    counts: dict[str, int]
    dryRun: bool = False
