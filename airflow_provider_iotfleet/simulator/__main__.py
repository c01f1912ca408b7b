"""``python -m airflow_provider_iotfleet.simulator``: serve the four vendor APIs on 127.0.0.1."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Sequence

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.core import RETRY_AFTER_STYLES, VENDORS, Faults, SimulatorConfig
from airflow_provider_iotfleet.simulator.fleet import NEVER_CONNECTED, OFFLINE, ONLINE

#: What each ``--fault-*`` flag's probability is of, for its help.
FAULT_HELP = {
    "server_error": "gets a 500 (not applied)",
    "rate_limited": "gets a 429 with Retry-After (not applied)",
    "dropped_connection": "has its connection dropped mid-answer, before it is applied",
    "malformed_json": "gets a 200 with truncated JSON (not applied)",
    "token_expiry": "finds its token or session expired",
    "applied_then_dropped": "is applied, then has its connection dropped mid-answer",
    "applied_then_delayed": "is applied, then answered only after --slow-answer-seconds",
    "gzip_garbage": "gets a 200 with Content-Encoding: gzip and a body that is not gzip (not applied)",
    "html_error_page": "gets a 502 with an HTML page, like a load balancer's (not applied)",
    "huge_body": "gets a 200 of --huge-body-bytes of JSON (not applied)",
    "deeply_nested": "gets a 200 of JSON nested 100,000 levels deep (not applied)",
}


def _rate_limit(text: str) -> tuple[str, float]:
    vendor, _, rate = text.partition("=")
    if vendor not in VENDORS or not rate:
        raise argparse.ArgumentTypeError(
            f"expected VENDOR=REQUESTS_PER_SECOND with VENDOR in {', '.join(VENDORS)}"
        )
    return vendor, float(rate)


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, SimulatorConfig]:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_iotfleet.simulator",
        description="Serve Palo Alto IoT Security, Cisco Control Center, Huawei ROMA Connect and Verizon "
        "ThingSpace APIs locally, and print the Airflow connections that reach them.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    parser.add_argument("--devices", type=int, default=5000, help="fleet size, up to 1000000 (default 5000)")
    parser.add_argument("--seed", type=int, default=7, help="seed for device attributes and fault dice")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every API answer")
    parser.add_argument(
        "--rate-limit",
        type=_rate_limit,
        action="append",
        default=[],
        metavar="VENDOR=RPS",
        help="throttle a vendor to RPS requests per second with 429s (repeatable)",
    )
    for fault in (field.name for field in dataclasses.fields(Faults)):
        parser.add_argument(
            f"--fault-{fault.replace('_', '-')}",
            type=float,
            default=0.0,
            metavar="P",
            dest=fault,
            help=f"probability (0..1) that an API request {FAULT_HELP[fault]}",
        )
    parser.add_argument("--verizon-page-size", type=int, default=1000, help="devices per ThingSpace page")
    parser.add_argument(
        "--session-idle-timeout", type=float, default=1200.0, help="ThingSpace session idle expiry, s"
    )
    parser.add_argument(
        "--slow-answer-seconds",
        type=float,
        default=40.0,
        help="how long --fault-applied-then-delayed holds an answer, s (default 40)",
    )
    parser.add_argument(
        "--huge-body-bytes",
        type=int,
        default=20 * 1024 * 1024,
        help="size of the --fault-huge-body answer (default 20 MiB)",
    )
    parser.add_argument(
        "--retry-after-style",
        choices=RETRY_AFTER_STYLES,
        default="seconds",
        help="Retry-After of every 429 as seconds (default) or an HTTP date",
    )
    parser.add_argument(
        "--campaign-devices-per-hour",
        type=float,
        default=60.0,
        help="devices a ThingSpace firmware campaign upgrades per hour while it runs (default 60)",
    )
    parser.add_argument(
        "--campaign-failure-share",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share (0..1) of a campaign's eligible devices whose upgrade fails (default 0)",
    )
    parser.add_argument(
        "--campaign-page-size",
        type=int,
        default=1000,
        help="devices per campaign report page, campaigns per history page (default 1000)",
    )
    parser.add_argument(
        "--retry-after-seconds",
        type=float,
        default=None,
        help="the wait every 429 asks for (default: 1 s for the fault, the rate limit's own wait)",
    )
    args = parser.parse_args(argv)
    try:
        config = SimulatorConfig(
            devices=args.devices,
            seed=args.seed,
            latency=args.latency,
            rate_limits=dict(args.rate_limit),
            faults=Faults(**{field.name: getattr(args, field.name) for field in dataclasses.fields(Faults)}),
            verizon_page_size=args.verizon_page_size,
            session_idle_timeout=args.session_idle_timeout,
            slow_answer_seconds=args.slow_answer_seconds,
            huge_body_bytes=args.huge_body_bytes,
            retry_after_style=args.retry_after_style,
            retry_after_seconds=args.retry_after_seconds,
            campaign_devices_per_hour=args.campaign_devices_per_hour,
            campaign_failure_share=args.campaign_failure_share,
            campaign_page_size=args.campaign_page_size,
        )
    except ValueError as error:
        parser.error(str(error))
    return args, config


def devices_to_try(simulator: Simulator, count: int = 3) -> list[str]:
    """Banner lines naming a few devices of each vendor (from ``/_sim/devices``) and their state."""
    fleet = simulator.state.fleet
    devices = [fleet.device(index) for index in range(min(count, fleet.size))]
    # Online ones first: only those can be forced offline.
    by_status = sorted(
        (fleet.device(index) for index in range(min(50, fleet.size))),
        key=lambda device: device["online_status"] != ONLINE,
    )[:count]
    online = {ONLINE: "online", OFFLINE: "offline", NEVER_CONNECTED: "never connected"}
    return [
        "# devices to try (more: GET /_sim/devices?vendor=cisco&status=ACTIVATED&limit=20):",
        "#   Control Center ICCIDs: " + ", ".join(f"{d['iccid']} ({d['status']})" for d in devices),
        "#   ROMA device ids:       "
        + ", ".join(f"{d['roma_id']} ({online[d['online_status']]})" for d in by_status),
        "#   ThingSpace IMEIs:      "
        + ", ".join(f"{d['imei']} ({d['model']}, {d['firmware']})" for d in devices),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    args, config = parse_args(argv)
    simulator = Simulator(config, port=args.port).start()
    print(f"# airflow-provider-iotfleet simulator: {config.devices} devices at {simulator.url}")
    print("# export these to point the four default connections at it:")
    for name, value in simulator.airflow_env().items():
        print(f"export {name}={shlex.quote(value)}")
    for line in devices_to_try(simulator):
        print(line)
    print(
        f"# state: {simulator.url}/_sim/state   devices: {simulator.url}/_sim/devices   "
        f"OpenAPI: {simulator.url}/_sim/openapi.json",
        flush=True,
    )
    try:
        simulator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
