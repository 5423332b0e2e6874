"""The ``ingest`` job kind: its tasks and how a config becomes a job."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from neuroferry.config import Settings
from neuroferry.engine import (
    AssetClaim,
    JobKind,
    PreparedJob,
    TaskDef,
    lock_key,
    named_destination,
    task_maker,
)
from neuroferry.errors import InvalidInput, UnsafePath
from neuroferry.grants import normalise_url
from neuroferry.pipelines.ingest._config import IngestConfig
from neuroferry.pipelines.ingest._plan import shard_totals
from neuroferry.pipelines.ingest._writer import progress_url
from neuroferry.pipelines.ingest._zarr import Layout
from neuroferry.stores import SCHEMES

KIND_NAME = "ingest"

_task = task_maker("neuroferry.pipelines.ingest._tasks")


TASKS: tuple[TaskDef, ...] = (
    # before anything is written: the volume is still not another user's asset
    _task("check_asset_owner", placement="local"),
    _task("check_source", "check_asset_owner"),
    _task("plan", "check_source"),
    # obstore retries a store's transient errors itself; a unit is tried again for a
    # network file system's (a read that fails once)
    _task("write", "plan", map_over="plan.units", retries=2, retry_delay=10.0),
    _task("verify", "write"),
    _task("commit", "verify"),
    _task("register", "commit", placement="local"),
)
"""The ingest's tasks, each after the tasks it depends on."""


def _scheme(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _normal(url: str) -> str:
    """A store URL without a trailing ``/``, ``file:`` paths as ``file:///…``."""
    if "://" not in url:
        from pathlib import Path

        return Path(url).expanduser().absolute().as_uri()
    return url.rstrip("/")


def destination_of(config: IngestConfig, settings: Settings) -> tuple[str, str | None]:
    """The store URL the config's ``destination`` stands for, and the destination's name
    (``None`` when the config gives a URL)."""
    value = config.destination
    if "://" not in value:
        return _normal(named_destination("destination", value, settings, or_url=True)), value
    if _scheme(value) not in SCHEMES:
        raise InvalidInput(
            f"destination: {value!r} is not a store URL; allowed: "
            f"{', '.join(s + '://' for s in SCHEMES)}",
            [{"field": "destination", "message": "not a store URL"}],
        )
    if any(part in (".", "..") for part in value.split("://", 1)[1].split("/")):
        raise InvalidInput(
            f"destination: {value!r} has a '.' or '..' part; give the folder or prefix itself",
            [{"field": "destination", "message": "'.' and '..' parts are not allowed"}],
        )
    try:
        parts = urlsplit(value)
    except ValueError as exc:  # e.g. an unclosed '[' in the host
        raise InvalidInput(
            f"destination: {value!r} is not a valid URL ({exc})",
            [{"field": "destination", "message": f"not a valid URL ({exc})"}],
        ) from exc
    local = parts.scheme == "file"
    if (local and parts.netloc not in ("", "localhost")) or (
        not local and parts.scheme != "memory" and not parts.netloc
    ):
        shown = "file:///absolute/path" if local else f"{parts.scheme}://BUCKET/prefix"
        raise InvalidInput(
            f"destination: {value!r} names no bucket or a host; write {shown}",
            [{"field": "destination", "message": f"write {shown}"}],
        )
    return normalise_url("destination", value), None


def under_destination(url: str, settings: Settings) -> bool:
    """Whether a store URL lies in (or is) one of the service's destinations."""
    try:
        target = urlsplit(normalise_url("destination", url))
    except (ValueError, UnsafePath):  # e.g. an unclosed '[' in the host
        return False
    for base in settings.destinations.values():
        try:
            root = urlsplit(normalise_url("destination", base))
        except (ValueError, UnsafePath):
            continue
        if (target.scheme, target.netloc) != (root.scheme, root.netloc):
            continue
        prefix = root.path.rstrip("/")
        if target.path == prefix or target.path.startswith(prefix + "/"):
            return True
    return False


def volume_url(config: IngestConfig, settings: Settings) -> str:
    """Where the config's volume lies: ``{destination}/{name}.ome.zarr`` (a label image of
    another volume: in that volume's ``labels/`` group)."""
    base, _ = destination_of(config, settings)
    return f"{base}/{config.volume_path()}"


def prepare(config: IngestConfig, settings: Settings) -> PreparedJob:
    """The job's name (the volume's name) and summary (where the volume lies, its shape,
    levels and size)."""
    base, destination = destination_of(config, settings)
    layout = Layout.of(config)
    totals = shard_totals(layout)
    limit = settings.ingest_max_shards
    if totals["shards"] > limit:
        message = (
            f"{totals['shards']} shards; at most {limit} are allowed in one ingest job "
            "(FERRY_INGEST_MAX_SHARDS): ingest a smaller extent, or split it into several jobs"
        )
        raise InvalidInput(f"extent: {message}", [{"field": "extent", "message": message}])
    summary: dict[str, Any] = {
        "volume": f"{base}/{config.volume_path()}",
        "progress": progress_url(base, config.name),
        "destination_name": destination,
        "source": config.source.plugin,
        "shape": list(layout.shapes[0]),
        "dtype": layout.dtype,
        "levels": layout.levels,
        "shards": totals["shards"],
        "bytes": totals["bytes"],
    }
    claim = AssetClaim(
        lock_key(summary["volume"]),
        "name",
        catalog_name=config.name.replace("/", ":"),
        url=summary["volume"],
    )
    from neuroferry.pipelines.ingest._readers import open_reader

    reader = open_reader(config, settings=settings)
    return PreparedJob(
        name=config.name,
        summary=summary,
        assets=(claim,),
        reads=(*reader.source_paths(), *reader.source_urls()),
        writes=(("destination", base),),
        destination=base,
    )


KIND = JobKind(
    name=KIND_NAME,
    spec_model=IngestConfig,
    tasks=TASKS,
    prepare=prepare,
    description=(
        "Read an image stack (a folder of slices, TIFFs, an array) and write it as a "
        "chunked, sharded, multiscale OME-Zarr volume to a store, then register it."
    ),
)
"""The ingest job kind (entry point ``neuroferry.job_kinds: ingest``)."""
