"""Analyses: Python functions registered by entry point, or commands registered by admins,
each with a parameter model.

An analysis is an :class:`Analysis` published under the entry point group
``neuroferry.analyses`` by an installed package (installing one is an admin's act),
registered by hand with :func:`register_analysis` (tests, plugins loaded by hand), or a
command analysis kept in the database (:mod:`._commands`; found when a database is given). Its
``run`` function gets an :class:`AnalysisRun` (the task's inputs, the validated parameters,
a private results folder, a store opener checked against the job owner's grants, a logger
and a cancel check) and returns its small outputs: an instance of ``outputs``, a mapping, or
``None``. Large outputs are files written to ``run.results``.

An entry point that cannot be loaded is kept with the reason: it does not hide the other
analyses, and only asking for it by name fails (see :func:`broken_analyses`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from neuroferry.engine import load_entry_points
from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.pipelines.analysis._models import DispatchModel
from neuroferry.stores import Store

ENTRY_POINT_GROUP = "neuroferry.analyses"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
"""What an analysis's name may be: lower case letters, digits, ``_``, ``.`` and ``-``."""


@dataclass(frozen=True)
class AnalysisRun:
    """What an analysis's ``run`` function gets."""

    inputs: DispatchModel
    """The task's inputs (store URLs of assets and files) and its parameter set."""
    parameters: BaseModel
    """The parameters, validated by the analysis's parameter model."""
    results: Path
    """A private, empty scratch folder: the files written here are the outputs."""
    open_store: Callable[[str], Store]
    """Opens an input URL (checked against the job owner's grants)."""
    log: logging.Logger
    check_cancelled: Callable[[], None]
    """Raises when the job was cancelled: call it between units of work."""
    location: str | None = None
    """The store URL the results folder is uploaded to (None: a dry run)."""


RunFunction = Callable[[AnalysisRun], BaseModel | Mapping[str, Any] | None]


@dataclass(frozen=True)
class Command:
    """What a command analysis runs: an admin's command line, optionally in an image."""

    script: str
    image: str | None = None
    """The image as the container runtime names it (``name:version``)."""
    digest: str | None = None
    """The image's digest (``sha256:…``), when the runtime could tell."""


@dataclass(frozen=True)
class Analysis:
    """A registered analysis: its name, function, parameter model and (small) output model.

    ``version`` is the analysis's version when it is not the version of the distribution
    that provides ``run``. ``image`` is the container image a container analysis runs
    (``name:tag`` or ``name@sha256:…``): its code identity is the image, not the Python
    code of ``run``."""

    name: str
    run: RunFunction
    parameters: type[BaseModel]
    outputs: type[BaseModel] | None = None
    description: str = ""
    version: str | None = None
    image: str | None = None
    command: Command | None = None
    """A command analysis's command: its code identity is the command (and image), and
    ``version`` the version an admin saved."""

    def __post_init__(self) -> None:
        if not re.match(NAME_PATTERN, self.name):
            raise ConfigError(
                f"analysis name {self.name!r} is not allowed: use lower case letters, digits, "
                "'_', '.' and '-', starting with a letter or digit"
            )
        if not callable(self.run):
            raise ConfigError(f"analysis {self.name!r}: run is not callable")
        for what, model in (("parameters", self.parameters), ("outputs", self.outputs)):
            if model is None and what == "outputs":
                continue
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise ConfigError(
                    f"analysis {self.name!r}: {what} must be a pydantic model class, not {model!r}"
                )


_registered: dict[str, Analysis] = {}
_installed: dict[str, Analysis | str] | None = None


def register_analysis(analysis: Analysis) -> None:
    """Make an analysis available without an entry point (tests, plugins loaded by hand);
    it takes the place of an installed one of the same name."""
    _registered[analysis.name] = analysis


def _check_analysis(ep: EntryPoint, loaded: Any) -> Analysis | str:
    if not isinstance(loaded, Analysis):
        return f"entry point {ep.value} is not an Analysis"
    if loaded.name != ep.name:
        return (
            f"entry point {ep.name!r} ({ep.value}) loads the analysis {loaded.name!r}; "
            "name the entry point after its analysis"
        )
    return loaded


def _load_installed() -> dict[str, Analysis | str]:
    """Analyses of the ``neuroferry.analyses`` entry points, loaded once; one that cannot
    be loaded is kept as the reason, so that it hides no other."""
    global _installed
    if _installed is None:
        _installed = load_entry_points(ENTRY_POINT_GROUP, _check_analysis)
    return _installed


def python_analyses() -> dict[str, Analysis]:
    """Every usable analysis by name that is a Python function: those installed under the
    ``neuroferry.analyses`` entry point group and those registered with
    :func:`register_analysis`."""
    found = {k: v for k, v in _load_installed().items() if isinstance(v, Analysis)}
    found.update(_registered)
    return found


def analyses(db: Engine | None = None) -> dict[str, Analysis]:
    """Every usable analysis by name: the Python ones (:func:`python_analyses`) and, with
    the database ``db``, the command analyses kept there."""
    found = python_analyses()
    if db is not None:
        from neuroferry.pipelines.analysis._commands import command_analyses  # imports this

        found = {**command_analyses(db), **found}
    return dict(sorted(found.items()))


def broken_analyses() -> dict[str, str]:
    """The installed entry points that could not be loaded, with the reason."""
    return {
        name: reason
        for name, reason in sorted(_load_installed().items())
        if isinstance(reason, str) and name not in _registered
    }


def get_analysis(name: str, db: Engine | None = None) -> Analysis:
    """The analysis called ``name`` (with the database ``db``: also the current version of
    a command analysis): :class:`InvalidInput` naming the known ones if there is none,
    :class:`ConfigError` with the reason if it is installed but broken."""
    if name in _registered:
        return _registered[name]
    found = _load_installed().get(name)
    if isinstance(found, Analysis):
        return found
    if isinstance(found, str):
        raise ConfigError(f"analysis {name!r} is installed but broken: {found}")
    if db is not None:
        from neuroferry.pipelines.analysis._commands import find_command_analysis

        command = find_command_analysis(db, name)
        if command is not None:
            return command
    known = ", ".join(analyses(db)) or "none"
    raise InvalidInput(f"unknown analysis {name!r}; known analyses: {known}")


def parameter_schema(analysis: Analysis) -> dict[str, Any]:
    """The JSON schema of the analysis's parameter model."""
    return analysis.parameters.model_json_schema()


def validate_parameters(analysis: Analysis, values: Mapping[str, Any]) -> BaseModel:
    """``values`` validated by the analysis's parameter model (defaults filled in);
    :class:`InvalidInput` naming the analysis and each wrong parameter."""
    try:
        return analysis.parameters.model_validate(dict(values))
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "parameters", "message": err["msg"]}
            for err in exc.errors()
        ]
        listed = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
        raise InvalidInput(
            f"invalid parameters of analysis {analysis.name!r}: {listed}", problems
        ) from None
