"""Small helpers every layer uses: batching, de-duplication, counting nouns, a package's lazy exports."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from importlib import import_module
from typing import Any, TypeVar

ItemT = TypeVar("ItemT")


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """Return ``"1 device"`` / ``"3 devices"``."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """Return `` (did you mean 'ipAddress'?)`` naming the choice closest to ``name``, or ``""`` when
    none is close. Case, ``_`` and ``-`` are ignored when comparing: ``ip_address`` finds ``ipAddress``.
    """
    if not isinstance(name, str):
        return ""

    def folded(word: str) -> str:
        return word.lower().replace("_", "").replace("-", "")

    by_folded = {folded(choice): choice for choice in sorted(choices)}
    close = difflib.get_close_matches(folded(name), list(by_folded), n=1)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""


def distinct(items: Iterable[ItemT], key: Callable[[ItemT], Hashable]) -> tuple[list[ItemT], int]:
    """Return the items with repeats (same ``key``) dropped, first occurrence kept, and how many went."""
    seen: set[Hashable] = set()
    kept: list[ItemT] = []
    dropped = 0
    for item in items:
        marker = key(item)
        if marker in seen:
            dropped += 1
        else:
            seen.add(marker)
            kept.append(item)
    return kept, dropped


def chunks(items: Sequence[ItemT], size: int) -> Iterator[list[ItemT]]:
    """Yield consecutive slices of ``items`` of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def exports_of(package: str, parts: Sequence[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the module ``__getattr__`` and ``__dir__`` (PEP 562) of a vendor package that exports
    its parts' names (the package's ``__all__``) without importing them up front.

    Airflow imports ``<vendor>.connection`` while it is itself being imported (provider discovery
    reads the connection forms), so a vendor package must import nothing heavy until a name is asked
    for: then ``parts`` (submodule names) are searched in order, and the name is cached on the package.
    """

    def __getattr__(name: str) -> Any:
        module = sys.modules[package]
        if name in getattr(module, "__all__", ()):
            for part in parts:
                value = getattr(import_module(f"{package}.{part}"), name, _MISSING)
                if value is not _MISSING:
                    setattr(module, name, value)
                    return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        module = sys.modules[package]
        return sorted({*vars(module), *getattr(module, "__all__", ())})

    return __getattr__, __dir__


_MISSING = object()
