"""``ferry serve --demo``: a generated acquisition session and a ready-to-submit upload
job for it, so that a first try needs no data of one's own."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from neuroferry.auth import first_admin
from neuroferry.config import Settings
from neuroferry.errors import InvalidInput

if TYPE_CHECKING:
    from neuroferry.services import Services

log = logging.getLogger(__name__)

PROJECT = "Demo Project"
SUBJECT_ID = "demo-001"
ACQ_DATETIME = "2025-01-15T10:30:00"
PLATFORM = "ecephys"
MODALITIES = ("ecephys", "behavior")
JOB_TYPE = "default"
DEFAULT_PRESET: dict[str, Any] = {"remove_source_folders": {"skip_task": True}}
"""The demo's ``default`` job type: the built-in defaults, written out (source folders
are kept after the upload)."""

CSV_COLUMNS = (
    "job_type",
    "project_name",
    "platform",
    "subject_id",
    "acq_datetime",
    "s3_bucket",
    "modality0",
    "modality0.input_source",
    "modality1",
    "modality1.input_source",
    "metadata_dir",
)
"""The columns of the demo spreadsheet, as the original service's spreadsheets name them."""

INVESTIGATOR = "Demo Scientist"
DEMO_DESTINATIONS = ("open", "private")
"""The original service's other ``s3_bucket`` names; ``ferry serve --demo`` configures
them (next to ``default``) unless FERRY_DESTINATIONS does."""


def metadata_files() -> dict[str, bytes]:
    """The demo session's ``subject.json``, ``procedures.json`` and
    ``data_description.json``, built with aind-data-schema's models (valid by
    construction)."""
    from datetime import UTC, date, datetime

    from aind_data_schema.components.identifiers import Person
    from aind_data_schema.components.subjects import MouseSubject, Sex
    from aind_data_schema.components.surgery_procedures import Headframe
    from aind_data_schema.core.data_description import DataDescription, Funding
    from aind_data_schema.core.procedures import Procedures, Surgery
    from aind_data_schema.core.subject import Subject
    from aind_data_schema_models.modalities import Modality
    from aind_data_schema_models.organizations import Organization
    from aind_data_schema_models.species import Species, Strain

    subject = Subject(
        subject_id=SUBJECT_ID,
        subject_details=MouseSubject(
            sex=Sex.FEMALE,
            date_of_birth=date(2024, 10, 1),
            strain=Strain.C57BL_6J,
            species=Species.HOUSE_MOUSE,
            genotype="wt/wt",
            source=Organization.JAX,
        ),
    )
    procedures = Procedures(
        subject_id=SUBJECT_ID,
        subject_procedures=[
            Surgery(
                start_date=date(2024, 12, 2),
                experimenters=[INVESTIGATOR],
                procedures=[Headframe(headframe_type="Demo headframe")],
            )
        ],
    )
    acquired = datetime.fromisoformat(ACQ_DATETIME).replace(tzinfo=UTC)
    description = DataDescription(
        name=f"{PLATFORM}_{SUBJECT_ID}_{acquired:%Y-%m-%d_%H-%M-%S}",
        subject_id=SUBJECT_ID,
        creation_time=acquired,
        institution=Organization.OTHER,
        funding_source=[Funding(funder=Organization.OTHER)],
        investigators=[Person(name=INVESTIGATOR)],
        project_name=PROJECT,
        modalities=[Modality.from_abbreviation(m) for m in MODALITIES],
        data_level="raw",
    )
    return {
        f"metadata/{name}.json": (model.model_dump_json(indent=2) + "\n").encode()
        for name, model in (
            ("subject", subject),
            ("procedures", procedures),
            ("data_description", description),
        )
    }


def add_demo_destinations(settings: Settings) -> None:
    """Configure the destinations ``open`` and ``private`` (folders beside the default
    store) unless the settings name them."""
    for name in DEMO_DESTINATIONS:
        settings.destinations.setdefault(name, (settings.home / f"lake-{name}").as_uri())


@dataclass(frozen=True)
class DemoInfo:
    """What :func:`seed_demo` made, and where."""

    folder: Path
    """``{home}/demo``."""
    session: Path
    """The generated acquisition session: one folder per modality and ``metadata``."""
    job_file: Path
    """The job as a ``SubmitJobRequestV2`` body: ``{"upload_jobs": [job]}``."""
    csv_file: Path
    """The same job as a one-row spreadsheet."""
    asset: str
    """The name the uploaded asset gets."""
    job: dict[str, Any]
    """The upload job itself."""
    job_type_seeded: bool = False
    """Whether the ``default`` job type is stored (by this call or before it)."""
    project_seeded: bool = False
    """Whether uploads may name the demo project (the project list is open, or lists it)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """What could not be done, and why."""

    def instructions(self, url: str) -> str:
        """What to do next, for the console of ``ferry serve --demo``."""
        query = json.dumps({"name": self.asset})
        lines = [
            f"demo: a sample session (ecephys and behavior, with metadata) is in {self.session}",
            f"  submit it      ferry jobs submit {self.csv_file} --wait",
            f"                 (the same job as a JSON request: {self.job_file})",
            f"                 or upload the CSV on {url.rstrip('/')}/submit",
            "  follow it      ferry jobs list",
            f"  its metadata   ferry catalog find '{query}'",
            f"  the API        {url.rstrip('/')}/docs",
        ]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _bytes_of(rel: str, size: int) -> bytes:
    """The same pseudo-random bytes for the same file on every run."""
    return random.Random(rel).randbytes(size)


def _signal(samples: int, channels: int) -> bytes:
    """Interleaved int16 samples: a slow sine per channel plus reproducible noise."""
    rng = random.Random("ecephys")
    out = bytearray()
    for i in range(samples):
        for c in range(channels):
            value = 800 * math.sin(2 * math.pi * (i / 300 + c / channels)) + rng.gauss(0, 60)
            out += int(value).to_bytes(2, "little", signed=True)
    return bytes(out)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2) + "\n").encode()


def _session_files() -> dict[str, bytes]:
    rng = random.Random("behavior")
    trials = ["trial,start_time,stop_time,choice,rewarded"]
    for n in range(1, 41):
        start = 5.0 * n
        choice = rng.choice(["left", "right"])
        trials.append(f"{n},{start:.3f},{start + 3.2:.3f},{choice},{rng.random() < 0.7}")
    speed = ["time,speed_cm_s"] + [
        f"{t / 60:.4f},{12 + 8 * math.sin(t / 90) + rng.gauss(0, 1):.3f}" for t in range(1200)
    ]
    timestamps = ["sample,time_s"] + [f"{i * 3000},{i * 0.1:.1f}" for i in range(300)]
    return {
        "ecephys/probe_A/continuous.dat": _signal(3000, 32),
        "ecephys/probe_A/timestamps.csv": ("\n".join(timestamps) + "\n").encode(),
        "ecephys/probe_A/sync.bin": _bytes_of("sync", 16 * 1024),
        "ecephys/settings.xml": (
            b'<?xml version="1.0"?>\n<SETTINGS><INFO><VERSION>0.6.7</VERSION></INFO>'
            b'<SIGNALCHAIN><PROCESSOR name="Neuropix-PXI" sample_rate="30000"/></SIGNALCHAIN>'
            b"</SETTINGS>\n"
        ),
        "behavior/trials.csv": ("\n".join(trials) + "\n").encode(),
        "behavior/running_speed.csv": ("\n".join(speed) + "\n").encode(),
        **metadata_files(),
    }


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` unless ``path`` holds it already (whole, through a temporary name)."""
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def demo_job(session: Path) -> dict[str, Any]:
    """The upload job of the demo session (an entry of ``upload_jobs``), shaped as the
    original service's ``SubmitJobRequestV2`` wants it: the folders in the tasks'
    ``job_settings``."""
    from neuroferry.pipelines.upload import find_modality, find_platform

    platform = find_platform(PLATFORM)
    return {
        "job_type": JOB_TYPE,
        "project_name": PROJECT,
        "platform": {"name": platform.name, "abbreviation": platform.abbreviation},
        "subject_id": SUBJECT_ID,
        "acq_datetime": ACQ_DATETIME,
        "s3_bucket": "default",
        "modalities": [
            {"name": find_modality(m).name, "abbreviation": find_modality(m).abbreviation}
            for m in MODALITIES
        ],
        "tasks": {
            "modality_transformation_settings": {
                find_modality(m).abbreviation: {"job_settings": {"input_source": str(session / m)}}
                for m in MODALITIES
            },
            "gather_preliminary_metadata": {
                "job_settings": {"metadata_dir": str(session / "metadata")}
            },
        },
    }


def _csv_bytes(job: dict[str, Any]) -> bytes:
    tasks = job["tasks"]
    row = {
        "job_type": job["job_type"],
        "project_name": job["project_name"],
        "platform": job["platform"]["abbreviation"],
        "subject_id": job["subject_id"],
        "acq_datetime": job["acq_datetime"],
        "s3_bucket": job["s3_bucket"],
        "metadata_dir": tasks["gather_preliminary_metadata"]["job_settings"]["metadata_dir"],
    }
    transformations = tasks["modality_transformation_settings"]
    for i, modality in enumerate(job["modalities"]):
        abbreviation = modality["abbreviation"]
        row[f"modality{i}"] = abbreviation
        row[f"modality{i}.input_source"] = transformations[abbreviation]["job_settings"][
            "input_source"
        ]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue().encode()


def _seed_presets(engine: Engine) -> tuple[bool, bool, list[str]]:
    """The ``default`` job type and the demo project, if this installation has job types
    and projects; whether each is there now, and notes on what could not be done."""
    from neuroferry.engine import find_job_type, put_job_type
    from neuroferry.pipelines.upload import add_project, list_projects

    admin = first_admin(engine)
    user_name = admin.name if admin else None
    notes: list[str] = []
    job_type = find_job_type(engine, "upload", JOB_TYPE) is not None
    if not job_type:
        try:
            put_job_type(
                engine,
                "upload",
                JOB_TYPE,
                DEFAULT_PRESET,
                user_name,
                "seeded by ferry serve --demo",
            )
            job_type = True
        except InvalidInput as exc:
            notes.append(f"the {JOB_TYPE!r} job type was not seeded: {exc}")
            log.info("demo: %s", notes[-1])
    # an empty project list allows any name; adding the demo's would refuse every other
    known = [p.name for p in list_projects(engine)]
    if known and PROJECT not in known:
        with contextlib.suppress(InvalidInput):  # another process added it just now
            add_project(engine, PROJECT, user_name)
    project = True
    return job_type, project, notes


def seed_demo(services: Services, settings: Settings) -> DemoInfo:
    """Create, if missing, the demo session under ``{home}/demo``, its job as a JSON
    request and as a spreadsheet, and (where job types and projects exist) the
    ``default`` job type and the demo project. Running it again changes nothing."""
    from neuroferry.pipelines.upload import validate_upload_job

    folder = settings.home / "demo"
    stamp = ACQ_DATETIME.replace("T", "_").replace(":", "-")
    session = folder / f"session_{SUBJECT_ID}_{stamp}"
    for rel, data in _session_files().items():
        _write_if_changed(session / rel, data)
    job = demo_job(session)
    spec = validate_upload_job(job)  # a demo that does not validate is a bug here
    job_file, csv_file = folder / "demo_job.json", folder / "demo_jobs.csv"
    _write_if_changed(job_file, _json_bytes({"upload_jobs": [job]}))
    _write_if_changed(csv_file, _csv_bytes(job))

    job_type, project, notes = _seed_presets(services.engine)
    return DemoInfo(
        folder=folder,
        session=session,
        job_file=job_file,
        csv_file=csv_file,
        asset=spec.asset_name,
        job=job,
        job_type_seeded=job_type,
        project_seeded=project,
        notes=tuple(notes),
    )
