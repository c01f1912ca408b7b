"""This process's memory, from /proc (Linux): what the export and benchmark children report."""

from __future__ import annotations


def status_kib(field: str) -> int | None:
    """A memory figure of this process from /proc (``VmRSS``, ``VmHWM``), in KiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Make the peak resident set (VmHWM) start again from the current one (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True
