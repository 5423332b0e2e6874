"""A sync confined to a folder (``SyncOptions.confine_to``) reads nothing outside it, even
when a folder is swapped for a symlink between the listing and the read."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from neuroferry.errors import InvalidInput, UnsafePath
from neuroferry.stores import SyncOptions, _listing, _sync, open_confined, read_confined, sync

MiB = 1024 * 1024
SECRET = b"the service's token: " + os.urandom(16).hex().encode()
BIG = 6 * MiB  # above the 5 MiB part size: streamed in parts


def _files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".ferry" not in p.relative_to(root).parts
    }


@pytest.fixture
def race(tmp_path: Path) -> tuple[Path, Path]:
    """A granted folder with a modality folder, and a secret folder holding files of the
    same names (what the swap points the modality folder to)."""
    granted = (tmp_path / "granted").resolve()
    _files(
        granted / "ecephys",
        {"token.json": b"{}", "sub/ferry.db": b"data", "big.bin": b"\0" * BIG},
    )
    secret = _files(
        tmp_path / "home",
        {"token.json": SECRET, "sub/ferry.db": SECRET, "big.bin": SECRET * (BIG // len(SECRET))},
    )
    return granted, secret


def _swap(folder: Path, target: Path) -> None:
    """What the attacker does: ``mv folder folder.real; ln -s target folder``."""
    folder.rename(folder.with_name(folder.name + ".real"))
    folder.symlink_to(target, target_is_directory=True)


@pytest.fixture
def swap_after_listing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path, Path], None]]:
    """Make the sync swap ``folder`` for a symlink to ``target`` once it has listed the
    source and before it opens any file."""
    swaps: list[tuple[Path, Path]] = []
    listed = _sync.list_store

    async def list_then_swap(*args: Any, **kwargs: Any) -> _listing.Listing:
        listing = await listed(*args, **kwargs)
        if kwargs.get("local", True):
            for folder, target in swaps:
                _swap(folder, target)
        return listing

    monkeypatch.setattr(_sync, "list_store", list_then_swap)
    yield lambda folder, target: swaps.append((folder, target))


def test_unconfined_sync_follows_the_swap(
    race: tuple[Path, Path], tmp_path: Path, swap_after_listing: Callable[[Path, Path], None]
) -> None:
    """The race this guards against: by hand, without confinement, the swap is followed."""
    granted, secret = race
    swap_after_listing(granted / "ecephys", secret)
    report = sync(str(granted / "ecephys"), str(tmp_path / "dest"))
    assert report.ok, report.failed
    assert _tree(tmp_path / "dest")["token.json"] == SECRET


@pytest.mark.parametrize("swapped", ["ecephys", "ecephys/sub"])
def test_a_folder_swapped_after_listing_is_not_read(
    race: tuple[Path, Path],
    tmp_path: Path,
    swap_after_listing: Callable[[Path, Path], None],
    swapped: str,
) -> None:
    granted, secret = race
    source = granted / "ecephys"
    swap_after_listing(granted / swapped, secret / swapped.removeprefix("ecephys").lstrip("/"))
    dest = tmp_path / "dest"
    report = sync(str(source), str(dest), SyncOptions(confine_to=source))
    assert not report.ok
    refused = (
        ["sub/ferry.db"] if swapped == "ecephys/sub" else ["big.bin", "sub/ferry.db", "token.json"]
    )
    assert sorted(report.failed) == refused
    for path in refused:
        assert "outside the source folder" in report.failed[path], report.failed
        assert str(source) in report.failed[path]
    copied = _tree(dest) if dest.exists() else {}
    assert not any(SECRET in data for data in copied.values())
    assert set(copied).isdisjoint(refused)  # nothing of a refused file was written


def test_a_folder_swapped_while_it_is_walked_is_not_listed(
    race: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    granted, secret = race
    source = granted / "ecephys"
    scan = _listing._scan

    def swap_then_scan(folder: Path, confine: Path | None) -> list[os.DirEntry[str]]:
        if folder == source / "sub":  # checked as a folder inside; now swapped before it is read
            _swap(folder, secret / "sub")
        return scan(folder, confine)

    monkeypatch.setattr(_listing, "_scan", swap_then_scan)
    report = sync(str(source), str(tmp_path / "dest"), SyncOptions(confine_to=source))
    assert "outside the source folder" in report.failed["sub"], report.failed
    assert set(_tree(tmp_path / "dest")) == {"token.json", "big.bin"}


def test_symlinks_out_are_refused_and_inside_ones_read(
    race: tuple[Path, Path], tmp_path: Path
) -> None:
    granted, secret = race
    source = granted / "ecephys"
    (source / "alias.json").symlink_to("token.json")
    (source / "leak.json").symlink_to(secret / "token.json")
    (source / "home").symlink_to(secret)
    report = sync(str(source), str(tmp_path / "dest"), SyncOptions(confine_to=source))
    assert sorted(report.failed) == ["home", "leak.json"]
    assert _tree(tmp_path / "dest")["alias.json"] == b"{}"


def test_open_confined_checks_the_open_file(race: tuple[Path, Path]) -> None:
    granted, secret = race
    source = granted / "ecephys"
    with open_confined(source / "token.json", source) as f:
        assert f.read() == b"{}"
    (source / "link").symlink_to(secret / "token.json")
    with pytest.raises(UnsafePath, match="outside the source folder"):
        read_confined(source / "link", source)
    _swap(source / "sub", secret / "sub")
    with pytest.raises(UnsafePath, match=r"resolves to .*home/sub/ferry\.db"):
        read_confined(source / "sub" / "ferry.db", source)
    with pytest.raises(UnsafePath, match="not a regular file"):
        read_confined(source / "sub.real", source)


def test_confine_to_must_be_absolute_and_local(race: tuple[Path, Path], tmp_path: Path) -> None:
    granted, _ = race
    with pytest.raises(InvalidInput, match="absolute"):
        sync(str(granted), str(tmp_path / "d"), SyncOptions(confine_to=Path("rel")))
    with pytest.raises(InvalidInput, match="follow_symlinks"):
        sync(
            str(granted), str(tmp_path / "d"), SyncOptions(confine_to=granted, follow_symlinks=True)
        )
    with pytest.raises(InvalidInput, match="local source"):
        sync("memory://x", str(tmp_path / "d"), SyncOptions(confine_to=granted))
