"""Job spreadsheets: the original service's CSV and XLSX conventions, one job per row, and
errors that name the row and the column as the user wrote it."""

from __future__ import annotations

import io
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload import (
    SheetError,
    SheetLimits,
    SheetResult,
    UploadJobSpec,
    parse_job_sheet,
    validate_upload_job,
)

DATA = Path(__file__).parent / "data"
FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-dts"

HEADER = "project_name,subject_id,acq_datetime,modality0,modality0.input_source"


def fixture(name: str) -> bytes:
    """A sample file of the original service; skips where the fixtures folder is absent."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"the original service's sample sheets are not available ({path})")
    return path.read_bytes()


def parse_csv(text: str, name: str = "jobs.csv") -> SheetResult:
    return parse_job_sheet(text.encode(), name)


def xlsx(*rows: list[Any], title: str = "Jobs") -> bytes:
    """A workbook with one sheet holding ``rows``."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def only_job(result: SheetResult) -> dict[str, Any]:
    assert result.errors == [], [str(e) for e in result.errors]
    assert len(result.jobs) == 1
    return result.jobs[0].job


def spec(job: dict[str, Any]) -> UploadJobSpec:
    return UploadJobSpec.model_validate(job)


def error_at(result: SheetResult, row: int) -> SheetError:
    found = [e for e in result.errors if e.row == row]
    assert len(found) == 1, [str(e) for e in result.errors]
    return found[0]


def modalities(job: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["abbreviation"], m["input_source"]) for m in job["modalities"]]


# -- the conventions, with this project's own small sheets --------------------------------


def test_a_sheet_with_every_column_gives_the_upload_jobs() -> None:
    result = parse_job_sheet((DATA / "jobs.csv").read_bytes(), "jobs.csv")
    assert result.errors == [] and result.notes == [] and result.ok
    assert [j.row for j in result.jobs] == [2, 4]  # row 3 is empty
    first, second = (j.job for j in result.jobs)
    assert first == {
        "job_type": "ecephys",
        "user_email": "scientist@example.org",
        "email_notification_types": ["end", "fail"],
        "s3_bucket": "open",
        "project_name": "Ephys Platform",
        "platform": {"name": "Electrophysiology platform", "abbreviation": "ecephys"},
        "modalities": [
            {
                "name": "Extracellular electrophysiology",
                "abbreviation": "ecephys",
                "input_source": "/data/rig/s123454/ecephys",
            },
            {
                "name": "Behavior videos",
                "abbreviation": "behavior-videos",
                "input_source": "/data/rig/s123454/videos",
            },
        ],
        "subject_id": "123454",
        "acq_datetime": "2024-05-27T16:07:59",
        "metadata_dir": "/data/rig/s123454/metadata",
        "derivatives_dir": "/data/rig/s123454/derivatives",
        "force_cloud_sync": True,
    }
    # only what the row gives: a request's defaults and a job type's preset still apply
    assert "job_type" not in second and "email_notification_types" not in second
    assert second["force_cloud_sync"] is False
    assert spec(second).asset_name == "behavior_123456_2024-06-19_10-30-00"
    assert validate_upload_job(first).metadata_folder() == "/data/rig/s123454/metadata"


def test_legacy_names_dashes_case_spaces_bom_and_us_dates() -> None:
    result = parse_job_sheet((DATA / "legacy.csv").read_bytes(), "legacy.csv")
    job = only_job(result)
    assert job["subject_id"] == "000123"  # text stays text: leading zeros are kept
    assert job["acq_datetime"] == "2020-10-13T13:10:10"
    assert job["platform"]["abbreviation"] == "behavior"
    assert job["s3_bucket"] == "scratch" and job["user_email"] == "test@example.com"
    assert modalities(job) == [("behavior-videos", "dir/data_set_2"), ("MRI", "dir/data_set_3")]
    assert job["tasks"] == {
        "analysis_settings": {
            "behavior-videos": {
                "job_settings": {
                    "pipeline_monitor_settings": {"run_params": {"capsule_id": "abc-123"}}
                }
            },
            "MRI": {
                "job_settings": {
                    "pipeline_monitor_settings": {"run_params": {"pipeline_id": "def-456"}}
                }
            },
        }
    }
    # the whole-job capsule of the original's first version is read, and ignored with a note
    [note] = result.notes
    assert note.row == 1 and note.column == "process_capsule_id" and "ignored" in note.message
    assert spec(job).asset_name == "behavior_000123_2020-10-13_13-10-10"


def test_nested_settings_columns_become_the_modalitys_job_settings() -> None:
    job = only_job(parse_job_sheet((DATA / "nested.csv").read_bytes(), "nested.csv"))
    assert job["tasks"] == {
        "modality_transformation_settings": {
            "behavior-videos": {
                "job_settings": {
                    "compression_requested": {"compression_enum": "gamma fix colorspace"},
                    "output_format": "mp4",
                }
            }
        }
    }
    validated = spec(job)  # the input_source stays on the modality
    assert validated.input_sources() == {
        "behavior-videos": "/data/s711256/videos",
        "behavior": "/data/s711256/behavior",
    }


def test_header_names_ignore_case_dashes_underscores_and_spaces() -> None:
    text = (
        " Project Name ,SUBJECT-ID,acq-datetime , Modality0 ,MODALITY0.INPUT-SOURCE,S3 Bucket\n"
        "P,1,2024-05-27 16:07:59,ecephys,/d,open\n"
    )
    job = only_job(parse_csv(text))
    assert job["project_name"] == "P" and job["subject_id"] == "1" and job["s3_bucket"] == "open"
    assert modalities(job) == [("ecephys", "/d")]


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2020-10-13T13:10:10", "2020-10-13T13:10:10"),
        ("2020-10-13 13:10:10", "2020-10-13T13:10:10"),
        ("10/13/2020 1:10:10 PM", "2020-10-13T13:10:10"),
        ("10/13/2020 1:10:10 am", "2020-10-13T01:10:10"),
        ("10/13/2020 13:10", "2020-10-13T13:10:00"),
    ],
)
def test_acquisition_times_in_iso_or_us_style(written: str, expected: str) -> None:
    job = only_job(parse_csv(f"{HEADER}\nP,1,{written},ecephys,/d\n"))
    assert job["acq_datetime"] == expected


@pytest.mark.parametrize(
    "written", ["yesterday", "2020-10-10ABC", "13/13/2020 1:10:10 PM", "44927"]
)
def test_a_bad_acquisition_time_names_row_column_and_formats(written: str) -> None:
    result = parse_csv(f"{HEADER}\nP,1,{written},ecephys,/d\n")
    error = error_at(result, 2)
    assert error.column == "acq_datetime" and error.value == written
    assert "2024-05-27T16:07:59" in error.message and "AM/PM" in error.message
    assert result.jobs == []


@pytest.mark.parametrize(
    ("written", "expected"),
    [("true", True), ("True", True), ("YES", True), ("1", True), ("no", False), ("0", False)],
)
def test_force_cloud_sync_words(written: str, expected: bool) -> None:
    job = only_job(parse_csv(f"{HEADER},force_cloud_sync\nP,1,2024-01-01,ecephys,/d,{written}\n"))
    assert job["force_cloud_sync"] is expected


def test_a_bad_force_cloud_sync_lists_the_allowed_words() -> None:
    result = parse_csv(f"{HEADER},force-cloud-sync\nP,1,2024-01-01,ecephys,/d,maybe\n")
    error = error_at(result, 2)
    assert error.column == "force-cloud-sync" and "true, false, yes, no, 1, 0" in error.message


def test_email_notification_types_are_comma_separated() -> None:
    header = f"{HEADER},email_notification_types"
    job = only_job(parse_csv(f'{header}\nP,1,2024-01-01,ecephys,/d,"fail, begin"\n'))
    assert job["email_notification_types"] == ["begin", "fail"]
    result = parse_csv(f"{header}\nP,1,2024-01-01,ecephys,/d,sometimes\n")
    error = error_at(result, 2)
    assert error.column == "email_notification_types"
    assert "'sometimes'" in error.message and "begin, end, fail, retry, all" in error.message


def test_empty_rows_and_empty_modality_pairs_are_skipped_keeping_row_numbers() -> None:
    text = (
        f"{HEADER},modality1,modality1.input_source\n"
        ",,,,,,\n"
        "P,1,2024-01-01,,,ecephys,/d\n"
        " , ,\n"
        "\n"
        "P,2,2024-01-01,behavior,/b, ,\n"
    )
    result = parse_csv(text)
    assert result.errors == []
    assert [(j.row, modalities(j.job)) for j in result.jobs] == [
        (3, [("ecephys", "/d")]),
        (6, [("behavior", "/b")]),
    ]


def test_modality_names_in_any_case_and_legacy_enum_style() -> None:
    header = f"{HEADER},modality1,modality1.input_source"
    text = f"{header}\nP,1,2024-01-01,BEHAVIOR_VIDEOS,/v,Ecephys,/e\n"
    assert modalities(only_job(parse_csv(text))) == [("behavior-videos", "/v"), ("ecephys", "/e")]


def test_relative_paths_parse_the_submit_step_decides_on_them() -> None:
    job = only_job(parse_csv(f"{HEADER},metadata_dir\nP,1,2024-01-01,ecephys,dir/data_set_1,md\n"))
    assert modalities(job) == [("ecephys", "dir/data_set_1")] and job["metadata_dir"] == "md"


def test_modalities_are_in_the_order_of_their_numbers() -> None:
    text = (
        "modality1.input_source,modality1,project_name,subject_id,acq_datetime,"
        "modality0.capsule_id,modality0,modality0.input_source\n"
        "/b,behavior,P,1,2024-01-01,cap-1,ecephys,/e\n"
    )
    job = only_job(parse_csv(text))
    assert modalities(job) == [("ecephys", "/e"), ("behavior", "/b")]
    assert set(job["tasks"]["analysis_settings"]) == {"ecephys"}


def test_unknown_columns_are_ignored_with_a_note_that_suggests_a_known_name() -> None:
    result = parse_csv(f"{HEADER},metadata_dri,colour\nP,1,2024-01-01,ecephys,/d,/m,blue\n")
    job = only_job(result)
    assert "metadata_dir" not in job
    notes = {n.column: n.message for n in result.notes}
    assert set(notes) == {"metadata_dri", "colour"}
    assert "did you mean metadata_dir?" in notes["metadata_dri"]
    assert "ignored" in notes["colour"] and "did you mean" not in notes["colour"]


# -- problems of the header -----------------------------------------------------------------


def test_a_header_without_subject_id_is_an_error_naming_the_column() -> None:
    result = parse_job_sheet((DATA / "no_subject.csv").read_bytes(), "no_subject.csv")
    assert result.jobs == []
    [error] = result.errors
    assert error.row == 1 and error.column == "subject_id"
    assert "no subject_id column" in error.message and "subject-id" in error.message
    assert str(error).startswith("row 1, column subject_id: ")


def test_a_header_without_modality_columns() -> None:
    result = parse_csv("project_name,subject_id,acq_datetime\nP,1,2024-01-01\n")
    [error] = result.errors
    assert error.row == 1 and error.column == "modality0"
    assert "modality0.input_source" in error.message


def test_a_modality_without_its_input_source_column_and_the_reverse() -> None:
    result = parse_csv(f"{HEADER},modality1,modality2.source\nP,1,2024-01-01,ecephys,/d,,\n")
    assert result.jobs == []
    assert sorted((e.row, e.column) for e in result.errors) == [
        (1, "modality1.input_source"),
        (1, "modality2"),
    ]


def test_two_columns_with_the_same_meaning() -> None:
    result = parse_csv(f"{HEADER},subject-id,modality0.source\nP,1,2024-01-01,ecephys,/d,2,/e\n")
    assert result.jobs == []
    assert [(e.row, e.column) for e in result.errors] == [
        (1, "subject-id"),
        (1, "modality0.source"),
    ]
    assert "column F ('subject-id') means the same as column B ('subject_id')" in (
        result.errors[0].message
    )


def test_a_header_and_no_rows() -> None:
    result = parse_csv(f"{HEADER}\n,,,,\n")
    assert result.jobs == [] and not result.ok
    [error] = result.errors
    assert error.row == 2 and "no jobs" in error.message


# -- problems of rows -------------------------------------------------------------------------


def test_each_bad_row_is_reported_and_the_good_rows_still_parse() -> None:
    result = parse_job_sheet((DATA / "malformed.csv").read_bytes(), "malformed.csv")
    assert [j.row for j in result.jobs] == [2]
    assert not result.ok
    found = [(e.row, e.column, e.value) for e in result.errors]
    assert found == [
        (3, "modality0", "ephys-ish"),
        (4, "acq_datetime", "yesterday"),
        (5, "modality1", "ECEPHYS"),
        (6, "modality0.input_source", None),
        (7, "modality1", None),
        (8, "user_email", "not-an-address"),
        (9, "subject_id", None),
        (9, "platform", "spaceship"),
    ]
    messages = {(e.row, e.column): e.message for e in result.errors}
    assert "allowed: BARseq, behavior" in messages[(3, "modality0")]
    assert "already given in modality0" in messages[(5, "modality1")]
    assert "folder of the ecephys data" in messages[(6, "modality0.input_source")]
    assert "modality1.input_source is given" in messages[(7, "modality1")]
    assert "not an e-mail address" in messages[(8, "user_email")]
    assert messages[(9, "subject_id")] == "empty; every job needs this value"
    assert "allowed: behavior, confocal, ecephys" in messages[(9, "platform")]


def test_a_subject_id_that_cannot_name_an_asset() -> None:
    error = error_at(parse_csv(f"{HEADER}\nP,mouse 1/2,2024-01-01,ecephys,/d\n"), 2)
    assert error.column == "subject_id" and error.value == "mouse 1/2"
    assert "letters, digits" in error.message


def test_a_row_with_only_settings_for_a_modality() -> None:
    header = f"{HEADER},modality1,modality1.input_source,modality1.a"
    result = parse_csv(f"{header}\nP,1,2024-01-01,ecephys,/d,,,x\n")
    error = error_at(result, 2)
    assert error.column == "modality1" and "modality1.a is given" in error.message


def test_settings_columns_that_overlap() -> None:
    result = parse_csv(f"{HEADER},modality0.a,modality0.a.b\nP,1,2024-01-01,ecephys,/d,x,y\n")
    error = error_at(result, 2)
    assert error.column == "modality0.a.b" and "conflicts" in error.message


def test_a_row_with_more_values_than_the_header_has_columns() -> None:
    result = parse_csv(f"{HEADER},email_notification_types\nP,1,2024-01-01,ecephys,/d,end, fail\n")
    error = error_at(result, 2)
    assert error.column is None and "7 values" in error.message and "double quotes" in error.message


def test_a_row_without_any_modality() -> None:
    result = parse_csv(f"{HEADER}\nP,1,2024-01-01,,\n")
    error = error_at(result, 2)
    assert error.column == "modality0" and "no modality" in error.message


# -- files that cannot be read ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["jobs.txt", "jobs.xls", "jobs"])
def test_other_extensions_are_refused_naming_the_file_and_the_allowed_ones(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"\.csv, \.xlsx") as info:
        parse_job_sheet(f"{HEADER}\n".encode(), name)
    assert name in str(info.value)


@pytest.mark.parametrize(
    "text", [f'{HEADER}\nP,1,2024-01-01,ecephys,"/d\n', f'{HEADER}\nP,1,2024-01-01,ecephys,"/d"x\n']
)
def test_broken_csv_quoting_names_the_file_and_line(text: str) -> None:
    with pytest.raises(InvalidInput, match=r"broken\.csv is not valid CSV at line 2"):
        parse_csv(text, "broken.csv")


@pytest.mark.parametrize("data", [b"not a workbook", b"PK\x03\x04 but not a zip", b""])
def test_a_file_that_is_not_xlsx_names_the_file(data: bytes) -> None:
    with pytest.raises(InvalidInput, match=r"jobs\.xlsx is not an XLSX workbook"):
        parse_job_sheet(data, "jobs.xlsx")


def test_a_workbook_named_csv_and_binary_data() -> None:
    with pytest.raises(InvalidInput, match=r"name it \.xlsx"):
        parse_job_sheet(xlsx(HEADER.split(",")), "jobs.csv")
    with pytest.raises(InvalidInput, match="binary"):
        parse_job_sheet(b"a,b\x00c\n", "jobs.csv")


def test_an_empty_file() -> None:
    with pytest.raises(InvalidInput, match=r"empty\.csv is empty"):
        parse_job_sheet(b"\n\n", "empty.csv")


# -- text encodings and delimiters ------------------------------------------------------------


def test_windows_1252_text_is_read_with_a_note() -> None:
    data = f"{HEADER}\nÉtude Platform,1,2024-01-01,ecephys,/données\n".encode("cp1252")
    result = parse_job_sheet(data, "jobs.csv")
    job = only_job(result)
    assert job["project_name"] == "Étude Platform" and modalities(job) == [("ecephys", "/données")]
    [note] = result.notes
    assert note.row is None and "Windows-1252" in note.message


def test_utf16_and_semicolon_or_tab_delimited_text() -> None:
    text = f"{HEADER}\nÉtude,1,2024-01-01,ecephys,/d\n"
    assert only_job(parse_job_sheet(text.encode("utf-16"), "j.csv"))["project_name"] == "Étude"
    for delimiter in (";", "\t"):
        data = text.replace(",", delimiter).encode()
        assert only_job(parse_job_sheet(data, "j.csv"))["subject_id"] == "1"


# -- XLSX -----------------------------------------------------------------------------------


def test_xlsx_cells_keep_their_types() -> None:
    data = xlsx(
        [*HEADER.split(","), "force_cloud_sync", "modality0.settings.level"],
        ["P", 123456, datetime(2024, 5, 27, 16, 7, 59), "ecephys", "/d", True, 3],
        ["P", 654321.0, "10/13/2020 1:10:10 PM", "ECEPHYS", "/e", "no", 2.5],
        # a time read from a spreadsheet's float rounds to the second
        ["P", "7", datetime(2024, 5, 27, 16, 7, 58, 999_600), "ecephys", "/f", None, None],
    )
    result = parse_job_sheet(data, "jobs.xlsx")
    assert result.errors == []
    first, second, third = (j.job for j in result.jobs)
    assert first["subject_id"] == "123456" and first["acq_datetime"] == "2024-05-27T16:07:59"
    assert first["force_cloud_sync"] is True
    settings = first["tasks"]["modality_transformation_settings"]["ecephys"]["job_settings"]
    assert settings == {"settings": {"level": 3}}
    assert second["subject_id"] == "654321" and second["acq_datetime"] == "2020-10-13T13:10:10"
    assert second["force_cloud_sync"] is False
    assert third["acq_datetime"] == "2024-05-27T16:07:59"


def test_xlsx_a_number_is_not_taken_for_a_time() -> None:
    data = xlsx(HEADER.split(","), ["P", 1, 44927.5, "ecephys", "/d"])
    error = error_at(parse_job_sheet(data, "jobs.xlsx"), 2)
    assert error.column == "acq_datetime" and "is a number, not a date" in error.message


def test_xlsx_row_numbers_are_the_sheets_own() -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    for column, name in enumerate(HEADER.split(","), start=1):
        sheet.cell(row=3, column=column, value=name)
    for column, value in enumerate(["P", "1", "2024-01-01", "ecephys", "/d"], start=1):
        sheet.cell(row=5, column=column, value=value)
    for column, value in enumerate(["P", "2", "2024-01-01", "nope", "/d"], start=1):
        sheet.cell(row=9, column=column, value=value)
    sheet.cell(row=5, column=9, value="stray")  # a value in a column without a name
    out = io.BytesIO()
    workbook.save(out)
    result = parse_job_sheet(out.getvalue(), "jobs.xlsx")
    assert [j.row for j in result.jobs] == [5]
    assert [(e.row, e.column) for e in result.errors] == [(9, "modality0")]
    [note] = result.notes
    assert note.column == "I" and "no name" in note.message


def test_xlsx_the_first_visible_sheet_is_read() -> None:
    workbook = openpyxl.Workbook()
    hidden = workbook.active
    assert hidden is not None
    hidden.title = "Lists"
    hidden.append(["not", "jobs"])
    hidden.sheet_state = "hidden"
    jobs = workbook.create_sheet("Jobs")
    jobs.append(HEADER.split(","))
    jobs.append(["P", "1", "2024-01-01", "ecephys", "/d"])
    extra = workbook.create_sheet("Notes")
    extra.append(["anything"])
    workbook.active = 1
    out = io.BytesIO()
    workbook.save(out)
    result = parse_job_sheet(out.getvalue(), "JOBS.XLSX")
    assert only_job(result)["subject_id"] == "1"
    [note] = result.notes
    assert "'Jobs'" in note.message and "'Notes'" in note.message


# -- the original service's sample sheets -----------------------------------------------------

ORIGINAL_SAMPLE = [  # row, asset name, modalities (sample.csv and its variants)
    (2, "ecephys_123454_2020-10-10_14-10-10", [("ecephys", "dir/data_set_1")]),
    (
        3,
        "behavior_123456_2020-10-13_13-10-10",
        [("behavior-videos", "dir/data_set_2"), ("MRI", "dir/data_set_3")],
    ),
]


@pytest.mark.parametrize(
    "name",
    [
        "sample.csv",
        "sample.xlsx",
        "sample_alt_modality_case.csv",
        "sample_empty_rows.csv",
        "sample_empty_rows.xlsx",
    ],
)
def test_original_samples(name: str) -> None:
    result = parse_job_sheet(fixture(name), name)
    got = [(j.row, spec(j.job).asset_name, modalities(j.job)) for j in result.jobs]
    assert got == ORIGINAL_SAMPLE
    buckets = [j.job["s3_bucket"] for j in result.jobs]
    assert buckets == ["some_bucket", "open"]
    assert [j.job["project_name"] for j in result.jobs] == ["Ephys Platform", "Behavior Platform"]
    # row 4 lists behavior-videos twice with two folders: neuroferry says so instead of
    # uploading only one of them (the original kept the last one)
    error = error_at(result, 4)
    assert error.column == "modality1"
    assert "behavior-videos is already given in modality0" in error.message
    assert [n.column for n in result.notes] == ["process_capsule_id"]


@pytest.mark.parametrize("name", ["new_sample.csv", "sample_empty_rows_2.csv"])
def test_original_new_samples(name: str) -> None:
    result = parse_job_sheet(fixture(name), name)
    assert result.errors == [] and result.notes == []
    got = [
        (
            j.row,
            spec(j.job).asset_name,
            j.job["job_type"],
            j.job.get("s3_bucket"),
            j.job.get("metadata_dir"),
            modalities(j.job),
        )
        for j in result.jobs
    ]
    assert got == [
        (
            2,
            "ecephys_123454_2020-10-10_14-10-10",
            "ecephys",
            "default",
            "dir/metadata",
            [("ecephys", "dir/data_set_1")],
        ),
        (
            3,
            "behavior_123456_2020-10-13_13-10-10",
            "custom",
            "open",
            None,
            [("behavior-videos", "dir/data_set_2"), ("MRI", "dir/data_set_3")],
        ),
        (
            4,
            "behavior_123456_2020-10-13_13-10-10",
            "default",
            None,
            None,
            [("behavior-videos", "dir/data_set_2")],
        ),
    ]
    assert {j.job["user_email"] for j in result.jobs} == {"test@example.com"}


def test_original_legacy_sample() -> None:
    result = parse_job_sheet(fixture("legacy_sample.csv"), "legacy_sample.csv")
    first, second = (j.job for j in result.jobs)
    assert [j.row for j in result.jobs] == [2, 3]
    assert spec(first).asset_name == "ecephys_123454_2020-10-10_14-10-10"
    assert first["force_cloud_sync"] is True and first["s3_bucket"] == "private"
    assert "tasks" not in first
    assert spec(second).asset_name == "behavior_123456_2020-10-13_13-10-10"
    assert "force_cloud_sync" not in second
    assert second["tasks"]["analysis_settings"] == {
        "behavior-videos": {
            "job_settings": {
                "pipeline_monitor_settings": {
                    "run_params": {"capsule_id": "1f999652-00a0-4c4b-99b5-64c2985ad070"}
                }
            }
        }
    }
    error = error_at(result, 4)
    assert error.column == "modality1" and "already given in modality0" in error.message
    assert result.notes == []


def test_original_legacy_sample_2_pipeline_id() -> None:
    job = only_job(parse_job_sheet(fixture("legacy_sample2.csv"), "legacy_sample2.csv"))
    assert modalities(job) == [("behavior-videos", "dir/data_set_2"), ("MRI", "dir/data_set_3")]
    run_params = job["tasks"]["analysis_settings"]["behavior-videos"]["job_settings"][
        "pipeline_monitor_settings"
    ]["run_params"]
    assert run_params == {"pipeline_id": "1f999652-00a0-4c4b-99b5-64c2985ad070"}
    assert spec(job).asset_name == "behavior_123456_2020-10-13_13-10-10"


@pytest.mark.parametrize(
    ("name", "modality"),
    [("nested_sample.csv", "ecephys"), ("behavior_videos_compression.csv", "behavior-videos")],
)
def test_original_nested_samples(name: str, modality: str) -> None:
    job = only_job(parse_job_sheet(fixture(name), name))
    assert modalities(job) == [(modality, "dir/data_set_1")]
    assert job["tasks"]["modality_transformation_settings"] == {
        modality: {
            "job_settings": {"compression_requested": {"compression_enum": "gamma fix colorspace"}}
        }
    }
    assert job["job_type"] == "ecephys"
    assert spec(job).asset_name == "ecephys_123454_2020-10-10_14-10-10"


def test_original_example1() -> None:
    result = parse_job_sheet(fixture("example1.csv"), "example1.csv")
    assert result.errors == []
    got = [
        (j.row, spec(j.job).asset_name, j.job["s3_bucket"], modalities(j.job)) for j in result.jobs
    ]
    assert got == [
        (2, "ecephys_123454_2020-10-10_14-10-10", "default", [("ecephys", "dir/data_set_1")]),
        (
            3,
            "behavior_123456_2020-10-13_13-10-10",
            "open",
            [("behavior-videos", "dir/data_set_2"), ("MRI", "dir/data_set_3")],
        ),
        (
            4,
            "behavior_123456_2020-10-13_13-10-10",
            "private",
            [("behavior-videos", "dir/data_set_2"), ("behavior", "dir/data_set_3")],
        ),
    ]
    assert set(result.jobs[1].job["tasks"]["analysis_settings"]) == {"behavior-videos"}
    assert "tasks" not in result.jobs[0].job and "tasks" not in result.jobs[2].job


@pytest.mark.parametrize("name", ["sample_malformed.csv", "sample_malformed.xlsx"])
def test_original_malformed_samples(name: str) -> None:
    result = parse_job_sheet(fixture(name), name)
    assert [j.row for j in result.jobs] == [2]
    error = error_at(result, 3)
    assert error.column == "modality0"
    assert error.value == "WRONG_MODALITY_HERE"
    assert "'WRONG_MODALITY_HERE' is not a known modality; allowed:" in error.message
    assert "already given" in error_at(result, 4).message


def test_original_malformed_sample_2() -> None:
    result = parse_job_sheet(fixture("sample_malformed_2.csv"), "sample_malformed_2.csv")
    assert result.jobs == []
    [error] = result.errors  # the empty platform is allowed: it is optional
    assert (error.row, error.column, error.value) == (2, "acq-datetime", "2020-10-10ABC")
    assert "is not a date and time" in error.message


def test_original_invalid_extension() -> None:
    with pytest.raises(InvalidInput, match=r"sample_invalid_ext\.txt.*allowed: \.csv, \.xlsx"):
        parse_job_sheet(fixture("sample_invalid_ext.txt"), "sample_invalid_ext.txt")


def test_original_template_filled_in() -> None:
    result = parse_job_sheet(fixture("job_upload_template.xlsx"), "job_upload_template.xlsx")
    assert result.errors == [] and result.notes == []
    got = [(j.row, spec(j.job).asset_name, modalities(j.job)) for j in result.jobs]
    assert got == [
        (
            2,
            "behavior_123456_2023-10-04_04-00-00",
            [
                ("behavior-videos", "/allen/aind/stage/fake/dir"),
                ("behavior", "/allen/aind/stage/fake/dir"),
            ],
        ),
        (3, "SmartSPIM_654321_2023-03-04_16-30-00", [("SPIM", "/allen/aind/stage/fake/dir")]),
        (
            4,
            "ecephys_654321_2023-01-30_19-01-00",
            [
                ("ecephys", "/allen/aind/stage/fake/dir"),
                ("behavior-videos", "/allen/aind/stage/fake/dir"),
            ],
        ),
    ]


# -- limits -------------------------------------------------------------------------------------

ROW = "proj,123456,2024-05-27T16:07:59,ecephys,/data/ecephys"


def bomb(rows: int, cells: int = 1, varied: bool = False) -> bytes:
    """A small .xlsx whose sheet expands to ``rows`` identical rows of ``cells`` cells
    (``varied``: numbered rows, which compress less)."""
    plain = xlsx(HEADER.split(","), ROW.split(","))
    cell = '<c t="inlineStr"><is><t>x</t></is></c>' * cells
    if varied:
        body = "".join(f'<row r="{i}"><c><v>{i * 7919 % 100003}</v></c></row>' for i in range(rows))
    else:
        body = f"<row>{cell}</row>" * rows
    sheet = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        "<sheetData>" + body + "</sheetData></worksheet>"
    )
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(plain)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target,
    ):
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data = sheet.encode()
            target.writestr(info.filename, data)
    return out.getvalue()


def test_a_csv_with_more_job_rows_than_allowed_is_refused_while_read() -> None:
    limits = SheetLimits(max_rows=3)
    allowed = "\n".join([HEADER, ROW, "", ",,,,", ROW, ROW]).encode()
    assert len(parse_job_sheet(allowed, "jobs.csv", limits).jobs) == 3
    too_many = "\n".join([HEADER, *[ROW] * 4]).encode()
    with pytest.raises(InvalidInput) as caught:
        parse_job_sheet(too_many, "jobs.csv", limits)
    assert str(caught.value) == (
        "jobs.csv has more than 3 job rows; at most 3 are allowed in one spreadsheet "
        "(setting max_jobs_per_request): split it into several sheets"
    )
    # the default: 10,000 rows at most, whatever the file holds below
    huge = "\n".join([HEADER, *[ROW] * 200_000]).encode()
    with pytest.raises(InvalidInput, match="more than 10000 job rows"):
        parse_job_sheet(huge, "jobs.csv")


def test_an_xlsx_with_more_job_rows_than_allowed_is_refused() -> None:
    limits = SheetLimits(max_rows=2)
    header, row = HEADER.split(","), ROW.split(",")
    assert len(parse_job_sheet(xlsx(header, row, row), "jobs.xlsx", limits).jobs) == 2
    with pytest.raises(InvalidInput, match=r"^jobs.xlsx has more than 2 job rows; at most 2"):
        parse_job_sheet(xlsx(header, row, row, row), "jobs.xlsx", limits)


def test_a_zip_bomb_is_refused_before_it_is_read() -> None:
    data = bomb(500_000)
    assert len(data) < 200_000
    with pytest.raises(InvalidInput) as caught:
        parse_job_sheet(data, "bomb.xlsx")
    message = str(caught.value)
    assert message.startswith("bomb.xlsx expands to more than 16 MiB when unpacked")
    assert "setting sheet_max_expanded_bytes" in message
    # under the size limit, the compression ratio gives it away
    with pytest.raises(InvalidInput, match=r"^bomb.xlsx is compressed more than 100 to 1"):
        parse_job_sheet(bomb(40_000), "bomb.xlsx")


def test_rows_and_cells_of_an_xlsx_are_counted_before_it_is_read() -> None:
    limits = SheetLimits(max_expanded_bytes=2**30)
    with pytest.raises(InvalidInput, match=r"^wide.xlsx: row 1 has more than 1000 cells"):
        parse_job_sheet(bomb(1, cells=1001), "wide.xlsx", limits)
    with pytest.raises(InvalidInput, match=r"^long.xlsx has more than 100000 rows"):
        parse_job_sheet(bomb(100_001, varied=True), "long.xlsx", limits)
