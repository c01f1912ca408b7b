"""What a status read of many devices found: each device's value, and the devices the vendor does not know."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

IdT = TypeVar("IdT", bound=Hashable)

#: Why a device is missing from a read: the vendor answered "not found" when it was read alone.
NOT_FOUND = "not_found"


@dataclass(frozen=True)
class DeviceReads(Generic[IdT]):
    """The result of reading many devices' status in one go.

    :ivar values: what each device that was read reports (a status, a firmware version); devices a
        read did not cover (a search that reports only what changed) are absent.
    :ivar missing: the devices the vendor says do not exist, each with the reason
        (:data:`NOT_FOUND`); never in ``values``.
    """

    values: Mapping[IdT, str | None]
    missing: Mapping[IdT, str] = field(default_factory=dict)
