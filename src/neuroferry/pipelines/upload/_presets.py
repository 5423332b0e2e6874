"""Job types of uploads: checking a preset's task settings, and merging a preset with a
request (the request's own task settings win, task by task and modality by modality);
the upload kind's ``check_preset`` and ``merge_preset``."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from neuroferry.errors import InvalidInput, validation_problems
from neuroferry.pipelines.upload._models import (
    TRANSFORMATIONS,
    Task,
    UploadTasks,
    transformation_of,
)
from neuroferry.pipelines.upload._vocab import find_modality

PER_MODALITY: tuple[str, ...] = ("modality_transformation_settings", "analysis_settings")
"""Tasks whose settings are given per modality (keyed by its abbreviation)."""

_LEGACY_TASKS = {"codeocean_pipeline_settings": "analysis_settings"}


def check_preset(settings: Mapping[str, Any]) -> dict[str, Any]:
    """An upload job type's settings, checked and normalised: task name to task settings
    (the fields of :class:`Task`); ``modality_transformation_settings`` and
    ``analysis_settings`` (formerly ``codeocean_pipeline_settings``) map modality to task
    settings, with modality names and legacy names turned into abbreviations.

    InvalidInput names the task, modality and field that is wrong.
    """
    try:
        tasks = UploadTasks.model_validate(dict(settings))
    except ValidationError as exc:
        problems = "; ".join(validation_problems(exc))
        raise InvalidInput(f"invalid job type settings: {problems}") from exc
    for abbreviation, task in tasks.modality_transformation_settings.items():
        where = f"modality_transformation_settings.{abbreviation}"
        if "input_source" in (task.job_settings or {}):
            raise InvalidInput(
                f"invalid job type settings: {where}.job_settings.input_source: a job type "
                "cannot name a session's folder; give it in the request's modalities"
            )
        transformation = transformation_of(task)
        if transformation not in TRANSFORMATIONS:
            raise InvalidInput(
                f"invalid job type settings: {where}.job_settings.transformation: "
                f"{transformation!r} is not a transformation; allowed: "
                f"{', '.join(TRANSFORMATIONS)}"
            )
        if transformation == "command" and not task.command_script:
            raise InvalidInput(
                f"invalid job type settings: {where}: the command transformation needs a "
                "command_script"
            )
    out: dict[str, Any] = {}
    for name in UploadTasks.model_fields:
        if name not in tasks.model_fields_set:
            continue
        value = getattr(tasks, name)
        if isinstance(value, Task):
            out[name] = value.model_dump(mode="json", exclude_unset=True)
        elif isinstance(value, dict):
            out[name] = {
                key: task.model_dump(mode="json", exclude_unset=True) for key, task in value.items()
            }
    return out


COMMAND_FIELDS: tuple[str, ...] = ("command_script", "image", "image_version")
"""Task settings that say what runs; only admins (through job types) may give them."""

ADMIN_DEFINED = (
    "only admins may give a command or an image: commands and images come from job types "
    "defined by admins; leave it out, or choose a job type (job_type) that defines it"
)


def _task_settings(tasks: UploadTasks) -> dict[str, Task]:
    """Each task's settings by where they sit (``tasks.NAME`` or ``tasks.NAME.MODALITY``)."""
    found: dict[str, Task] = {}
    for name in UploadTasks.model_fields:
        value = getattr(tasks, name)
        if isinstance(value, Task):
            found[f"tasks.{name}"] = value
        elif isinstance(value, dict):
            for key, task in value.items():
                found[f"tasks.{name}.{key}"] = task
    return found


def _given(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def commands_not_from_preset(tasks: UploadTasks, preset: UploadTasks) -> list[str]:
    """The fields of ``tasks`` (a job's tasks, its job type's preset applied) that give a
    command or image other than the one ``preset`` (the job type's own task settings for
    the job) gives at the same place, as dotted paths
    (``tasks.modality_transformation_settings.ecephys.command_script``)."""
    defined = _task_settings(preset)
    refused: list[str] = []
    for where, task in _task_settings(tasks).items():
        base = defined.get(where)
        for field in COMMAND_FIELDS:
            value = getattr(task, field)
            if _given(value) and (base is None or getattr(base, field) != value):
                refused.append(f"{where}.{field}")
    return refused


def _abbreviation(value: Any) -> str | None:
    """The abbreviation of the modality ``value`` names, if it names one."""
    if isinstance(value, Mapping):
        value = value.get("abbreviation") or value.get("name")
    if not isinstance(value, str):
        return None
    try:
        return find_modality(value).abbreviation
    except ValueError:
        return None


def _job_modalities(spec: Mapping[str, Any]) -> set[str]:
    listed = spec.get("modalities")
    if not isinstance(listed, list | tuple):
        return set()
    return {a for a in (_abbreviation(m) for m in listed) if a is not None}


def merge_tasks(
    preset: Mapping[str, Any], tasks: Mapping[str, Any], modalities: set[str]
) -> dict[str, Any]:
    """A request's ``tasks`` on top of a preset's: a task the request configures keeps the
    request's settings, whole; per-modality tasks are merged modality by modality, taking
    the preset's settings only for the job's ``modalities``."""
    request = dict(tasks)
    for old, new in _LEGACY_TASKS.items():
        if old in request and new not in request:
            request[new] = request.pop(old)
    merged: dict[str, Any] = {}
    for name, value in preset.items():
        given = request.get(name)
        if name in PER_MODALITY and isinstance(value, Mapping):
            items = {
                key: copy.deepcopy(settings) for key, settings in value.items() if key in modalities
            }
            if isinstance(given, Mapping):
                for key, settings in given.items():
                    abbreviation = _abbreviation(key) or key
                    items.pop(abbreviation, None)
                    items[key] = settings
            elif given is not None:
                items = given  # not a mapping: left for validation to report
            if items:
                merged[name] = items
        else:
            merged[name] = given if given is not None else copy.deepcopy(value)
    for name, value in request.items():
        merged.setdefault(name, value)
    return merged


def merge_preset(preset: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """An upload request with a preset's task settings under its own ``tasks`` (see
    :func:`merge_tasks`); a ``tasks`` that is not an object is left for validation."""
    merged = dict(spec)
    tasks = spec.get("tasks")
    if tasks is None:
        tasks = {}
    if isinstance(tasks, Mapping):
        merged["tasks"] = merge_tasks(preset, tasks, _job_modalities(spec))
    return merged
