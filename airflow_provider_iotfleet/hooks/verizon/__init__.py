"""Verizon ThingSpace FOTA v3: the hook and what it returns, importable from this one path.

The parts: :mod:`.auth` (OAuth token and M2M session), :mod:`.answers` (error bodies, normalised
records, result types), :mod:`.rules` (what a request may carry), :mod:`.paging` (cursor listings),
:mod:`.base` (connection and account), :mod:`.campaigns` (firmware campaign calls), :mod:`.upgrades`
(getting devices into a campaign, whatever an earlier try did), :mod:`.eligibility` (which devices
an upgrade can upgrade: one check for the real run and the dry run), :mod:`.previews` (what a sync or an
upgrade would do, by reads only: the dry runs) and :mod:`.hook`.

Names are imported from their part on first use, so that Airflow can read :mod:`.connection`
while it is itself being imported.
"""

from typing import TYPE_CHECKING

from airflow_provider_iotfleet.utils import exports_of

if TYPE_CHECKING:
    from airflow_provider_iotfleet.hooks.verizon.answers import (
        CAMPAIGN_FINAL_STATUSES,
        CAMPAIGN_REUSABLE_STATUSES,
        CAMPAIGN_STATUSES,
        DEVICE_FAILED_STATUSES,
        DEVICE_FINISHED,
        MISSING_FROM_ANSWER,
        SYNC_SUCCESS,
        VENDOR,
        VERIZON_ERRORS,
        CampaignProgress,
        DeviceLines,
        EnsuredCampaign,
        FirmwareSyncResult,
        device_json_lines,
        normalise_campaign,
        normalise_campaign_device,
        normalise_device,
        normalise_firmware,
        normalise_timestamp,
        sync_failure,
    )
    from airflow_provider_iotfleet.hooks.verizon.auth import (
        LOGIN_PATH,
        OAUTH_PATH,
        SESSION_EXPIRED_SUFFIX,
        M2MSession,
        ThingSpaceAuth,
    )
    from airflow_provider_iotfleet.hooks.verizon.base import FOTA_PATH
    from airflow_provider_iotfleet.hooks.verizon.connection import CONNECTION_FORM, DEFAULT_HOST
    from airflow_provider_iotfleet.hooks.verizon.hook import VerizonThingSpaceHook
    from airflow_provider_iotfleet.hooks.verizon.rules import (
        MAX_CAMPAIGN_IMEIS,
        MAX_LIST_IMEIS,
        MAX_SYNC_IMEIS,
        PROTOCOLS,
        CampaignRequest,
        validate_campaign_id,
        validate_campaign_name,
        validate_campaign_schedule,
        validate_firmware_choice,
    )

__all__ = [
    "CAMPAIGN_FINAL_STATUSES",
    "CAMPAIGN_REUSABLE_STATUSES",
    "CAMPAIGN_STATUSES",
    "CONNECTION_FORM",
    "DEFAULT_HOST",
    "DEVICE_FAILED_STATUSES",
    "DEVICE_FINISHED",
    "FOTA_PATH",
    "LOGIN_PATH",
    "MAX_CAMPAIGN_IMEIS",
    "MAX_LIST_IMEIS",
    "MAX_SYNC_IMEIS",
    "MISSING_FROM_ANSWER",
    "OAUTH_PATH",
    "PROTOCOLS",
    "SESSION_EXPIRED_SUFFIX",
    "SYNC_SUCCESS",
    "VENDOR",
    "VERIZON_ERRORS",
    "CampaignProgress",
    "CampaignRequest",
    "DeviceLines",
    "EnsuredCampaign",
    "FirmwareSyncResult",
    "M2MSession",
    "ThingSpaceAuth",
    "VerizonThingSpaceHook",
    "device_json_lines",
    "normalise_campaign",
    "normalise_campaign_device",
    "normalise_device",
    "normalise_firmware",
    "normalise_timestamp",
    "sync_failure",
    "validate_campaign_id",
    "validate_campaign_name",
    "validate_campaign_schedule",
    "validate_firmware_choice",
]

__getattr__, __dir__ = exports_of(__name__, ("connection", "hook", "answers", "auth", "base", "rules"))
