"""The benchmark suite's own logic (benchmarks/), checked without running a benchmark: figures and
their verdicts, the helpers that turn measurements into figures, and the README table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks import child, overhead, pollcost, readme_table, run
from benchmarks.common import median, percentile, rounded

ROOT = Path(__file__).resolve().parent.parent.parent


# --- figures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "target", "met", "shown"),
    [
        (7.5, (">=", 6), True, ">= 6"),
        (6, (">=", 6), True, ">= 6"),
        (5.99, (">=", 6), False, ">= 6"),
        (1.3, ("<=", 1.3), True, "<= 1.3"),
        (1.31, ("<=", 1.3), False, "<= 1.3"),
        (79.9, ("<", 80), True, "< 80"),
        (80, ("<", 80), False, "< 80"),
        (100, ("==", 100), True, "== 100"),
        (101, ("==", 100), False, "== 100"),
        (False, ("==", False), True, "== false"),
        (True, ("==", False), False, "== false"),
        (0.9, (">=", 0.9), True, ">= 0.9"),
    ],
)
def test_figure_verdict(value: Any, target: tuple[str, Any], met: bool, shown: str) -> None:
    result = run.figure(value, "x", target, what="a figure", extra=1)
    assert result == {
        "value": value,
        "unit": "x",
        "target": shown,
        "met": met,
        "context": {"what": "a figure", "extra": 1},
    }


def test_figure_without_target_or_value_has_no_verdict() -> None:
    assert run.figure(3.0, "s", None, what="context only")["met"] is None
    assert run.figure(3.0, "s", None, what="context only")["target"] is None
    not_measured = run.figure(None, "s", ("<=", 1.3), what="not measured")
    assert not_measured["met"] is None
    assert not_measured["target"] == "<= 1.3"


def test_a_nan_figure_meets_no_target() -> None:
    assert run.figure(math.nan, "%", ("<", 1), what="no requests")["met"] is False
    assert run.figure(math.nan, "x", (">=", 6), what="no requests")["met"] is False


def test_figures_are_json() -> None:
    figure = run.figure(rounded(1 / 3), "ratio", (">=", 0.9), what="w", nested={"a": [1, 2]})
    assert json.loads(json.dumps(figure)) == figure


# --- measuring ----------------------------------------------------------------------------------


def test_measured_rates_and_best() -> None:
    slow = run.Measured("op", items=100, wall=2.0, cpu=0.5, simulator_cpu=1.0)
    fast = run.Measured("op", items=100, wall=1.0, cpu=0.5, simulator_cpu=0.2)
    assert slow.rate == 50
    assert slow.simulator_share == 0.5
    assert run.best([slow, fast]) is fast
    report = fast.report()
    assert report["per_s"] == 100
    assert report["client_cpu_ms_per_item"] == 5
    assert report["simulator_cpu_share"] == 0.2


def test_interleaved_alternates_the_order() -> None:
    order: list[str] = []

    def method(name: str) -> Any:
        def measured() -> run.Measured:
            order.append(name)
            return run.Measured(name, 1, 1.0, 0.0, 0.0)

        return measured

    runs = run.interleaved(3, {"a": method("a"), "b": method("b"), "c": method("c")})
    assert order == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]
    assert {name: len(measured) for name, measured in runs.items()} == {"a": 3, "b": 3, "c": 3}


def test_percentile_and_median() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([3.0], 0.99) == 3
    assert math.isnan(percentile([], 0.5))
    assert median([1.0, 3.0, 2.0]) == 2
    assert rounded(1.23456, 2) == 1.23
    assert math.isnan(rounded(math.nan))


def test_spread_of_loop_lags() -> None:
    assert child._spread([1.0, 2.0, 3.0, 10.0]) == {"p50": 2.0, "p99": 10.0, "max": 10.0, "n": 4}
    assert child._spread([]) == {"p50": None, "p99": None, "max": None, "n": 0}


def test_throttle_episodes_group_429s_in_flight_together() -> None:
    times = [0.86, 0.88, 0.91, 3.04, 5.10, 5.12, 7.15]
    assert run.throttle_episodes(times) == [0.86, 3.04, 5.10, 7.15]
    assert run.throttle_episodes([]) == []


def test_importtime_parsing() -> None:
    text = "\n".join(
        [
            "import time: self [us] | cumulative | imported package",
            "import time:       120 |        120 |     airflow_provider_iotfleet.validation",
            "import time:       300 |        420 |   airflow_provider_iotfleet.hooks.base",
            "import time:        50 |        470 | airflow_provider_iotfleet.hooks.cisco",
            "not an importtime line",
        ]
    )
    assert run._importtime(text) == [
        {"module": "airflow_provider_iotfleet.validation", "depth": 2, "self_us": 120, "cumulative_us": 120},
        {"module": "airflow_provider_iotfleet.hooks.base", "depth": 1, "self_us": 300, "cumulative_us": 420},
        {"module": "airflow_provider_iotfleet.hooks.cisco", "depth": 0, "self_us": 50, "cumulative_us": 470},
    ]


def test_simulator_bound_figures_are_named_in_the_headroom_figure() -> None:
    figures = {
        "simulator_headroom": run.figure(2000.0, "requests/s", None, what="headroom"),
        "a": run.figure(1.0, "x", None, what="a", simulator_bound=True),
        "b": run.figure(1.0, "x", None, what="b", simulator_bound=False),
        "c": run.figure(1.0, "x", None, what="c"),
    }
    run.mark_simulator_bound(figures, {})
    assert figures["simulator_headroom"]["context"]["simulator_bound_figures"] == ["a"]
    run.mark_simulator_bound({"a": figures["a"]}, {})  # no headroom figure: nothing to mark


# --- what the run covers ------------------------------------------------------------------------


def test_every_figure_group_of_the_issue_is_run() -> None:
    assert set(run.GROUPS) == {
        "headroom",
        "imports",
        "edits",
        "rate_limit",
        "fota",
        "bulk",
        "triggers",
        "sizes",
        "poll_cost",
        "overhead",
    }


def test_the_xcom_size_counts_every_key_as_airflow_serialises_it() -> None:
    pushed = {"outcome": {"devices": ["89014103211118510720"] * 3}, "return_value": [1, 2]}
    assert run.xcom_bytes(pushed) == len(json.dumps(pushed["outcome"])) + len("[1, 2]")


def test_the_children_the_runner_starts_exist() -> None:
    source = (ROOT / "benchmarks" / "run.py").read_text()
    for name in ("fota-operator", "fota-bare", "triggers", "imports"):
        assert name in child.CHILDREN
        assert f'"{name}"' in source


def test_import_cost_covers_every_hook_operator_sensor_and_trigger_module() -> None:
    modules = run.provider_modules()
    package = ROOT / "airflow_provider_iotfleet"
    expected = sorted(
        f"airflow_provider_iotfleet.{folder}.{path.stem}"
        for folder in ("hooks", "operators", "sensors", "triggers")
        for path in (package / folder).glob("*.py")
        if path.stem != "__init__"
    )
    # Only what an optional extra alone loads is left out, and it is there to leave out.
    assert sorted(modules) == sorted(set(expected) - set(run.OPTIONAL_EXTRA_MODULES))
    assert set(run.OPTIONAL_EXTRA_MODULES) <= set(expected)
    assert any(module.endswith("triggers.cisco") for module in modules)


def test_the_runner_refuses_unknown_groups() -> None:
    with pytest.raises(SystemExit):
        run.main(["--only", "no-such-group"])


# --- the README table ---------------------------------------------------------------------------


def results(**figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "machine": {"cores": 2, "platform": "Linux-x86_64", "python": "3.11.7"},
        "versions": {
            "airflow": "3.3.2",
            "provider": "0.1.0",
            "requests": "2.34.2",
            "httpx": "0.28.1",
            "apache-airflow-providers-http": "6.3.0",
        },
        "figures": figures,
        "when": "2026-11-29T12:00:00+00:00",
        "duration_s": 600.0,
    }


def test_readme_table_rows() -> None:
    rendered = readme_table.table(
        results(
            edits=run.figure(7.67, "x (edits/s ratio)", (">=", 6), what="operator vs HttpHook loop"),
            rate=run.figure(0.575, "ratio", (">=", 0.9), what="utilisation"),
            headroom=run.figure(1726.0, "requests/s", None, what="simulator"),
            requests=run.figure(100, "requests", ("==", 100), what="requests made"),
            loads=run.figure(False, "bool", ("==", False), what="loads requests"),
            prefetch=run.figure(None, "s", None, what="with prefetch"),
        )
    )
    lines = rendered.splitlines()
    assert lines[0].startswith("One run on 2026-11-29: 2 cores (Linux-x86_64), Python 3.11.7, Airflow 3.3.2")
    assert "`make bench` took 10.0 min" in lines[0]
    assert lines[2] == "| figure | value | target | met |"
    assert lines[4:] == [
        "| `edits` | 7.67 x (edits/s ratio) | >= 6 | yes |",
        "| `rate` | 0.575 ratio | >= 0.9 | **no** |",
        "| `headroom` | 1,726 requests/s | — | — |",
        "| `requests` | 100 requests | == 100 | yes |",
        "| `loads` | false | == false | yes |",
        "| `prefetch` | not measured | — | — |",
    ]


def test_readme_table_names_what_could_not_run() -> None:
    broken = results(a=run.figure(1.0, "s", None, what="a"))
    broken["errors"] = {"triggers": "BenchmarkError: boom"}
    assert readme_table.table(broken).endswith("Could not run: triggers (BenchmarkError: boom)")


def test_the_table_goes_between_the_markers_only() -> None:
    readme = "# Title\n\nintro\n<!-- bench:start -->\nold table\nmore\n<!-- bench:end -->\n\n## Next\n"
    updated = readme_table.with_table(readme, "| new |")
    assert updated == "# Title\n\nintro\n<!-- bench:start -->\n| new |\n<!-- bench:end -->\n\n## Next\n"
    assert readme_table.with_table(updated, "| new |") == updated
    for broken in ("no markers", "<!-- bench:end -->\n<!-- bench:start -->", readme + readme):
        with pytest.raises(ValueError, match="bench:start"):
            readme_table.with_table(broken, "| new |")


def test_the_readme_has_the_markers_of_its_benchmark_table() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Benchmarks" in readme
    assert readme_table.with_table(readme, "| table |").count("| table |") == 1


def test_the_readme_table_is_the_one_of_the_committed_results() -> None:
    """benchmarks/results.json is the latest run, committed with the README table made from it."""
    stored = ROOT / "benchmarks" / "results.json"
    data = json.loads(stored.read_text())
    readme = (ROOT / "README.md").read_text()
    assert readme_table.table(data) in readme
    assert data["machine"]["cores"] >= 1
    assert {"airflow", "provider", "requests", "httpx"} <= set(data["versions"])
    for name, figure in data["figures"].items():
        assert {"value", "unit", "target", "met", "context"} <= set(figure), name
        assert figure["context"]["what"], name
        assert (figure["met"] is None) == (figure["target"] is None or figure["value"] is None), name
    assert len(readme_table.table(data).splitlines()) == 4 + len(data["figures"]) + (
        2 if data.get("errors") else 0
    )


def test_the_poll_cost_is_the_poll_over_the_full_read() -> None:
    assert pollcost.poll_ratio(2, 10_000) == 0.0002
    assert pollcost.poll_ratio(3, 3) == 1.0
    assert math.isnan(pollcost.poll_ratio(1, 0))


def test_an_amortised_poll_counts_the_periodic_full_read() -> None:
    assert pollcost.amortised_requests(2, 9_384, 10) == (9_384 + 9 * 2) / 10
    assert pollcost.amortised_requests(2, 9_384, 0) == 2


# --- bulk calls ---------------------------------------------------------------------------------


def test_roma_fleet_picks_only_devices_online_at_start_up() -> None:
    from airflow_provider_iotfleet.simulator.fleet import ONLINE, ROMA_ID_BASE, Fleet

    size, ids, statuses = run.roma_fleet(50)
    assert len(ids) == 50
    assert sum(statuses.values()) == 50
    fleet = Fleet(size=size, seed=run.SIMULATOR_SEED, now=lambda: None)
    online = [ROMA_ID_BASE + i for i in range(size) if fleet.base(i)["online_status"] == ONLINE]
    assert online == ids
    assert ids[-1] == ROMA_ID_BASE + size - 1  # the smallest fleet that has them


def test_roma_read_back_pages_counts_both_listings() -> None:
    statuses = {"online": 70_076, "offline": 19_922, "never_connected": 10_002}
    assert run.roma_read_back_pages(statuses, 999) == math.ceil(10_002 / 999) + math.ceil(89_998 / 999)
    assert run.roma_read_back_pages({"online": 5, "offline": 0, "never_connected": 0}, 999) == 1


# --- operator overhead --------------------------------------------------------------------------


def test_overhead_ratio_is_operator_over_hook() -> None:
    assert overhead.overhead_ratio(1.1, 1.0) == pytest.approx(1.1)
    assert overhead.overhead_ratio(0.9, 1.0) == pytest.approx(0.9)
    assert overhead.overhead_ratio(1.0, 0.0) == math.inf


def test_outcome_size_is_what_json_xcom_stores() -> None:
    outcome = {"operation": "edit_devices", "devices": {"succeeded": ["89" * 10] * 512}}
    assert overhead.outcome_kib(outcome) == len(json.dumps(outcome).encode()) / 1024
    assert overhead._ids(outcome) == {"succeeded": ["89" * 10] * 512}
