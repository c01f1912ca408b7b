"""Small helpers over lists and words that every layer uses: batching, de-duplication, counting nouns."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import TypeVar

ItemT = TypeVar("ItemT")


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """Return ``"1 device"`` / ``"3 devices"``."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


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
