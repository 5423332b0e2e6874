"""`ferry analysis preview|dispatch` in-process: the options build the request, the service
(a TestClient behind the real client) answers, the dispatch folder is written and read
back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from neuroferry.auth import create_token, create_user
from neuroferry.cli import analysis as analysis_cli
from neuroferry.cli._app import app
from neuroferry.client import Client
from neuroferry.config import get_settings
from neuroferry.errors import InvalidInput
from neuroferry.pipelines.analysis import (
    Analysis,
    DispatchModel,
    read_dispatch_folder,
    register_analysis,
)
from neuroferry.services import Services
from neuroferry.web import create_app

A = "behavior_774659_2025-06-07_14-31-15_processed_2025-06-08_03-49-49"
B = "behavior_774659_2025-06-09_10-02-44_processed_2025-06-10_01-12-03"
C = "ecephys_774659_2025-06-10_09-00-00"  # no .nwb file
FILES: dict[str, dict[str, bytes]] = {
    A: {f"nwb/{A}_block-1.nwb": b"block 1", f"nwb/{A}_block-2.nwb": b"block 2"},
    B: {f"nwb/{B}.nwb": b"only block"},
    C: {"ecephys/continuous.dat": b"\0" * 16},
}


class Sorting(BaseModel):
    analysis_name: str
    bins: int = 16
    method: str = "isolation_distance"


register_analysis(Analysis("sorting-test", lambda run: None, Sorting))


@pytest.fixture
def ferry(
    database_url: str,
    tmp_path: Path,
    make_tree: Callable[[Path, dict[str, bytes]], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., Result]]:
    """Runs `ferry ARGS…` in this process as alice, whose assets A, B, C lie in her lake;
    the working directory is ``tmp_path``."""
    lake = tmp_path / "lake"
    settings = get_settings(
        database_url=database_url,
        store_url=(tmp_path / "store").as_uri(),
        grants={"alice": {"store_prefixes": [lake.as_uri()]}},
    )
    held = Services.start(settings, orchestrate=False)
    with TestClient(create_app(settings, held)) as api:
        alice = create_user(held.engine, "alice", "user")
        api.headers["Authorization"] = f"Bearer {create_token(held.engine, alice)}"
        docs = []
        for name, files in FILES.items():
            make_tree(lake / name, files)
            docs.append(
                {"_id": f"id-{name[-8:]}", "name": name, "location": (lake / name).as_uri()}
            )
        held.catalog.upsert_many(docs, owner=alice)
        client = Client(url="http://testserver", settings=settings)
        client._http = api
        monkeypatch.setattr(analysis_cli, "client_for", lambda token: client)
        monkeypatch.chdir(tmp_path)
        runner = CliRunner()

        def run(*args: str) -> Result:
            return runner.invoke(app, ["analysis", *args], env={"COLUMNS": "250"})

        yield run


def write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


PARAMETERS = {
    "fixed_parameters": {"analysis_name": "Unit Quality Filtering"},
    "distributed_parameters": [{"method": "isolation_distance"}, {"method": "amplitude_cutoff"}],
}


def test_dispatch_writes_a_folder_that_reads_back_as_the_same_models(
    ferry: Callable[..., Result], tmp_path: Path
) -> None:
    write(tmp_path / "analysis_parameters.json", PARAMETERS)
    write(tmp_path / "filter.json", {"name": {"$in": [A, B, C]}})
    args = [
        "sorting-test",
        "--query",
        "@filter.json",
        "--parameters",
        "analysis_parameters.json",
        "--set",
        "bins=32",
        "--file-extension",
        "nwb",
    ]
    result = ferry("dispatch", *args, "--workers", "2", "--out", "dispatch")
    assert result.exit_code == 0, (result.output, result.exception)
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "sorting-test: 3 inputs x 2 parameter sets = 6 dispatch models (3 assets selected)"
    )
    assert f"left out, no matching file: {C}" in result.stderr
    assert lines[1].startswith("parameters: fixed_parameters < parameters (overrides) <")
    assert "first 5:" in lines
    assert any(f"{A[-30:]}_block-1.nwb" in line and "amplitude_cutoff" in line for line in lines)
    assert lines[-1] == "wrote 6 dispatch models in 2 folders to dispatch"

    written = read_dispatch_folder(str(tmp_path / "dispatch"))
    preview = json.loads(ferry("preview", *args, "--format", "json").stdout)
    assert preview["models"] == 6
    body = (
        analysis_cli.DispatchOptions(
            query="@filter.json",
            parameters=tmp_path / "analysis_parameters.json",
            set_values=["bins=32"],
            file_extension="nwb",
        )
        .request()
        .body
    )
    served = analysis_cli.client_for(None).analyses_dispatch("sorting-test", body)
    # the same models (the order within a folder is not kept: file names are random)
    assert sorted(m.model_dump_json() for m in written) == sorted(
        DispatchModel.model_validate(m).model_dump_json() for m in served["dispatch_models"]
    )
    assert preview["first"] == served["dispatch_models"][:5]
    assert sorted(m.file_location[0] for m in written) == sorted(
        [f"{(tmp_path / 'lake' / A).as_uri()}/nwb/{A}_block-{i}.nwb" for i in (1, 1, 2, 2)]
        + [f"{(tmp_path / 'lake' / B).as_uri()}/nwb/{B}.nwb"] * 2
    )
    files = sorted(
        p.relative_to(tmp_path / "dispatch").parts[0]
        for p in (tmp_path / "dispatch").rglob("*.json")
    )
    assert files == ["0", "0", "0", "1", "1", "1"]

    # the folder must be empty
    again = ferry("dispatch", *args, "--out", "dispatch")
    assert isinstance(again.exception, InvalidInput)
    assert "already holds a dispatch folder" in str(again.exception)


def test_dispatch_to_a_store_url(ferry: Callable[..., Result], tmp_path: Path) -> None:
    write(tmp_path / "assets.csv", f"subject,asset_id\n774659,{B}\n774659,id-03-49-49\n")
    out = f"memory://analysis-cli-test/{uuid.uuid4()}"
    result = ferry(
        "dispatch",
        "sorting-test",
        "--asset-csv",
        "assets.csv",
        "--set",
        'analysis_name="quoted"',
        "--tasks-per-job",
        "2",
        "--out",
        out,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "2 inputs x 1 parameter sets = 2 dispatch models" in result.stdout
    models = read_dispatch_folder(out)
    assert sorted(m.asset_name[0] for m in models) == sorted([A, B])
    assert {(m.file_location, m.distributed_parameters, m.query) for m in models} == {
        (None, None, None)
    }


def test_an_unknown_csv_asset_is_named_by_file_and_row(
    ferry: Callable[..., Result], tmp_path: Path
) -> None:
    write(tmp_path / "assets.csv", f"asset_id\n{A}\n\nno-such-asset\n")
    result = ferry(
        "preview", "sorting-test", "--asset-csv", "assets.csv", "--set", "analysis_name=x"
    )
    assert isinstance(result.exception, InvalidInput)
    assert str(result.exception) == (
        "assets.csv: row 4: 'no-such-asset' is neither the _id nor the name of a catalog "
        "asset you may see"
    )
    assert result.exception.problems[0]["row"] == 4
    write(tmp_path / "names.csv", "name\nx\n")
    result = ferry("preview", "sorting-test", "--asset-csv", "names.csv")
    assert isinstance(result.exception, InvalidInput)
    assert str(result.exception).startswith("names.csv: the asset CSV has no 'asset_id' column")


def test_set_values_are_json_when_they_parse(ferry: Callable[..., Result], tmp_path: Path) -> None:
    assert analysis_cli.parse_set(["bins=32", "label=first look", "on=true", 'x={"a": 1}']) == {
        "bins": 32,
        "label": "first look",
        "on": True,
        "x": {"a": 1},
    }
    body = (
        analysis_cli.DispatchOptions(
            location=["file:///data/a"],
            set_values=["k=v=w"],
            file_extension=".tif",
            split_files=False,
        )
        .request()
        .body
    )
    assert body == {
        "parameters": {"k": "v=w"},
        "file_extension": ".tif",
        "split_files": False,
        "locations": ["file:///data/a"],
    }
    # parameters are checked by the service against the analysis' model
    refused = ferry(
        "preview",
        "sorting-test",
        "--location",
        (tmp_path / "lake" / A).as_uri(),
        "--set",
        "analysis_name=x",
        "--set",
        "bins=many",
    )
    assert isinstance(refused.exception, InvalidInput)
    assert "bins: Input should be a valid integer" in str(refused.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one way: --query, --asset-csv or --location (got none)"),
        (["--query", "{}", "--location", "file:///x"], "(got --query, --location)"),
        (["--location", "file:///x", "--set", "novalue"], "--set 'novalue': give KEY=VALUE"),
        (["--location", "file:///x", "--parameters", "missing.json"], "cannot read missing.json"),
        (["--location", "file:///x", "--parameters", "bad.json"], "bad.json is not an analysis"),
        (["--query", "{not json"], "--query is not valid JSON"),
    ],
)
def test_bad_options_exit_2(
    ferry: Callable[..., Result], tmp_path: Path, args: list[str], message: str
) -> None:
    write(tmp_path / "bad.json", {"fixed_parameters": [], "typo": 1})
    result = ferry("preview", "sorting-test", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def test_workers_or_tasks_per_job_not_both(ferry: Callable[..., Result]) -> None:
    result = ferry(
        "dispatch",
        "sorting-test",
        "--location",
        "file:///x",
        "--workers",
        "2",
        "--tasks-per-job",
        "2",
        "--out",
        "d",
    )
    assert result.exit_code == 2
    assert "--workers or --tasks-per-job, not both" in " ".join(result.stderr.split())
