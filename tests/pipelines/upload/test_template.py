"""The job sheet template: its columns, drop-down lists, date check and examples, which
parse as valid jobs."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from openpyxl.workbook.workbook import Workbook
from openpyxl.worksheet.datavalidation import DataValidation
from openpyxl.worksheet.worksheet import Worksheet

from neuroferry.pipelines.upload import (
    MODALITIES,
    PLATFORMS,
    UploadJobSpec,
    job_upload_template,
    parse_job_sheet,
)

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-dts"

ORIGINAL_COLUMNS = [
    "job_type",
    "project_name",
    "platform",
    "acq_datetime",
    "subject_id",
    "metadata_dir",
    "modality0",
    "modality0.input_source",
    "modality1",
    "modality1.input_source",
]


def fixture(name: str) -> bytes:
    """A sample file of the original service; skips where the fixtures folder is absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"the original service's sample sheets are not available ({path})")
    return path.read_bytes()


def load(data: bytes) -> Workbook:
    return openpyxl.load_workbook(io.BytesIO(data))


def jobs_sheet(workbook: Workbook) -> Worksheet:
    sheet = workbook["Jobs"]
    assert isinstance(sheet, Worksheet)
    return sheet


def header(sheet: Worksheet) -> list[str]:
    return [str(c.value) for c in sheet[1] if c.value is not None]


def column_letter(sheet: Worksheet, name: str) -> str:
    return openpyxl.utils.get_column_letter(header(sheet).index(name) + 1)


def validation_of(sheet: Worksheet, cell: str) -> DataValidation:
    found = [v for v in sheet.data_validations.dataValidation if cell in v.sqref]
    assert len(found) == 1, cell
    return found[0]


def listed(workbook: Workbook, formula: str) -> list[str]:
    """The values of a list validation's range on the lists sheet."""
    sheet_name, cells = formula.split("!")
    sheet = workbook[sheet_name.strip("'")]
    return [str(c.value) for row in sheet[cells.replace("$", "")] for c in row]


def save(workbook: Workbook) -> bytes:
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_the_default_template_parses_to_its_two_example_jobs() -> None:
    result = parse_job_sheet(job_upload_template([], [], [], []), "job_upload_template.xlsx")
    assert result.errors == [] and result.notes == [] and result.ok
    assert [j.row for j in result.jobs] == [2, 3]
    specs = [UploadJobSpec.model_validate(j.job) for j in result.jobs]
    assert [s.asset_name for s in specs] == [
        "ecephys_123456_2024-05-27_16-07-59",
        "behavior_654321_2024-06-19_10-30-00",
    ]
    assert [list(s.input_sources()) for s in specs] == [
        ["ecephys", "behavior-videos"],
        ["behavior"],
    ]
    first = result.jobs[0].job
    assert first["email_notification_types"] == ["end", "fail"]
    assert first["metadata_dir"].endswith("/metadata") and first["s3_bucket"] == "default"


def test_columns_like_the_originals_template_and_a_few_more() -> None:
    workbook = load(job_upload_template([], [], [], []))
    assert workbook.sheetnames[0] == "Jobs"  # the sheet the parser reads
    sheet = jobs_sheet(workbook)
    columns = header(sheet)
    assert columns[: len(ORIGINAL_COLUMNS)] == ORIGINAL_COLUMNS
    assert set(columns) >= {
        "modality2",
        "modality2.input_source",
        "derivatives_dir",
        "s3_bucket",
        "user_email",
        "email_notification_types",
    }
    assert sheet.freeze_panes == "A2"
    assert all(sheet.column_dimensions[column_letter(sheet, c)].width >= 12 for c in columns)
    assert all(sheet.cell(row=1, column=i + 1).comment is not None for i in range(len(columns)))
    assert all(sheet.cell(row=1, column=i + 1).font.b for i in range(len(columns)))
    when = sheet[f"{column_letter(sheet, 'acq_datetime')}2"]
    assert isinstance(when.value, datetime) and "T" in when.number_format
    assert sheet[f"{column_letter(sheet, 'subject_id')}2"].number_format == "@"


def test_drop_down_lists_default_to_every_modality_and_platform() -> None:
    workbook = load(job_upload_template([], [], [], []))
    sheet = jobs_sheet(workbook)
    lists = workbook["Lists"]
    assert lists.sheet_state == "hidden"
    for n in range(3):
        validation = validation_of(sheet, f"{column_letter(sheet, f'modality{n}')}500")
        assert validation.type == "list" and validation.errorStyle == "stop"
        assert listed(workbook, validation.formula1) == [m.abbreviation for m in MODALITIES]
    platform = validation_of(sheet, f"{column_letter(sheet, 'platform')}2")
    assert listed(workbook, platform.formula1) == [p.abbreviation for p in PLATFORMS]
    job_type = validation_of(sheet, f"{column_letter(sheet, 'job_type')}2")
    assert listed(workbook, job_type.formula1) == ["default"]
    # no projects given: the project is free text
    project_cells = f"{column_letter(sheet, 'project_name')}2"
    assert not [v for v in sheet.data_validations.dataValidation if project_cells in v.sqref]
    assert parse_job_sheet(save(workbook), "t.xlsx").jobs[0].job["project_name"]


def test_the_given_lists_long_ones_too() -> None:
    projects = [f"Project number {i} of a long list of projects" for i in range(40)]
    assert len(",".join(projects)) > 255  # too long for a list written into the validation
    data = job_upload_template(
        ["ecephys", "behavior-videos", "SPIM"],
        ["ecephys", "SmartSPIM"],
        ["ecephys", "default"],
        projects,
    )
    workbook = load(data)
    sheet = jobs_sheet(workbook)

    def choices(column: str) -> list[str]:
        validation = validation_of(sheet, f"{column_letter(sheet, column)}2")
        assert validation.showErrorMessage and validation.error
        return listed(workbook, validation.formula1)

    assert choices("modality0") == ["ecephys", "behavior-videos", "SPIM"]
    assert choices("platform") == ["ecephys", "SmartSPIM"]
    assert choices("job_type") == ["ecephys", "default"]
    assert choices("project_name") == projects
    result = parse_job_sheet(data, "t.xlsx")
    assert result.errors == []
    assert [j.job["project_name"] for j in result.jobs] == projects[:2]
    assert {j.job["job_type"] for j in result.jobs} == {"ecephys"}
    # the examples only use the modalities and platforms offered
    for job in (j.job for j in result.jobs):
        assert {m["abbreviation"] for m in job["modalities"]} <= {
            "ecephys",
            "behavior-videos",
            "SPIM",
        }
        assert job["platform"]["abbreviation"] in {"ecephys", "SmartSPIM"}


def test_list_values_stay_text() -> None:
    workbook = load(job_upload_template([], [], [], ["=HYPERLINK(1)", "Ephys Platform"]))
    lists = workbook["Lists"]
    assert lists["D2"].value == "=HYPERLINK(1)" and lists["D2"].data_type == "s"


def test_acq_datetime_has_a_date_check_with_a_message() -> None:
    sheet = jobs_sheet(load(job_upload_template([], [], [], [])))
    validation = validation_of(sheet, f"{column_letter(sheet, 'acq_datetime')}2")
    assert validation.type == "date"
    assert validation.showErrorMessage and "2024-05-27 16:07:59" in (validation.error or "")
    assert validation.showInputMessage and validation.prompt


def test_a_filled_in_template_parses() -> None:
    workbook = load(job_upload_template([], [], [], ["Ephys Platform"]))
    sheet = jobs_sheet(workbook)
    values: dict[str, Any] = {
        "project_name": "Ephys Platform",
        "platform": "ecephys",
        "acq_datetime": datetime(2025, 1, 2, 3, 4, 5),
        "subject_id": "700001",
        "modality0": "ecephys",
        "modality0.input_source": "/data/700001/ecephys",
        "modality2": "behavior",
        "modality2.input_source": "/data/700001/behavior",
    }
    for name, value in values.items():
        sheet[f"{column_letter(sheet, name)}4"] = value
    result = parse_job_sheet(save(workbook), "filled.xlsx")
    assert result.errors == [] and [j.row for j in result.jobs] == [2, 3, 4]
    job = result.jobs[2].job
    assert UploadJobSpec.model_validate(job).asset_name == "ecephys_700001_2025-01-02_03-04-05"
    assert [m["abbreviation"] for m in job["modalities"]] == ["ecephys", "behavior"]


def test_the_same_rows_parse_the_same_in_the_originals_template_and_ours() -> None:
    original = load(fixture("job_upload_template.xlsx"))
    original_sheet = original.worksheets[0]
    rows = [
        dict(zip(ORIGINAL_COLUMNS, (c.value for c in row), strict=True))
        for row in original_sheet.iter_rows(min_row=2, max_row=4, max_col=len(ORIGINAL_COLUMNS))
    ]
    ours = load(job_upload_template([], [], [], []))
    sheet = jobs_sheet(ours)
    for row in range(2, 4):  # clear the examples
        for cell in sheet[row]:
            cell.value = None
    for number, values in enumerate(rows, start=2):
        for name, value in values.items():
            sheet[f"{column_letter(sheet, name)}{number}"] = value
    theirs = parse_job_sheet(fixture("job_upload_template.xlsx"), "original.xlsx")
    mine = parse_job_sheet(save(ours), "ours.xlsx")
    assert theirs.errors == [] and mine.errors == []
    assert [(j.row, j.job) for j in mine.jobs] == [(j.row, j.job) for j in theirs.jobs]
    assert len(mine.jobs) == 3
