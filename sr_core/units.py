"""How Finescale writes sizes and durations for people: the one place for the rule."""

from __future__ import annotations

__all__ = ["format_bytes", "format_seconds"]


def format_bytes(n: float | None, unknown: str = "?") -> str:
    """``"1.2 GB"``, ``"350.0 MB"``, ``"12.0 KB"`` (decimal units, as disks are sold);
    ``unknown`` for None."""
    if n is None:
        return unknown
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def format_seconds(s: float) -> str:
    """``"40 s"``, ``"3 min"``, ``"2.5 h"``."""
    if s < 90:
        return f"{max(1, round(s))} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    return f"{s / 3600:.1f} h"
