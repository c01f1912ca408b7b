"""Sphinx extension of the provider's docs: the ``iotfleet-connection-fields`` directive draws a
connection type's form from ``get_provider_info()``, the data Airflow's connection form is drawn from,
so the docs cannot drift from the form.

Usage, in a MyST page::

    ```{iotfleet-connection-fields} cisco_control_center
    ```
"""

from __future__ import annotations

import json
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx

from airflow_provider_iotfleet import get_provider_info

STANDARD_FIELDS = ("host", "schema", "login", "password", "port", "extra")


def connection_type(name: str) -> dict[str, Any]:
    """Return the provider info's ``connection-types`` entry for ``name``.

    :raises ValueError: naming every known connection type, when ``name`` is not one of them.
    """
    entries = {entry["connection-type"]: entry for entry in get_provider_info()["connection-types"]}
    if name not in entries:
        raise ValueError(f"unknown connection type {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


def field_rows(entry: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Return one ``(field, label, default, description)`` row per field of the form: the standard
    fields the form shows (relabelled, with their placeholder), then the extras (``conn-fields``)."""
    behaviour = entry.get("ui-field-behaviour", {})
    hidden = set(behaviour.get("hidden-fields", []))
    labels = behaviour.get("relabeling", {})
    placeholders = behaviour.get("placeholders", {})
    rows = [
        (
            field,
            labels.get(field, field.capitalize()),
            "",
            f"e.g. {placeholders[field]}" if field in placeholders else "",
        )
        for field in STANDARD_FIELDS
        if field not in hidden
    ]
    for field, spec in entry.get("conn-fields", {}).items():
        schema = spec.get("schema", {})
        default = json.dumps(schema["default"]) if "default" in schema else ""
        description = spec.get("description", "")
        if "enum" in schema:
            description = f"{description} One of: {', '.join(map(str, schema['enum']))}.".strip()
        rows.append((f"extra: {field}", spec.get("label", field), default, description))
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], widths: tuple[int, ...]) -> nodes.table:
    table = nodes.table(classes=["iotfleet-connection-fields"])
    group = nodes.tgroup(cols=len(header))
    table += group
    for width in widths:
        group += nodes.colspec(colwidth=width)

    def row(cells: tuple[str, ...], first_literal: bool) -> nodes.row:
        line = nodes.row()
        for index, text in enumerate(cells):
            entry = nodes.entry()
            paragraph = nodes.paragraph()
            paragraph += (
                nodes.literal(text=text) if first_literal and index == 0 and text else nodes.Text(text)
            )
            entry += paragraph
            line += entry
        return line

    head = nodes.thead()
    head += row(header, first_literal=False)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells, first_literal=True)
    group += head
    group += body
    return table


class ConnectionFieldsDirective(Directive):
    """``iotfleet-connection-fields <connection type>``: the hook class and the form's fields."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            entry = connection_type(self.arguments[0])
        except ValueError as error:
            raise self.error(str(error)) from error
        intro = nodes.paragraph()
        intro += nodes.Text("Connection type ")
        intro += nodes.literal(text=entry["connection-type"])
        intro += nodes.Text(f" ({entry['hook-name']}), hook class ")
        intro += nodes.literal(text=entry["hook-class-name"])
        intro += nodes.Text(". The form's fields, from the provider info Airflow draws it from:")
        header = ("field", "label in the form", "default", "what it is")
        return [intro, _table(header, [tuple(r) for r in field_rows(entry)], (18, 22, 14, 46))]


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the directive with Sphinx; returns the extension's metadata."""
    app.add_directive("iotfleet-connection-fields", ConnectionFieldsDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
