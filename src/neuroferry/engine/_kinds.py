"""Job kinds: a spec model and a DAG of task definitions, registered by entry point.

A pipeline (``upload``, ``ingest``, ``analysis``) is one :class:`JobKind`. The engine knows
nothing else about it: new capabilities arrive as new kinds on the same engine.

The contract of a kind, all of it:

* ``spec_model``: the pydantic model of its spec. The engine validates a request with it
  and hands ``prepare`` the validated instance (never validate it again).
* ``prepare(spec, settings) -> PreparedJob``: the job's name, each task's settings, the
  facts shown with it (``summary``), the assets it writes and what it reads, writes and
  removes (checked against the owner's grants). Its ``destination``, ``notify_email`` and
  ``notify_events`` are what the job page and e-mails show and use, for every kind (kept
  in the summary as ``destination``, ``user_email`` and ``email_notification_types``).
  A destination the spec names is looked up with :func:`named_destination`.
* ``tasks``: :class:`TaskDef` s listed upstream first, made by ``task_maker(module)``.
  A task function gets a :class:`~neuroferry.engine.TaskContext` and returns ``None``, a
  JSON value (anything else fails the task, saying where) or a ``Reschedule``; a result's
  integer ``bytes_copied`` counts in the bytes-transferred metric. Only ``local`` tasks
  get ``ctx.db``, ``ctx.catalog`` and ``ctx.submit_job``; a cluster task that uses them
  fails, saying so.
* ``settings_model`` (optional): the kind's own settings, read from ``[kinds.NAME]`` in
  ``ferry.toml`` or ``FERRY_KINDS__NAME__FIELD`` variables, checked when the service
  starts, given to its tasks as ``ctx.kind_settings`` and to ``prepare`` by
  ``KIND.settings_of(settings)``.
* ``check`` (optional): ``check(spec, db)`` checks a validated spec against what the
  database holds (names admins define there) before ``prepare``, raising InvalidInput
  naming the field.
* ``check_preset`` (optional): validates a job type's task settings for this kind;
  ``merge_preset`` merges them under a request's own (by default the request's tasks win,
  task by task).

The same contract with a worked example: docs/development.md, "Write a job kind".
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine

from neuroferry.config import Settings
from neuroferry.errors import ConfigError, InvalidInput, validation_problems

ENTRY_POINT_GROUP = "neuroferry.job_kinds"


@dataclass(frozen=True)
class TaskDef:
    """One step of a kind's pipeline.

    ``fn`` is a ``module:function`` path, imported where the task runs, called with a
    :class:`~neuroferry.engine.TaskContext` and returning a JSON-able result (or ``None``).
    ``cluster`` tasks run on Dask workers and never open the database; ``local`` tasks run
    in the orchestrator and get the database and catalog on their context.

    A task with ``map_over`` is mapped: when the named upstream task succeeds, its result
    (a mapping of item name to that item's settings) becomes one instance per item;
    ``map_over="task.key"`` takes the mapping from that key of the task's result.
    """

    name: str
    fn: str
    upstream: tuple[str, ...] = ()
    placement: Literal["cluster", "local"] = "cluster"
    map_over: str | None = None
    retries: int = 0
    retry_delay: float = 30.0
    trigger: Literal["all_succeeded", "all_done"] = "all_succeeded"
    """When the task runs: once every upstream task succeeded (or was skipped), or, with
    ``all_done``, once every upstream task ended however it ended (a step that records
    what a mapped task's instances made even when some of them failed; it runs again
    when the job is retried)."""


def task_maker(module: str) -> Callable[..., TaskDef]:
    """The :class:`TaskDef` maker of one module's task functions: with
    ``task = task_maker("pkg._tasks")``, ``task("plan", "check_source", retries=2)`` is
    ``TaskDef("plan", "pkg._tasks:plan", upstream=("check_source",), retries=2)``."""

    def task(name: str, *upstream: str, **options: Any) -> TaskDef:
        return TaskDef(name, f"{module}:{name}", upstream=upstream, **options)

    return task


@dataclass(frozen=True)
class AssetClaim:
    """An asset a job writes, declared by its kind so that the engine can keep one
    unfinished job per asset and protect other users' assets.

    ``key`` is the normalised store URL the job writes (two jobs with the same key never
    run at once); ``field`` names the spec field that chose it, for messages; ``catalog_name``
    is the catalog document the job registers for it (owned by the job's owner), if any;
    ``url`` is the store URL itself (needed when ``key`` is a hash of a long URL; by default
    the key). A job may not write at, inside or around the location of another user's
    asset, and two unfinished jobs may not write nested locations."""

    key: str
    field: str
    catalog_name: str | None = None
    url: str | None = None

    @property
    def location(self) -> str | None:
        """The normalised store URL the job writes (``None`` if unknown)."""
        value = self.url if self.url is not None else self.key
        return value.rstrip("/") if "://" in value else None


DESTINATION_KEY = "destination"
"""The summary key of :attr:`PreparedJob.destination`."""
EMAIL_KEY = "user_email"
"""The summary key of :attr:`PreparedJob.notify_email`."""
EVENTS_KEY = "email_notification_types"
"""The summary key of :attr:`PreparedJob.notify_events`."""
BYTES_COPIED_KEY = "bytes_copied"
"""A task result's key whose integer value counts as bytes transferred (metrics)."""


@dataclass(frozen=True)
class PreparedJob:
    """What a kind makes of a validated spec: the job's display name (the asset name for
    uploads) and the settings of each task (``skip_task``, ``retries``, ``retry_delay``,
    ``image_resources``, ``job_settings`` … as the Task model has them)."""

    name: str
    task_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    """Facts shown with the job (destination, asset name, e-mail)."""
    assets: tuple[AssetClaim, ...] = ()
    """The assets the job writes (see :class:`AssetClaim`)."""
    reads: tuple[tuple[str, str], ...] = ()
    """What the job reads, as (field, folder or store URL): checked against the owner's
    grants when the job is submitted (the tasks check the real paths again)."""
    writes: tuple[tuple[str, str], ...] = ()
    """Store URLs the job writes to, as (field, URL)."""
    removes: tuple[tuple[str, str], ...] = ()
    """Folders the job removes when it succeeds, as (field, folder)."""
    destination: str | None = None
    """The store URL the job writes its output to: the job page and e-mails show it
    (kept in the summary as ``destination``)."""
    notify_email: str | None = None
    """Where the job's e-mails go (kept in the summary as ``user_email``); ``None``: none."""
    notify_events: tuple[str, ...] | None = None
    """The events e-mailed (``begin``, ``end``, ``fail``, ``retry`` or ``all``; kept in the
    summary as ``email_notification_types``); ``None``: failures only."""

    def __post_init__(self) -> None:
        facts = {
            DESTINATION_KEY: self.destination,
            EMAIL_KEY: self.notify_email,
            EVENTS_KEY: list(self.notify_events) if self.notify_events is not None else None,
        }
        given = {k: v for k, v in facts.items() if v is not None}
        if given:
            object.__setattr__(self, "summary", {**self.summary, **given})


SpecT = TypeVar("SpecT", bound=BaseModel)


def merge_preset_tasks(preset: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """A request with a preset's task settings under its ``tasks``: the request's entries
    win, task by task."""
    merged = dict(spec)
    tasks = spec.get("tasks")
    if tasks is None or isinstance(tasks, Mapping):
        merged["tasks"] = {**copy.deepcopy(dict(preset)), **(tasks or {})}
    return merged


@dataclass(frozen=True)
class JobKind(Generic[SpecT]):
    """A kind of job: how to validate its spec and which tasks it runs.

    ``prepare`` gets the spec already validated by ``spec_model`` (an instance of it,
    never to be validated again) and the settings."""

    name: str
    spec_model: type[SpecT]
    tasks: tuple[TaskDef, ...]
    prepare: Callable[[SpecT, Settings], PreparedJob]
    settings_model: type[BaseModel] | None = field(default=None, kw_only=True)
    """The kind's own settings, read from ``[kinds.NAME]`` (see :meth:`settings_of`)."""
    description: str = ""
    check: Callable[[SpecT, Engine], None] | None = None
    """Checks a validated spec against the database before ``prepare`` (e.g. that the
    admin-defined thing it names exists), raising InvalidInput naming the field."""
    check_preset: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    """Validates a job type's task settings for this kind (raising InvalidInput naming
    the task and field) and returns them normalised; ``None``: the kind has no presets."""
    merge_preset: Callable[[Mapping[str, Any], Mapping[str, Any]], dict[str, Any]] = (
        merge_preset_tasks
    )
    """``merge_preset(preset settings, spec) -> spec``: a request with a job type's task
    settings under its own; by default :func:`merge_preset_tasks`."""

    def __post_init__(self) -> None:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"job kind {self.name!r} defines a task twice: {names}")
        seen: set[str] = set()
        for t in self.tasks:  # tasks are listed in an order where upstream comes first
            missing = [u for u in t.upstream if u not in seen]
            if missing:
                raise ConfigError(
                    f"job kind {self.name!r}: task {t.name!r} depends on {missing}, "
                    "which are not defined before it"
                )
            if t.map_over and t.map_over.split(".")[0] not in t.upstream:
                raise ConfigError(f"task {t.name!r} maps over {t.map_over!r}: list it upstream")
            seen.add(t.name)

    def settings_of(self, settings: Settings) -> Any:
        """The kind's own settings: ``settings.kinds[NAME]`` validated by ``settings_model``
        (``None`` for a kind without one). :class:`ConfigError` naming each wrong field."""
        given = settings.kinds.get(self.name) or {}
        if self.settings_model is None:
            if given:
                raise ConfigError(
                    f"kinds.{self.name}: job kind {self.name!r} takes no settings; remove "
                    f"[kinds.{self.name}] from the config file (and FERRY_KINDS__* variables)"
                )
            return None
        try:
            return self.settings_model.model_validate(given)
        except ValidationError as exc:
            problems = "; ".join(f"kinds.{self.name}.{p}" for p in validation_problems(exc))
            raise ConfigError(
                f"invalid settings of job kind {self.name!r} ({problems}); check "
                f"[kinds.{self.name}] in the config file and FERRY_KINDS__* variables"
            ) from exc

    def ancestors(self, name: str) -> set[str]:
        """The names of every task that task ``name`` comes after, directly or not."""
        seen: set[str] = set()
        todo = list(self.task(name).upstream)
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(self.task(n).upstream)
        return seen

    def task(self, name: str) -> TaskDef:
        """The task called ``name``; :class:`ConfigError` if the kind has none (a job made
        by another version of the kind)."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(
            f"job kind {self.name!r} has no task {name!r}; its tasks: "
            f"{', '.join(t.name for t in self.tasks)}"
        )


_registered: dict[str, JobKind[Any]] = {}
_installed: dict[str, JobKind[Any] | str] | None = None


def register_kind(kind: JobKind[Any]) -> None:
    """Make a kind available without an entry point (tests, plugins loaded by hand)."""
    _registered[kind.name] = kind


T = TypeVar("T")


def load_entry_points(
    group: str, check: Callable[[EntryPoint, Any], T | str]
) -> dict[str, T | str]:
    """Each entry point of ``group`` by name: what ``check(entry point, loaded object)``
    makes of it, or the reason (text) why it is not usable, so that a broken plugin
    stops nothing but itself."""
    found: dict[str, T | str] = {}
    for ep in entry_points(group=group):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must not stop the others
            found[ep.name] = f"cannot load {ep.value}: {type(exc).__name__}: {exc}"
            continue
        found[ep.name] = check(ep, loaded)
    return found


def _check_kind(ep: EntryPoint, kind: Any) -> JobKind[Any] | str:
    return kind if isinstance(kind, JobKind) else f"entry point {ep.value} is not a JobKind"


def _load_installed() -> dict[str, JobKind[Any] | str]:
    """Kinds of the ``neuroferry.job_kinds`` entry points, loaded once; a kind that cannot
    be loaded is kept as the reason, so that only its own jobs fail."""
    global _installed
    if _installed is None:
        _installed = load_entry_points(ENTRY_POINT_GROUP, _check_kind)
    return _installed


def job_kinds() -> dict[str, JobKind[Any]]:
    """Every kind: those installed under the ``neuroferry.job_kinds`` entry point group and
    those registered with :func:`register_kind`."""
    kinds = {k: v for k, v in _load_installed().items() if isinstance(v, JobKind)}
    kinds.update(_registered)
    return kinds


def get_kind(name: str) -> JobKind[Any]:
    if name in _registered:
        return _registered[name]
    found = _load_installed().get(name)
    if isinstance(found, JobKind):
        return found
    if isinstance(found, str):
        raise ConfigError(f"job kind {name!r} is installed but broken: {found}")
    raise InvalidInput(f"unknown job kind {name!r}; known kinds: {', '.join(sorted(job_kinds()))}")


def check_kind_settings(settings: Settings) -> None:
    """Validate every kind's own settings (``[kinds.NAME]``) as a service starts:
    :class:`ConfigError` naming the field, or the table of a kind that is not installed."""
    installed = _load_installed()
    for name in settings.kinds:
        if name not in installed and name not in _registered:
            raise ConfigError(
                f"kinds.{name}: no job kind {name!r} is installed; installed kinds: "
                f"{', '.join(sorted({*installed, *_registered}))}"
            )
    for kind in job_kinds().values():
        kind.settings_of(settings)


def import_function(path: str) -> Callable[..., Any]:
    """The function named by ``module:function``."""
    module, _, attr = path.partition(":")
    try:
        fn = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import task function {path!r}: {exc}") from exc
    if not callable(fn):
        raise ConfigError(f"task function {path!r} is not callable")
    return fn  # type: ignore[no-any-return]
