"""A generated acquisition session, and a harness that calls the upload's task functions
the way the engine does (skipped tasks, mapped tasks, the results of every ancestor)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroferry.config import Settings
from neuroferry.engine import PreparedJob, TaskContext, TaskInstance
from neuroferry.engine._kinds import import_function
from neuroferry.grants import Access
from neuroferry.pipelines.upload import KIND, add_project, set_project_facts
from neuroferry.stores import open_store

MakeTree = Callable[[Path, dict[str, bytes]], Path]
NEEDS_DATABASE = {"check_asset_owner"}

SUBJECT = {"subject_id": "123456", "sex": "Female", "genotype": "wt/wt"}
PROCEDURES = {"subject_id": "123456", "subject_procedures": [{"procedure_type": "Surgery"}]}
PROJECT = "Ephys Platform"
FACTS = {
    "institution": "AIND",
    "funding_source": [{"funder": "AIND", "grant_number": None, "fundee": ["Jane Doe"]}],
    "investigators": ["Jane Doe"],
}
"""The facts of the sessions' project record, written into their data descriptions."""


def schema_problems(name: str, data: bytes) -> list[str]:
    """What aind-data-schema finds wrong in the metadata file ``name`` (empty: valid)."""
    from aind_data_schema.core.data_description import DataDescription
    from aind_data_schema.core.procedures import Procedures
    from aind_data_schema.core.processing import Processing
    from aind_data_schema.core.subject import Subject
    from pydantic import ValidationError

    models: dict[str, Any] = {
        "data_description.json": DataDescription,
        "processing.json": Processing,
        "subject.json": Subject,
        "procedures.json": Procedures,
    }
    try:
        models[name].model_validate_json(data)
    except ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return []


def record_project(engine: Any, name: str = PROJECT, facts: dict[str, Any] | None = None) -> None:
    """Add the project ``name`` with ``facts`` (default :data:`FACTS`) to the database."""
    add_project(engine, name, "admin")
    set_project_facts(engine, name, FACTS if facts is None else facts)


SESSION = {"session_start_time": "2024-06-19T10:00:00", "rig_id": "rig-7"}


@dataclass(frozen=True)
class Session:
    """A session folder as a rig writes it: one folder per modality, metadata, derivatives."""

    root: Path
    files: dict[str, dict[str, bytes]]
    """The files of each folder (``ecephys``, ``behavior``, ``behavior-videos``,
    ``metadata``, ``derivatives``) by relative path."""

    def folder(self, name: str) -> Path:
        return self.root / name

    def spec(self, **overrides: Any) -> dict[str, Any]:
        """An upload job for this session, shaped as the original service's client sends it."""
        spec: dict[str, Any] = {
            "job_type": "default",
            "user_email": "scientist@example.org",
            "email_notification_types": ["end", "fail"],
            "s3_bucket": "default",
            "project_name": "Ephys Platform",
            "platform": {"name": "Electrophysiology platform", "abbreviation": "ecephys"},
            "modalities": [
                {"name": "Extracellular electrophysiology", "abbreviation": "ecephys"},
                {"name": "Behavior", "abbreviation": "behavior"},
                {"name": "Behavior videos", "abbreviation": "behavior-videos"},
            ],
            "subject_id": "123456",
            "acq_datetime": "2024-06-19T10:00:00",
            "tasks": {
                "modality_transformation_settings": {
                    name: {"job_settings": {"input_source": str(self.folder(name))}}
                    for name in ("ecephys", "behavior", "behavior-videos")
                },
                "gather_preliminary_metadata": {
                    "job_settings": {"metadata_dir": str(self.folder("metadata"))}
                },
            },
            "derivatives_dir": str(self.folder("derivatives")),
        }
        spec.update(overrides)
        return spec


@dataclass
class Harness:
    """One upload job, prepared as the engine would, whose tasks a test calls one by one."""

    settings: Settings
    spec: dict[str, Any]
    prepared: PreparedJob
    job_id: int = 1
    catalog: Any = None
    owner_id: int | None = None
    submit_job: Callable[..., int] | None = None
    results: dict[str, Any] = field(default_factory=dict)
    log_store_url: str = field(default_factory=lambda: f"memory://logs-{secrets.token_hex(6)}")
    access: Access | None = None
    """The job owner's grants (``None``: a job of the service itself)."""

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.prepared.summary)

    @property
    def destination(self) -> str:
        return str(self.prepared.summary["destination"])

    @property
    def staging(self) -> Path:
        return Path(self.prepared.summary["staging_dir"]) / f"job-{self.job_id}"

    def ancestors(self, task: str) -> set[str]:
        found: set[str] = set()
        todo = list(KIND.task(task).upstream)
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(KIND.task(name).upstream)
        return found

    def context(
        self, task: str, *, item: str | None = None, params: dict[str, Any] | None = None
    ) -> TaskContext:
        """The context the engine would give ``task`` now (upstream: results so far)."""
        if params is None:
            params = dict(self.prepared.task_settings.get(task, {}))
        local = KIND.task(task).placement == "local"
        return TaskContext(
            TaskInstance(
                job_id=self.job_id,
                kind=KIND.name,
                job_name=self.prepared.name,
                task=task,
                map_index=-1 if item is None else 0,
                item=item,
                spec=self.spec,
                params=params,
                upstream={k: v for k, v in self.results.items() if k in self.ancestors(task)},
                summary=self.summary,
            ),
            config=self.settings,
            log_store=open_store(self.log_store_url, settings=self.settings),
            log=logging.getLogger(f"upload.{task}"),
            catalog=self.catalog if local else None,
            db=self.catalog.engine if local and self.catalog is not None else None,
            owner_id=self.owner_id if local else None,
            submit_job=self.submit_job if local else None,
            access=self.access,
        )

    def call(
        self, task: str, *, item: str | None = None, params: dict[str, Any] | None = None
    ) -> Any:
        """Call one task function (one item of a mapped task) and return its result."""
        ctx = self.context(task, item=item, params=params)
        return import_function(KIND.task(task).fn)(ctx)

    def run(self, task: str) -> Any:
        """Run a task as the engine does (skipped, or once per item) and keep its result."""
        definition = KIND.task(task)
        if definition.map_over is None:
            params = dict(self.prepared.task_settings.get(task, {}))
            # the owner check needs the database: without a catalog there is no owner
            # to check (tests of the check give the harness a catalog)
            unchecked = task in NEEDS_DATABASE and self.catalog is None
            result = None if params.get("skip_task") or unchecked else self.call(task)
        else:
            source, _, key = definition.map_over.partition(".")
            items = self.results.get(source) or {}
            if key:
                items = items.get(key) or {}
            result = {
                name: None
                if settings.get("skip_task")
                else self.call(task, item=name, params=settings)
                for name, settings in items.items()
            }
        self.results[task] = result
        return result

    def run_until(self, last: str) -> dict[str, Any]:
        """Run every task in order, up to and including ``last``."""
        for definition in KIND.tasks:
            self.run(definition.name)
            if definition.name == last:
                break
        return self.results


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (except the sync's ``.ferry/`` manifests) by relative path."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".ferry" not in p.relative_to(root).parts
    }
