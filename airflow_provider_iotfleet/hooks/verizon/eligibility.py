"""Which devices a firmware upgrade campaign can upgrade: the one check the upgrade's dry run
(``preview_upgrade``) and its real run (``ensure_campaign``) share, so that a plan and the apply
right after it put every device in the same place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Error codes of devices an upgrade leaves out of its campaign, sending nothing for them.
NOT_SENT = frozenset(
    {"not_in_account", "not_fota_eligible", "wrong_make_model", "other_firmware", "campaign_started"}
)


@dataclass
class Refusals:
    """Devices that fail, grouped by ``(error_code, message)`` in the order first met."""

    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add(self, imei: str, code: str, message: str) -> None:
        self.groups.setdefault((code, message), []).append(imei)

    @property
    def devices(self) -> set[str]:
        """Every device refused."""
        return {imei for devices in self.groups.values() for imei in devices}

    def of(self, code: str) -> list[str]:
        """The devices refused with ``code``, in the order met."""
        return [imei for (found, _), devices in self.groups.items() if found == code for imei in devices]

    def without(self, code: str) -> Refusals:
        """These refusals but those with ``code``."""
        return Refusals({key: devices for key, devices in self.groups.items() if key[0] != code})

    def record(self, outcome: Any) -> None:
        """Record each group in ``outcome`` (an ``OutcomeBuilder``) as ``failed``, one error per group;
        a group of :data:`NOT_SENT` is ``attempted=False``: nothing was (or would be) sent for it."""
        for (code, message), devices in self.groups.items():
            outcome.refuse(devices, code, message, attempted=code not in NOT_SENT)


@dataclass
class Eligibility:
    """Where each device stands before an upgrade sends anything.

    :ivar upgrade: ``{imei: current firmware}`` of the devices to put into the campaign, in input order.
    :ivar already: devices already in the (reused) campaign and eligible: nothing to send for them.
    :ivar refused: the devices left out, and why.
    """

    upgrade: dict[str, str | None] = field(default_factory=dict)
    already: list[str] = field(default_factory=list)
    refused: Refusals = field(default_factory=Refusals)


def judge_devices(
    devices: list[str],
    found: dict[str, dict[str, Any]],
    firmware: dict[str, Any],
    account: str,
    *,
    held: set[str] | frozenset[str] = frozenset(),
    started_reason: str | None = None,
) -> Eligibility:
    """Put each device where an upgrade with ``firmware`` leaves it.

    A device upgrades when the account has it (in ``found``, the FOTA listing of ``devices``), the
    listing shows it FOTA-eligible, and its make, model and firmware are the firmware's make,
    model and ``firmware_from``; the others are refused (``not_in_account``,
    ``not_fota_eligible``, ``wrong_make_model``, ``other_firmware``) and left out of the
    campaign, since ThingSpace would fail their upgrade (or refuse the campaign's device list).
    Devices already in the campaign (``held``) are ``already``, whatever the listing shows now (one
    that has upgraded runs other firmware): nothing is sent for them, and the campaign's report says
    how they fare. When the campaign has started (``started_reason`` says how), the devices it lacks
    are refused as ``campaign_started``: ThingSpace adds devices only before the start date.

    :param found: the listing of the devices neither held nor refused as ``campaign_started``
        (:func:`to_read`): the others need no read.
    :param firmware: ``firmware_name``, ``firmware_from``, ``make`` and ``model`` of the upgrade.
    :return: the devices to put into the campaign, those already in it, and those left out.
    """
    judged = Eligibility()
    for imei in devices:
        if imei in held:
            judged.already.append(imei)
        elif started_reason is not None:
            judged.refused.add(imei, "campaign_started", started_reason)
        elif (why := ineligible(found.get(imei), firmware, account)) is not None:
            judged.refused.add(imei, *why)
        else:
            judged.upgrade[imei] = found[imei]["firmware"]
    return judged


def to_read(devices: list[str], held: set[str] | frozenset[str], started: bool) -> list[str]:
    """The devices :func:`judge_devices` needs the listing of: those not in the campaign yet, and
    none once it has started."""
    return [] if started else [imei for imei in devices if imei not in held]


def not_in_account(account: str) -> str:
    """Why a device the account does not have fails."""
    return f"ThingSpace has no device with this IMEI in account {account}"


def ineligible(
    device: dict[str, Any] | None, firmware: dict[str, Any], account: str
) -> tuple[str, str] | None:
    """``(error_code, message)`` saying why ``device`` (as the FOTA listing shows it, ``None``: not
    in the account) cannot upgrade with ``firmware``, or ``None`` when it can."""
    if device is None:
        return "not_in_account", not_in_account(account)
    if device["fota_eligible"] is False:
        return (
            "not_fota_eligible",
            "ThingSpace lists the device as not FOTA-eligible: it cannot upgrade over the air",
        )
    if (device["make"], device["model"]) != (firmware["make"], firmware["model"]):
        return (
            "wrong_make_model",
            f"a {device['make']} {device['model']}: {firmware['firmware_name']} is for "
            f"{firmware['make']} {firmware['model']}",
        )
    if device["firmware"] != firmware["firmware_from"]:
        return (
            "other_firmware",
            f"runs {device['firmware']}, not {firmware['firmware_from']}, which {firmware['firmware_name']} "
            "upgrades from",
        )
    return None
