"""Shared output helpers for commands: sizes, tables, JSON."""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Any

import typer

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
}


def parse_size(text: str) -> int:
    """``"8MiB"``, ``"16M"`` (binary), ``"10MB"`` (decimal) or plain bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise typer.BadParameter(f"{text!r} is not a size; write e.g. 8MiB, 16M, 10MB or 5242880")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def print_json(data: Any, indent: int | None = None) -> None:
    """``data`` as JSON on stdout: on one line, or indented by ``indent``."""
    sys.stdout.write(json.dumps(data, indent=indent, default=str) + "\n")


def when(value: Any) -> str:
    """An ISO time as ``2025-11-22 10:02 UTC`` (other text as it is, nothing as "")."""
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value)


def cell(value: Any, width: int) -> str:
    """A table cell: text as it is, anything else as JSON; cut to ``width`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(columns: list[str], rows: list[list[str]]) -> None:
    """A table on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def is_terminal() -> bool:
    return sys.stderr.isatty()
