"""The metadata files neuroferry writes (``data_description.json``, ``processing.json``),
built with aind-data-schema's own models so that they validate by construction, and the
project facts (institution, funding, investigators) that a request does not carry."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroferry.errors import InvalidInput

PROJECT_FACTS = ("institution", "funding_source", "investigators")
"""The facts of a data description that come from the project's record (or from a
``data_description.json`` in the job's ``metadata_dir``)."""

WHERE_FACTS = (
    "an admin sets it on the project's record (the portal's /projects page, "
    "`ferry projects set`, or PUT /api/v2/projects/{name}), or put a complete "
    "data_description.json in the job's metadata_dir"
)


class MissingFacts(InvalidInput):
    """A metadata file cannot be written: the facts named in ``lines`` are missing or
    wrong. The message names each field and where to give it."""

    def __init__(self, message: str, lines: Sequence[str]) -> None:
        super().__init__(message)
        self.lines = list(lines)


def _organization(value: Any, where: str) -> Any:
    from aind_data_schema_models.organizations import Organization

    if isinstance(value, Mapping):
        value = value.get("abbreviation") or value.get("name")
    if isinstance(value, str) and value.strip():
        text = value.strip()
        folded = text.casefold()
        for kind in Organization.ALL:  # the organizations' classes: their fields' defaults
            fields = kind.model_fields
            names = (fields["name"].default, fields["abbreviation"].default or "")
            if folded in (n.casefold() for n in names if n):
                found = kind()
                break
        else:
            found = None
        if found is not None:
            return found
    raise InvalidInput(
        f"{where}: {value!r} is not an organization of aind-data-schema; give its name or "
        "abbreviation (for example 'Allen Institute for Neural Dynamics' or 'AIND')"
    )


def _text(value: Any, where: str, what: str) -> str:
    """A one-line text of at most 256 characters, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{where}: give {what}")
    if len(value) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidInput(
            f"{where}: give {what} on one line, without control characters, "
            "of at most 256 characters"
        )
    return value.strip()


def _person(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        value = value["name"]
    return {"name": _text(value, where, "a person's name")}


def check_project_facts(facts: Mapping[str, Any]) -> dict[str, Any]:
    """The project facts an admin gives, checked and normalised: ``institution`` (an
    organization's name or abbreviation), ``funding_source`` (a list of ``{funder,
    grant_number, fundee}``, funder an organization, fundee a list of names) and
    ``investigators`` (a list of names). :class:`InvalidInput` names the wrong field."""
    unknown = sorted(set(facts) - set(PROJECT_FACTS))
    if unknown:
        raise InvalidInput(
            f"{', '.join(unknown)}: not a project fact; allowed: {', '.join(PROJECT_FACTS)}"
        )
    out: dict[str, Any] = {}
    if facts.get("institution") is not None:
        out["institution"] = _organization(facts["institution"], "institution").abbreviation
    if facts.get("funding_source") is not None:
        sources = facts["funding_source"]
        if not isinstance(sources, list):
            raise InvalidInput("funding_source: give a list of {funder, grant_number, fundee}")
        checked = []
        for i, source in enumerate(sources):
            where = f"funding_source[{i}]"
            if isinstance(source, str):
                source = {"funder": source}
            if not isinstance(source, Mapping) or "funder" not in source:
                raise InvalidInput(f"{where}: give an object with a funder")
            extra = sorted(set(source) - {"funder", "grant_number", "fundee"})
            if extra:
                raise InvalidInput(
                    f"{where}: unknown key {extra[0]!r}; allowed: funder, grant_number, fundee"
                )
            item: dict[str, Any] = {
                "funder": _organization(source["funder"], f"{where}.funder").abbreviation
                or _organization(source["funder"], f"{where}.funder").name
            }
            grant = source.get("grant_number")
            if grant is not None:
                if isinstance(grant, int) and not isinstance(grant, bool):
                    grant = str(grant)
                item["grant_number"] = _text(grant, f"{where}.grant_number", "a grant number")
            fundee = source.get("fundee")
            if fundee is not None:
                if not isinstance(fundee, list):
                    raise InvalidInput(f"{where}.fundee: give a list of names")
                item["fundee"] = [
                    _person(p, f"{where}.fundee[{j}]")["name"] for j, p in enumerate(fundee)
                ]
            checked.append(item)
        out["funding_source"] = checked
    if facts.get("investigators") is not None:
        people = facts["investigators"]
        if not isinstance(people, list):
            raise InvalidInput("investigators: give a list of names")
        out["investigators"] = [
            _person(p, f"investigators[{i}]")["name"] for i, p in enumerate(people)
        ]
    return out


def _problems(exc: ValidationError, file: str, hint: str) -> list[str]:
    lines = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(the document)"
        message = "missing" if error["type"] in ("missing", "too_short") else error["msg"]
        lines.append(f"{file}: {field}: {message}")
    if lines:
        lines[-1] += f" ({hint})"
    return lines


def data_description(
    *,
    name: str,
    subject_id: str,
    creation_time: datetime,
    modalities: Sequence[str],
    project_name: str,
    facts: Mapping[str, Any],
    project_known: bool,
) -> bytes:
    """A raw asset's ``data_description.json`` (aind-data-schema's ``DataDescription``),
    from what the job says and the project's ``facts``. :class:`MissingFacts` names each
    missing or wrong field and where to give it."""
    from aind_data_schema.core.data_description import DataDescription, Funding
    from aind_data_schema_models.modalities import Modality

    problems: list[str] = []
    where = (
        WHERE_FACTS
        if project_known
        else (
            f"project {project_name!r} has no record: an admin adds it (the portal's "
            "/projects page or `ferry projects add`) and sets its facts, or put a complete "
            "data_description.json in the job's metadata_dir"
        )
    )
    values: dict[str, Any] = {
        "name": name,
        "subject_id": subject_id,
        "creation_time": creation_time,
        "project_name": project_name,
        "data_level": "raw",
    }
    found_modalities = []
    for abbreviation in modalities:
        modality = Modality.from_abbreviation(abbreviation)
        if modality is None:
            problems.append(
                f"data_description.json: modalities: {abbreviation!r} is not a modality of "
                "aind-data-schema; put a complete data_description.json in the job's "
                "metadata_dir"
            )
        else:
            found_modalities.append(modality)
    values["modalities"] = found_modalities
    try:
        if facts.get("institution"):
            values["institution"] = _organization(facts["institution"], "institution")
        values["funding_source"] = [
            Funding(
                funder=_organization(f["funder"], "funding_source.funder"),
                grant_number=f.get("grant_number"),
                fundee=[_person(p, "funding_source.fundee") for p in f.get("fundee") or []],
            )
            for f in facts.get("funding_source") or []
        ]
        values["investigators"] = [
            _person(p, "investigators") for p in facts.get("investigators") or []
        ]
    except InvalidInput as exc:
        problems.append(f"data_description.json: {exc}; {where}")
    if problems:
        raise MissingFacts("; ".join(problems), problems)
    try:
        model = DataDescription.model_validate(values)
    except ValidationError as exc:
        lines = _problems(exc, "data_description.json", where)
        raise MissingFacts("; ".join(lines), lines) from exc
    text: str = model.model_dump_json(indent=2)
    return (text + "\n").encode()


def data_process(step: Mapping[str, Any], experimenter: str) -> dict[str, Any]:
    """One transformation's record as an aind-data-schema ``DataProcess`` (JSON)."""
    from aind_data_schema.core.processing import DataProcess, ProcessName

    kinds = {p.value for p in ProcessName}
    name = step.get("name")
    kind = step.get("process_type") or (name if name in kinds else "Other")
    with warnings.catch_warnings():  # a command's code may have no version: it is recorded so
        warnings.simplefilter("ignore", UserWarning)
        process = DataProcess.model_validate(
            {
                "process_type": kind,
                "name": step.get("name"),
                "stage": "Processing",
                "code": {
                    "url": step.get("code_url") or "",
                    "name": step.get("code_name"),
                    "version": step.get("code_version"),
                    "parameters": step.get("parameters") or {},
                },
                "experimenters": [experimenter],
                "start_date_time": step["start_date_time"],
                "end_date_time": step.get("end_date_time"),
                "output_path": step.get("output_location"),
                "notes": step.get("notes"),
            }
        )
    data: dict[str, Any] = process.model_dump(mode="json")
    return data


def processing(processes: Sequence[Mapping[str, Any]]) -> bytes:
    """A ``processing.json`` (aind-data-schema's ``Processing``) listing ``processes``
    (as :func:`data_process` makes them), in order."""
    from aind_data_schema.core.processing import Processing

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = Processing.model_validate({"data_processes": list(processes)})
    text: str = model.model_dump_json(indent=2)
    return (text + "\n").encode()
