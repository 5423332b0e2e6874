"""How the pages show times, durations, sizes and states (also the templates' filters)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from markupsafe import Markup, escape

EMPTY = "—"
_STATE_CLASS = re.compile(r"[^a-z0-9_]")


def as_datetime(value: datetime | str | None) -> datetime | None:
    """A zone-aware UTC datetime from a datetime (naive ones count as UTC) or ISO text."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def format_time(value: datetime | str | None, *, seconds: bool = False) -> str:
    """``2025-11-22 10:02 UTC`` (with ``:SS`` if ``seconds``); ``—`` for none."""
    when = as_datetime(value)
    if when is None:
        return EMPTY
    return when.strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def format_ago(value: datetime | str | None, now: datetime | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``, or ``in 5 min`` ahead."""
    when = as_datetime(value)
    if when is None:
        return EMPTY
    delta = ((now or datetime.now(UTC)) - when).total_seconds()
    ahead, delta = delta < 0, abs(delta)
    if delta < 10:
        return "just now"
    if delta < 60:
        text = f"{int(delta)} s"
    elif delta < 3600:
        text = f"{int(delta // 60)} min"
    elif delta < 86400:
        text = f"{int(delta // 3600)} h"
    else:
        days = int(delta // 86400)
        text = f"{days} day" if days == 1 else f"{days} days"
    return f"in {text}" if ahead else f"{text} ago"


def time_tag(value: datetime | str | None) -> Markup:
    """``<time>`` with the UTC time as text and how long ago in its title."""
    when = as_datetime(value)
    if when is None:
        return Markup(EMPTY)
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        when.isoformat(), format_ago(when), format_time(when)
    )


def short_time(value: datetime | str | None, now: datetime | None = None) -> Markup:
    """``2025-04-01 14:30`` (UTC) in a ``<time>``, how long before ``now`` in its title."""
    when = as_datetime(value)
    if when is None:
        return Markup(EMPTY)
    iso = when.isoformat()  # 2025-04-01T14:30:15.123456+00:00
    day, clock = iso[:10], iso[11:19]
    # digits, dashes, colons and words only: nothing to escape (and long lists stay quick)
    return Markup(
        f'<time datetime="{iso}" title="{day} {clock} UTC, {format_ago(when, now)}">'
        f"{day} {clock[:5]}</time>"
    )


def elapsed(start: datetime | str | None, end: datetime | str | None = None) -> float | None:
    """Seconds from ``start`` to ``end`` (or to now, for something still running)."""
    begun = as_datetime(start)
    if begun is None:
        return None
    return ((as_datetime(end) or datetime.now(UTC)) - begun).total_seconds()


def format_duration(value: float | timedelta | None) -> str:
    """``0.4 s``, ``42 s``, ``5 min 03 s``, ``2 h 05 min``, ``3 d 4 h``; ``—`` for none."""
    if value is None:
        return EMPTY
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if math.isnan(seconds) or seconds < 0:
        return EMPTY
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def format_bytes(value: float | None) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``; ``—`` for none."""
    if value is None:
        return EMPTY
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(size) < 1024 or unit == "PiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def state_class(state: str | None) -> str:
    """The CSS classes of a job or task state: ``state state-running``."""
    return f"state state-{_STATE_CLASS.sub('', (state or 'unknown').lower())}"


def state_badge(state: str | None) -> Markup:
    """A badge that shows a state by its colour and its words (``up for retry``)."""
    words = escape((state or "unknown").replace("_", " "))
    return Markup('<span class="{}">{}</span>').format(state_class(state), words)
