"""The test suite's own layout: conftest files hold fixtures, shared helpers live in support modules at
``tests/`` top level, and no module of the suite imports a conftest or a test module (only the
support modules, and the DAG files and programs a test runs)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    """The ``tests.*`` modules ``path`` imports, by dotted name (``from tests.x import y`` names both
    ``tests.x`` and ``tests.x.y``, since ``y`` may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("tests.")}


def test_no_module_of_the_suite_imports_a_conftest_or_a_test_module() -> None:
    offending = {
        f"{path.relative_to(TESTS.parent)} imports {name}"
        for path in TESTS.rglob("*.py")
        for name in _imported_modules(path)
        if name.rsplit(".", 1)[-1] == "conftest" or name.rsplit(".", 1)[-1].startswith("test_")
    }
    assert not offending, "move what they share into a support module at tests/ top level:\n" + "\n".join(
        sorted(offending)
    )
