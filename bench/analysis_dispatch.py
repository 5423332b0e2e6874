"""Analysis dispatch benchmark: catalog assets x parameter sets -> dispatch models.

    python bench/analysis_dispatch.py                  # 10,000 assets x 10 sets
    python bench/analysis_dispatch.py --assets 1000    # smaller

The assets are folders on local disk (one ``.nwb`` file and one other file each), their
documents in a SQLite catalog owned by one user, granted that folder. It times a
dispatch without a file extension (no listing), with ``.nwb`` (every asset's folder
listed once), and writing the models to a dispatch folder. The target: 100,000 models in
under 30 s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from neuroferry.auth import create_user
from neuroferry.catalog import Catalog
from neuroferry.config import get_settings
from neuroferry.db import make_engine, upgrade
from neuroferry.grants import access_for
from neuroferry.pipelines.analysis import AnalysisParameters, dispatch, write_dispatch_folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--sets", type=int, default=10)
    parser.add_argument("--workers", type=int, default=64, help="dispatch folders written")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferry-dispatch-bench-") as scratch:
        root = Path(scratch)
        lake = root / "lake"
        started = time.perf_counter()
        docs = []
        for i in range(args.assets):
            name = f"behavior_{700000 + i % 97}_2025-06-07_14-{i // 60 % 60:02d}-{i % 60:02d}_{i}"
            folder = lake / name / "nwb"
            folder.mkdir(parents=True)
            (folder / f"{name}.nwb").write_bytes(b"nwb")
            (lake / name / "metadata.json").write_bytes(b"{}")
            docs.append(
                {
                    "name": name,
                    "location": (lake / name).as_uri(),
                    "subject": {"subject_id": str(700000 + i % 97)},
                    "data_description": {"data_level": "derived"},
                }
            )
        engine = make_engine(f"sqlite:///{root / 'ferry.db'}")
        upgrade(engine)
        user = create_user(engine, "alice", "user")
        catalog = Catalog(engine)
        for start in range(0, len(docs), 1000):
            catalog.upsert_many(docs[start : start + 1000], owner=user)
        settings = get_settings(
            home=root / "home", grants={"alice": {"store_prefixes": [lake.as_uri()]}}
        )
        print(f"setup: {args.assets} assets in {time.perf_counter() - started:.1f} s")

        parameters = AnalysisParameters(
            fixed_parameters={"analysis_name": "Unit Quality Filtering", "cutoff": 0.05},
            distributed_parameters=[{"method": f"m{i}"} for i in range(args.sets)],
        )
        access = access_for(settings, "alice", "user")
        for label, extension in (("no file extension", None), ("file_extension .nwb", ".nwb")):
            started = time.perf_counter()
            models = dispatch(
                filter={"data_description.data_level": "derived"},
                parameters=parameters,
                file_extension=extension,
                catalog=catalog,
                viewer=user,
                access=access,
                settings=settings,
            )
            took = time.perf_counter() - started
            print(f"dispatch, {label}: {len(models):,} models in {took:.2f} s")
        started = time.perf_counter()
        write_dispatch_folder(models, str(root / "out"), num_parallel_workers=args.workers)
        took = time.perf_counter() - started
        print(f"write_dispatch_folder: {len(models):,} files in {took:.2f} s")
        engine.dispose()


if __name__ == "__main__":
    main()
