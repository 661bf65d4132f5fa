"""Units for people: durations, sizes, ratios. Shared by the terminal and HTML renderers."""

from __future__ import annotations

import datetime as _dt

from corral.resources import format_memory


def duration(seconds: float | None) -> str:
    """``0.35 s``, ``42 s``, ``3m 12s``, ``2h 05m``, ``3d 04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 10:
        return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m}m {sec:02d}s"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def size(nbytes: float | None) -> str:
    """Memory and file sizes the way resources are written: ``512M``, ``1.5G``."""
    return "-" if nbytes is None else format_memory(nbytes)


def percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.0f}%"


def hours(value: float | None) -> str:
    """Hours (CPU or core-hours); under 10 minutes shown as a duration."""
    if value is None:
        return "-"
    if value * 3600 < 600:
        return duration(value * 3600)
    return f"{value:.3f} h" if value < 0.1 else f"{value:.2f} h" if value < 10 else f"{value:.1f} h"


def number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def timestamp(unix: float | None) -> str:
    """Local time ``2024-05-01 13:02:11`` of a UNIX time; ``-`` when unknown."""
    if unix is None:
        return "-"
    return _dt.datetime.fromtimestamp(float(unix)).strftime("%Y-%m-%d %H:%M:%S")


def iso(unix: float | None) -> str | None:
    """ISO 8601 with time zone, for JSON-LD and PROV."""
    if unix is None:
        return None
    return _dt.datetime.fromtimestamp(float(unix), tz=_dt.UTC).isoformat(timespec="seconds")
