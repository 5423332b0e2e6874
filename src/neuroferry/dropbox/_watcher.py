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

A group's new files are taken together: claimed in one insert, checked one by one, and
the jobs of those that pass submitted in one transaction (see :meth:`Watch.start_ready`).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from sqlalchemy import Engine, bindparam, delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from neuroferry.config import Settings
from neuroferry.db import dropbox_submissions, jobs, transaction, utc
from neuroferry.dropbox._bypass import (
    STAGED,
    bypass_unreachable,
    check_bypass_inputs,
    check_result_path,
    group_bypass,
    plan_bypass,
    remove_staged,
    stage_inputs,
    wants_bypass,
)
from neuroferry.dropbox._layout import (
    END_MARKER,
    INITIALIZING,
    certificate,
    certificate_key,
    dataset_names,
    end_key,
)
from neuroferry.dropbox._progress import refresh_submission, write_files
from neuroferry.dropbox._registry import Dropbox, group_limits, list_dropboxes, open_dropbox_store
from neuroferry.dropbox._submission import (
    CLAIMED,
    DUPLICATE,
    ENDED,
    MAX_FILE_BYTES,
    REJECTED,
    RUNNING,
    STEPS,
    WAITING,
    Rejected,
    SetupLog,
    check_fields,
    check_timestamp,
    object_exists,
    read_config,
    read_submit_file,
    utc_now,
)
from neuroferry.engine import (
    NewJob,
    Watcher,
    WatcherContext,
    owner_access,
    register_watcher,
    submit_jobs,
)
from neuroferry.errors import FerryError, InvalidInput, NotFound, first_line
from neuroferry.grants import Access
from neuroferry.pipelines.analysis import code_identity, get_analysis, validate_parameters
from neuroferry.redaction import hide_userinfo, redact, secret_values
from neuroferry.stores import Entry, Store, open_store

log = logging.getLogger(__name__)

WATCHER_NAME = "dropbox"
REFRESHER_NAME = "dropbox-refresh"


# -- taking a submission ----------------------------------------------------------------

MAX_STEM = 64
"""The longest submit-file name (without ``.json``) kept whole in a folder's name."""


def short_stem(key: str) -> str:
    """The submit file's name without ``.json``, a long one cut and told apart by a hash
    of it (a folder's name has at most 255 bytes)."""
    stem = posixpath.basename(key).removesuffix(".json")
    if len(stem.encode()) <= MAX_STEM:
        return stem
    digest = hashlib.sha256(stem.encode()).hexdigest()[:16]
    return f"{stem.encode()[: MAX_STEM - 17].decode('utf-8', 'ignore')}_{digest}"


class _Seen:
    """A group's inputs and configs as one watcher run first found them: the files of a
    burst of submissions that name the same data or config are looked up once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._heads: dict[str, Entry] = {}
        self._data: dict[str, bytes] = {}

    def head(self, key: str) -> Entry:
        if key not in self._heads:
            self._heads[key] = self.store.head(key)
        return self._heads[key]

    def get(self, key: str) -> bytes:
        if key not in self._data:
            self._data[key] = self.store.get(key)
        return self._data[key]


READY_BATCH = 100
"""The most checked submissions whose jobs are submitted in one transaction."""


@dataclass
class _Ready:
    """A checked submission whose job is not submitted yet."""

    row_id: int
    slog: SetupLog
    group: str
    folder: str
    datasets: list[dict[str, Any]]
    parameters: dict[str, Any]


class Watch:
    """One run of the watcher over every drop-box."""

    def __init__(self, ctx: WatcherContext) -> None:
        self.ctx = ctx
        self.engine: Engine = ctx.db
        self.settings: Settings = ctx.settings
        self._log_store: Store | None = None
        self._versions: dict[str, str] = {}
        self._owner_access: dict[int | None, Access] = {}
        self._ready: list[_Ready] = []
        self._seen: tuple[str, _Seen] | None = None
        """Checked submissions whose jobs are submitted together (see :meth:`start_ready`)."""

    def run(self) -> None:
        for box in list_dropboxes(self.engine):
            try:
                store = open_dropbox_store(box, self.settings)
                self.settle_claimed(box)
                self.start_waiting(box, store)
                self.scan(box, store)
            except FerryError as exc:  # one drop-box's store away: the others go on
                log.warning("drop-box %s: %s", box.name, exc)
            except Exception:  # nor does anything else about one drop-box stop the others
                log.exception("drop-box %s: cannot look at its submissions", box.name)

    # -- finding submit files ------------------------------------------------------------

    def scan(self, box: Dropbox, store: Store) -> None:
        for group in box.groups:
            try:
                self.scan_group(box, store, group.name)
            except Exception:  # one group's trouble does not stop the others
                log.exception(
                    "drop-box %s, group %s: cannot take submissions", box.name, group.name
                )

    def scan_group(self, box: Dropbox, store: Store, group: str) -> None:
        try:
            entries = sorted(
                (e for e in store.list(f"{group}/submissions/") if e.path.endswith("submit.json")),
                key=lambda e: e.path,
            )
        except FerryError as exc:  # one group's folder gone: the others go on
            log.warning("drop-box %s, group %s: %s", box.name, group, exc)
            return
        if not entries:
            return
        with self.engine.connect() as conn:
            seen = {
                (r.key, r.etag)
                for r in conn.execute(
                    select(dropbox_submissions.c.key, dropbox_submissions.c.etag).where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.key.like(f"{group}/submissions/%"),
                    )
                )
            }
        new = [e for e in entries if (e.path, e.etag) not in seen]
        for at in range(0, len(new), READY_BATCH):
            try:
                for entry, data, row_id, start in self.take(
                    box, store, group, new[at:][:READY_BATCH]
                ):
                    try:
                        self.process(box, store, group, entry, data, row_id, SetupLog(start))
                    except Exception:  # nor does one submit file stop the group's next ones
                        log.exception("drop-box %s: cannot take %s", box.name, entry.path)
            finally:
                self.start_ready(box, store)

    def take(
        self, box: Dropbox, store: Store, group: str, entries: Sequence[Entry]
    ) -> list[tuple[Entry, bytes, int, datetime]]:
        """Claim new submit files (each once: by key and content) in one transaction:
        each with its content, its row and when it was taken. A file taken before (an
        identical re-upload) is left out."""
        read = []
        for entry in entries:
            try:
                data = store.get(entry.path) if entry.size <= MAX_FILE_BYTES else b""
            except NotFound:  # removed since it was listed
                continue
            # a file too big to read is known by its size and tag (it is refused anyway)
            known_by = (
                data if entry.size <= MAX_FILE_BYTES else f"{entry.size}:{entry.etag}".encode()
            )
            read.append((entry, data, hashlib.sha256(known_by).hexdigest()))
        if not read:
            return []
        start = utc_now()
        rows: list[dict[str, Any]] = [
            {
                "dropbox_id": box.id,
                "group_name": group,
                "key": entry.path,
                "etag": entry.etag,
                "sha256": sha,
                "state": CLAIMED,
                "datasets": [],
                "setup_log": [],
                "created": start,
                "updated": start,
            }
            for entry, _, sha in read
        ]
        new_rows = (
            pg_insert(dropbox_submissions).values(rows).on_conflict_do_nothing()
            if self.engine.dialect.name == "postgresql"
            else sqlite_insert(dropbox_submissions).values(rows).on_conflict_do_nothing()
        )
        with transaction(self.engine) as conn:
            claimed = {
                (r.key, r.sha256): r.id
                for r in conn.execute(
                    new_rows.returning(
                        dropbox_submissions.c.id,
                        dropbox_submissions.c.key,
                        dropbox_submissions.c.sha256,
                    )
                )
            }
        taken = []
        for entry, data, sha in read:
            row_id = claimed.get((entry.path, sha))
            if row_id is not None:
                taken.append((entry, data, row_id, start))
                continue
            # this very file was taken before (an identical re-upload)
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
        return taken

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
        folder = f"{group}/results/job__{box.name}_{short_stem(entry.path)}"
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
            timestamp = check_timestamp(fields, 255 - len(f"job__{box.name}_".encode()))
            folder = f"{group}/results/job__{box.name}_{timestamp}"
            # the timestamp names the folder: one the group used before is left alone,
            # whatever else is wrong with this submission
            used = self._timestamp_used(box, group, timestamp, row_id)
            if used is None:
                try:  # the database keeps one live submission per timestamp too
                    with transaction(self.engine, keep=(IntegrityError,)) as conn:
                        conn.execute(
                            update(dropbox_submissions)
                            .where(dropbox_submissions.c.id == row_id)
                            .values(timestamp=timestamp, folder=folder, updated=utc_now())
                        )
                except IntegrityError:  # another watcher took the timestamp just now
                    used = self._timestamp_used(box, group, timestamp, row_id)
                    if used is None:
                        raise
            if used is not None:
                self._duplicate(box, store, folder, entry, row_id, timestamp, used)
                return
            slog.add(f"JOB ID: {timestamp}")
            slog.add("\n ")
            slog.add("[Job Manager] Detected new job: starting up.")
            slog.internal("init", f"Initializing job manager for submit file {entry.path}.")
            plan = None
            if wants_bypass(fields):
                access = group_bypass(self.engine, self.settings, box, group)
                plan = plan_bypass(fields, group, box, access, self.settings)
                datanames, config = plan.datanames, plan.config
            else:
                datanames, config = check_fields(fields, group, self.settings.analysis_max_models)
            shown = plan.config_url() if plan is not None else config
            slog.internal(
                "init", f"Analysis request with dataset(s): {datanames}, config file {shown}"
            )
            if plan is not None and plan.input_bucket is not None:
                slog.internal(
                    "init", f"Storage Bypass initiated from bucket: s3://{plan.input_bucket}"
                )
            if plan is not None and plan.result_bucket is not None:
                slog.internal("init", f"Storage Bypass initiated to: {plan.result_url()}")
            slog.add(f"[Job Manager] STEP 1/{len(STEPS)} ({STEPS[0]}): DONE")
            step = 2
            source = check_bypass_inputs(plan, self.settings) if plan is not None else None
            if source is None:
                seen = self._seen_files(group, store)
                missing = [d for d in datanames if not object_exists(seen, d)]
                if missing:
                    raise Rejected(
                        2,
                        f"'dataname' field refers to data that cannot be found: {missing}",
                        "upload the data to your inputs/ folder (aws s3 cp FILE .../inputs/) "
                        "or correct the paths, without the bucket name",
                    )
                given, own = read_config(seen, config, slog)
            else:
                try:
                    given, own = read_config(source, config, slog)
                except FerryError as exc:
                    raise bypass_unreachable("'configname'", shown, exc) from None
            try:
                # the validated parameters are kept, not the file's own values
                parameters = validate_parameters(get_analysis(box.analysis), given).model_dump(
                    mode="json"
                )
            except (InvalidInput, FerryError) as exc:
                raise Rejected(
                    2,
                    f"config file {config}: {exc}",
                    f"correct the parameters (`ferry analysis show {box.analysis}` lists "
                    "them) and submit again",
                ) from None
            self._check_limits(box, group, row_id, len(datanames), own)
            keys = datanames
            kept: dict[str, Any] = {"parameters": parameters, "own": own}
            if plan is not None:
                check_result_path(plan, self.settings, posixpath.basename(folder))
                if source is not None:
                    staged = stage_inputs(
                        plan, source, store, folder, self.settings.dropbox_bypass_max_bytes
                    )
                    keys = [k for _, k in staged]
                    slog.internal("bypass", f"{len(keys)} dataset(s) copied for the job")
                kept["bypass"] = {
                    "staged": f"{folder}/{STAGED}/" if source is not None else None,
                    "result": None
                    if plan.result_bucket is None
                    else {"bucket": plan.result_bucket, "prefix": plan.result_prefix},
                }
            slog.add(f"[Job Manager] STEP 2/{len(STEPS)} ({STEPS[1]}): DONE")
            step = 3
            names = dataset_names(datanames)
            datasets = [
                {"dataname": d, "name": n, "url": f"{box.store_url}/{k}"}
                for d, n, k in zip(datanames, names, keys, strict=True)
            ]
            limits = group_limits(box, group)
            limit = limits.max_running
            if limit is None and limits.max_per_day is None:
                # submitted with the group's other new ones (saved with them): no limit
                # counts what this one runs before the next one is checked
                self._ready.append(_Ready(row_id, slog, group, folder, datasets, kept))
                return
            self._save(row_id, datasets=datasets, parameters=kept)
            if not self._room(box, group, len(datasets)):
                slog.internal(
                    "limits",
                    f"WAITING: your group's datasets running at once are at its limit of "
                    f"{limit}; this submission starts when enough of them have ended.",
                )
                self._save(row_id, state=WAITING, setup_log=slog.lines)
                store.put(certificate_key(folder), certificate(slog.lines, None, 0).encode())
                return
        except Rejected as exc:
            self._reject(box, store, folder, row_id, slog, exc)
        except FerryError as exc:  # the service refused the job
            self._reject(box, store, folder, row_id, slog, self._refused(box, step, exc))
        except Exception:  # a fault of the service's: the member is told little, admins all
            log.exception("drop-box %s: cannot process %s", box.name, entry.path)
            self._reject(
                box,
                store,
                folder,
                row_id,
                slog,
                Rejected(
                    step,
                    "the submission could not be processed because of an internal error",
                    "ask the drop-box's administrator (the service's log says more)",
                ),
            )
        else:
            # outside the guard above: once its job is submitted, a submission is not
            # refused (a row left claimed is settled by the next run)
            # at once: the next one's room counts this one's datasets
            self._start(box, store, row_id, slog)

    # -- helpers -------------------------------------------------------------------------
    def _refused(self, box: Dropbox, step: int, exc: FerryError) -> Rejected:
        """The rejection of a job the service refused, told as members may read it."""
        return Rejected(
            step,
            f"the job was refused: {self._for_members(box, str(exc))}",
            "ask the drop-box's administrator",
        )

    def _for_members(self, box: Dropbox, text: str) -> str:
        """``text`` as the group's members may read it: the drop-box's files named by
        their paths in it, the service's own folders and secrets left out."""
        root = box.store_url.rstrip("/")
        places: list[tuple[str, str]] = [(f"{root}/", ""), (root, "the drop-box")]
        if root.startswith("file://"):
            local = unquote(urlsplit(root).path)
            places += [(f"{local}/", ""), (local, "the drop-box")]
        home = str(self.settings.home)
        for url in (self.settings.store_url, self.settings.log_store_url, home):
            places.append((url.rstrip("/"), "[service]"))
        places += [(Path(home).as_uri(), "[service]"), (home, "[service]")]
        for value, shown in places:
            if value:
                text = text.replace(value, shown)
        return redact(hide_userinfo(text), secret_values(self.settings))

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
            self._reject(box, store, folder, row_id, slog, self._refused(box, 3, exc))
            remove_staged(store, row["parameters"])
            return
        ready = _Ready(row_id, slog, group, folder, datasets, row["parameters"])
        self._started_files(box, store, ready, job_id)
        self._save(row_id, state=RUNNING, job_id=job_id, setup_log=slog.lines)
        self.ctx.wake()
        log.info("drop-box %s: %s is job %d", box.name, row["key"], job_id)

    def _seen_files(self, group: str, store: Store) -> Store:
        """The group's files as this run first found them (see :class:`_Seen`)."""
        if self._seen is None or self._seen[0] != group or self._seen[1].store is not store:
            self._seen = (group, _Seen(store))
        return cast(Store, self._seen[1])

    def start_ready(self, box: Dropbox, store: Store) -> None:
        """Submit the jobs of the checked submissions waiting in :attr:`_ready` in one
        transaction, then write their first files and record them running together. If
        the service refuses one, each is submitted on its own, so that it alone is
        refused."""
        ready, self._ready = self._ready, []
        if not ready:
            return
        with transaction(self.engine) as conn:  # what each runs, kept before it is submitted
            conn.execute(
                update(dropbox_submissions)
                .where(dropbox_submissions.c.id == bindparam("row_id"))
                .values(
                    datasets=bindparam("new_datasets"),
                    parameters=bindparam("new_parameters"),
                    updated=utc_now(),
                ),
                [
                    {"row_id": r.row_id, "new_datasets": r.datasets, "new_parameters": r.parameters}
                    for r in ready
                ],
            )
        try:
            news = [
                self._new_job(box, r.group, r.folder, r.datasets, r.parameters["parameters"])
                for r in ready
            ]
            ids = submit_jobs(
                self.engine, news, owner_id=box.owner_id, settings=self.settings, confine=True
            )
        except FerryError:
            for r in ready:
                self._start(box, store, r.row_id, r.slog)
            return
        with self.engine.connect() as conn:  # folders a refused submission left end.txt in
            refused = set(
                conn.execute(
                    select(dropbox_submissions.c.folder).where(
                        dropbox_submissions.c.dropbox_id == box.id,
                        dropbox_submissions.c.state == REJECTED,
                        dropbox_submissions.c.folder.in_({r.folder for r in ready}),
                    )
                ).scalars()
            )
        for r, job_id in zip(ready, ids, strict=True):
            self._started_files(box, store, r, job_id, delete_end=r.folder in refused)
        self._mark_running(ready, ids)
        self.ctx.wake()
        for r, job_id in zip(ready, ids, strict=True):
            log.info("drop-box %s: %s is job %d", box.name, r.folder, job_id)

    def _mark_running(self, ready: Sequence[_Ready], ids: Sequence[int]) -> None:
        """Record submissions running their jobs ``ids`` (a row left claimed if this
        does not happen is settled by the next run, with its job)."""
        now = utc_now()
        with transaction(self.engine) as conn:
            conn.execute(
                update(dropbox_submissions)
                .where(dropbox_submissions.c.id == bindparam("row_id"))
                .values(
                    state=RUNNING,
                    job_id=bindparam("new_job"),
                    setup_log=bindparam("new_log"),
                    updated=now,
                ),
                [
                    {"row_id": r.row_id, "new_job": job_id, "new_log": r.slog.lines}
                    for r, job_id in zip(ready, ids, strict=True)
                ],
            )

    def _started_files(
        self, box: Dropbox, store: Store, r: _Ready, job_id: int, *, delete_end: bool = True
    ) -> None:
        """The set-up log's last lines and the first files of a submission whose job is
        ``job_id``: written before its row is running, from then on only the refresher
        writes them, so an older state never overwrites a newer one."""
        r.slog.internal(
            "submit",
            f"job {job_id}: {len(r.datasets)} dataset(s) of analysis {box.analysis}; "
            f"results in {r.folder}/process_results/",
        )
        r.slog.add(f"[Job Manager] STEP 3/{len(STEPS)} ({STEPS[2]}): DONE")
        created = str(r.slog.start.replace(tzinfo=None))
        initial = [
            {"dataname": d["dataname"], "name": d["name"], "status": INITIALIZING, "time": created}
            for d in r.datasets
        ]
        if delete_end:  # an end.txt an earlier, refused submission with this timestamp left
            store.delete(end_key(r.folder))
        write_files(store, r.folder, r.slog.lines, initial, self.settings.dropbox_refresh)

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
        limit = group_limits(box, group).max_running
        return limit is None or self._group_datasets(box, group, (RUNNING,)) + count <= limit

    def _check_limits(
        self, box: Dropbox, group: str, row_id: int, count: int, own: Mapping[str, Any]
    ) -> None:
        """:class:`Rejected` for a submission its group's limits never let run."""
        limits = group_limits(box, group)
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
            since = utc_now() - timedelta(days=1)
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
                .values(updated=utc_now(), **values)
            )

    def _submit(
        self,
        box: Dropbox,
        group: str,
        folder: str,
        datasets: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any],
    ) -> int:
        """Submit the job of one submission (see :meth:`_new_job`)."""
        [job_id] = submit_jobs(
            self.engine,
            [self._new_job(box, group, folder, datasets, parameters)],
            owner_id=box.owner_id,
            settings=self.settings,
            confine=True,
        )
        return job_id

    def _new_job(
        self,
        box: Dropbox,
        group: str,
        folder: str,
        datasets: Sequence[Mapping[str, Any]],
        parameters: Mapping[str, Any],
    ) -> NewJob:
        """One ``analysis`` job, a task per dataset, its results in the job's folder. It
        is owned by who published the drop-box, checked against an access that reads only
        the group's folder and writes only the job's own results, and its tasks run with
        that access."""
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
        if box.owner_id not in self._owner_access:  # looked up once a run
            self._owner_access[box.owner_id] = owner_access(
                self.engine, box.owner_id, self.settings
            )
        base = self._owner_access[box.owner_id]
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
        return NewJob("analysis", spec, access=confined)

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
        # a URL's user and password never reach the certificate, the database or the log
        exc = Rejected(exc.step, hide_userinfo(exc.problem), hide_userinfo(exc.advice))
        slog.internal(where, f"INPUT ERROR: {exc.problem}")
        slog.add(
            f"[Job Manager] STEP {exc.step}/{len(STEPS)} ({STEPS[exc.step - 1]}): FAILED. "
            f"What to do: {exc.advice}"
        )
        slog.add("[Job Manager] Shutting down job. Nothing was run.")
        # recorded first: whatever happens to the files, the submission is settled
        self._save(row_id, state=REJECTED, folder=folder, setup_log=slog.lines, error=exc.problem)
        log.info("drop-box %s: submission refused (%s): %s", box.name, folder, exc.problem)
        text = certificate(slog.lines, None, 0)
        try:
            if self._folder_used(box, folder, row_id):
                # another submission's folder: its certificate and end.txt stay its own
                key = f"{folder}/logs/rejected_{hashlib.sha256(text.encode()).hexdigest()[:12]}.txt"
                store.put(key, text.encode())
            else:
                store.put(certificate_key(folder), text.encode())
                store.put(end_key(folder), END_MARKER)
        except FerryError as err:
            log.warning(
                "drop-box %s: cannot write the certificate of %s: %s", box.name, folder, err
            )

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
        stem = short_stem(entry.path)
        note = (
            f"INPUT ERROR: submit file {entry.path} gives timestamp {timestamp!r}, which "
            f"submit file {used['key']} (job {used['job_id']}) of your group used already. "
            "Nothing was run. What to do: give a timestamp no earlier submission used and "
            "upload the submit file again.\n"
        )
        key = f"{folder}/logs/rejected_{stem}_{hashlib.sha256(note.encode()).hexdigest()[:8]}.txt"
        self._save(row_id, state=DUPLICATE, error=note.strip())
        try:
            store.put(key, note.encode())
        except FerryError as err:
            log.warning("drop-box %s: cannot write %s: %s", box.name, key, err)

    def _folder_used(self, box: Dropbox, folder: str, row_id: int) -> bool:
        """Whether another submission that was not refused has ``folder``."""
        with self.engine.connect() as conn:
            found = conn.execute(
                select(dropbox_submissions.c.id).where(
                    dropbox_submissions.c.dropbox_id == box.id,
                    dropbox_submissions.c.folder == folder,
                    dropbox_submissions.c.state.in_((CLAIMED, WAITING, RUNNING, ENDED)),
                    dropbox_submissions.c.id != row_id,
                )
            ).first()
        return found is not None

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
                            jobs.c.kind == "analysis",
                            jobs.c.owner_id == box.owner_id,  # a drop-box's jobs only
                            jobs.c.created >= since,
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
