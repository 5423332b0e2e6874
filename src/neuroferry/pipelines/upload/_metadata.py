"""Metadata files in the staging folder: written atomically, read with errors that say where."""

from __future__ import annotations

import json
import os
import shutil
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


def copy_file(src: Path, dest: Path) -> None:
    """Copy a file so that ``dest`` is never seen half-written."""
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def json_problem(path: Path) -> str | None:
    """Why ``path`` is not a JSON object (with line and column), or None if it is one."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{path}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return f"{path}: cannot be read ({exc.strerror or exc})"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(value, dict):
        return f"{path}: holds a JSON {type(value).__name__}, not an object"
    return None


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`TaskFailed` says which file and where it is wrong."""
    problem = json_problem(path)
    if problem is not None:
        raise TaskFailed(problem)
    value: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return value


def metadata_files(folder: Path) -> list[Path]:
    """The ``*.json`` files directly in ``folder``, by name."""
    return sorted(
        p for p in folder.iterdir() if p.suffix == ".json" and p.is_file() and p.name[0] != "."
    )
