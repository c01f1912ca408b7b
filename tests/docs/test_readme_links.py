"""The README is the start: every page of the docs site is linked from it, and every relative link in
it reaches a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _relative_links(text: str) -> list[str]:
    """The link targets of ``text`` that are paths in the repository (no scheme, no bare anchor)."""
    targets = (match["target"] for match in _LINK.finditer(text))
    return [target for target in targets if "://" not in target and not target.startswith("#")]


def test_every_relative_link_of_the_readme_reaches_a_file() -> None:
    links = _relative_links(README.read_text(encoding="utf-8"))
    broken = [link for link in links if not (ROOT / link.split("#", 1)[0]).exists()]
    assert links, "the README links no docs page"
    assert not broken, f"README links to missing files: {broken}"


def test_the_readme_links_every_docs_page_and_the_hosted_site() -> None:
    readme = README.read_text(encoding="utf-8")
    linked = {link.split("#", 1)[0] for link in _relative_links(readme)}
    pages = {path.relative_to(ROOT).as_posix() for path in DOCS.rglob("*.md") if "_build" not in path.parts}
    pages.discard("docs/index.md")
    assert not pages - linked, f"docs pages the README does not link: {sorted(pages - linked)}"
    assert "https://airflow-provider-iotfleet.readthedocs.io/" in readme
