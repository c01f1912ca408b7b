"""The Python code blocks of the README and the docs pages, as the snippet tests run them.

A fenced ```python block is a snippet; an HTML comment ``<!-- not-tested: why -->`` on the line
before its fence opts it out of being run (it is still compiled), and the tests list the reason."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The Markdown files whose Python blocks are user-facing snippets.
SNIPPET_SOURCES = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`\n]*)$")
_OPT_OUT = re.compile(r"<!--\s*not-tested:\s*(?P<reason>.*?)\s*-->")


@dataclasses.dataclass(frozen=True)
class Snippet:
    """One ```python block: where it is, its code (dedented) and why it is not run, if it is not."""

    path: Path
    line: int
    code: str
    not_tested: str | None

    @property
    def name(self) -> str:
        """``README.md:123``: the file, relative to the repository, and the fence's line."""
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_snippets(paths: tuple[Path, ...] = SNIPPET_SOURCES) -> list[Snippet]:
    """Return every ```python block of ``paths``, in file order.

    :raises ValueError: naming the file and line of a block that is never closed.
    """
    snippets: list[Snippet] = []
    for path in paths:
        lines = path.read_text(encoding="utf-8").splitlines()
        index = 0
        while index < len(lines):
            opening = _FENCE.match(lines[index])
            if not opening:
                index += 1
                continue
            start, indent = index, opening["indent"]
            index += 1
            while index < len(lines) and lines[index].strip() != "```":
                index += 1
            if index == len(lines):
                raise ValueError(f"{path.relative_to(ROOT)}:{start + 1}: a code block is never closed")
            if opening["info"].strip() == "python":
                body = [line.removeprefix(indent) for line in lines[start + 1 : index]]
                previous = lines[start - 1] if start else ""
                opt_out = _OPT_OUT.search(previous)
                snippets.append(
                    Snippet(
                        path=path,
                        line=start + 1,
                        code=textwrap.dedent("\n".join(body)) + "\n",
                        not_tested=opt_out["reason"] if opt_out else None,
                    )
                )
            index += 1
    return snippets
