"""Metadata files in the staging folder: written atomically, read with errors that say where."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from neuroferry.engine import TaskFailed

DATA_DESCRIPTION = "data_description.json"
PROCESSING = "processing.json"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON; readers see the old file or the new one, whole."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` so that ``path`` is never seen half-written."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parsed(data: bytes, path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The JSON object in ``data`` (read from ``path``), or why it is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{path}: not UTF-8 text (byte {exc.start})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(value, dict):
        return None, f"{path}: holds a JSON {type(value).__name__}, not an object"
    return value, None


def json_problem(path: Path) -> str | None:
    """Why ``path`` is not a JSON object (with line and column), or None if it is one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    return _parsed(data, path)[1]


def json_object(data: bytes, path: Path) -> dict[str, Any]:
    """The JSON object in ``data`` read from ``path``; :class:`TaskFailed` says which file
    and where it is wrong."""
    value, problem = _parsed(data, path)
    if value is None:
        raise TaskFailed(problem or f"{path}: not a JSON object")
    return value


def metadata_files(folder: Path) -> list[Path]:
    """The ``*.json`` files directly in ``folder``, by name."""
    return sorted(
        p for p in folder.iterdir() if p.suffix == ".json" and p.is_file() and p.name[0] != "."
    )
