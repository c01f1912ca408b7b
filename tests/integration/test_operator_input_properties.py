"""Property-based tests (hypothesis) of every operator's input handling, against the simulator.

Each operator is given device lists mixing devices of the simulated fleet with arbitrary junk
(text, numbers, booleans, None, nested lists and mappings, near-miss identifiers) and is run as a
task runs it. Whatever the input, the only errors are the package's own, and no item that is not
one of the fleet's devices ever reaches the vendor: the simulator's request log names every device
each request carried, and each must be a well-formed identifier (one the package's own validator
takes: a well-formed id the fleet does not have may be sent, and the vendor says it does not know it).
When a write operator gets as far as an outcome, that outcome has the documented shape and accounts
for every distinct device given exactly once, whatever mix of types the input held.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_iotfleet.exceptions import IoTFleetError, IoTFleetValidationError
from airflow_provider_iotfleet.hooks.paloalto import validate_cellular_devices
from airflow_provider_iotfleet.hooks.verizon.eligibility import NOT_SENT
from airflow_provider_iotfleet.operators.cisco import CiscoControlCenterEditDevicesOperator
from airflow_provider_iotfleet.operators.huawei import HuaweiRomaForceOfflineOperator
from airflow_provider_iotfleet.operators.paloalto import PaloAltoIoTBulkUpdateOperator
from airflow_provider_iotfleet.operators.verizon import (
    VerizonThingSpaceFirmwareUpgradeOperator,
    VerizonThingSpaceFotaDevicesOperator,
    VerizonThingSpaceSyncFirmwareOperator,
)
from airflow_provider_iotfleet.simulator import Simulator, SimulatorConfig
from airflow_provider_iotfleet.simulator.campaigns import upgrade_for
from airflow_provider_iotfleet.simulator.fleet import ROMA_ID_BASE, iccid_of, imei_of
from airflow_provider_iotfleet.validation import validate_iccids, validate_imeis, validate_roma_device_ids
from tests.simulator_harness import accounted_once, connection_variables, run_task

pytestmark = pytest.mark.slow

FLEET = 200
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet="0123456789 +-_.\n\t\x00٣", max_size=22),  # near-miss digit strings
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    """One simulator for the module, its connections in the environment with generous limits."""
    sim = Simulator(SimulatorConfig(devices=FLEET, session_idle_timeout=365 * 24 * 3600.0)).start()
    saved = dict(os.environ)
    os.environ.update(connection_variables(sim, requests_per_second=10_000, max_retries=0))
    try:
        yield sim
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sim.stop()


def devices_sent(simulator: Simulator, since: int) -> list[str]:
    """Every device id the requests after the first ``since`` named (logins name none)."""
    log = simulator.state.request_log()
    return [device for record in log[since:] for device in record["devices"]]


def well_formed(validator: Callable[[list[Any]], Any]) -> Callable[[str], bool]:
    def check(device_id: str) -> bool:
        try:
            validator([device_id])
        except IoTFleetValidationError:
            return False
        return True

    return check


def run_and_check(
    simulator: Simulator, operator_factory: Callable[[], Any], valid: Callable[[str], bool]
) -> dict[str, Any] | None:
    """Run the operator: any error is the package's; a validation error sends nothing; whatever was
    sent is a well-formed identifier. Return what the run returned or pushed (``None`` when it
    raised anything but a failed fleet operation)."""
    before = len(simulator.state.request_log())
    outcome = None
    try:
        outcome, _ = run_task(operator_factory())
    except IoTFleetValidationError:
        assert devices_sent(simulator, before) == [], "an invalid input reached the network"
        assert len(simulator.state.request_log()) == before, "a request went out before validation ended"
        return None
    except IoTFleetError:
        pass  # a vendor's refusal: typed, and fine
    sent = devices_sent(simulator, before)
    assert all(valid(device_id) for device_id in sent), sent
    return outcome


def distinct(validator: Callable[[list[Any]], list[Any]], items: list[Any]) -> list[Any]:
    """The distinct devices of ``items`` as the package's own validator reads them (none for none)."""
    return list(dict.fromkeys(validator(items))) if items else []


def mixed(valid: list[Any]) -> st.SearchStrategy[list[Any]]:
    """Fleet devices with a little junk (often none, so that runs reach the vendor too), in any order."""
    parts = st.tuples(st.lists(st.sampled_from(valid), max_size=6), st.lists(JUNK, max_size=2))
    return parts.flatmap(lambda both: st.permutations(both[0] + both[1]))


IMEIS = [imei_of(i) for i in range(20)]
ICCIDS = [iccid_of(i) for i in range(20)]
ROMA_IDS = [ROMA_ID_BASE + i for i in range(20)]


@EXAMPLES
@given(iccids=mixed(ICCIDS))
def test_cisco_edits(simulator: Simulator, iccids: list[Any]) -> None:
    outcome = run_and_check(
        simulator,
        lambda: CiscoControlCenterEditDevicesOperator(
            task_id="edit", iccids=iccids, changes={"accountCustom1": "prop"}, fail_on_error=False
        ),
        well_formed(validate_iccids),
    )
    if outcome is not None:
        accounted_once(outcome, operation="edit_devices", requested=distinct(validate_iccids, iccids))


@EXAMPLES
@given(device_ids=mixed(ROMA_IDS + [str(i) for i in ROMA_IDS]))
def test_roma_force_offline(simulator: Simulator, device_ids: list[Any]) -> None:
    outcome = run_and_check(
        simulator,
        lambda: HuaweiRomaForceOfflineOperator(task_id="offline", device_ids=device_ids, fail_on_error=False),
        well_formed(validate_roma_device_ids),
    )
    if outcome is not None:
        # 700001 and "700001" are one device, reported as the integer ROMA knows it by.
        requested = distinct(validate_roma_device_ids, device_ids)
        accounted_once(outcome, operation="force_offline", requested=requested)
        assert all(isinstance(device, int) for device in outcome["devices"]["succeeded"])


@EXAMPLES
@given(
    devices=st.lists(
        st.builds(lambda imei: {"imei": imei, "apn": "iot.apn"}, st.sampled_from(IMEIS)), max_size=5
    ),
    junk=st.lists(
        st.one_of(
            st.dictionaries(
                st.sampled_from(["imei", "iccid", "ipAddress", "apn", "bogus"]), JUNK, max_size=3
            ),
            JUNK,
        ),
        max_size=2,
    ),
)
def test_paloalto_bulk_update(simulator: Simulator, devices: list[Any], junk: list[Any]) -> None:
    outcome = run_and_check(
        simulator,
        lambda: PaloAltoIoTBulkUpdateOperator(task_id="pan", devices=junk + devices, fail_on_error=False),
        well_formed(validate_imeis),
    )
    if outcome is not None:
        given = junk + devices
        entries = {tuple(sorted(e.items())): e for e in (validate_cellular_devices(given) if given else [])}
        identifiers = ("ipAddress", "ipv6Address", "imei", "iccid", "imsi", "msisdn")
        requested = [next(e[key] for key in identifiers if key in e) for e in entries.values()]
        accounted_once(outcome, operation="bulk_update", requested=requested)


@EXAMPLES
@given(imeis=mixed(IMEIS))
def test_verizon_sync(simulator: Simulator, imeis: list[Any]) -> None:
    outcome = run_and_check(
        simulator,
        lambda: VerizonThingSpaceSyncFirmwareOperator(task_id="sync", imeis=imeis, fail_on_error=False),
        well_formed(validate_imeis),
    )
    if outcome is not None:
        accounted_once(outcome, operation="sync_firmware", requested=distinct(validate_imeis, imeis))


@EXAMPLES
@given(imeis=mixed(IMEIS))
def test_verizon_fota_listing_of_a_subset(simulator: Simulator, imeis: list[Any]) -> None:
    run_and_check(
        simulator,
        lambda: VerizonThingSpaceFotaDevicesOperator(task_id="fota", imeis=imeis),
        well_formed(validate_imeis),
    )


@EXAMPLES
@given(imeis=mixed(IMEIS), windows=st.one_of(st.none(), st.lists(st.lists(JUNK, max_size=3), max_size=2)))
def test_verizon_firmware_upgrade(simulator: Simulator, imeis: list[Any], windows: Any) -> None:
    upgrade = upgrade_for(simulator.state.fleet.device(0))
    assert upgrade is not None
    outcome = run_and_check(
        simulator,
        lambda: VerizonThingSpaceFirmwareUpgradeOperator(
            task_id="upgrade",
            imeis=imeis,
            firmware_name=upgrade.name,
            time_windows=windows,
            campaign_name=f"prop-{len(simulator.state.request_log())}",
        ),
        well_formed(validate_imeis),
    )
    if outcome is not None:
        requested = distinct(validate_imeis, imeis)
        status = accounted_once(outcome, operation="upgrade_firmware", requested=requested)
        assert set(status.values()) <= {"scheduled", "failed"}
        # A device fails only when its upgrade would: left out of the campaign, nothing sent for it.
        for error in outcome["errors"]:
            assert error["error_code"] in NOT_SENT and error["attempted"] is False, error
