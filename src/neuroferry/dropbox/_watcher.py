"""The drop-box watchers: one (``dropbox``, every ``dropbox_poll`` seconds) finds new
``*submit.json`` files in every group's ``submissions/`` folder and turns each into one
``analysis`` job (or a certificate saying what is wrong with it); the other
(``dropbox-refresh``, every ``dropbox_refresh`` seconds) keeps the certificates and
dataset status files of the running drop-box jobs up to date, writing ``end.txt`` when a
job has ended.

Each submit file is taken once: a row of ``dropbox_submissions`` per (drop-box, key,
content hash) is written before anything else happens, so a file seen again (another
poll, another orchestrator, a restart, an identical re-upload) is not run again. A row
left ``claimed`` by a watcher that stopped half-way is settled by the next run: with the
job it had submitted, if there is one, else taken again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from neuroferry.config import Settings
from neuroferry.db import dropbox_submissions, jobs, transaction, utc
from neuroferry.dropbox._layout import (
    END_MARKER,
    FAILED,
    INITIALIZING,
    STATUS_OF_TASK,
    certificate,
    certificate_key,
    dataset_names,
    end_key,
    stamp,
    status_file,
    status_key,
)
from neuroferry.dropbox._registry import Dropbox, Limits, list_dropboxes, open_dropbox_store
from neuroferry.engine import (
    TERMINAL,
    NewJob,
    Watcher,
    WatcherContext,
    cancel_job,
    get_job,
    job_tasks,
    owner_access,
    read_log_part,
    register_watcher,
    submit_jobs,
)
from neuroferry.errors import FerryError, InvalidInput, NotFound, UnsafePath, first_line
from neuroferry.pipelines.analysis import code_identity, get_analysis, validate_parameters
from neuroferry.stores import Entry, Store, check_key, open_store

log = logging.getLogger(__name__)

WATCHER_NAME = "dropbox"
REFRESHER_NAME = "dropbox-refresh"
MAX_FILE_BYTES = 1 << 20
"""The largest submit or config file read (bigger ones are refused, saying so)."""
OWN_KEYS = ("__duration__", "__dataset_size__")
"""Config keys that are the drop-box's own, not the analysis's parameters."""
STD_LINES = 200
"""The last lines of a dataset's log kept in its status file."""
LOG_BYTES = 256 * 1024
"""The most bytes of a dataset's log read for its status file."""
CLAIMED, WAITING, RUNNING, ENDED, REJECTED, DUPLICATE = (
    "claimed",
    "waiting",
    "running",
    "ended",
    "rejected",
    "duplicate",
)
SECONDS_PER_MINUTE = 60.0
"""A minute of the groups' limits and ``__duration__``, in seconds."""
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


def _now() -> datetime:
    return datetime.now(UTC)


# -- reading a submission ---------------------------------------------------------------


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
        raise Rejected(
            1,
            f"'{field}': {path} is a URL; storage bypass is not available in this drop-box",
            f"upload the file to {group}/inputs/ (or {group}/configs/) and name it by its "
            "path there, without the bucket name",
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
        fields = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Rejected(1, "the submit file is not UTF-8 text", "write it as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise Rejected(
            1,
            f"the submit file is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "correct the JSON (`python -m json.tool FILE` shows where it breaks) and upload "
            "it again",
        ) from None
    if not isinstance(fields, dict):
        raise Rejected(
            1,
            "the submit file must hold a JSON object with 'dataname', 'configname' and "
            f"'timestamp' (it holds a {type(fields).__name__})",
            'write {"dataname": [...], "configname": "...", "timestamp": "..."}',
        )
    return fields


def check_timestamp(fields: Mapping[str, Any]) -> str:
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
        if "/" in text or len(text) > 128:
            raise UnsafePath("it holds '/' or is longer than 128 characters")
    except UnsafePath as exc:
        raise Rejected(
            1,
            f"'timestamp' {text!r} cannot name a folder: {exc}",
            "give 1 to 128 characters without '/' or control characters",
        ) from None
    return text


def check_fields(fields: Mapping[str, Any], group: str, max_datasets: int) -> tuple[list[str], str]:
    """The submission's data paths and config path, checked to lie in the group's
    folder."""
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
    datanames = [_inside_group(f"dataname[{i}]", v, group) for i, v in enumerate(value)]
    if "configname" not in fields:
        raise Rejected(
            1,
            "'configname' field not given in submit.json file",
            f'add "configname": "{group}/configs/config.yaml" and upload it again',
        )
    config = _inside_group("configname", fields["configname"], group)
    if not config.lower().endswith((".json", ".yaml", ".yml")):
        raise Rejected(
            1,
            f"'configname': {config} is neither .json nor .yaml/.yml",
            "give the analysis's parameters in a JSON or YAML file",
        )
    return datanames, config


def read_config(store: Store, config: str, slog: SetupLog) -> tuple[dict[str, Any], dict[str, Any]]:
    """The analysis's parameters and the drop-box's own keys from the config file."""
    try:
        entry = store.head(config)
        if entry.size > MAX_FILE_BYTES:
            raise Rejected(
                2,
                f"config file {config} has {entry.size} bytes, more than {MAX_FILE_BYTES}",
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
        if config.lower().endswith(".json"):
            values = json.loads(data.decode("utf-8"))
        else:
            values = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
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


# -- taking a submission ----------------------------------------------------------------


class Watch:
    """One run of the watcher over every drop-box."""

    def __init__(self, ctx: WatcherContext) -> None:
        self.ctx = ctx
        self.engine: Engine = ctx.db
        self.settings: Settings = ctx.settings
        self._log_store: Store | None = None
        self._versions: dict[str, str] = {}

    def run(self) -> None:
        for box in list_dropboxes(self.engine):
            try:
                store = open_dropbox_store(box, self.settings)
                self.settle_claimed(box)
                self.start_waiting(box, store)
                self.scan(box, store)
            except FerryError as exc:  # one drop-box's store away: the others go on
                log.warning("drop-box %s: %s", box.name, exc)

    # -- finding submit files ------------------------------------------------------------

    def scan(self, box: Dropbox, store: Store) -> None:
        for group in box.groups:
            try:
                entries = sorted(
                    (
                        e
                        for e in store.list(f"{group.name}/submissions/")
                        if e.path.endswith("submit.json")
                    ),
                    key=lambda e: e.path,
                )
            except FerryError as exc:  # one group's folder gone: the others go on
                log.warning("drop-box %s, group %s: %s", box.name, group.name, exc)
                continue
            if not entries:
                continue
            with self.engine.connect() as conn:
                seen = {
                    (r.key, r.etag)
                    for r in conn.execute(
                        select(dropbox_submissions.c.key, dropbox_submissions.c.etag).where(
                            dropbox_submissions.c.dropbox_id == box.id,
                            dropbox_submissions.c.key.like(f"{group.name}/submissions/%"),
                        )
                    )
                }
            for entry in entries:
                if (entry.path, entry.etag) not in seen:
                    self.take(box, store, group.name, entry)

    def take(self, box: Dropbox, store: Store, group: str, entry: Entry) -> None:
        """Claim one new submit file (once: by key and content) and process it."""
        try:
            data = store.get(entry.path) if entry.size <= MAX_FILE_BYTES else b""
        except NotFound:  # removed since it was listed
            return
        # a file too big to read is known by its size and tag (it is refused anyway)
        known_by = data if entry.size <= MAX_FILE_BYTES else f"{entry.size}:{entry.etag}".encode()
        sha = hashlib.sha256(known_by).hexdigest()
        start = _now()
        try:
            with transaction(self.engine, keep=(IntegrityError,)) as conn:
                row_id = conn.execute(
                    insert(dropbox_submissions)
                    .values(
                        dropbox_id=box.id,
                        group_name=group,
                        key=entry.path,
                        etag=entry.etag,
                        sha256=sha,
                        state=CLAIMED,
                        datasets=[],
                        setup_log=[],
                        created=start,
                        updated=start,
                    )
                    .returning(dropbox_submissions.c.id)
                ).scalar_one()
        except IntegrityError:  # this very file was taken before (an identical re-upload)
            with transaction(self.engine) as conn:
                conn.execute(
                    update(dropbox_submissions)
                    .where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.key == entry.path,
                        dropbox_submissions.c.sha256 == sha,
                    )
                    .values(etag=entry.etag)
                )
            log.info("drop-box %s: %s was taken before; not run again", box.name, entry.path)
            return
        slog = SetupLog(start)
        self.process(box, store, group, entry, data, row_id, slog)

    def process(
        self,
        box: Dropbox,
        store: Store,
        group: str,
        entry: Entry,
        data: bytes,
        row_id: int,
        slog: SetupLog,
    ) -> None:
        stem = posixpath.basename(entry.path).removesuffix(".json")
        folder = f"{group}/results/job__{box.name}_{stem}"
        slog.add(f"REQUEST START TIME: {slog.start:%Y-%m-%d %H:%M:%S.%f}"[:-4] + " (GMT)")
        slog.add(f"ANALYSIS VERSION ID: {self._version(box)}")
        step = 1
        try:
            if entry.size > MAX_FILE_BYTES:
                raise Rejected(
                    1,
                    f"the submit file has {entry.size} bytes, more than {MAX_FILE_BYTES}",
                    "give dataname, configname and timestamp alone",
                )
            fields = read_submit_file(data)
            timestamp = check_timestamp(fields)
            folder = f"{group}/results/job__{box.name}_{timestamp}"
            slog.add(f"JOB ID: {timestamp}")
            slog.add("\n ")
            slog.add("[Job Manager] Detected new job: starting up.")
            slog.internal("init", f"Initializing job manager for submit file {entry.path}.")
            datanames, config = check_fields(fields, group, self.settings.analysis_max_models)
            slog.internal(
                "init", f"Analysis request with dataset(s): {datanames}, config file {config}"
            )
            slog.add(f"[Job Manager] STEP 1/{len(STEPS)} ({STEPS[0]}): DONE")
            step = 2
            missing = [d for d in datanames if not _exists(store, d)]
            if missing:
                raise Rejected(
                    2,
                    f"'dataname' field refers to data that cannot be found: {missing}",
                    "upload the data to your inputs/ folder (aws s3 cp FILE .../inputs/) or "
                    "correct the paths, without the bucket name",
                )
            parameters, own = read_config(store, config, slog)
            try:
                validate_parameters(get_analysis(box.analysis), parameters)
            except (InvalidInput, FerryError) as exc:
                raise Rejected(
                    2,
                    f"config file {config}: {exc}",
                    f"correct the parameters (`ferry analysis show {box.analysis}` lists "
                    "them) and submit again",
                ) from None
            used = self._timestamp_used(box, group, timestamp, row_id)
            if used is not None:
                self._duplicate(box, store, folder, entry, row_id, timestamp, used)
                return
            self._check_limits(box, group, row_id, len(datanames), own)
            slog.add(f"[Job Manager] STEP 2/{len(STEPS)} ({STEPS[1]}): DONE")
            step = 3
            names = dataset_names(datanames)
            datasets = [
                {"dataname": d, "name": n, "url": f"{box.store_url}/{d}"}
                for d, n in zip(datanames, names, strict=True)
            ]
            self._save(
                row_id,
                timestamp=timestamp,
                folder=folder,
                datasets=datasets,
                parameters={"parameters": parameters, "own": own},
            )
            limit = _limits(box, group).max_running
            if not self._room(box, group, len(datasets)):
                slog.internal(
                    "limits",
                    f"WAITING: your group's datasets running at once are at its limit of "
                    f"{limit}; this submission starts when enough of them have ended.",
                )
                self._save(row_id, state=WAITING, setup_log=slog.lines)
                store.put(certificate_key(folder), certificate(slog.lines, None, 0).encode())
                return
            self._start(box, store, row_id, slog)
        except Rejected as exc:
            self._reject(box, store, folder, row_id, slog, exc)
        except FerryError as exc:  # the service refused the job
            self._reject(
                box,
                store,
                folder,
                row_id,
                slog,
                Rejected(step, f"the job was refused: {exc}", "ask the drop-box's administrator"),
            )

    # -- helpers -------------------------------------------------------------------------
    def _row(self, row_id: int) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(select(dropbox_submissions).where(dropbox_submissions.c.id == row_id))
                .mappings()
                .one()
            )

    def _start(self, box: Dropbox, store: Store, row_id: int, slog: SetupLog) -> None:
        """Submit the job of a checked submission (its row holds what it runs)."""
        row = self._row(row_id)
        group, folder, datasets = row["group_name"], row["folder"], row["datasets"]
        try:
            job_id = self._submit(box, group, folder, datasets, row["parameters"]["parameters"])
        except FerryError as exc:  # the service refused the job
            self._reject(
                box,
                store,
                folder,
                row_id,
                slog,
                Rejected(3, f"the job was refused: {exc}", "ask the drop-box's administrator"),
            )
            return
        slog.internal(
            "submit",
            f"job {job_id}: {len(datasets)} dataset(s) of analysis {box.analysis}; "
            f"results in {folder}/process_results/",
        )
        slog.add(f"[Job Manager] STEP 3/{len(STEPS)} ({STEPS[2]}): DONE")
        # the first files before the row is running: from then on only the refresher
        # writes them, so an older state never overwrites a newer one
        created = str(utc(row["created"]).replace(tzinfo=None))
        initial = [
            {"dataname": d["dataname"], "name": d["name"], "status": INITIALIZING, "time": created}
            for d in datasets
        ]
        write_files(store, folder, slog.lines, initial, self.settings.dropbox_refresh)
        self._save(row_id, state=RUNNING, job_id=job_id, setup_log=slog.lines)
        self.ctx.wake()
        log.info("drop-box %s: %s is job %d", box.name, row["key"], job_id)

    def start_waiting(self, box: Dropbox, store: Store) -> None:
        """Start the waiting submissions that their groups' limits now let run, oldest
        first in each group."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(dropbox_submissions)
                    .where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.state == WAITING,
                    )
                    .order_by(dropbox_submissions.c.id)
                )
                .mappings()
                .all()
            )
        blocked: set[str] = set()
        for row in rows:
            group = row["group_name"]
            if group in blocked or not self._room(box, group, len(row["datasets"])):
                blocked.add(group)
                continue
            slog = SetupLog(utc(row["created"]))
            slog.lines = [list(line) for line in row["setup_log"]]
            slog.internal("limits", "Started: your group has room for its datasets now.")
            self._start(box, store, row["id"], slog)

    def _group_datasets(
        self, box: Dropbox, group: str, states: Sequence[str], since: datetime | None = None
    ) -> int:
        """The datasets of the group's submissions in ``states`` (taken ``since``)."""
        query = select(dropbox_submissions.c.datasets).where(
            dropbox_submissions.c.dropbox_id == box.id,
            dropbox_submissions.c.group_name == group,
            dropbox_submissions.c.state.in_(states),
        )
        if since is not None:
            query = query.where(dropbox_submissions.c.created >= since)
        with self.engine.connect() as conn:
            return sum(len(d or []) for d in conn.execute(query).scalars())

    def _room(self, box: Dropbox, group: str, count: int) -> bool:
        limit = _limits(box, group).max_running
        return limit is None or self._group_datasets(box, group, (RUNNING,)) + count <= limit

    def _check_limits(
        self, box: Dropbox, group: str, row_id: int, count: int, own: Mapping[str, Any]
    ) -> None:
        """:class:`Rejected` for a submission its group's limits never let run."""
        limits = _limits(box, group)
        admin = "or ask the drop-box's administrator"
        if limits.max_running is not None and count > limits.max_running:
            raise Rejected(
                2,
                f"the submission has {count} datasets, more than the {limits.max_running} "
                "your group may run at once",
                f"split it into submissions of at most {limits.max_running} datasets",
            )
        duration = own.get("__duration__")
        if (
            limits.max_minutes is not None
            and duration is not None
            and (duration > limits.max_minutes)
        ):
            raise Rejected(
                2,
                f"__duration__ asks for {duration} minutes, more than your group's "
                f"limit of {limits.max_minutes} minutes per dataset",
                f"give __duration__ of at most {limits.max_minutes}, {admin}",
            )
        if limits.max_per_day is not None:
            since = _now() - timedelta(days=1)
            used = self._group_datasets(box, group, (WAITING, RUNNING, ENDED), since)
            if used + count > limits.max_per_day:
                raise Rejected(
                    2,
                    f"your group has submitted {used} datasets in the last 24 hours; {count} "
                    f"more would pass its limit of {limits.max_per_day} per day",
                    f"submit again later, {admin}",
                )

    def _version(self, box: Dropbox) -> str:
        """The analysis's code identity for the certificate, looked up once a run (the
        lookup reads every installed distribution's metadata)."""
        if box.analysis not in self._versions:
            self._versions[box.analysis] = self._find_version(box)
        return self._versions[box.analysis]

    def _find_version(self, box: Dropbox) -> str:
        try:
            code = code_identity(get_analysis(box.analysis), allow_dirty=True)
        except FerryError as exc:
            return f"{box.analysis} (unavailable: {first_line(exc)})"
        parts = [code.name, code.version or "", code.commit or code.digest or ""]
        return " ".join(p for p in parts if p)

    def _timestamp_used(
        self, box: Dropbox, group: str, timestamp: str, row_id: int
    ) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(dropbox_submissions.c.key, dropbox_submissions.c.job_id).where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.group_name == group,
                        dropbox_submissions.c.timestamp == timestamp,
                        dropbox_submissions.c.state.in_((CLAIMED, WAITING, RUNNING, ENDED)),
                        dropbox_submissions.c.id != row_id,
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row is not None else None

    def _save(self, row_id: int, **values: Any) -> None:
        with transaction(self.engine) as conn:
            conn.execute(
                update(dropbox_submissions)
                .where(dropbox_submissions.c.id == row_id)
                .values(updated=_now(), **values)
            )

    def _submit(
        self,
        box: Dropbox,
        group: str,
        folder: str,
        datasets: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any],
    ) -> int:
        """One ``analysis`` job, a task per dataset, its results in the job's folder. It
        is owned by who published the drop-box and checked against an access that reads
        only the group's folder and writes only the job's own results."""
        group_url = f"{box.store_url}/{group}"
        results = f"{box.store_url}/{folder}/process_results"
        models = [
            {
                "s3_location": [f"{group_url}/inputs"],
                "asset_name": [d["name"]],
                "docdb_record_id": [""],
                "file_location": [d["url"]],
            }
            for d in datasets
        ]
        spec = {
            "analysis": box.analysis,
            "models": models,
            "fixed_parameters": dict(parameters),
            "results": results,
            "force": True,  # each submission gets its own results, like the original's
        }
        base = owner_access(self.engine, box.owner_id, self.settings)
        # a local drop-box may lie in one of the service's stores (its default lake):
        # the group's own folder stays reachable, the rest of them does not
        group_folder = open_store(group_url, create=True, settings=self.settings).local_root
        confined = replace(
            base,
            is_admin=False,
            roots=(),
            own_roots=(),
            store_prefixes=(group_url,),
            destinations=(results,),
            exempt=(*base.exempt, group_folder) if group_folder is not None else base.exempt,
        )
        [job_id] = submit_jobs(
            self.engine,
            [NewJob("analysis", spec)],
            owner_id=box.owner_id,
            settings=self.settings,
            access=confined,
        )
        return job_id

    def _reject(
        self,
        box: Dropbox,
        store: Store,
        folder: str,
        row_id: int,
        slog: SetupLog,
        exc: Rejected,
    ) -> None:
        where = ("init", "check_existence", "submit")[exc.step - 1]
        slog.internal(where, f"INPUT ERROR: {exc.problem}")
        slog.add(
            f"[Job Manager] STEP {exc.step}/{len(STEPS)} ({STEPS[exc.step - 1]}): FAILED. "
            f"What to do: {exc.advice}"
        )
        slog.add("[Job Manager] Shutting down job. Nothing was run.")
        store.put(certificate_key(folder), certificate(slog.lines, None, 0).encode())
        store.put(end_key(folder), END_MARKER)
        self._save(row_id, state=REJECTED, folder=folder, setup_log=slog.lines, error=exc.problem)
        log.info("drop-box %s: submission refused (%s): %s", box.name, folder, exc.problem)

    def _duplicate(
        self,
        box: Dropbox,
        store: Store,
        folder: str,
        entry: Entry,
        row_id: int,
        timestamp: str,
        used: Mapping[str, Any],
    ) -> None:
        """A timestamp the group used before: the earlier job's folder is left alone and
        a note beside its certificate says why this submit file did not run."""
        stem = posixpath.basename(entry.path).removesuffix(".json")
        note = (
            f"INPUT ERROR: submit file {entry.path} gives timestamp {timestamp!r}, which "
            f"submit file {used['key']} (job {used['job_id']}) of your group used already. "
            "Nothing was run. What to do: give a timestamp no earlier submission used and "
            "upload the submit file again.\n"
        )
        key = f"{folder}/logs/rejected_{stem}_{hashlib.sha256(note.encode()).hexdigest()[:8]}.txt"
        store.put(key, note.encode())
        self._save(row_id, state=DUPLICATE, error=note.strip())

    # -- settling what a stopped watcher left ------------------------------------------

    def settle_claimed(self, box: Dropbox) -> None:
        """Rows left ``claimed`` by a run that stopped: given their job if it was
        submitted, else removed so that the next scan takes the file again."""
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(dropbox_submissions).where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.state == CLAIMED,
                    )
                )
                .mappings()
                .all()
            )
        for row in rows:
            job_id = None
            if row["folder"]:
                results = f"{box.store_url}/{row['folder']}/process_results"
                since = utc(row["created"]) - timedelta(seconds=1)
                with self.engine.connect() as conn:
                    found = conn.execute(
                        select(jobs.c.id, jobs.c.spec).where(
                            jobs.c.kind == "analysis", jobs.c.created >= since
                        )
                    ).all()
                job_id = next((i for i, spec in found if spec.get("results") == results), None)
            if job_id is not None:
                self._save(row["id"], state=RUNNING, job_id=job_id)
            else:
                with transaction(self.engine) as conn:
                    conn.execute(
                        delete(dropbox_submissions).where(dropbox_submissions.c.id == row["id"])
                    )

    # -- keeping the running jobs' files up to date -----------------------------------

    def refresh_running(self) -> None:
        boxes = {b.id: b for b in list_dropboxes(self.engine)}
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(dropbox_submissions).where(dropbox_submissions.c.state == RUNNING)
                )
                .mappings()
                .all()
            )
        for row in rows:
            box = boxes.get(row["dropbox_id"])
            if box is None:
                continue
            try:
                refresh_submission(self, box, dict(row))
            except FerryError as exc:
                log.warning("drop-box %s: cannot update %s: %s", box.name, row["folder"], exc)

    def log_store(self) -> Store:
        if self._log_store is None:
            self._log_store = open_store(
                self.settings.log_store_url, create=True, settings=self.settings
            )
        return self._log_store


def _limits(box: Dropbox, group: str) -> Limits:
    return next((g.limits for g in box.groups if g.name == group), Limits())


def _exists(store: Store, key: str) -> bool:
    try:
        store.head(key)
    except NotFound:
        return False
    return True


def _iso(when: datetime | None) -> str | None:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ") if when is not None else None


def _std(watch: Watch, job_id: int, task: Mapping[str, Any], store_url: str) -> list[str]:
    """The last lines of a dataset's task log (its standard output and error), with the
    drop-box's store URL left out of the paths."""
    try:
        data, size = read_log_part(
            watch.engine, watch.log_store(), job_id, "run", task["map_index"], limit=LOG_BYTES
        )
        if size > LOG_BYTES:
            data, _ = read_log_part(
                watch.engine,
                watch.log_store(),
                job_id,
                "run",
                task["map_index"],
                offset=size - LOG_BYTES,
                limit=LOG_BYTES,
            )
    except FerryError:
        return []
    # the group sees its own paths, not where the service keeps the drop-box
    text = data.decode(errors="replace").replace(store_url.rstrip("/") + "/", "")
    return text.splitlines(keepends=True)[-STD_LINES:]


def dataset_states(
    watch: Watch, box: Dropbox, row: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], bool]:
    """Each dataset's state from its job's tasks, and whether the job has ended."""
    job_id = row["job_id"]
    try:
        job = get_job(watch.engine, job_id)
        tasks = job_tasks(watch.engine, job_id)
    except NotFound:
        job, tasks = {"state": "cancelled", "error": f"job {job_id} was deleted"}, []
    ended = job["state"] in TERMINAL
    by_url: dict[str, Mapping[str, Any]] = {}
    dispatch_error = None
    for task in tasks:
        if task["name"] == "dispatch" and task["state"] in ("failed", "cancelled"):
            dispatch_error = task.get("error") or task["state"]
        if task["name"] == "run" and task["map_index"] >= 0:
            model = (task.get("params") or {}).get("model") or {}
            for url in model.get("file_location") or []:
                by_url[url] = task
    out = []
    created = utc(row["created"])
    prefix = box.store_url.rstrip("/") + "/"
    for d in row["datasets"]:
        run_task = by_url.get(d["url"])
        entry: dict[str, Any] = {"dataname": d["dataname"], "name": d["name"]}
        if run_task is None:
            failed = dispatch_error or (job.get("error") or job["state"] if ended else None)
            entry.update(
                status=FAILED if failed else INITIALIZING,
                time=str(created.replace(tzinfo=None)),
                error=failed,
                finished=bool(failed),
            )
        else:
            status = STATUS_OF_TASK.get(run_task["state"], INITIALIZING)
            if ended and status == INITIALIZING:
                status = FAILED
            done = run_task["state"] in TERMINAL or ended
            started = run_task["started"] is not None
            std = _std(watch, job_id, run_task, box.store_url) if started else []
            last = next((s.strip() for s in reversed(std) if s.strip()), None)
            location = (run_task.get("params") or {}).get("location")
            entry.update(
                status=status,
                time=stamp(run_task["finished"] if done else run_task["started"] or created),
                finished=done,
                error=run_task.get("error") or (run_task["state"] if status == FAILED else None),
                worker=run_task.get("worker"),
                command=f"job {job_id} run[{run_task['item']}] attempt {run_task['attempt']}",
                start=_iso(run_task["started"]),
                finish=_iso(run_task["finished"]) if done else None,
                std=std,
                last=last,
                results=location.removeprefix(prefix)
                if status != FAILED and isinstance(location, str)
                else None,
            )
        out.append(entry)
    return out, ended


def enforce_duration(watch: Watch, box: Dropbox, row: dict[str, Any]) -> None:
    """Cancel a submission's job once one of its datasets has run longer than its group's
    ``max_minutes`` or the config's ``__duration__`` (the smaller), saying so in the
    certificate."""
    own = (row.get("parameters") or {}).get("own") or {}
    caps = [m for m in (_limits(box, row["group_name"]).max_minutes, own.get("__duration__")) if m]
    if not caps:
        return
    limit = min(caps)
    now = _now()
    try:
        tasks = job_tasks(watch.engine, row["job_id"])
    except NotFound:
        return
    late = [
        t
        for t in tasks
        if t["name"] == "run"
        and t["state"] == "running"
        and t["started"] is not None
        and (now - t["started"]).total_seconds() > limit * SECONDS_PER_MINUTE
    ]
    if not late:
        return
    try:
        cancel_job(watch.engine, watch.log_store(), row["job_id"])
    except InvalidInput:  # it ended meanwhile
        return
    at = (now - utc(row["created"])).total_seconds()
    line = (
        f"{INDENT}[Internal (limits)] {len(late)} dataset(s) ran longer than {limit} minutes "
        "(the group's limit or the config's __duration__): the job is cancelled."
    )
    row["setup_log"] = [*row["setup_log"], [line, round(at, 2)]]
    row["written"] = None
    with transaction(watch.engine) as conn:
        conn.execute(
            update(dropbox_submissions)
            .where(dropbox_submissions.c.id == row["id"])
            .values(setup_log=row["setup_log"], written=None)
        )


def write_files(
    store: Store,
    folder: str,
    setup_log: Sequence[Sequence[Any]],
    datasets: Sequence[Mapping[str, Any]],
    refresh: float,
) -> None:
    """A submission's dataset status files, then its certificate."""
    for d in datasets:
        store.put(status_key(folder, d["name"]), status_file(d))
    store.put(certificate_key(folder), certificate(setup_log, datasets, refresh).encode())


def refresh_submission(watch: Watch, box: Dropbox, row: Mapping[str, Any]) -> None:
    """Rewrite a running submission's certificate and status files when a dataset's state
    changed, and write ``end.txt`` (last) once its job has ended."""
    row = dict(row)
    enforce_duration(watch, box, row)
    datasets, ended = dataset_states(watch, box, row)
    fingerprint = hashlib.sha256(
        json.dumps([datasets, ended], sort_keys=True, default=str).encode()
    ).hexdigest()
    folder = row["folder"]
    store = open_dropbox_store(box, watch.settings)
    if fingerprint != row["written"]:
        write_files(store, folder, row["setup_log"], datasets, watch.settings.dropbox_refresh)
    if ended:
        store.put(end_key(folder), END_MARKER)
    with transaction(watch.engine) as conn:
        conn.execute(
            update(dropbox_submissions)
            .where(dropbox_submissions.c.id == row["id"])
            .values(written=fingerprint, state=ENDED if ended else RUNNING, updated=_now())
        )


def watch_dropboxes(ctx: WatcherContext) -> None:
    """One look at every drop-box for new submit files (and waiting submissions)."""
    Watch(ctx).run()


def refresh_dropbox_jobs(ctx: WatcherContext) -> None:
    """One update of every running drop-box job's files (``end.txt`` once it ended)."""
    Watch(ctx).refresh_running()


WATCHER = Watcher(WATCHER_NAME, watch_dropboxes, interval=lambda settings: settings.dropbox_poll)
REFRESHER = Watcher(
    REFRESHER_NAME, refresh_dropbox_jobs, interval=lambda settings: settings.dropbox_refresh
)
register_watcher(WATCHER)
register_watcher(REFRESHER)
