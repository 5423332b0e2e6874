"""Dispatch folders: written as the original dispatcher writes them (``N/<uuid4>.json``),
read back from every layout it writes, in a local folder or a store."""

from __future__ import annotations

import json
import secrets
import uuid
from collections import Counter
from pathlib import Path

import pytest

from neuroferry.config import get_settings
from neuroferry.errors import Forbidden, InvalidInput
from neuroferry.grants import access_for
from neuroferry.pipelines.analysis import (
    DispatchModel,
    folder_of,
    read_dispatch_folder,
    write_dispatch_folder,
)

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-analysis"

#: Each layout of the original's sample folders: (tasks, tasks_per_job).
LAYOUTS = {
    "split_files_on": (6, 1),
    "split_files_off": (4, 1),
    "split_files_off_tasks_per_job_3": (4, 3),
    "group_by_subject": (2, 1),
}


def fixture_folder(name: str) -> Path:
    path = FIXTURES / "dispatch" / name
    if not path.is_dir():
        pytest.skip(f"the original dispatcher's sample folders are not available ({path})")
    return path


def models(count: int) -> list[DispatchModel]:
    return [
        DispatchModel(
            s3_location=[f"s3://lab-data/asset-{i // 2}"],
            asset_name=[f"asset-{i // 2}"],
            docdb_record_id=[f"id-{i // 2}"],
            distributed_parameters={"method": "ab"[i % 2], "cutoff": 0.05},
            query='{"subject.subject_id": "1"}',
        )
        for i in range(count)
    ]


def layout(root: Path) -> dict[str, list[str]]:
    """Each folder's file texts, sorted (the names are random)."""
    found: dict[str, list[str]] = {}
    for path in sorted(root.glob("*/*.json")):
        found.setdefault(path.parent.name, []).append(path.read_text(encoding="utf-8"))
    return {folder: sorted(texts) for folder, texts in found.items()}


# -- which folder ------------------------------------------------------------------------


def spread(total: int, **how: int) -> list[int]:
    return [folder_of(i, total, **how) for i in range(total)]


def test_tasks_per_job_as_the_original() -> None:
    assert spread(4) == [0, 1, 2, 3]
    assert spread(4, tasks_per_job=1) == [0, 1, 2, 3]
    assert spread(4, tasks_per_job=3) == [0, 0, 0, 1]
    assert spread(7, tasks_per_job=2) == [0, 0, 1, 1, 2, 2, 3]


def test_num_parallel_workers_cuts_even_folders_in_order() -> None:
    assert spread(10, num_parallel_workers=4) == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert spread(8, num_parallel_workers=4) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert spread(3, num_parallel_workers=5) == [0, 1, 2]
    assert spread(5, num_parallel_workers=1) == [0] * 5
    for total in range(1, 40):
        for workers in range(1, 12):
            sizes = Counter(spread(total, num_parallel_workers=workers))
            assert sorted(sizes) == list(range(min(total, workers)))
            assert max(sizes.values()) - min(sizes.values()) <= 1


def test_spread_settings_are_checked() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        folder_of(0, 1, num_parallel_workers=2, tasks_per_job=2)
    with pytest.raises(InvalidInput, match="tasks_per_job must be at least 1"):
        folder_of(0, 1, tasks_per_job=0)
    with pytest.raises(InvalidInput, match="num_parallel_workers must be at least 1"):
        write_dispatch_folder(models(1), "memory://never", num_parallel_workers=0)


# -- writing and reading ---------------------------------------------------------------


def test_write_then_read_a_local_folder(tmp_path: Path) -> None:
    written = models(5)
    out = tmp_path / "results"
    keys = write_dispatch_folder(written, str(out), num_parallel_workers=2)
    assert [key.split("/")[0] for key in keys] == ["0", "0", "0", "1", "1"]
    for key, model in zip(keys, written, strict=True):
        name = key.split("/")[1]
        assert uuid.UUID(name.removesuffix(".json")).version == 4
        assert (out / key).read_text(encoding="utf-8") == model.model_dump_json(indent=4)
    back = read_dispatch_folder(str(out))
    assert sorted(back[:3], key=repr) == sorted(written[:3], key=repr)
    assert sorted(back[3:], key=repr) == sorted(written[3:], key=repr)


def test_write_then_read_a_store() -> None:
    url = f"memory://dispatch-{secrets.token_hex(4)}/results"
    written = models(3)
    keys = write_dispatch_folder(written, url)
    assert sorted(key.split("/")[0] for key in keys) == ["0", "1", "2"]
    assert read_dispatch_folder(url) == written  # one task per folder: order kept


def test_an_existing_dispatch_folder_is_not_mixed_into(tmp_path: Path) -> None:
    write_dispatch_folder(models(2), str(tmp_path))
    with pytest.raises(InvalidInput, match=r"already holds a dispatch folder \(0/"):
        write_dispatch_folder(models(2), str(tmp_path))


def test_the_owner_must_be_allowed_to_write_there(tmp_path: Path) -> None:
    destination = tmp_path / "destination"
    settings = get_settings(destinations={"results": destination.as_uri()})
    alice = access_for(settings, "alice", "user")
    with pytest.raises(Forbidden, match="dispatch folder"):
        write_dispatch_folder(models(1), (tmp_path / "elsewhere").as_uri(), access=alice)
    keys = write_dispatch_folder(
        models(1), (destination / "run-1").as_uri(), access=alice, settings=settings
    )
    assert (destination / "run-1" / keys[0]).is_file()


def test_a_single_job_folder_is_read_too(tmp_path: Path) -> None:
    write_dispatch_folder(models(2), str(tmp_path), tasks_per_job=2)
    assert len(read_dispatch_folder(str(tmp_path / "0"))) == 2


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="holds no dispatch files"):
        read_dispatch_folder(str(tmp_path))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "0").mkdir()
    good = models(1)[0].model_dump_json(indent=4)
    (tmp_path / "0" / "good.json").write_text(good)
    bad = tmp_path / "1" / "bad.json"
    bad.parent.mkdir()
    bad.write_text('{"s3_location": ["s3://b/a"], "asset_name": ["a"]}')
    with pytest.raises(InvalidInput) as caught:
        read_dispatch_folder(str(tmp_path))
    assert "1/bad.json is not a dispatch model: docdb_record_id: Field required" in str(
        caught.value
    )
    bad.write_text('{"s3_location": [')
    with pytest.raises(InvalidInput, match=r"1/bad\.json is not a dispatch model: .*JSON"):
        read_dispatch_folder(str(tmp_path))
    bad.unlink()
    assert read_dispatch_folder(tmp_path.as_uri()) == models(1)


# -- the original dispatcher's folders -----------------------------------------------------


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_originals_folders_read_and_written_back(name: str, tmp_path: Path) -> None:
    folder = fixture_folder(name)
    count, tasks_per_job = LAYOUTS[name]
    read = read_dispatch_folder(str(folder))
    assert len(read) == count
    out = tmp_path / "again"
    write_dispatch_folder(read, str(out), tasks_per_job=tasks_per_job)
    # the same files in the same folders, byte for byte (only the random names differ)
    assert layout(out) == layout(folder)
    assert sorted(read_dispatch_folder(str(out)), key=repr) == sorted(read, key=repr)


def test_the_originals_tasks_in_their_order() -> None:
    read = read_dispatch_folder(str(fixture_folder("split_files_off")))
    assert [(m.asset_name[0][:28], json.dumps(m.distributed_parameters)) for m in read] == [
        ("behavior_774659_2025-06-07_1", '{"method": "isolation_distance"}'),
        ("behavior_774659_2025-06-07_1", '{"method": "amplitude_cutoff"}'),
        ("behavior_774659_2025-06-09_1", '{"method": "isolation_distance"}'),
        ("behavior_774659_2025-06-09_1", '{"method": "amplitude_cutoff"}'),
    ]
    grouped = read_dispatch_folder(str(fixture_folder("group_by_subject")))
    assert grouped[0].group_metadata == {"subject__subject_id": "774659"}
    assert len(grouped[0].s3_location) == 2
