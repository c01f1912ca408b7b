"""Print the README's benchmark table (markdown) from ``benchmarks/results.json``.

    python -m benchmarks.readme_table [RESULTS_JSON] [--write-readme]

``--write-readme`` puts it into README.md, between the ``<!-- bench:start -->`` and
``<!-- bench:end -->`` lines of its Benchmarks section, and leaves the rest of the file as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results.json"
README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- bench:start -->"
END = "<!-- bench:end -->"


def _value(figure: dict[str, Any]) -> str:
    value = figure["value"]
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        shown = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    else:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
    unit = figure["unit"]
    return f"{shown} {unit}" if unit else shown


def _met(figure: dict[str, Any]) -> str:
    return {True: "yes", False: "**no**", None: "—"}[figure["met"]]


def table(results: dict[str, Any]) -> str:
    """The markdown table of every figure (what each is: its ``context.what`` in the results), with the
    run's machine and versions above it."""
    machine = results["machine"]
    versions = results["versions"]
    lines = [
        f"One run on {results['when'][:10]}: {machine['cores']} cores ({machine['platform']}), "
        f"Python {machine['python']}, Airflow {versions['airflow']}, provider {versions['provider']}, "
        f"requests {versions['requests']}, httpx {versions['httpx']}, "
        f"apache-airflow-providers-http {versions.get('apache-airflow-providers-http', '?')}; "
        f"`make bench` took {results['duration_s'] / 60:.1f} min.",
        "",
        "| figure | value | target | met |",
        "|---|---|---|---|",
    ]
    for name, figure in results["figures"].items():
        target = figure["target"] or "—"
        lines.append(f"| `{name}` | {_value(figure)} | {target} | {_met(figure)} |")
    if results.get("errors"):
        lines += ["", "Could not run: " + "; ".join(f"{k} ({v})" for k, v in results["errors"].items())]
    return "\n".join(lines)


def with_table(readme: str, rendered: str) -> str:
    """``readme`` with what is between its start and end markers replaced by ``rendered``.

    :raises ValueError: when the markers are missing, repeated or out of order.
    """
    lines = readme.split("\n")
    starts = [index for index, line in enumerate(lines) if line.strip() == START]
    ends = [index for index, line in enumerate(lines) if line.strip() == END]
    if len(starts) != 1 or len(ends) != 1 or starts[0] > ends[0]:
        raise ValueError(f"expected one {START} line followed by one {END} line")
    return "\n".join([*lines[: starts[0] + 1], rendered, *lines[ends[0] :]])


def main(argv: list[str]) -> int:
    arguments = [argument for argument in argv if argument != "--write-readme"]
    path = Path(arguments[0]) if arguments else RESULTS
    rendered = table(json.loads(path.read_text()))
    if "--write-readme" in argv:
        README.write_text(with_table(README.read_text(), rendered))
        print(f"wrote the table into {README}")
    else:
        print(rendered)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
