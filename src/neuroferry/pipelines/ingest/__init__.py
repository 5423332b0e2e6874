"""The ingest pipeline: image stacks (folders of slices, CATMAID stacks, TIFFs, Zarr, N5)
into chunked OME-Zarr volumes; configs of our own or of the Boss ingest client."""

from neuroferry.pipelines.ingest._boss import (
    BOSS_SCHEMAS,
    DEFAULT_VOXEL_SIZE,
    boss_to_config,
    is_boss_config,
)
from neuroferry.pipelines.ingest._config import (
    CONFIG_VERSION,
    Compression,
    Extent,
    IngestConfig,
    SourceConfig,
    VoxelSize,
    apply_overrides,
    config_problems,
    config_schema,
    load_config,
    validate_config,
)
from neuroferry.pipelines.ingest._kind import KIND, TASKS, prepare, volume_url
from neuroferry.pipelines.ingest._params import (
    CatmaidParams,
    ImageFolderParams,
    MultipageTiffParams,
    N5Params,
    TiffParams,
    ZarrParams,
)
from neuroferry.pipelines.ingest._plan import Unit, plan_units, shard_totals
from neuroferry.pipelines.ingest._pyramid import METHODS, downsample
from neuroferry.pipelines.ingest._readers import (
    BUILTIN_READERS,
    ENTRY_POINT_GROUP,
    Reader,
    open_reader,
    reader_class,
    reader_names,
    source_error,
)
from neuroferry.pipelines.ingest._service import (
    cancel_ingest,
    check_ingest,
    ingest_status,
    submit_ingest,
)
from neuroferry.pipelines.ingest._volumes import (
    RangeNotSatisfiable,
    VolumeAsset,
    is_volume,
    read_object,
    render_slice,
    volume_asset,
    volume_key,
)
from neuroferry.pipelines.ingest._zarr import ChunkCodec, Layout, Shard, encode_shard

__all__ = [
    "BOSS_SCHEMAS",
    "BUILTIN_READERS",
    "CONFIG_VERSION",
    "DEFAULT_VOXEL_SIZE",
    "ENTRY_POINT_GROUP",
    "KIND",
    "METHODS",
    "TASKS",
    "CatmaidParams",
    "ChunkCodec",
    "Compression",
    "Extent",
    "ImageFolderParams",
    "IngestConfig",
    "Layout",
    "MultipageTiffParams",
    "N5Params",
    "RangeNotSatisfiable",
    "Reader",
    "Shard",
    "SourceConfig",
    "TiffParams",
    "Unit",
    "VolumeAsset",
    "VoxelSize",
    "ZarrParams",
    "apply_overrides",
    "boss_to_config",
    "cancel_ingest",
    "check_ingest",
    "config_problems",
    "config_schema",
    "downsample",
    "encode_shard",
    "ingest_status",
    "is_boss_config",
    "is_volume",
    "load_config",
    "open_reader",
    "plan_units",
    "prepare",
    "read_object",
    "reader_class",
    "reader_names",
    "render_slice",
    "shard_totals",
    "source_error",
    "submit_ingest",
    "validate_config",
    "volume_asset",
    "volume_key",
    "volume_url",
]
