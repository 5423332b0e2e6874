"""Provenance records: the catalog document that says how a result was made.

A record is written last, after the result's files are uploaded, so a record always
points at complete results. Its ``name`` (:func:`record_name`) is the result identity
followed by the id of the job's owner (names are unique in the catalog, and a user sees
only their own documents), so each user's result is recorded at most once and two users
never share or overwrite a record; docs/analysis.md gives its shape.
:func:`seed_record` writes the same facts in the shape of the original analysis
wrapper's ``metadata.nd.json`` (an aind-data-schema ``Metadata`` document), for readers
that expect it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

RESULT_KIND = "analysis-result"
"""The ``kind`` field of every provenance record."""
PROVENANCE_VERSION = 1
"""The version of the record's shape."""


def record_name(identity: str, owner_id: int | None) -> str:
    """The catalog name of the record of result ``identity`` made by a job of the user
    ``owner_id``: ``{identity}.{owner_id}``; the identity alone for the service's own jobs
    (no owner). Names of this form are reserved for records
    (:data:`neuroferry.catalog.RECORD_NAME`)."""
    return identity if owner_id is None else f"{identity}.{owner_id}"


def provenance_record(
    result: Mapping[str, Any], job_id: int | None = None, owner_id: int | None = None
) -> dict[str, Any]:
    """The catalog document of one task's result (what the wrapper returned), made by a
    job of the user ``owner_id``."""
    model = result["inputs"]
    names = model.get("asset_name") or []
    locations = model.get("s3_location") or []
    record_ids = model.get("docdb_record_id") or []
    assets = [
        {"name": name, "location": location, "record_id": record_id or None}
        for name, location, record_id in zip(names, locations, record_ids, strict=False)
    ]
    return {
        "name": record_name(result["identity"], owner_id),
        "location": result["location"],
        "kind": RESULT_KIND,
        "provenance_version": PROVENANCE_VERSION,
        "analysis": result["analysis"],
        "identity": result["identity"],
        "code": result["code"],
        "inputs": {
            "assets": assets,
            "files": result["input_files"],
            "locations": model.get("file_location") or locations,
            "distributed_parameters": model.get("distributed_parameters"),
            "group_metadata": model.get("group_metadata"),
            "query": model.get("query"),
        },
        "parameters": result["parameters"],
        "outputs": result["outputs"],
        "files": result["files"],
        "python": result["python"],
        "packages": result["packages"],
        "host": result["host"],
        "started": result["started"],
        "finished": result["finished"],
        "resources": result["resources"],
        "job_id": job_id,
    }


SCHEMA = "https://raw.githubusercontent.com/AllenNeuralDynamics/aind-data-schema/main/src/aind_data_schema/core/"


def seed_record(
    record: Mapping[str, Any], experimenters: list[str] | None = None
) -> dict[str, Any]:
    """The provenance record in the original wrapper's ``metadata.nd.json`` shape: an
    aind-data-schema ``Metadata`` document whose one ``processing.data_processes`` entry
    names the code, its input assets and its parameters (with the files read, as the
    original keeps them). Write it with ``json.dumps(..., indent=2)``."""
    code = record["code"]
    inputs = record["inputs"]
    name = code.get("image") or code["name"]
    version = code.get("digest") or code.get("commit") or code.get("version")
    notes = []
    if code.get("commit"):
        notes.append(f"Git commit hash: {code['commit']}")
    if inputs.get("query"):
        notes.append(f"Query used to retrieve data assets: {inputs['query']}")
    parameters = dict(record["parameters"])
    files = [f["location"] for f in inputs.get("files") or []]
    if files:
        parameters["file_location"] = files
    process = {
        "object_type": "Data process",
        "process_type": "Analysis",
        "name": name,
        "stage": "Analysis",
        "experimenters": list(experimenters or []),
        "pipeline_name": None,
        "start_date_time": record["started"],
        "end_date_time": record["finished"],
        "output_path": None,
        "output_parameters": record.get("outputs") or {},
        "notes": "\n".join(notes) or None,
        "resources": None,
        "code": {
            "object_type": "Code",
            "url": None,
            "name": name,
            "version": version,
            "commit_hash": code.get("commit"),
            "container": None,
            "run_script": None,
            "language": "Python",
            "language_version": record.get("python"),
            "input_data": [
                {"object_type": "Data asset", "name": a["name"], "url": a["location"]}
                for a in inputs.get("assets") or []
            ],
            "parameters": parameters,
            "core_dependency": None,
        },
    }
    return {
        "object_type": "Metadata",
        "describedBy": SCHEMA + "metadata.py",
        "schema_version": "2.7.6",
        "name": record["name"],
        "location": record["location"],
        "other_identifiers": None,
        "subject": None,
        "data_description": None,
        "procedures": None,
        "instrument": None,
        "processing": {
            "object_type": "Processing",
            "describedBy": SCHEMA + "processing.py",
            "schema_version": "2.3.3",
            "data_processes": [process],
            "pipelines": None,
            "notes": None,
            "dependency_graph": {name: []},
        },
        "acquisition": None,
        "quality_control": None,
        "model": None,
    }


def seed_record_json(record: Mapping[str, Any], experimenters: list[str] | None = None) -> str:
    """:func:`seed_record` as the text of a ``metadata.nd.json`` file."""
    return json.dumps(seed_record(record, experimenters), indent=2)
