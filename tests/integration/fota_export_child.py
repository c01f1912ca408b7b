"""One try of a FOTA inventory export, in a process of its own, for tests/integration/test_fota_export.py.

Runs ``VerizonThingSpaceFotaDevicesOperator(output_path=...)`` the way a task try would (the
connection comes from the ``AIRFLOW_CONN_*`` environment, the task identity is fixed, so runs with the
same ``--task-id`` are tries of one task instance, ``--try-number`` saying which), then writes a JSON
report: the returned outcome, the XCom pushes, and the process's resident memory just before the
export and at its peak during the export. A killed try writes no report.

With ``--pause-after-pages N --resume-when PATH``, the export stops once it has written N pages,
creates ``REPORT_PATH.paused``, and goes on when PATH exists: how a test holds two tries side by side.

    python -m tests.integration.fota_export_child OUTPUT_URI REPORT_PATH [--task-id ID] [--try-number N]
        [--pause-after-pages N --resume-when PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import threading
import time
from pathlib import Path

from tests.memory import reset_peak_rss, status_kib

#: The task id of every try unless told otherwise: tries of the same task instance.
DEFAULT_TASK_ID = "export_fota_inventory"
#: The longest a paused export waits to be resumed; a test that never resumes it fails, never hangs.
RESUME_TIMEOUT = 180.0


def wait_for(path: Path, paused: Path) -> None:
    """Say the export is paused (create ``paused``), then wait until ``path`` exists."""
    paused.touch()
    deadline = time.monotonic() + RESUME_TIMEOUT
    pause = threading.Event()
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {RESUME_TIMEOUT:g} s")
        pause.wait(0.02)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", help="output_path of the operator (a file:// URI or a local path)")
    parser.add_argument("report", help="where to write the JSON report")
    parser.add_argument("--task-id", default=DEFAULT_TASK_ID)
    parser.add_argument("--try-number", type=int, default=1)
    parser.add_argument("--pause-after-pages", type=int, default=None)
    parser.add_argument("--resume-when", type=Path, default=None)
    args = parser.parse_args(argv)
    if (args.pause_after_pages is None) != (args.resume_when is None):
        parser.error("--pause-after-pages and --resume-when go together")

    from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator
    from tests.fakes import operator_context, pausing_fota_operator

    operator_class = VerizonThingSpaceFotaDevicesOperator
    if args.pause_after_pages is not None:
        paused, resume = Path(f"{args.report}.paused"), args.resume_when
        operator_class = pausing_fota_operator(lambda: wait_for(resume, paused), args.pause_after_pages)
    operator = operator_class(task_id=args.task_id, output_path=args.output)
    context = operator_context(args.task_id, try_number=args.try_number)
    # The peak of the export alone: from the resident set just before it, when the kernel lets the
    # peak be reset; else from the peak so far (the imports').
    before = status_kib("VmRSS") if reset_peak_rss() else status_kib("VmHWM")
    outcome = operator.execute(context)  # type: ignore[arg-type]
    peak = status_kib("VmHWM")
    if before is None or peak is None:  # no /proc: ru_maxrss is the peak of the whole run
        before, peak = 0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "outcome": outcome,
        "xcom": context["ti"].xcom,  # type: ignore[attr-defined]
        "rss_kib_before_export": before,
        "peak_rss_kib": peak,
    }
    partial = f"{args.report}.tmp"
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(report, out)
    os.replace(partial, args.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
