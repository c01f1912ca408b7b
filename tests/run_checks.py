"""Checks shared by the tests that run DAGs on a real Airflow (standalone and cluster): how many task
instances ran at once, how busy the simulated account was, what changed since a count was taken."""

from __future__ import annotations

from collections import Counter, deque
from datetime import datetime
from typing import Any


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at the same moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def busiest_second(times: list[datetime]) -> int:
    """The most requests in any one-second window."""
    window: deque[datetime] = deque()
    busiest = 0
    for when in sorted(times):
        window.append(when)
        while (when - window[0]).total_seconds() >= 1.0:
            window.popleft()
        busiest = max(busiest, len(window))
    return busiest


def request_time(request: dict[str, Any]) -> datetime:
    """When the simulator saw a request, on its clock."""
    when = request["time"]
    return when if isinstance(when, datetime) else datetime.fromisoformat(when)


def timestamp(value: str | datetime) -> float:
    """A date from the metadata DB (text in SQLite, a datetime in PostgreSQL), as a POSIX timestamp."""
    return (value if isinstance(value, datetime) else datetime.fromisoformat(value)).timestamp()


def since(counts: Counter[str], before: Counter[str]) -> Counter[str]:
    """``counts`` less ``before``, devices at 0 left out."""
    later = Counter(counts)
    later.subtract(before)
    return +later
