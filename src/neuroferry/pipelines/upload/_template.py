"""The job sheet template users download: an ``.xlsx`` workbook with the columns of an
upload job, two example rows and drop-down lists of the allowed values."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import Cell
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from neuroferry.pipelines.upload._vocab import MODALITIES, PLATFORMS, find_modality, find_platform

DATETIME_FORMAT = 'yyyy-mm-dd"T"hh:mm:ss'
"""How the template shows acquisition times (ISO 8601, as the original's template)."""

ROWS = 1000
"""Rows (below the header) that get the drop-down lists and the date check."""

_MODALITY_GROUPS = 3

# (column, width, help shown on the header cell)
_COLUMNS: tuple[tuple[str, int, str], ...] = (
    ("job_type", 16, "The preset of task settings to start from; empty: default."),
    ("project_name", 32, "The project the data belongs to (required)."),
    ("platform", 20, "The platform the data was acquired on; part of the asset's name."),
    (
        "acq_datetime",
        22,
        "When the data was acquired (required): type 2024-05-27 16:07:59; it is shown as "
        "2024-05-27T16:07:59. Text in ISO 8601 or 5/27/2024 4:07:59 PM works too.",
    ),
    ("subject_id", 14, "The subject's ID (required), e.g. the LabTracks ID of the mouse."),
    ("metadata_dir", 44, "Optional: a folder of metadata files (subject.json …) to include."),
    *(
        column
        for n in range(_MODALITY_GROUPS)
        for column in (
            (
                f"modality{n}",
                18,
                "A modality, chosen from the list; one pair of columns per modality "
                "(at least modality0).",
            ),
            (
                f"modality{n}.input_source",
                44,
                f"The folder holding the data of modality{n} (a POSIX path).",
            ),
        )
    ),
    ("derivatives_dir", 36, "Optional: a folder uploaded as the asset's derivatives/."),
    ("s3_bucket", 14, "Optional: the destination's name; empty: default."),
    ("user_email", 30, "Optional: where job e-mails go."),
    (
        "email_notification_types",
        26,
        "Optional: which job events are e-mailed, comma separated: begin, end, fail, "
        "retry, all; empty: fail.",
    ),
)
COLUMNS: tuple[str, ...] = tuple(name for name, _width, _help in _COLUMNS)
"""The template's columns, in order."""


def _letter(name: str) -> str:
    return get_column_letter(COLUMNS.index(name) + 1)


def _write(sheet: Worksheet, row: int, column: int, value: Any) -> Cell:
    """Write a value; text stays text even if it starts with ``=``."""
    cell = sheet.cell(row=row, column=column)
    assert isinstance(cell, Cell)  # nothing in the template is merged
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"
    return cell


def _known(values: Sequence[str], find: Any) -> list[str]:
    known = []
    for value in values:
        try:
            known.append(find(value).abbreviation)
        except ValueError:
            continue
    return known


def _pick(options: Sequence[str], preferred: Sequence[str], avoid: Sequence[str] = ()) -> str:
    for value in (*preferred, *options):
        if value in options and value not in avoid:
            return value
    return ""


def _examples(
    modalities: Sequence[str],
    platforms: Sequence[str],
    job_types: Sequence[str],
    projects: Sequence[str],
) -> list[dict[str, Any]]:
    known = _known(modalities, find_modality) or [m.abbreviation for m in MODALITIES]
    known_platforms = _known(platforms, find_platform) or [p.abbreviation for p in PLATFORMS]
    first = _pick(known, ("ecephys",))
    second = _pick(known, ("behavior-videos", "behavior"), avoid=(first,))
    project = projects[0] if projects else "Example project"
    other_project = projects[1] if len(projects) > 1 else project
    root = "/data/rig/session_123456_2024-05-27"
    ephys: dict[str, Any] = {
        "job_type": job_types[0],
        "project_name": project,
        "platform": _pick(known_platforms, ("ecephys",)),
        "acq_datetime": datetime(2024, 5, 27, 16, 7, 59),
        "subject_id": "123456",
        "metadata_dir": f"{root}/metadata",
        "modality0": first,
        "modality0.input_source": f"{root}/{first}",
        "s3_bucket": "default",
        "user_email": "scientist@example.org",
        "email_notification_types": "end, fail",
    }
    if second:
        ephys |= {"modality1": second, "modality1.input_source": f"{root}/{second}"}
    third = _pick(known, ("behavior",), avoid=(first,))
    other_root = "/data/rig/session_654321_2024-06-19"
    behavior: dict[str, Any] = {
        "job_type": job_types[0],
        "project_name": other_project,
        "platform": _pick(known_platforms, ("behavior",)),
        "acq_datetime": datetime(2024, 6, 19, 10, 30, 0),
        "subject_id": "654321",
        "modality0": third,
        "modality0.input_source": f"{other_root}/{third}",
        "user_email": "scientist@example.org",
    }
    return [ephys, behavior]


def _lists(sheet: Worksheet, lists: dict[str, Sequence[str]]) -> dict[str, str]:
    """Write each list into a column of the (hidden) lists sheet; their cell ranges."""
    ranges: dict[str, str] = {}
    for index, (name, values) in enumerate(lists.items(), start=1):
        letter = get_column_letter(index)
        sheet.cell(row=1, column=index, value=name).font = Font(bold=True)
        for row, value in enumerate(values, start=2):
            _write(sheet, row, index, value)
        sheet.column_dimensions[letter].width = max([12, *(len(v) + 2 for v in values)])
        if values:
            ranges[name] = f"'{sheet.title}'!${letter}$2:${letter}${len(values) + 1}"
    return ranges


def _choice(formula: str, what: str, *, strict: bool) -> DataValidation:
    return DataValidation(
        type="list",
        formula1=formula,
        allow_blank=True,
        errorStyle="stop" if strict else "warning",
        showErrorMessage=True,
        showInputMessage=True,
        errorTitle=f"Unknown {what}",
        error=f"Choose a {what} from the list.",
        promptTitle=what.capitalize(),
        prompt=f"Choose a {what} from the list.",
    )


def _validations(sheet: Worksheet, ranges: dict[str, str]) -> None:
    last = ROWS + 1

    def cells(*names: str) -> list[str]:
        return [f"{_letter(n)}2:{_letter(n)}{last}" for n in names]

    modality_columns = [f"modality{n}" for n in range(_MODALITY_GROUPS)]
    for name, columns, what, strict in (
        ("modality", modality_columns, "modality", True),
        ("platform", ["platform"], "platform", True),
        ("job_type", ["job_type"], "job type", False),
        ("project_name", ["project_name"], "project", False),
    ):
        if name in ranges:
            validation = _choice(ranges[name], what, strict=strict)
            for area in cells(*columns):
                validation.add(area)
            sheet.add_data_validation(validation)
    dates = DataValidation(
        type="date",
        operator="greaterThan",
        formula1="36526",  # 2000-01-01
        allow_blank=True,
        errorStyle="warning",
        showErrorMessage=True,
        showInputMessage=True,
        errorTitle="Not a date and time",
        error=(
            "Type the date and time as 2024-05-27 16:07:59 (shown as 2024-05-27T16:07:59), "
            "or as text in ISO 8601 or 5/27/2024 4:07:59 PM."
        ),
        promptTitle="Acquisition date and time",
        prompt="Type it as 2024-05-27 16:07:59",
    )
    dates.add(cells("acq_datetime")[0])
    sheet.add_data_validation(dates)


def job_upload_template(
    modalities: Sequence[str] = (),
    platforms: Sequence[str] = (),
    job_types: Sequence[str] = (),
    projects: Sequence[str] = (),
) -> bytes:
    """An ``.xlsx`` job sheet template: the upload job's columns, two example rows, and
    drop-down lists of ``modalities``, ``platforms``, ``job_types`` and ``projects``.

    Empty lists mean every known modality and platform, the ``default`` job type, and
    free text for the project. The lists live on a hidden sheet, so they may be long."""
    modality_list = list(modalities) or [m.abbreviation for m in MODALITIES]
    platform_list = list(platforms) or [p.abbreviation for p in PLATFORMS]
    job_type_list = list(job_types) or ["default"]
    project_list = list(projects)

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new workbook has its one sheet active
    sheet.title = "Jobs"
    lists = workbook.create_sheet("Lists")
    lists.sheet_state = "hidden"

    header_fill = PatternFill("solid", fgColor="DDEBF7")
    for index, (name, width, help_text) in enumerate(_COLUMNS, start=1):
        cell = _write(sheet, 1, index, name)
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(vertical="center")
        cell.comment = Comment(help_text, "neuroferry", width=300, height=110)
        sheet.column_dimensions[get_column_letter(index)].width = width
    sheet.column_dimensions[_letter("acq_datetime")].number_format = DATETIME_FORMAT
    sheet.column_dimensions[_letter("subject_id")].number_format = "@"
    sheet.freeze_panes = "A2"

    examples = _examples(modality_list, platform_list, job_type_list, project_list)
    for row, example in enumerate(examples, start=2):
        for name, value in example.items():
            cell = _write(sheet, row, COLUMNS.index(name) + 1, value)
            if name == "acq_datetime":
                cell.number_format = DATETIME_FORMAT
            elif name == "subject_id":
                cell.number_format = "@"

    ranges = _lists(
        lists,
        {
            "modality": modality_list,
            "platform": platform_list,
            "job_type": job_type_list,
            "project_name": project_list,
        },
    )
    _validations(sheet, ranges)

    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
