"""``python -m airflow_provider_iotfleet.simulator``: serve the four vendor APIs on 127.0.0.1."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from airflow_provider_iotfleet.simulator import Simulator
from airflow_provider_iotfleet.simulator.core import VENDORS, Faults, SimulatorConfig


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
    for fault in ("server_error", "rate_limited", "dropped_connection", "malformed_json", "token_expiry"):
        parser.add_argument(
            f"--fault-{fault.replace('_', '-')}",
            type=float,
            default=0.0,
            metavar="P",
            dest=fault,
            help=f"probability (0..1) that an API request meets a {fault.replace('_', ' ')}",
        )
    parser.add_argument("--verizon-page-size", type=int, default=1000, help="devices per ThingSpace page")
    parser.add_argument(
        "--session-idle-timeout", type=float, default=1200.0, help="ThingSpace session idle expiry, s"
    )
    args = parser.parse_args(argv)
    try:
        config = SimulatorConfig(
            devices=args.devices,
            seed=args.seed,
            latency=args.latency,
            rate_limits=dict(args.rate_limit),
            faults=Faults(
                server_error=args.server_error,
                rate_limited=args.rate_limited,
                dropped_connection=args.dropped_connection,
                malformed_json=args.malformed_json,
                token_expiry=args.token_expiry,
            ),
            verizon_page_size=args.verizon_page_size,
            session_idle_timeout=args.session_idle_timeout,
        )
    except ValueError as error:
        parser.error(str(error))
    return args, config


def main(argv: Sequence[str] | None = None) -> None:
    args, config = parse_args(argv)
    simulator = Simulator(config, port=args.port).start()
    print(f"# airflow-provider-iotfleet simulator: {config.devices} devices at {simulator.url}")
    print("# export these to point the four default connections at it:")
    for name, value in simulator.airflow_env().items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"# state: {simulator.url}/_sim/state   API docs: {simulator.url}/_sim/docs", flush=True)
    try:
        simulator.wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
