"""Reading a submit file and its config, and the set-up log of its certificate: what is
wrong with a submission (:class:`Rejected`) and what to do about it."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import yaml

from neuroferry.errors import NotFound, UnsafePath, first_line
from neuroferry.redaction import hide_userinfo, shown_url
from neuroferry.stores import Store, check_key

MAX_FILE_BYTES = 1 << 20
"""The largest submit or config file read (bigger ones are refused, saying so)."""
MAX_CONFIG_BYTES = 64 << 10
"""The largest config file read: an analysis's parameters, not data."""
MAX_DEPTH = 64
"""The deepest nesting of lists and mappings a submit or config file may have."""
OWN_KEYS = ("__duration__", "__dataset_size__")
"""Config keys that are the drop-box's own, not the analysis's parameters."""
CLAIMED, WAITING, RUNNING, ENDED, REJECTED, DUPLICATE = (
    "claimed",
    "waiting",
    "running",
    "ended",
    "rejected",
    "duplicate",
)
STEPS = ("Initialization", "Validation", "Submission")
INDENT = "        "


class Rejected(Exception):
    """A submission that cannot run: what is wrong and what to do about it."""

    def __init__(self, step: int, problem: str, advice: str) -> None:
        super().__init__(problem)
        self.step = step
        self.problem = problem
        self.advice = advice


class SetupLog:
    """The certificate's set-up log: lines with the seconds since the submission was
    taken, kept with the submission so that later rewrites keep them."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.lines: list[list[Any]] = []

    def add(self, text: str) -> None:
        at = (datetime.now(UTC) - self.start).total_seconds()
        self.lines.append([text, round(at, 2)])

    def internal(self, where: str, text: str) -> None:
        self.add(f"{INDENT}[Internal ({where})] {text}")


def utc_now() -> datetime:
    return datetime.now(UTC)


# -- reading a submission ---------------------------------------------------------------


_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def too_deep(text: str) -> bool:
    """Whether ``text`` (JSON or YAML) nests lists and mappings deeper than
    :data:`MAX_DEPTH` (brackets outside double-quoted strings; a YAML line of nested
    ``- `` items counts each)."""
    if text.count("[") + text.count("{") + text.count("- ") <= MAX_DEPTH:
        return False
    depth = 0
    for found in _BRACKETS.finditer(text):
        mark = found.group()
        if mark in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif mark in ("]", "}"):
            depth -= 1
    # YAML block items nested on one line: "- - - - x"
    return any(line.lstrip().count("- ") > MAX_DEPTH for line in text.splitlines())


def _inside_group(field: str, value: Any, group: str) -> str:
    """A path of the submission checked to lie inside the group's own folder."""
    if not isinstance(value, str) or not value.strip():
        raise Rejected(
            1,
            f"'{field}' must be a path such as {group}/inputs/data.bin (got {value!r})",
            f"give '{field}' as the file's path inside the drop-box, without the bucket name",
        )
    path = value.strip()
    if path.startswith("s3://") or "://" in path:
        shown = shown_url(path) or "the URL given"
        raise Rejected(
            1,
            f"'{field}': {shown} is a URL, while the other input is a path in your group's "
            "folder; storage bypass reads every dataname and the configname as s3:// URLs "
            "of one bucket",
            f"give them all as paths in {group}/ or all as s3:// URLs of one bucket",
        )
    try:
        check_key(path)
    except UnsafePath as exc:
        raise Rejected(
            1, f"'{field}': {exc}", f"give a plain path such as {group}/inputs/data.bin"
        ) from None
    if not path.startswith(f"{group}/") or path.rstrip("/") == group:
        raise Rejected(
            1,
            f"'{field}': {path} is not inside your group's folder {group}/",
            f"name files of your own group only, such as {group}/inputs/data.bin",
        )
    return path


def read_submit_file(data: bytes) -> dict[str, Any]:
    """The submit file's fields, checked: ``timestamp`` (text), ``datanames`` (list),
    ``configname``; :class:`Rejected` saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(1, "the submit file is not UTF-8 text", "write it as UTF-8 JSON") from None
    if too_deep(text):
        raise Rejected(
            1,
            f"the submit file nests lists or objects deeper than {MAX_DEPTH} levels",
            'write {"dataname": [...], "configname": "...", "timestamp": "..."}',
        )
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Rejected(
            1,
            f"the submit file is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "correct the JSON (`python -m json.tool FILE` shows where it breaks) and upload "
            "it again",
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. a number of too many digits
        raise Rejected(
            1,
            f"the submit file cannot be read: {first_line(exc)}",
            'write {"dataname": [...], "configname": "...", "timestamp": "..."}',
        ) from None
    if not isinstance(fields, dict):
        raise Rejected(
            1,
            "the submit file must hold a JSON object with 'dataname', 'configname' and "
            f"'timestamp' (it holds a {type(fields).__name__})",
            'write {"dataname": [...], "configname": "...", "timestamp": "..."}',
        )
    return fields


def check_timestamp(fields: Mapping[str, Any], room: int = 128) -> str:
    """The submission's timestamp, checked to name a folder: at most ``room`` bytes (and
    128) are left for it in the folder's name."""
    longest = max(1, min(128, room))
    if "timestamp" not in fields:
        raise Rejected(
            1,
            "Submit file does not contain field 'timestamp', needed to name the results folder.",
            'add "timestamp": "a text no earlier submission of your group used" and upload '
            "it again",
        )
    value = fields["timestamp"]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Rejected(1, "'timestamp' must be text", 'give e.g. "timestamp": "1709647330"')
    text = str(value)
    try:
        check_key(text)
        if "/" in text:
            raise UnsafePath("it holds '/'")
        if len(text.encode()) > longest:
            raise UnsafePath(f"it is longer than {longest} bytes")
    except UnsafePath as exc:
        shown = text if len(text) <= 40 else f"{text[:40]}..."
        raise Rejected(
            1,
            f"'timestamp' {shown!r} cannot name a folder: {exc}",
            f"give 1 to {longest} plain characters without '/' or control characters",
        ) from None
    return text


def dataname_list(fields: Mapping[str, Any], group: str, max_datasets: int) -> list[Any]:
    """The submission's ``dataname`` as a list (one string: a list of one), checked to
    be a list of at most ``max_datasets`` entries, not yet each."""
    if "dataname" not in fields:
        raise Rejected(
            1,
            "Submit file does not contain field 'dataname', needed to analyze data.",
            f'add "dataname": ["{group}/inputs/FILE", ...] and upload it again',
        )
    value = fields["dataname"]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise Rejected(
            1,
            "'dataname' field is not the right type. Should be string or list.",
            f'give one path ("{group}/inputs/FILE") or a list of them',
        )
    if len(value) > max_datasets:
        raise Rejected(
            1,
            f"'dataname' names {len(value)} datasets, more than the {max_datasets} one "
            "submission may run",
            "split them over several submissions",
        )
    return value


def check_fields(fields: Mapping[str, Any], group: str, max_datasets: int) -> tuple[list[str], str]:
    """The submission's data paths and config path, checked to lie in the group's
    folder."""
    value = dataname_list(fields, group, max_datasets)
    datanames = [_inside_group(f"dataname[{i}]", v, group) for i, v in enumerate(value)]
    if "configname" not in fields:
        raise Rejected(
            1,
            "'configname' field not given in submit.json file",
            f'add "configname": "{group}/configs/config.yaml" and upload it again',
        )
    config = check_config_name(_inside_group("configname", fields["configname"], group))
    return datanames, config


def check_config_name(config: str) -> str:
    """``config`` if it names a ``.json``, ``.yaml`` or ``.yml`` file."""
    if not config.lower().endswith((".json", ".yaml", ".yml")):
        raise Rejected(
            1,
            f"'configname': {config} is neither .json nor .yaml/.yml",
            "give the analysis's parameters in a JSON or YAML file",
        )
    return config


_LOCATION = re.compile(r"^\s*(?:[A-Za-z][A-Za-z0-9+.-]*://|/|~|\\|[A-Za-z]:[\\/])")


def _location(value: Any, where: str = "") -> tuple[str, str] | None:
    """The first string of ``value`` (a parameter set) that is a URL or an absolute
    path, with where it is (``name.key[0]``), if there is one."""
    if isinstance(value, str):
        return (where, value) if _LOCATION.match(value) or "://" in value else None
    items: Any = ()
    if isinstance(value, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    for inner, item in items:
        if (found := _location(item, inner)) is not None:
            return found
    return None


class NoAliasLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses anchors and aliases (``&a``, ``*a``): a few
    hundred bytes of them can stand for millions of values."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise yaml.composer.ComposerError(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed; write each value out",
                event.start_mark,
            )
        return super().compose_node(parent, index)


def read_config(store: Store, config: str, slog: SetupLog) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analysis's parameters and the drop-box's own keys from the config file."""
    try:
        entry = store.head(config)
        if entry.size > MAX_CONFIG_BYTES:
            raise Rejected(
                2,
                f"config file {config} has {entry.size} bytes, more than {MAX_CONFIG_BYTES}",
                "give the analysis's parameters alone in the config file",
            )
        data = store.get(config)
    except NotFound:
        raise Rejected(
            2,
            f"'configname' field refers to a configuration file that cannot be found: {config}",
            "upload it (aws s3 cp FILE .../configs/) or correct the path, without the bucket name",
        ) from None
    try:
        text = data.decode("utf-8")
        if too_deep(text):
            raise ValueError(f"it nests lists or mappings deeper than {MAX_DEPTH} levels")
        if config.lower().endswith(".json"):
            values = json.loads(text)
        else:
            values = yaml.load(text, Loader=NoAliasLoader)  # a safe loader
    except (UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError) as exc:
        raise Rejected(
            2,
            f"config file {config} does not parse: {first_line(exc)}",
            "correct the file and submit again",
        ) from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise Rejected(
            2,
            f"config file {config} must hold a mapping of parameter names to values",
            "write one 'name: value' per parameter",
        )
    if (found := _location(values)) is not None:
        where, value = found
        shown = hide_userinfo(value)
        shown = shown if len(shown) <= 60 else f"{shown[:60]}..."
        raise Rejected(
            2,
            f"config file {config}: parameter {where} ({shown!r}) is a URL or an absolute "
            "path; a drop-box's analysis reads only the data the submission names",
            "leave locations out of the parameters; name the data in 'dataname'",
        )
    own = {}
    for key in OWN_KEYS:
        if key not in values:
            slog.internal("parse_config", f"parameter {key} is not given")
            continue
        given = values.pop(key)
        if isinstance(given, bool) or not isinstance(given, int) or given < 0:
            what = "minutes" if key == "__duration__" else "GB"
            raise Rejected(
                2,
                f"Given {key} parameter is not valid. Must be an integer ({what}).",
                f"give {key} as a whole number of {what}, or leave it out",
            )
        own[key] = given
        slog.internal("parse_config", f"parameter {key} given: {given}")
    return values, own


def object_exists(store: Store, key: str) -> bool:
    try:
        store.head(key)
    except NotFound:
        return False
    return True
