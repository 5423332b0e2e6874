"""A reader named by module path is a development convenience: production refuses it."""

from __future__ import annotations

import pytest

from neuroferry.config import Settings
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.ingest import load_config, open_reader


def _config(plugin: str) -> object:
    return load_config(
        {
            "name": "v",
            "source": {"plugin": plugin, "params": {}},
            "extent": {"x": [0, 4], "y": [0, 4], "z": [0, 1]},
            "dtype": "uint8",
            "voxel_size": {"x": 1, "y": 1, "z": 1},
            "shard": [64, 128, 128],
            "levels": 1,
        }
    )


PATH = "neuroferry.pipelines.ingest._readers:Reader"


@pytest.mark.parametrize(
    ("mode", "allowed"), [("production", None), ("production", False), ("development", False)]
)
def test_reader_paths_refused(tmp_path, mode: str, allowed: bool | None) -> None:
    settings = Settings(home=tmp_path, mode=mode, ingest_reader_paths=allowed)
    with pytest.raises(InvalidInput, match="does not load readers by module path"):
        open_reader(_config(PATH), settings=settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "allowed"), [("development", None), ("production", True)])
def test_reader_paths_allowed(tmp_path, mode: str, allowed: bool | None) -> None:
    settings = Settings(home=tmp_path, mode=mode, ingest_reader_paths=allowed)
    # allowed through to the import: the abstract base class is then refused as a reader
    with pytest.raises(InvalidInput, match="does not define"):
        open_reader(_config(PATH), settings=settings)  # type: ignore[arg-type]
