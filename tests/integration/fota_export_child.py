"""One try of a FOTA inventory export, in a process of its own, for tests/integration/test_fota_export.py.

Runs ``VerizonThingSpaceFotaDevicesOperator(output_path=...)`` the way a task try would (the
connection comes from the ``AIRFLOW_CONN_*`` environment, the task identity is fixed, so every try of
the same ``--task-id`` writes the same temporary file), then writes a JSON report: the returned
outcome, the XCom pushes, and the process's resident memory just before the export and at its peak
during the export. A killed try writes no report.

    python -m tests.integration.fota_export_child OUTPUT_URI REPORT_PATH [--task-id ID]
"""

from __future__ import annotations

import argparse
import json
import os
import resource

from tests.memory import reset_peak_rss, status_kib

#: The task id of every try unless told otherwise: the same identity, so the same temporary file.
DEFAULT_TASK_ID = "export_fota_inventory"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("output", help="output_path of the operator (a file:// URI or a local path)")
    parser.add_argument("report", help="where to write the JSON report")
    parser.add_argument("--task-id", default=DEFAULT_TASK_ID)
    args = parser.parse_args(argv)

    from airflow_provider_iotfleet.operators.verizon import VerizonThingSpaceFotaDevicesOperator
    from tests.fakes import operator_context

    operator = VerizonThingSpaceFotaDevicesOperator(task_id=args.task_id, output_path=args.output)
    context = operator_context(args.task_id)
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
