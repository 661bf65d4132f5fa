"""Units for people: durations, sizes, ratios. Shared by the terminal and HTML renderers."""

from __future__ import annotations

import datetime as _dt

from corral.resources import format_memory


def duration(seconds: float | None) -> str:
    """``3.2 ms``, ``45 ms``, ``0.35 s``, ``42 s``, ``3m 12s``, ``2h 05m``, ``3d 04h``; ``-`` when
    unknown."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s == 0:
        return "0 s"
    if 0 < s < 0.1:
        return f"{1000 * s:.1f} ms" if s < 0.01 else f"{1000 * s:.0f} ms"
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
    """Local time of a UNIX time with its zone, ``2024-05-01 13:02:11 CEST``; ``-`` when
    unknown (a report or a lineage read in another zone names the one it was written in)."""
    if unix is None:
        return "-"
    return _dt.datetime.fromtimestamp(float(unix)).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso(unix: float | None) -> str | None:
    """ISO 8601 with time zone, for JSON-LD and PROV."""
    if unix is None:
        return None
    return _dt.datetime.fromtimestamp(float(unix), tz=_dt.UTC).isoformat(timespec="seconds")


class Clock:
    """Wall-clock times of a run in one fixed time zone: the zone of the machine writing the
    report, at its offset when the run started (a run across a daylight-saving change keeps the
    offset it started with, and says so in :attr:`zone`).

    Plotly date axes read numbers as milliseconds since the epoch and draw them as UTC; the
    times are shifted by the offset so that the axis shows local clock time."""

    def __init__(self, t0: float | None, span: float = 0.0) -> None:
        local = _dt.datetime.fromtimestamp(t0 or 0.0).astimezone()
        offset = local.utcoffset() or _dt.timedelta(0)
        self.shift = offset.total_seconds()
        self.precise = span < 600
        """Show milliseconds (short runs)."""
        minutes = int(self.shift // 60)
        sign = "+" if minutes >= 0 else "-"
        numeric = f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        name = local.tzname() or ""
        if minutes == 0 and name in ("", "UTC", "GMT", "Z"):
            self.zone = "UTC"
        elif not name or name[0] in "+-" or name.startswith("UTC"):
            self.zone = numeric
        else:
            self.zone = f"{name}, {numeric}"

    def ms(self, unix: float) -> int:
        """Position on a Plotly date axis: shifted UNIX time in whole milliseconds."""
        return round((unix + self.shift) * 1000)

    def text(self, unix: float | None, date: bool = True) -> str:
        """``2024-05-01 13:02:11`` (``13:02:11.042`` for short runs), in :attr:`zone`."""
        if unix is None:
            return "-"
        when = _dt.datetime.fromtimestamp(unix + self.shift, tz=_dt.UTC)
        out = when.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")
        return out + f".{when.microsecond // 1000:03d}" if self.precise else out

    def same_day(self, a: float, b: float) -> bool:
        day = 86400
        return (a + self.shift) // day == (b + self.shift) // day
