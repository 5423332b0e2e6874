"""Command analyses: commands (optionally in a container) that admins register.

A definition (:class:`CommandDefinition`) names the command line (``command_script``, with
the placeholders of the upload's ``command`` transformation), the image it runs in, if any,
and its parameters and outputs as simple typed fields (:class:`FieldSpec`), which become
pydantic models. Definitions are kept as job types are, under :data:`COMMAND_ANALYSES`:
every change is a new version (see :mod:`neuroferry.engine`'s job types).

Only the service reads them: a job's ``dispatch`` task pins the current version
(:func:`pin_command`) in its result, and its ``run`` tasks, on workers without the
database, build the analysis from that (:func:`analysis_of`). A user's request never
carries a command. The command runs without a shell, with a scrubbed environment, on the
task's inputs downloaded to a scratch folder, and is stopped when the job is cancelled.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from sqlalchemy import Engine

from neuroferry.config import Settings, get_settings
from neuroferry.engine import (
    TaskFailed,
    command_environment,
    command_words,
    find_job_type,
    image_reference,
    in_container,
    list_job_types,
    register_definitions,
    run_command,
    starts_own_container,
)
from neuroferry.errors import InvalidInput, StoreError, validation_problems
from neuroferry.pipelines.analysis._registry import (
    NAME_PATTERN,
    Analysis,
    AnalysisRun,
    Command,
    broken_analyses,
    get_analysis,
    python_analyses,
)
from neuroferry.pipelines.analysis._wrapper import input_locations
from neuroferry.stores import Store, open_store, sync

COMMAND_ANALYSES = "analysis:command"
"""The key command analyses are kept under, among the job types."""
OUTPUTS_FILE = "outputs.json"
"""The file (in ``%OUTPUT_LOCATION``) a command writes its declared outputs to."""
FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RESERVED_FIELD_NAMES = frozenset(
    name for name in dir(BaseModel) if FIELD_NAME.match(name) and not name.startswith("model_")
)
"""Names a field may not take besides those starting with ``model_``: they are the
parameter and output models' own (pydantic's ``copy``, ``dict``, ``json``, ``schema`` …)."""
DIGEST_TIMEOUT = 30.0
"""Seconds the container runtime may take to say an image's digest."""
READ_BYTES = 16 * 2**20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


class FieldSpec(BaseModel):
    """One parameter or output: its type and, optionally, default, bounds, description."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean"]
    default: str | int | float | bool | None = None
    """None: the field is required."""
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


class CommandDefinition(BaseModel):
    """A command analysis, as an admin registers it."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    command_script: str = Field(min_length=1)
    """The command line, split into words as a shell would (no shell runs), with the
    placeholders ``%INPUT_SOURCE``, ``%OUTPUT_LOCATION``, ``%JOB_SETTINGS``, ``%IMAGE``,
    ``%IMAGE_VERSION`` and ``%S3_LOCATION``."""
    image: str | None = None
    """The container image it runs in (with the service's ``container_runtime``)."""
    image_version: str | None = None
    parameters: dict[str, FieldSpec] = Field(default_factory=dict)
    outputs: dict[str, FieldSpec] = Field(default_factory=dict)
    """Small outputs, read from ``outputs.json`` in the results folder."""


def _model(title: str, fields: Mapping[str, FieldSpec], where: str) -> type[BaseModel]:
    """A pydantic model of ``fields`` (unknown fields refused); InvalidInput naming the
    field (``where.name``) whose name, bounds or default is not allowed."""
    made: dict[str, Any] = {}
    for name, spec in fields.items():
        field = f"{where}.{name}"
        if not FIELD_NAME.match(name):
            raise InvalidInput(
                f"{field}: a field name is 1 to 64 lower case letters, digits and '_', "
                "starting with a letter"
            )
        if name.startswith("model_") or name in RESERVED_FIELD_NAMES:
            reserved = ", ".join(sorted(RESERVED_FIELD_NAMES))
            raise InvalidInput(
                f"{field}: {name!r} is taken by the field model itself: choose a name that "
                f"does not start with 'model_' and is none of {reserved}"
            )
        bounded = spec.minimum is not None or spec.maximum is not None
        if bounded and spec.type not in ("integer", "number"):
            raise InvalidInput(f"{field}: minimum and maximum are for integer and number fields")
        kind: Any = Annotated[_TYPES[spec.type], Field(ge=spec.minimum, le=spec.maximum)]  # type: ignore[name-defined]
        default: Any = ...
        if spec.default is not None:
            try:
                default = TypeAdapter(kind).validate_python(spec.default, strict=True)
            except ValidationError as exc:
                problems = "; ".join(validation_problems(exc))
                raise InvalidInput(f"{field}.default: {problems}") from None
        made[name] = (kind, Field(default, description=spec.description or None))
    try:
        return create_model(title, __config__=ConfigDict(extra="forbid"), **made)
    except (TypeError, ValueError, NameError) as exc:  # a name pydantic will not take
        raise InvalidInput(f"{where}: these fields are not allowed: {exc}") from None


def check_definition(name: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """``given`` as a valid definition of command analysis ``name`` (normalised JSON);
    InvalidInput naming the field otherwise, or when ``name`` is not allowed or is the
    name of an installed analysis."""
    if not re.match(NAME_PATTERN, name) or len(name) > 128:
        raise InvalidInput(
            f"analysis name {name!r} is not allowed: use 1 to 128 lower case letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )
    if name in python_analyses() or name in broken_analyses():
        raise InvalidInput(f"{name!r} is the name of an installed analysis; choose another")
    try:
        definition = CommandDefinition.model_validate(dict(given))
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise InvalidInput(
            f"invalid command analysis {name!r}: " + "; ".join(problems),
            [{"field": p.split(":")[0], "message": p} for p in problems],
        ) from None
    try:
        if not shlex.split(definition.command_script):
            raise ValueError("it has no words")
    except ValueError as exc:
        raise InvalidInput(f"command_script cannot be split into words: {exc}") from None
    if definition.image_version and not definition.image:
        raise InvalidInput("image_version: give the image too")
    for field in ("image", "image_version"):
        value = getattr(definition, field)
        if value is not None and (not value or value.startswith("-") or value.split() != [value]):
            raise InvalidInput(f"{field}: {value!r} is not an image: no spaces, no leading '-'")
    _model(name, definition.parameters, "parameters")
    _model(name, definition.outputs, "outputs")
    return definition.model_dump(mode="json", exclude_none=True)


register_definitions(COMMAND_ANALYSES, "command analysis", check_definition)


def command_analysis(
    name: str, pinned: Mapping[str, Any], settings: Settings | None = None
) -> Analysis:
    """The analysis of a pinned command analysis (``{"version", "definition", "digest"}``);
    ``settings`` (default: the process's) say how it runs."""
    definition = CommandDefinition.model_validate(pinned["definition"])
    image = definition.image
    if image and definition.image_version:
        image = f"{image}:{definition.image_version}"
    return Analysis(
        name=name,
        run=partial(_run, name, definition, pinned.get("digest"), settings),
        parameters=_model(f"{name} parameters", definition.parameters, "parameters"),
        outputs=_model(f"{name} outputs", definition.outputs, "outputs")
        if definition.outputs
        else None,
        description=definition.description,
        version=str(pinned["version"]),
        command=Command(definition.command_script, image, pinned.get("digest")),
    )


def find_command_analysis(db: Engine, name: str) -> Analysis | None:
    """The current version of command analysis ``name``, if there is one (its digest not
    looked up)."""
    found = find_job_type(db, COMMAND_ANALYSES, name)
    if found is None:
        return None
    return command_analysis(name, {"version": found.version, "definition": found.settings})


def command_analyses(db: Engine) -> dict[str, Analysis]:
    """The current version of every command analysis, by name."""
    return {
        t.name: command_analysis(t.name, {"version": t.version, "definition": t.settings})
        for t in list_job_types(db, COMMAND_ANALYSES)
    }


def pin_command(name: str, db: Engine, settings: Settings) -> dict[str, Any] | None:
    """What a job's ``run`` tasks need of command analysis ``name``: its current version,
    definition and image digest (when the container runtime can tell); None when ``name``
    is an installed analysis or no command analysis."""
    if name in python_analyses():
        return None
    found = find_job_type(db, COMMAND_ANALYSES, name)
    if found is None:
        return None
    image = found.settings.get("image")
    version = found.settings.get("image_version")
    digest = image_digest(settings, image, version) if image else None
    return {"version": found.version, "definition": found.settings, "digest": digest}


def analysis_of(name: str, pinned: Mapping[str, Any] | None, settings: Settings) -> Analysis:
    """The analysis a job runs: the pinned command analysis, else the installed ``name``."""
    return get_analysis(name) if pinned is None else command_analysis(name, pinned, settings)


def image_digest(settings: Settings, image: str, version: str | None) -> str | None:
    """The digest (``sha256:…``) of ``image``: the one it is given with
    (``name@sha256:…``), else the one Docker says it has pulled; None when the runtime
    cannot tell (no Docker, Apptainer or Singularity, an image not pulled)."""
    given = image.partition("@")[2]
    if _DIGEST.match(given):
        return given
    docker = shutil.which("docker")
    if settings.container_runtime != "docker" or docker is None:
        return None
    reference = image_reference("docker", image, version)
    with tempfile.TemporaryDirectory(prefix="ferry-digest-") as home:
        try:
            done = subprocess.run(
                [docker, "image", "inspect", "--format", "{{index .RepoDigests 0}}", reference],
                env=command_environment(home, settings.command_environment),
                capture_output=True,
                text=True,
                timeout=DIGEST_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    digest = done.stdout.strip().partition("@")[2]
    return digest if done.returncode == 0 and _DIGEST.match(digest) else None


def _download(
    url: str, folder: Path, open_input: Callable[[str], Store], settings: Settings
) -> Path:
    """Copy the file or folder at ``url`` into ``folder``, under its own name."""
    parent, _, name = url.rstrip("/").rpartition("/")
    target = folder / (name if name not in ("", ".", "..") else "input")
    store = open_input(parent)
    try:
        size = store.head(name).size
    except StoreError:
        size = None
    if size is not None:
        with target.open("wb") as out:
            for start in range(0, size, READ_BYTES):
                out.write(store.get_range(name, start, min(start + READ_BYTES, size)))
        return target
    target.mkdir()
    report = sync(
        open_input(url), open_store(target.as_uri(), settings=settings), settings=settings
    )
    if not report.ok:
        raise StoreError(f"copying the input {url} failed: {report.failed}")
    return target


def _run(
    name: str,
    definition: CommandDefinition,
    digest: str | None,
    settings: Settings | None,
    run: AnalysisRun,
) -> dict[str, Any] | None:
    """Run the command on the task's inputs (copied to ``%INPUT_SOURCE``, input ``i`` at
    ``%INPUT_SOURCE/i/NAME``); its outputs are those of ``outputs.json``, if it declares any.
    Docker runs the image by its pinned ``digest``, when known: the image identified."""
    settings = settings or get_settings()
    with tempfile.TemporaryDirectory(prefix="ferry-command-", dir=run.results.parent) as work:
        inputs, home = Path(work) / "inputs", Path(work) / "home"
        home.mkdir()
        for i, url in enumerate(input_locations(run.inputs)):
            run.check_cancelled()
            (inputs / str(i)).mkdir(parents=True)
            _download(url, inputs / str(i), run.open_store, settings)
        inputs.mkdir(exist_ok=True)
        values = {
            "INPUT_SOURCE": str(inputs),
            "OUTPUT_LOCATION": str(run.results),
            "JOB_SETTINGS": run.parameters.model_dump_json(),
            "IMAGE": definition.image or "",
            "IMAGE_VERSION": definition.image_version or "",
            "S3_LOCATION": run.location or "",
        }
        words = command_words(definition.command_script, values, name)
        if definition.image and not starts_own_container(words):
            runtime = settings.container_runtime
            if runtime is None:
                raise TaskFailed(
                    f"analysis {name!r} runs in the image {definition.image}, but no container "
                    "runtime is configured: set FERRY_CONTAINER_RUNTIME to apptainer, "
                    "singularity or docker"
                )
            reference = image_reference(runtime, definition.image, definition.image_version)
            if digest and runtime == "docker" and "@" not in reference:
                reference += f"@{digest}"
            words = in_container(
                runtime,
                reference,
                words,
                read_only=[str(inputs)],
                writable=[str(run.results)],
                workdir=str(run.results),
            )
        run_command(
            words,
            settings=settings,
            log=run.log,
            check_cancelled=run.check_cancelled,
            cwd=run.results,
            scratch=home,
        )
    if not definition.outputs:
        return None
    try:
        found = json.loads((run.results / OUTPUTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TaskFailed(
            f"analysis {name!r} declares outputs ({', '.join(definition.outputs)}), but its "
            f"command wrote no readable {OUTPUTS_FILE} to %OUTPUT_LOCATION: {exc}"
        ) from None
    if not isinstance(found, dict):
        raise TaskFailed(f"analysis {name!r}: {OUTPUTS_FILE} must hold a JSON object")
    return found
