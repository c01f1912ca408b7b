"""The simulated fleet: consistent, valid identifiers derived from an index, and state overlays."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_provider_iotfleet.simulator.core import Faults, SimulatorConfig, SimulatorState
from airflow_provider_iotfleet.simulator.fleet import MAX_DEVICES, Fleet
from airflow_provider_iotfleet.validation import validate_iccids, validate_imeis
from tests.fakes import FakeClock


@pytest.fixture
def fleet() -> Fleet:
    return Fleet(size=MAX_DEVICES, seed=7, now=FakeClock().now)


@pytest.mark.parametrize("index", [0, 1, 9, 65_535, 65_536, 123_456, MAX_DEVICES - 1])
def test_identifiers_are_valid_and_lead_back_to_the_device(fleet: Fleet, index: int) -> None:
    device = fleet.device(index)
    assert validate_imeis([device["imei"]]) == [device["imei"]]
    assert validate_iccids([device["iccid"]]) == [device["iccid"]]
    assert len(device["imsi"]) == 15
    assert fleet.by_imei(device["imei"]) == index
    assert fleet.by_iccid(device["iccid"]) == index
    assert fleet.by_imsi(device["imsi"]) == index
    assert fleet.by_msisdn("+" + device["msisdn"]) == index
    assert fleet.by_roma_id(device["roma_id"]) == index
    assert fleet.by_ipv4(device["ip_address"]) == index


def test_a_million_devices_cost_nothing_until_changed(fleet: Fleet) -> None:
    assert fleet.changed == {}
    fleet.update(999_999, {"status": "RETIRED"})
    assert list(fleet.changed) == [999_999]
    assert fleet.device(999_999)["status"] == "RETIRED"


def test_unknown_or_corrupt_identifiers_find_nothing() -> None:
    small = Fleet(size=10, seed=1, now=FakeClock().now)
    big = Fleet(size=20, seed=1, now=FakeClock().now)
    imei = big.device(15)["imei"]
    assert small.by_imei(imei) is None  # outside the smaller fleet
    assert big.by_imei(imei[:-1] + str((int(imei[-1]) + 1) % 10)) is None  # bad check digit
    assert big.by_iccid("89014103211118510720") is None
    assert big.by_roma_id("abc") is None


def test_attributes_repeat_per_seed_and_vary_across_devices() -> None:
    first = Fleet(size=1000, seed=5, now=FakeClock().now)
    again = Fleet(size=1000, seed=5, now=FakeClock().now)
    assert [first.device(i)["firmware"] for i in range(50)] == [
        again.device(i)["firmware"] for i in range(50)
    ]
    online = sum(first.device(i)["online_status"] == 1 for i in range(1000))
    assert 600 < online < 800  # about 70 % online
    assert len({first.device(i)["model"] for i in range(1000)}) == 3


def test_scheduled_changes_apply_when_due() -> None:
    clock = FakeClock()
    fleet = Fleet(size=10, seed=1, now=clock.now)
    fleet.schedule(clock.now() + timedelta(hours=2), 3, {"status": "DEACTIVATED"})
    clock.advance(3600)
    assert fleet.device(3)["status"] != "DEACTIVATED"
    assert len(fleet.pending) == 1
    clock.advance(3600)
    assert fleet.device(3)["status"] == "DEACTIVATED"
    assert fleet.pending == []


def test_fault_dice_repeat_for_a_seed() -> None:
    config = SimulatorConfig(devices=10, seed=42, faults=Faults(server_error=0.2, malformed_json=0.2))
    first, second = SimulatorState(config), SimulatorState(config)
    assert [first.roll_fault() for _ in range(200)] == [second.roll_fault() for _ in range(200)]
    counts = [first.roll_fault() for _ in range(1000)]
    assert 100 < counts.count("server_error") < 300
    assert counts.count("dropped_connection") == 0


def test_knob_validation() -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        Faults(server_error=1.5)
    with pytest.raises(ValueError, match="more than 1"):
        Faults(server_error=0.6, rate_limited=0.6)
    with pytest.raises(ValueError, match="unknown vendors"):
        SimulatorConfig(rate_limits={"nokia": 1})
    with pytest.raises(ValueError, match="fleet size"):
        Fleet(size=MAX_DEVICES + 1, seed=1, now=FakeClock().now)


def test_indices_where_follows_changes() -> None:
    fleet = Fleet(size=200, seed=2, now=FakeClock().now)
    online = fleet.indices_where("online_status", 1)
    assert online == [i for i in range(200) if fleet.device(i)["online_status"] == 1]
    fleet.update(online[0], {"online_status": 2})
    offline_before = [i for i in range(200) if fleet.base(i)["online_status"] == 2]
    assert fleet.indices_where("online_status", 1) == online[1:]
    assert fleet.indices_where("online_status", 2) == sorted([*offline_before, online[0]])
