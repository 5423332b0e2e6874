"""Storage bypass: a submission whose ``dataname`` and ``configname`` are ``s3://`` URLs
of another bucket, and whose ``resultpath`` may be an ``s3://`` prefix where its results
go. They are reached with the group's own credentials, which an admin registers (the
secret encrypted at rest, never shown), or with unsigned (public) requests when the
admin registered only an endpoint; never with the service's own credentials.

The job itself reads and writes the drop-box as any other: its data is copied from the
other bucket into the job's folder before it runs (and removed when it has ended), its
results are copied to ``resultpath`` when it has ended, ``end.txt`` last."""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, delete, insert, select

from neuroferry.auth import User
from neuroferry.config import Settings
from neuroferry.db import dropbox_bypass, dropbox_groups, transaction
from neuroferry.dropbox._layout import END_MARKER
from neuroferry.dropbox._registry import FOLDER_MARKER, Dropbox, get_dropbox
from neuroferry.dropbox._submission import (
    INDENT,
    Rejected,
    check_config_name,
    check_fields,
    dataname_list,
)
from neuroferry.errors import (
    ConfigError,
    FerryError,
    InvalidInput,
    NotFound,
    StoreAuthError,
    UnsafePath,
    first_line,
)
from neuroferry.redaction import shown_url
from neuroferry.stores import (
    Store,
    TooLarge,
    check_bucket,
    check_endpoint,
    check_key,
    copy_object,
    open_s3_with,
)

if TYPE_CHECKING:
    from neuroferry.dropbox._watcher import Watch

log = logging.getLogger(__name__)

STAGED = "bypass_inputs"
"""The folder of a bypass job's copied data, inside the job's folder."""


# -- the group's credentials -------------------------------------------------------------


@dataclass(frozen=True)
class Bypass:
    """How a group reaches other buckets: ``endpoint`` (None: AWS), its own key (None:
    unsigned requests), and whether the service's own buckets may be named."""

    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    allow_service_buckets: bool = False

    def as_dict(self) -> dict[str, Any]:
        """What admins are shown: never the secret."""
        return {
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key_id": self.access_key_id,
            "signed": self.secret_access_key is not None,
            "allow_service_buckets": self.allow_service_buckets,
        }

    def open(self, bucket: str, prefix: str, settings: Settings) -> Store:
        return open_s3_with(
            bucket,
            prefix,
            endpoint=self.endpoint,
            region=self.region,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            settings=settings,
        )


def _cipher(settings: Settings) -> Fernet:
    """The cipher of the stored secrets: ``credentials_key``, else the key file in the
    service's home (made, readable by the service alone, on first use)."""
    if settings.credentials_key is not None:
        key = settings.credentials_key.get_secret_value().encode()
    else:
        path = Path(settings.home) / "credentials.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(Fernet.generate_key())
        key = path.read_bytes().strip()
    try:
        return Fernet(key)
    except ValueError:
        raise ConfigError(
            "credentials_key is not a key of 32 bytes in URL-safe base64; make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key())'`"
        ) from None


def _group_id(engine: Engine, box: Dropbox, group: str) -> int:
    found = next((g.id for g in box.groups if g.name == group), None)
    if found is None:
        raise NotFound(f"drop-box {box.name!r} has no group {group!r}")
    return found


def set_group_bypass(
    engine: Engine,
    settings: Settings,
    by: User,
    dropbox: str,
    group: str,
    bypass: Bypass,
) -> Bypass:
    """Register (replace) how ``group`` of ``dropbox`` reaches other buckets (admins)."""
    by.require_admin("change drop-box groups")
    box = get_dropbox(engine, dropbox)
    group_id = _group_id(engine, box, group)
    endpoint = check_endpoint(bypass.endpoint, settings)[0] if bypass.endpoint else None
    if bool(bypass.access_key_id) != bool(bypass.secret_access_key):
        raise InvalidInput(
            "access_key_id and secret_access_key: give both (signed requests) or neither "
            "(unsigned requests to public buckets)"
        )
    if bypass.region is not None and not (0 < len(bypass.region) <= 64):
        raise InvalidInput("region: give 1 to 64 characters, e.g. us-east-1")
    secret = (
        _cipher(settings).encrypt(bypass.secret_access_key.encode()).decode()
        if bypass.secret_access_key
        else None
    )
    with transaction(engine) as conn:
        conn.execute(delete(dropbox_bypass).where(dropbox_bypass.c.group_id == group_id))
        conn.execute(
            insert(dropbox_bypass).values(
                group_id=group_id,
                endpoint=endpoint,
                region=bypass.region or None,
                access_key_id=bypass.access_key_id or None,
                secret=secret,
                allow_service_buckets=bypass.allow_service_buckets,
                updated=datetime.now(UTC),
            )
        )
    found = group_bypass(engine, settings, box, group)
    assert found is not None
    return found


def remove_group_bypass(engine: Engine, by: User, dropbox: str, group: str) -> None:
    """Storage bypass no longer for ``group`` of ``dropbox`` (admins)."""
    by.require_admin("change drop-box groups")
    group_id = _group_id(engine, get_dropbox(engine, dropbox), group)
    with transaction(engine) as conn:
        conn.execute(delete(dropbox_bypass).where(dropbox_bypass.c.group_id == group_id))


def group_bypass(engine: Engine, settings: Settings, box: Dropbox, group: str) -> Bypass | None:
    """How ``group`` of ``box`` reaches other buckets; None: storage bypass is off."""
    with engine.connect() as conn:
        row = (
            conn.execute(
                select(dropbox_bypass)
                .join(dropbox_groups, dropbox_groups.c.id == dropbox_bypass.c.group_id)
                .where(dropbox_groups.c.dropbox_id == box.id, dropbox_groups.c.name == group)
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    secret = None
    if row["secret"]:
        try:
            secret = _cipher(settings).decrypt(row["secret"].encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"the stored key of group {group!r} of drop-box {box.name!r} cannot be "
                "decrypted with this service's credentials key: register it again"
            ) from None
    return Bypass(
        row["endpoint"],
        row["region"],
        row["access_key_id"],
        secret,
        bool(row["allow_service_buckets"]),
    )


# -- reading a bypass submission ---------------------------------------------------------


def wants_bypass(fields: Mapping[str, Any]) -> bool:
    """Whether the submission asks for storage bypass: a URL as data or config, or a
    ``resultpath``."""
    value = fields.get("dataname")
    names = value if isinstance(value, list) else [value]
    config = fields.get("configname")
    urls = [v for v in [*names, config] if isinstance(v, str) and "://" in v]
    return bool(urls) or fields.get("resultpath") not in (None, "", False)


def parse_s3_url(field: str, value: Any, *, prefix: bool = False) -> tuple[str, str]:
    """The bucket and key (``prefix``: key prefix, may be empty) of an ``s3://`` URL,
    decoded and checked: no credentials, port, query, ``..`` or empty names."""
    example = "s3://bucket/results" if prefix else "s3://bucket/inputs/data.bin"
    if not isinstance(value, str) or not value.strip():
        raise Rejected(1, f"'{field}' must be an s3:// URL (got {value!r})", f"give e.g. {example}")
    shown = shown_url(value)
    if shown is None:
        # maybe user:secret@ (whose secret may hold '/'): never repeated where the
        # group's members, the service's log or the API may show it
        raise Rejected(
            1,
            f"'{field}': the URL holds '@' (as credentials do: user:secret@), so it is "
            "refused and not repeated here; storage bypass URLs hold no credentials",
            "give s3://BUCKET/KEY alone (objects whose names hold '@' cannot be named "
            "for storage bypass); your group's endpoint and key are registered by the "
            "drop-box's administrator",
        )
    text = unquote(value.strip())
    if text != unquote(text):
        raise Rejected(1, f"'{field}': {shown} is encoded twice", f"give e.g. {example}")
    try:
        parts = urlsplit(text)
    except ValueError as exc:  # e.g. an unclosed "[" in the host
        problem = f"'{field}': {shown} is not a URL: {exc}"
        raise Rejected(1, problem, f"give e.g. {example}") from None
    if parts.scheme.lower() != "s3" or not text.lower().startswith("s3://"):
        scheme = f"{parts.scheme}://" if parts.scheme else "a path"
        raise Rejected(
            1,
            f"'{field}': {shown} is {scheme}; storage bypass reads and writes s3:// URLs only "
            "(If bypassing storage, s3:// format path required)",
            f"give e.g. {example}",
        )
    if "@" in parts.netloc or ":" in parts.netloc or "?" in text or "#" in text:
        raise Rejected(
            1,
            # not repeated: what stands before a ':' may be a key, after it a secret
            f"'{field}': the URL holds credentials, a port, a query or a fragment",
            "give s3://BUCKET/KEY alone; your group's endpoint and key are registered by "
            "the drop-box's administrator",
        )
    try:
        bucket = check_bucket(parts.netloc)
        key = parts.path[1:] if parts.path.startswith("/") else parts.path
        if prefix:
            key = key.rstrip("/")
        if key or not prefix:
            check_key(key)
    except (InvalidInput, UnsafePath) as exc:
        raise Rejected(1, f"'{field}': {shown}: {exc}", f"give e.g. {example}") from None
    return bucket, key


@dataclass
class BypassPlan:
    """What a bypass submission reads and where its results go."""

    access: Bypass
    inputs: list[str] | None = None
    """The data keys in ``input_bucket`` (None: data in the group's folder)."""
    config: str = ""
    input_bucket: str | None = None
    result_bucket: str | None = None
    result_prefix: str = ""
    datanames: list[str] = field(default_factory=list)
    """The datanames as the certificate shows them (URLs, or paths in the group)."""

    def config_url(self) -> str:
        """The config as the certificate names it: its URL, or its path in the group."""
        if self.input_bucket is None:
            return self.config
        return f"s3://{self.input_bucket}/{self.config}"

    def result_url(self) -> str | None:
        if self.result_bucket is None:
            return None
        return f"s3://{self.result_bucket}/{self.result_prefix}".rstrip("/")


def _service_buckets(box: Dropbox, settings: Settings) -> set[str]:
    """The buckets the service itself uses: the drop-box's, its stores', destinations'."""
    urls = [
        box.store_url,
        settings.store_url,
        settings.log_store_url,
        *settings.destinations.values(),
        *settings.store_prefixes,
    ]
    return {urlsplit(u).netloc for u in urls if u and u.startswith("s3://")}


def plan_bypass(
    fields: Mapping[str, Any],
    group: str,
    box: Dropbox,
    access: Bypass | None,
    settings: Settings,
) -> BypassPlan:
    """The bypass submission's inputs and results, checked (step 1): URLs decoded and
    normalised, data and config in one bucket, none of the service's own buckets unless
    the admin allowed it, and bypass registered for the group."""
    values = dataname_list(fields, group, settings.analysis_max_models)
    config_value = fields.get("configname")
    urls = [isinstance(v, str) and "://" in v for v in [*values, config_value]]
    plan = BypassPlan(access or Bypass())
    if any(urls):
        if "configname" not in fields:
            raise Rejected(
                1,
                "'configname' field not given in submit.json file",
                'add "configname": "s3://BUCKET/configs/config.yaml" and upload it again',
            )
        if not all(urls):
            raise Rejected(
                1,
                "storage bypass reads every dataname and the configname as s3:// URLs of one "
                "bucket; this submission mixes URLs and paths in your group's folder",
                f"give them all as paths in {group}/ or all as s3:// URLs of one bucket",
            )
        parsed = [parse_s3_url(f"dataname[{i}]", v) for i, v in enumerate(values)]
        config_bucket, config = parse_s3_url("configname", config_value)
        buckets = {b for b, _ in parsed}
        if len(buckets) > 1 or config_bucket not in buckets:
            raise Rejected(
                1,
                "If bypassing storage for input, data and config must be from same bucket "
                f"(they are in {', '.join(sorted({*buckets, config_bucket}))})",
                "put the data and the config in one bucket",
            )
        plan.inputs = [k for _, k in parsed]
        plan.config = check_config_name(config)
        plan.input_bucket = config_bucket
        plan.datanames = [f"s3://{config_bucket}/{k}" for k in plan.inputs]
    else:
        plan.datanames, plan.config = check_fields(fields, group, settings.analysis_max_models)
    if fields.get("resultpath") not in (None, "", False):
        plan.result_bucket, plan.result_prefix = parse_s3_url(
            "resultpath", fields["resultpath"], prefix=True
        )
    if access is None:
        raise Rejected(
            1,
            "storage bypass (s3:// data or a resultpath) is not enabled for your group",
            "upload the data to your group's inputs/ folder and name it by its path there, "
            "or ask the drop-box's administrator to register your group's S3 endpoint and "
            "key for storage bypass",
        )
    own = _service_buckets(box, settings)
    for bucket in (plan.input_bucket, plan.result_bucket):
        if bucket is not None and bucket in own and not access.allow_service_buckets:
            raise Rejected(
                1,
                f"s3://{bucket} is one of this service's own buckets; storage bypass reaches "
                "other buckets only",
                "name the data by its path in your group's folder, and leave resultpath out",
            )
    return plan


def bypass_unreachable(what: str, url: str, exc: FerryError) -> Rejected:
    """The rejection of a bypass location that cannot be reached as asked."""
    if isinstance(exc, StoreAuthError):
        problem = f"{what}: {url} cannot be reached with your group's credentials (no permission)"
        advice = (
            "let your group's key read the data and write the resultpath (or make them "
            "public), or ask the drop-box's administrator to register your group's key"
        )
    else:
        problem = f"{what}: {url} cannot be reached: {first_line(exc).split(': ', 1)[-1]}"
        advice = "check the URL, or ask the drop-box's administrator"
    return Rejected(2, problem, advice)


def check_bypass_inputs(plan: BypassPlan, settings: Settings) -> Store | None:
    """The other bucket's store, the data checked to be there (step 2); None when the
    data is in the group's folder."""
    if plan.inputs is None or plan.input_bucket is None:
        return None
    store = plan.access.open(plan.input_bucket, "", settings)
    missing = []
    total = 0
    for key in plan.inputs:
        url = f"s3://{plan.input_bucket}/{key}"
        try:
            total += store.head(key).size
        except NotFound:
            missing.append(url)
        except FerryError as exc:
            raise bypass_unreachable("'dataname'", url, exc) from None
    if missing:
        raise Rejected(
            2,
            f"'dataname' field refers to data that cannot be found: {missing}",
            "upload the data there, or correct the URLs",
        )
    if total > settings.dropbox_bypass_max_bytes:
        raise Rejected(
            2,
            f"'dataname' names {total} bytes of data ({_bytes(total)}), more than the "
            f"{settings.dropbox_bypass_max_bytes} bytes "
            f"({_bytes(settings.dropbox_bypass_max_bytes)}) storage bypass copies for one "
            "submission",
            "split the data over several submissions, or ask the drop-box's administrator "
            "(setting dropbox_bypass_max_bytes)",
        )
    return store


def _bytes(size: int) -> str:
    """``3.2 GiB``: a size as people read it."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def check_result_path(plan: BypassPlan, settings: Settings, job_dir: str) -> None:
    """The job's folder under ``resultpath`` made (a zero-byte ``.keep``), which checks
    that the group may write there (step 2)."""
    if plan.result_bucket is None:
        return
    store = plan.access.open(plan.result_bucket, plan.result_prefix, settings)
    try:
        store.put(f"{job_dir}/{FOLDER_MARKER}", b"")
    except FerryError as exc:
        raise bypass_unreachable("'resultpath'", plan.result_url() or "", exc) from None


def stage_inputs(
    plan: BypassPlan, source: Store, box_store: Store, folder: str, max_bytes: int
) -> list[tuple[str, str]]:
    """Copy the data into the job's folder, at most ``max_bytes`` in all (data that grew
    since it was checked is refused too); (dataname, staged key) per dataset."""
    assert plan.inputs is not None
    staged = []
    left = max_bytes
    for key, dataname in zip(plan.inputs, plan.datanames, strict=True):
        target = f"{folder}/{STAGED}/{key}"
        try:
            left -= copy_object(source, key, box_store, target, max_bytes=left)
        except TooLarge:
            raise Rejected(
                2,
                f"'dataname' names more than the {max_bytes} bytes ({_bytes(max_bytes)}) "
                "storage bypass copies for one submission (the data grew while it was copied)",
                "split the data over several submissions",
            ) from None
        except NotFound:
            raise Rejected(
                2, f"'dataname' field refers to data that cannot be found: [{dataname!r}]", ""
            ) from None
        except StoreAuthError as exc:
            raise bypass_unreachable("'dataname'", dataname, exc) from None
        staged.append((dataname, target))
    return staged


# -- delivering the results --------------------------------------------------------------


def deliver_results(watch: Watch, box: Dropbox, row: Mapping[str, Any], store: Store) -> list[str]:
    """Copy an ended bypass job's results to its ``resultpath`` (``end.txt`` last) and
    remove its copied data; the certificate's lines that say how it went."""
    bypass = (row.get("parameters") or {}).get("bypass")
    if not bypass:
        return []
    folder = row["folder"]
    lines = []
    result = bypass.get("result")
    if result:
        url = f"s3://{result['bucket']}/{result['prefix']}".rstrip("/")
        job_dir = posixpath.basename(folder)
        target = f"{url}/{job_dir}/process_results/"
        try:
            access = group_bypass(watch.engine, watch.settings, box, row["group_name"])
            if access is None:
                raise InvalidInput("storage bypass is no longer enabled for your group")
            dest = access.open(result["bucket"], result["prefix"], watch.settings)
            copied = 0
            base = f"{folder}/"
            for entry in list(store.list(f"{folder}/process_results/")):
                rel = entry.path.removeprefix(base)
                if rel == "process_results/end.txt":
                    continue
                copy_object(store, entry.path, dest, f"{job_dir}/{rel}")
                copied += 1
            dest.put(f"{job_dir}/process_results/end.txt", END_MARKER)
            lines.append(
                f"{INDENT}[Internal (bypass)] Results written to {target} ({copied} files)."
            )
        except FerryError as exc:
            shown = watch._for_members(box, first_line(exc))
            lines.append(
                f"{INDENT}[Internal (bypass)] RESULT ERROR: the results could not be written "
                f"to {target}: {shown}. They are in this job's process_results/ folder."
            )
    if not remove_staged(store, row.get("parameters")):
        lines.append(f"{INDENT}[Internal (bypass)] the copied data was not all removed.")
    return lines


def remove_staged(store: Store, parameters: Mapping[str, Any] | None) -> bool:
    """Remove a bypass submission's copied data from the drop-box; whether it is gone."""
    staged = ((parameters or {}).get("bypass") or {}).get("staged")
    if not staged:
        return True
    try:
        for entry in list(store.list(staged)):
            store.delete(entry.path)
    except FerryError as exc:
        log.warning("cannot remove the copied data in %s: %s", staged, exc)
        return False
    return True
