"""Job spreadsheets (CSV or XLSX) in the original service's format: a header row, then one
upload job per row.

Header names are matched case-insensitively, with ``-``, ``_`` and spaces alike
(``subject-id`` is ``subject_id``). Each modality takes a pair of columns, ``modalityN``
and ``modalityN.input_source`` (formerly ``modalityN.source``); ``modalityN.a.b`` columns
become that modality's transformation settings (``job_settings: {"a": {"b": value}}``) and
``modalityN.capsule_id`` / ``modalityN.pipeline_id`` its Code Ocean settings. A bad row never
stops the parse: its problems are collected with the row number and the column as the user
wrote it. Only a file that cannot be read at all raises :class:`InvalidInput`.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import PurePosixPath
from typing import IO, Any
from xml.etree import ElementTree

from openpyxl import load_workbook
from openpyxl.utils import get_column_letter
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from neuroferry.errors import InvalidInput
from neuroferry.pipelines.upload._models import US_DATETIME, UploadJobSpec
from neuroferry.pipelines.upload._vocab import find_modality

ALLOWED_EXTENSIONS: tuple[str, ...] = (".csv", ".xlsx")
"""The file types a job sheet may have."""

#: Most rows (blank ones included) and cells in a row an ``.xlsx`` sheet may have.
MAX_SHEET_ROWS = 100_000
MAX_SHEET_COLUMNS = 1_000
#: A part of an ``.xlsx`` file larger than 1 MiB may be compressed at most this much.
MAX_COMPRESSION_RATIO = 100


@dataclass(frozen=True)
class SheetLimits:
    """How much a job sheet may hold: ``max_rows`` job rows (below the header; the setting
    ``max_jobs_per_request``) and, for ``.xlsx``, ``max_expanded_bytes`` once uncompressed
    (the setting ``sheet_max_expanded_bytes``). Reading stops as soon as one is passed."""

    max_rows: int = 10_000
    max_expanded_bytes: int = 16 * 1024 * 1024


Cell = str | int | float | bool | datetime | date | time | None

# Columns that name a field of the upload job directly (after normalization).
_FIELDS: tuple[str, ...] = (
    "job_type",
    "user_email",
    "email_notification_types",
    "s3_bucket",
    "project_name",
    "platform",
    "subject_id",
    "acq_datetime",
    "s3_prefix",
    "metadata_dir",
    "derivatives_dir",
    "force_cloud_sync",
)
_REQUIRED: tuple[str, ...] = ("project_name", "subject_id", "acq_datetime")
_ORDER: tuple[str, ...] = tuple(UploadJobSpec.model_fields)

# Columns of older versions of the original service that neuroferry reads but does not use.
_IGNORED: dict[str, str] = {
    "process_capsule_id": (
        "the original service's Code Ocean capsule to run after the upload; neuroferry does "
        "not run Code Ocean capsules (start an analysis job instead)"
    ),
    "metadata_dir_force": "an option of an older version of the original service",
}

_MODALITY_COLUMN = re.compile(r"modality[\s_-]*(\d*)(?:\s*\.(.*))?", re.IGNORECASE)
_SOURCE_KEYS = frozenset({"input_source", "source"})
_CODE_OCEAN_KEYS = {"capsule_id": "capsule_id", "process_capsule_id": "capsule_id"}
_COMMAND_KEYS = frozenset({"command_script", "image", "image_version"})
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})
_US_FORMATS = (US_DATETIME, "%m/%d/%Y %I:%M %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")
_DATE_HELP = (
    "use ISO 8601 (2024-05-27T16:07:59 or 2024-05-27 16:07:59) "
    "or M/D/YYYY h:mm:ss AM/PM (5/27/2024 4:07:59 PM)"
)


@dataclass(frozen=True)
class SheetJob:
    """One valid row: its number as a spreadsheet shows it (the header is row 1) and the
    upload job it asks for, in the shape of a ``SubmitJobRequestV2`` upload job.

    The job holds only what the row gives (normalized: known modality and platform names,
    ISO dates), so that a request's defaults and a job type's preset still apply to the rest.
    """

    row: int
    job: dict[str, Any]


@dataclass(frozen=True)
class SheetError:
    """A problem of one row (or of the header, row 1): where, what, and the cell's value."""

    row: int
    column: str | None
    """The column as the header names it; None when the problem is the whole row's."""
    message: str
    value: str | None = None
    """The cell's value as text, if the problem is one cell's."""

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class SheetNote:
    """Something the user should know that is not an error (an ignored column, a guessed
    text encoding)."""

    row: int | None
    """None when the note is about the whole file."""
    column: str | None
    message: str

    def __str__(self) -> str:
        where = [f"row {self.row}"] if self.row is not None else []
        where += [f"column {self.column}"] if self.column else []
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True)
class SheetResult:
    """The jobs of a sheet's valid rows, the problems of the others, and notes."""

    jobs: list[SheetJob]
    errors: list[SheetError]
    notes: list[SheetNote] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row is a valid job (and there is at least one)."""
        return bool(self.jobs) and not self.errors


# -- reading the file -------------------------------------------------------------------


def _decode(data: bytes, filename: str, notes: list[SheetNote]) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{filename}: broken UTF-16 text ({exc})") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{filename} is not text in UTF-8 or Windows-1252; save it as 'CSV UTF-8'"
        ) from exc
    notes.append(
        SheetNote(
            None,
            None,
            f"{filename} is not UTF-8: it was read as Windows-1252 text; check names with "
            "accents, or save it as 'CSV UTF-8'",
        )
    )
    return text


def _too_many_rows(filename: str, limits: SheetLimits) -> InvalidInput:
    return InvalidInput(
        f"{filename} has more than {limits.max_rows} job rows; at most {limits.max_rows} "
        "are allowed in one spreadsheet (setting max_jobs_per_request): split it into "
        "several sheets"
    )


def _bounded_rows(
    rows: Iterable[Sequence[Any]], filename: str, limits: SheetLimits
) -> Iterable[Sequence[Any]]:
    """The rows, stopping with :class:`InvalidInput` once there are more non-blank rows
    than a header and ``limits.max_rows`` jobs."""
    filled = 0
    for row in rows:
        if any(not _blank(_cell(value)) for value in row):
            filled += 1
            if filled > limits.max_rows + 1:
                raise _too_many_rows(filename, limits)
        yield row


def _read_csv(
    data: bytes, filename: str, notes: list[SheetNote], limits: SheetLimits
) -> list[list[Cell]]:
    if data.startswith(b"PK\x03\x04"):
        raise InvalidInput(f"{filename} is an XLSX workbook, not CSV text; name it .xlsx")
    text = _decode(data, filename, notes)
    if "\x00" in text:
        raise InvalidInput(f"{filename} is not CSV text (it holds binary data)")
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ","
    if "," not in first:
        delimiter = next((d for d in (";", "\t") if d in first), ",")
    reader = csv.reader(
        io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True, strict=True
    )
    try:
        return [list(row) for row in _bounded_rows(reader, filename, limits)]
    except csv.Error as exc:
        raise InvalidInput(
            f"{filename} is not valid CSV at line {reader.line_num}: {exc}; "
            'put a value that holds quotes or the delimiter in double quotes ("a, b") '
            'and double the quotes inside it ("say ""hi""")'
        ) from exc


def _check_expansion(data: bytes, filename: str, limits: SheetLimits) -> None:
    """Refuse a workbook whose parts would expand past the limit, before reading any: the
    sizes the zip declares (which its reader holds them to), the compression ratio, and the
    rows and cells of each worksheet (counted as it streams by, without keeping them)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # not a zip: load_workbook says what it is
    mib = limits.max_expanded_bytes / 2**20
    allowed = (
        f"at most {mib:g} MiB are allowed (setting sheet_max_expanded_bytes): split the "
        "sheet, or save it as CSV"
    )
    with archive:
        total = 0
        for info in archive.infolist():
            total += info.file_size
            if total > limits.max_expanded_bytes:
                raise InvalidInput(
                    f"{filename} expands to more than {mib:g} MiB when unpacked "
                    f"({info.filename} alone is {info.file_size / 2**20:.1f} MiB); {allowed}"
                )
            if info.file_size > 2**20 and info.file_size > MAX_COMPRESSION_RATIO * max(
                info.compress_size, 1
            ):
                raise InvalidInput(
                    f"{filename} is compressed more than {MAX_COMPRESSION_RATIO} to 1 "
                    f"({info.filename}: {info.compress_size} bytes expand to "
                    f"{info.file_size}); a job sheet never is: save it again from your "
                    "spreadsheet program, or as CSV"
                )
        for info in archive.infolist():
            if info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml"):
                with archive.open(info) as part:
                    _count_cells(part, filename)


def _count_cells(part: IO[bytes], filename: str) -> None:
    rows = cells = 0
    try:
        for _event, element in ElementTree.iterparse(part, events=("end",)):
            tag = element.tag.rsplit("}", 1)[-1]
            if tag == "c":
                cells += 1
                if cells > MAX_SHEET_COLUMNS:
                    raise InvalidInput(
                        f"{filename}: row {rows + 1} has more than {MAX_SHEET_COLUMNS} "
                        f"cells; at most {MAX_SHEET_COLUMNS} are allowed in a row"
                    )
            elif tag == "row":
                rows, cells = rows + 1, 0
                if rows > MAX_SHEET_ROWS:
                    raise InvalidInput(
                        f"{filename} has more than {MAX_SHEET_ROWS} rows (blank ones "
                        f"included); at most {MAX_SHEET_ROWS} are allowed: delete the "
                        "rows below the jobs"
                    )
                element.clear()
    except ElementTree.ParseError:
        return  # broken XML: load_workbook says so


def _read_xlsx(
    data: bytes, filename: str, notes: list[SheetNote], limits: SheetLimits
) -> list[list[Cell]]:
    _check_expansion(data, filename, limits)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zipfile, XML and openpyxl errors alike: not a workbook
        raise InvalidInput(
            f"{filename} is not an XLSX workbook ({type(exc).__name__}: {exc}); "
            "save it from your spreadsheet program as .xlsx, or as CSV"
        ) from exc
    try:
        sheets = list(workbook.worksheets)
        visible = [s for s in sheets if s.sheet_state == "visible"] or sheets
        if not visible:
            raise InvalidInput(f"{filename} has no worksheet")
        sheet = visible[0]
        if len(visible) > 1:
            others = ", ".join(repr(s.title) for s in visible[1:])
            notes.append(
                SheetNote(
                    None,
                    None,
                    f"read the first sheet {sheet.title!r}; ignored the others: {others}",
                )
            )
        sheet.reset_dimensions()  # some writers record a wrong size; read every row
        rows = _bounded_rows(sheet.iter_rows(values_only=True), filename, limits)
        return [[_cell(v) for v in row] for row in rows]
    except InvalidInput:
        raise
    except Exception as exc:
        raise InvalidInput(
            f"{filename} could not be read as an XLSX workbook ({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        workbook.close()


# -- cells ------------------------------------------------------------------------------


def _cell(value: object) -> Cell:
    """An XLSX cell's value as one of the types rows are made of."""
    if value is None or isinstance(value, str | bool | int | float | datetime | date | time):
        return value
    if isinstance(value, Decimal):
        return float(value)
    return str(value)  # rich text, durations, formulas without a cached value


def _text(value: Cell) -> str | None:
    """A cell as trimmed text; None when blank."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value).strip() or None


def _blank(value: Cell) -> bool:
    return _text(value) is None


def _datetime(value: Cell) -> datetime | str:
    """A date and time, or the error message."""
    if isinstance(value, datetime):
        if value.microsecond:  # a spreadsheet's float time: round to the second
            value = (value + timedelta(microseconds=500_000)).replace(microsecond=0)
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = _text(value) or ""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
        for pattern in _US_FORMATS:
            try:
                return datetime.strptime(text, pattern)
            except ValueError:
                continue
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{text!r} is a number, not a date and time; {_DATE_HELP}"
    return f"{text!r} is not a date and time; {_DATE_HELP}"


def _boolean(value: Cell) -> bool | str:
    """True or False, or the error message."""
    if isinstance(value, bool):
        return value
    text = (_text(value) or "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return f"{_text(value)!r} is not true or false; allowed: true, false, yes, no, 1, 0"


def _setting(value: Cell) -> Any:
    """A settings cell: text, or the cell's own number or boolean."""
    if isinstance(value, bool | int | float):
        return value
    return _text(value)


# -- the header -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    index: int
    name: str
    """As the header writes it (trimmed)."""
    kind: str
    """``field``, ``modality``, ``input_source``, ``capsule_id``, ``pipeline_id``,
    ``setting`` or ``ignored``."""
    key: str = ""
    """The field name (``field``), or the modality group (``modality0``)."""
    path: tuple[str, ...] = ()
    """The settings path of a ``setting`` column."""

    @property
    def meaning(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.kind, self.key, self.path)


def column_key(name: str) -> str:
    """A column header as the sheet's columns are compared: case, spaces, ``_`` and ``-``
    do not matter (``Subject ID`` is ``subject_id``)."""
    return re.sub(r"[\s_-]+", "_", name.strip()).lower()


def _classify(index: int, name: str) -> _Column | str:
    """The column a header cell names, or the error message."""
    match = _MODALITY_COLUMN.fullmatch(name)
    if match:
        group = f"modality{int(match.group(1)) if match.group(1) else ''}"
        sub = match.group(2)
        if sub is None:
            return _Column(index, name, "modality", group)
        key = column_key(sub)
        if key in _SOURCE_KEYS:
            return _Column(index, name, "input_source", group)
        if key in _CODE_OCEAN_KEYS:
            return _Column(index, name, "capsule_id", group)
        if key == "pipeline_id":
            return _Column(index, name, "pipeline_id", group)
        parts = tuple(p.strip().replace("-", "_") for p in sub.split("."))
        if not all(parts):
            return f"{name!r} has an empty part between its dots; name settings like modality0.a.b"
        if key in _COMMAND_KEYS:
            return (
                f"{name!r}: a job sheet cannot give a command or an image; commands and images "
                "come from job types defined by admins: choose one in the job_type column"
            )
        return _Column(index, name, "setting", group, parts)
    key = column_key(name)
    if key in _FIELDS:
        return _Column(index, name, "field", key)
    return _Column(index, name, "ignored", key)


def _group_order(group: str) -> int:
    digits = group.removeprefix("modality")
    return int(digits) if digits else -1


@dataclass
class _Header:
    row: int
    columns: list[_Column]
    errors: list[SheetError]
    notes: list[SheetNote]

    def field(self, name: str) -> _Column | None:
        return next((c for c in self.columns if c.kind == "field" and c.key == name), None)

    def groups(self) -> list[tuple[str, list[_Column]]]:
        grouped: dict[str, list[_Column]] = {}
        for column in self.columns:
            if column.kind in ("modality", "input_source", "capsule_id", "pipeline_id", "setting"):
                grouped.setdefault(column.key, []).append(column)
        return sorted(grouped.items(), key=lambda item: _group_order(item[0]))


def _known_names() -> list[str]:
    return [*_FIELDS, "modality0", "modality0.input_source"]


def _read_header(
    row_number: int, cells: Sequence[Cell], rows: list[list[Cell]], width: int
) -> _Header:
    header = _Header(row_number, [], [], [])
    seen: dict[tuple[str, str, tuple[str, ...]], _Column] = {}
    for index in range(width):
        name = _text(cells[index]) if index < len(cells) else None
        letter = get_column_letter(index + 1)
        if name is None:
            if any(index < len(r) and not _blank(r[index]) for r in rows):
                header.notes.append(
                    SheetNote(
                        row_number,
                        letter,
                        f"column {letter} has values but no name in the header; they are ignored",
                    )
                )
            continue
        column = _classify(index, name)
        if isinstance(column, str):
            header.errors.append(SheetError(row_number, name, column, name))
            continue
        if column.kind == "ignored":
            header.notes.append(SheetNote(row_number, name, _ignored_message(column)))
            continue
        first = seen.get(column.meaning)
        if first is not None:
            header.errors.append(
                SheetError(
                    row_number,
                    name,
                    f"column {letter} ({name!r}) means the same as column "
                    f"{get_column_letter(first.index + 1)} ({first.name!r}); keep one",
                    name,
                )
            )
            continue
        seen[column.meaning] = column
        header.columns.append(column)
    _check_header(header)
    return header


def _ignored_message(column: _Column) -> str:
    reason = _IGNORED.get(column.key)
    if reason is not None:
        return f"{column.name!r} is not used: {reason}; its values are ignored"
    message = f"{column.name!r} is not a column of a job sheet; its values are ignored"
    close = difflib.get_close_matches(column.key, _known_names(), n=1, cutoff=0.75)
    if close:
        message += f" (did you mean {close[0]}?)"
    return message


def _check_header(header: _Header) -> None:
    """Errors for the columns every sheet needs; each names the missing column."""

    def missing(column: str, message: str) -> None:
        header.errors.append(SheetError(header.row, column, message))

    for name in _REQUIRED:
        if header.field(name) is None:
            dashed = name.replace("_", "-")
            missing(name, f"the header has no {name} column (or {dashed}); every job needs one")
    groups = header.groups()
    if not groups:
        missing(
            "modality0",
            "the header has no modality columns; add a pair of columns per modality: "
            "modality0 and modality0.input_source",
        )
    for group, columns in groups:
        kinds = {c.kind for c in columns}
        if "modality" not in kinds:
            missing(
                group,
                f"the header has {columns[0].name!r} but no {group} column naming the modality",
            )
        elif "input_source" not in kinds:
            missing(
                f"{group}.input_source",
                f"the header has {group} but no {group}.input_source column for the folder "
                "of the modality's data",
            )


# -- rows ---------------------------------------------------------------------------------


@dataclass
class _Row:
    number: int
    cells: Sequence[Cell]
    errors: list[SheetError] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)
    """Fields whose problems are reported already (the model's errors about them are dropped)."""
    modality_columns: list[tuple[_Column, _Column]] = field(default_factory=list)
    """The (modality, input_source) columns of each modality given to the model, in order."""
    task_columns: dict[tuple[str, str], _Column] = field(default_factory=dict)
    """The column behind each ``(task, modality)`` of the job's tasks."""

    def cell(self, column: _Column) -> Cell:
        return self.cells[column.index] if column.index < len(self.cells) else None

    def error(self, column: _Column | None, message: str, handled: str | None = None) -> None:
        value = _text(self.cell(column)) if column is not None else None
        self.errors.append(SheetError(self.number, column.name if column else None, message, value))
        if handled:
            self.handled.add(handled)


def _put(settings: dict[str, Any], path: tuple[str, ...], value: Any) -> bool:
    """Set ``settings[a][b]… = value``; False if another column set a part of the path."""
    node = settings
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            return False
        node = child
    if path[-1] in node:
        return False
    node[path[-1]] = value
    return True


# fields whose cells are parsed here: the value, or a message (str) saying what is wrong
_PARSED: dict[str, Callable[[Cell], datetime | bool | str]] = {
    "acq_datetime": _datetime,
    "force_cloud_sync": _boolean,
}


def _fields(row: _Row, header: _Header, job: dict[str, Any]) -> None:
    for column in header.columns:
        if column.kind != "field":
            continue
        value = row.cell(column)
        if _blank(value):
            continue
        parse = _PARSED.get(column.key)
        if parse is None:
            job[column.key] = _text(value)
            continue
        parsed = parse(value)
        if isinstance(parsed, str):
            row.error(column, parsed, handled=column.key)
        else:
            job[column.key] = parsed


def _modalities(row: _Row, header: _Header, job: dict[str, Any]) -> None:
    modalities: list[dict[str, Any]] = []
    tasks: dict[str, dict[str, Any]] = {}
    seen: dict[str, _Column] = {}
    for _group, columns in header.groups():
        given = [c for c in columns if not _blank(row.cell(c))]
        if not given:
            continue  # an empty pair
        by_kind = {c.kind: c for c in columns if c.kind != "setting"}
        name_column, source_column = by_kind["modality"], by_kind["input_source"]
        name = _text(row.cell(name_column))
        if name is None:
            row.error(
                name_column,
                f"empty, but {given[0].name} is given; choose the modality",
                handled="modalities",
            )
            continue
        try:
            abbreviation = find_modality(name).abbreviation
        except ValueError as exc:
            row.error(name_column, str(exc), handled="modalities")
            continue
        if abbreviation in seen:
            row.error(
                name_column,
                f"{abbreviation} is already given in {seen[abbreviation].name}; each modality "
                "may appear once per row (put all its data under one folder)",
                handled="modalities",
            )
            continue
        seen[abbreviation] = name_column
        source = _text(row.cell(source_column))
        if source is None:
            row.error(
                source_column,
                f"empty; give the folder of the {abbreviation} data",
                handled="modalities",
            )
            continue
        modalities.append({"abbreviation": abbreviation, "input_source": source})
        row.modality_columns.append((name_column, source_column))
        if _settings_of(row, abbreviation, columns, tasks) is False:
            row.handled.add("tasks")
    if modalities:
        job["modalities"] = modalities
    elif "modalities" not in row.handled:
        first = header.groups()[0][1][0]
        row.error(
            first,
            f"no modality; give at least one, as {first.name.split('.')[0]} and its input_source",
            handled="modalities",
        )
    if tasks:
        job["tasks"] = tasks


def _settings_of(
    row: _Row, abbreviation: str, columns: list[_Column], tasks: dict[str, dict[str, Any]]
) -> bool:
    settings: dict[str, Any] = {}
    run_params: dict[str, Any] = {}
    ok = True
    for column in columns:
        value = row.cell(column)
        if _blank(value):
            continue
        if column.kind == "setting":
            if not _put(settings, column.path, _setting(value)):
                row.error(column, "conflicts with another settings column of this modality")
                ok = False
                continue
            row.task_columns.setdefault(("modality_transformation_settings", abbreviation), column)
        elif column.kind in ("capsule_id", "pipeline_id"):
            run_params[column.kind] = _text(value)
            row.task_columns.setdefault(("analysis_settings", abbreviation), column)
    if settings:
        transformation = tasks.setdefault("modality_transformation_settings", {})
        transformation[abbreviation] = {"job_settings": settings}
    if run_params:
        analyses = tasks.setdefault("analysis_settings", {})
        analyses[abbreviation] = {
            "job_settings": {"pipeline_monitor_settings": {"run_params": run_params}}
        }
    return ok


# -- the model's errors -----------------------------------------------------------------

_MODALITY_PATH = re.compile(r"modalities\.(\d+)")
_TASK_PATH = re.compile(r"tasks\.(modality_transformation_settings|analysis_settings)\.([^.:\s]+)")


def _column_of(row: _Row, header: _Header, error: ErrorDetails) -> tuple[str, _Column | None]:
    """The field an error of the model is about, and the column behind it."""
    loc = error["loc"]
    message = error["msg"]
    top = str(loc[0]) if loc else ""
    if top in _FIELDS:
        return top, header.field(top)
    index: int | None = None
    if top == "modalities" and len(loc) > 1 and isinstance(loc[1], int):
        index = loc[1]
    elif not loc and (match := _MODALITY_PATH.match(message)):
        index = int(match.group(1))
    if index is not None and index < len(row.modality_columns):
        name_column, source_column = row.modality_columns[index]
        return "modalities", source_column if "input_source" in message else name_column
    if top == "tasks" and len(loc) > 2:
        return "tasks", row.task_columns.get((str(loc[1]), str(loc[2])))
    if not loc and (match := _TASK_PATH.match(message)):
        return "tasks", row.task_columns.get((match.group(1), match.group(2)))
    if not loc:
        for name in _FIELDS:
            if message.startswith(name):
                return name, header.field(name)
    return top, None


def _model_errors(row: _Row, header: _Header, exc: ValidationError) -> None:
    for error in exc.errors():
        name, column = _column_of(row, header, error)
        if name in row.handled:
            continue
        message = error["msg"].removeprefix(f"{name}: ")
        if error["type"] == "missing":
            message = "empty; every job needs this value"
        row.error(column, message)


def _normalized(job: dict[str, Any], spec: UploadJobSpec) -> dict[str, Any]:
    """The row's fields, in the model's order and with the model's values (known
    modality and platform names, ISO dates); task settings as the row gave them."""
    dumped = spec.model_dump(mode="json")
    return {key: job[key] if key == "tasks" else dumped[key] for key in _ORDER if key in job}


def _parse_row(row: _Row, header: _Header) -> SheetJob | None:
    job: dict[str, Any] = {}
    _fields(row, header, job)
    _modalities(row, header, job)
    try:
        spec = UploadJobSpec.model_validate(job)
    except ValidationError as exc:
        _model_errors(row, header, exc)
        return None
    if row.errors:
        return None
    return SheetJob(row.number, _normalized(job, spec))


def _parse_rows(
    rows: list[list[Cell]], filename: str, notes: list[SheetNote], *, text: bool
) -> SheetResult:
    """The jobs of the rows; ``text``: a CSV file, whose rows may not be longer than the
    header (a longer one means an unquoted delimiter in a value)."""
    numbered: Iterable[tuple[int, list[Cell]]] = enumerate(rows, start=1)
    filled = [(n, cells) for n, cells in numbered if not all(_blank(c) for c in cells)]
    if not filled:
        raise InvalidInput(f"{filename} is empty: it needs a header row and one row per job")
    (header_number, header_cells), data = filled[0], filled[1:]
    rows_below = [cells for _n, cells in data]
    width = len(header_cells) if text else max(len(c) for _n, c in filled)
    header = _read_header(header_number, header_cells, rows_below, width)
    notes = [*notes, *header.notes]
    if header.errors:
        return SheetResult([], header.errors, notes)
    if not data:
        message = "no jobs: every row below the header is empty; add one row per session"
        return SheetResult([], [SheetError(header_number + 1, None, message)], notes)
    jobs: list[SheetJob] = []
    errors: list[SheetError] = []
    positions = {c.name: c.index for c in header.columns}
    for number, cells in data:
        row = _Row(number, cells)
        extra = [c for c in cells[len(header_cells) :] if not _blank(c)]
        if extra and text:
            row.error(
                None,
                f"{len(cells)} values, but the header names {len(header_cells)} columns; "
                'put values that hold the delimiter in double quotes ("end, fail")',
            )
        parsed = _parse_row(row, header)
        errors.extend(sorted(row.errors, key=lambda e: positions.get(e.column or "", -1)))
        if parsed is not None:
            jobs.append(parsed)
    return SheetResult(jobs, errors, notes)


def parse_job_sheet(data: bytes, filename: str, limits: SheetLimits | None = None) -> SheetResult:
    """The upload jobs of a job sheet (``.csv`` or ``.xlsx``), one per non-empty row, and
    the problems of the rows that are not valid jobs.

    Raises :class:`InvalidInput` only when the file itself cannot be read: another
    extension, broken CSV quoting, a file that is not an XLSX workbook, no header row, or
    one larger than ``limits`` allow (more job rows, or a workbook that expands to more
    bytes), found while reading it."""
    limits = limits or SheetLimits()
    suffix = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    notes: list[SheetNote] = []
    if suffix == ".csv":
        rows = _read_csv(data, filename, notes, limits)
        return _parse_rows(rows, filename, notes, text=True)
    if suffix == ".xlsx":
        rows = _read_xlsx(data, filename, notes, limits)
        return _parse_rows(rows, filename, notes, text=False)
    raise InvalidInput(
        f"{filename}: {suffix or 'a file without extension'} is not a job sheet; "
        f"allowed: {', '.join(ALLOWED_EXTENSIONS)} (save the sheet as CSV or Excel workbook)"
    )
