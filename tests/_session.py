"""A generated acquisition session folder and the upload spec that sends it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

SUBJECT = {"subject_id": "700001", "species": {"name": "Mus musculus"}, "sex": "Female"}
PROCEDURES = {"subject_id": "700001", "subject_procedures": [{"procedure_type": "Surgery"}]}
DESCRIPTION = {
    "object_type": "Data description",
    "schema_version": "2.4.2",
    "subject_id": "700001",
    "creation_time": "2025-04-01T14:30:15Z",
    "name": "ecephys_700001_2025-04-01_14-30-15",
    "institution": {"name": "Allen Institute for Neural Dynamics", "abbreviation": "AIND"},
    "funding_source": [{"funder": {"name": "Allen Institute for Neural Dynamics"}}],
    "investigators": [{"name": "Jane Doe"}],
    "data_level": "raw",
    "project_name": "Ephys Platform",
    "modalities": [
        {"name": "Extracellular electrophysiology", "abbreviation": "ecephys"},
        {"name": "Behavior", "abbreviation": "behavior"},
        {"name": "Behavior videos", "abbreviation": "behavior-videos"},
    ],
}
"""The session's own data description (the facts a request does not carry: institution,
funding, investigators); uploaded as it is."""


def make_session(root: Path) -> Path:
    """A session folder as rigs leave them: one folder per modality, metadata, derivatives."""
    files = {
        "ecephys/probe_A/continuous.dat": os.urandom(9 * 1024 * 1024 + 17),  # multipart
        "ecephys/probe_A/events.npy": os.urandom(4096),
        "ecephys/settings.xml": b"<SETTINGS/>",
        "behavior/trials.csv": b"trial,choice\n1,left\n2,right\n",
        "behavior/empty.txt": b"",
        "behavior-videos/face.mp4": os.urandom(300_000),
        "metadata/data_description.json": json.dumps(DESCRIPTION).encode(),
        "metadata/subject.json": json.dumps(SUBJECT).encode(),
        "metadata/procedures.json": json.dumps(PROCEDURES).encode(),
        "metadata/session.json": json.dumps({"session_type": "test"}).encode(),
        "derivatives/spikes/sorted.npy": os.urandom(2048),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def upload_spec(session: Path, bucket: str = "default", **extra: Any) -> dict[str, Any]:
    return {
        "job_type": "default",
        "user_email": "scientist@example.org",
        "email_notification_types": ["begin", "end", "fail"],
        "s3_bucket": bucket,
        "project_name": "Ephys Platform",
        "platform": "ecephys",
        "subject_id": "700001",
        "acq_datetime": "2025-04-01T14:30:15",
        "modalities": [
            {"abbreviation": "ecephys", "input_source": str(session / "ecephys")},
            {"abbreviation": "BEHAVIOR", "input_source": str(session / "behavior")},
            {"abbreviation": "behavior-videos", "input_source": str(session / "behavior-videos")},
        ],
        "metadata_dir": str(session / "metadata"),
        "derivatives_dir": str(session / "derivatives"),
        **extra,
    }


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


ASSET = "ecephys_700001_2025-04-01_14-30-15"
