"""The analysis registry: analyses registered by hand and by entry point (a real
distribution on ``sys.path``), a broken entry point that hides no other, parameter
schemas and validation, and the entry points neuroferry itself declares."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.pipelines.analysis import (
    ENTRY_POINT_GROUP,
    FILE_SUMMARY,
    VOLUME_STATS,
    Analysis,
    AnalysisRun,
    analyses,
    broken_analyses,
    code_identity,
    get_analysis,
    parameter_schema,
    register_analysis,
    validate_parameters,
)

pytestmark = pytest.mark.usefixtures("fresh_registry")

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


class Threshold(BaseModel):
    cutoff: float = 0.5
    method: str


def nothing(run: AnalysisRun) -> None:
    """An analysis that does nothing."""


def test_registered_analysis_is_found_by_name() -> None:
    mine = Analysis("my-analysis", nothing, Threshold, description="does nothing")
    register_analysis(mine)
    assert get_analysis("my-analysis") is mine
    assert analyses()["my-analysis"] is mine


def test_unknown_analysis_names_the_known_ones() -> None:
    register_analysis(Analysis("beta", nothing, Threshold))
    register_analysis(Analysis("alpha", nothing, Threshold))
    with pytest.raises(InvalidInput, match=r"unknown analysis 'gamma'; known analyses: .*alpha"):
        get_analysis("gamma")


@pytest.mark.parametrize("name", ["", "Upper", "-dash", "with space", "a/b"])
def test_analysis_names_are_checked(name: str) -> None:
    with pytest.raises(ConfigError, match="analysis name"):
        Analysis(name, nothing, Threshold)


def test_models_must_be_pydantic_classes() -> None:
    with pytest.raises(ConfigError, match="parameters must be a pydantic model class"):
        Analysis("x", nothing, dict)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="outputs must be a pydantic model class"):
        Analysis("x", nothing, Threshold, outputs=Threshold(method="m"))  # type: ignore[arg-type]


def test_parameter_schema_is_the_models_json_schema() -> None:
    schema = parameter_schema(Analysis("x", nothing, Threshold))
    assert schema == Threshold.model_json_schema()
    assert schema["required"] == ["method"]
    assert schema["properties"]["cutoff"]["default"] == 0.5
    examples = parameter_schema(FILE_SUMMARY)["properties"]
    assert {k: v["default"] for k, v in examples.items()} == {
        "label": "",
        "bins": 16,
        "scale": 1.0,
    }


def test_parameters_are_validated_naming_the_analysis_and_each_field() -> None:
    analysis = Analysis("thresholds", nothing, Threshold)
    assert validate_parameters(analysis, {"method": "m", "cutoff": 1}) == Threshold(
        method="m", cutoff=1.0
    )
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(analysis, {"cutoff": "high"})
    message = str(caught.value)
    assert message.startswith("invalid parameters of analysis 'thresholds': ")
    assert "cutoff: Input should be a valid number" in message
    assert "method: Field required" in message
    assert {p["field"] for p in caught.value.problems} == {"cutoff", "method"}
    with pytest.raises(InvalidInput, match="bins: Input should be greater than or equal to 1"):
        validate_parameters(FILE_SUMMARY, {"bins": 0})
    with pytest.raises(InvalidInput, match="colour: Extra inputs are not permitted"):
        validate_parameters(VOLUME_STATS, {"colour": "red"})


# -- entry points -----------------------------------------------------------------------


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution ``lab-analyses`` 2.5.0 (a folder on ``sys.path`` with its
    ``.dist-info``) declaring good and broken analyses."""
    site = tmp_path / "site"
    package = site / "lab_analyses"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from neuroferry.pipelines.analysis import Analysis

            class Parameters(BaseModel):
                window: int = 3

            def smooth(run):
                return {"window": run.parameters.window}

            SMOOTH = Analysis("smooth", smooth, Parameters)
            OTHER_NAME = Analysis("not-sharpen", smooth, Parameters)
            NOT_AN_ANALYSIS = 42
            """
        )
    )
    (package / "broken.py").write_text("raise ImportError('needs a missing library')\n")
    info = site / "lab_analyses-2.5.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-analyses\nVersion: 2.5.0\n")
    (info / "top_level.txt").write_text("lab_analyses\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            f"""
            [{ENTRY_POINT_GROUP}]
            smooth = lab_analyses:SMOOTH
            sharpen = lab_analyses:OTHER_NAME
            broken = lab_analyses.broken:ANALYSIS
            number = lab_analyses:NOT_AN_ANALYSIS
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    for name in [m for m in sys.modules if m.partition(".")[0] == "lab_analyses"]:
        del sys.modules[name]
    importlib.invalidate_caches()


def test_installed_analyses_are_loaded_and_broken_ones_kept_with_the_reason(
    plugin_distribution: Path,
) -> None:
    found = analyses()
    assert found["smooth"].name == "smooth"
    assert {"sharpen", "broken", "number"}.isdisjoint(found)
    broken = broken_analyses()
    assert "ImportError: needs a missing library" in broken["broken"]
    assert "is not an Analysis" in broken["number"]
    assert "loads the analysis 'not-sharpen'" in broken["sharpen"]
    with pytest.raises(ConfigError, match="analysis 'broken' is installed but broken: cannot load"):
        get_analysis("broken")
    assert get_analysis("smooth") is found["smooth"]


def test_registering_by_hand_takes_the_place_of_an_installed_analysis(
    plugin_distribution: Path,
) -> None:
    mine = Analysis("broken", nothing, Threshold)
    register_analysis(mine)
    assert get_analysis("broken") is mine
    assert "broken" not in broken_analyses()


def test_an_installed_analysis_has_its_distributions_name_and_version(
    plugin_distribution: Path,
) -> None:
    code = code_identity(get_analysis("smooth"))
    assert (code.name, code.source, code.version) == ("smooth", "lab-analyses", "2.5.0")
    assert (code.commit, code.dirty, code.image, code.digest) == (None, False, None, None)


def test_neuroferry_declares_its_example_analyses() -> None:
    """pyproject.toml names every example under its own name; where neuroferry is
    installed with these entry points, they are what ``analyses()`` finds."""
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert set(declared) == {"file-summary", "volume-stats"}
    for name, target in declared.items():
        module, _, attr = target.partition(":")
        analysis = getattr(importlib.import_module(module), attr)
        assert isinstance(analysis, Analysis)
        assert analysis.name == name
    from importlib.metadata import entry_points

    installed = [
        ep.name
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == "neuroferry"
    ]
    for name in installed:
        assert name in declared
        assert get_analysis(name).name == name


def test_an_editable_install_is_found_by_its_project_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An editable install lists no package files (only a path hook): the distribution is
    the one whose project folder (``direct_url.json``) holds the analysis's source."""
    project = tmp_path / "project"
    package = project / "src" / "lab_editable"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel
            from neuroferry.pipelines.analysis import Analysis

            class Parameters(BaseModel):
                pass

            def run(run):
                return None

            ANALYSIS = Analysis("editable", run, Parameters)
            """
        )
    )
    site = tmp_path / "site"
    info = site / "lab_editable_dist-0.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lab-editable-dist\nVersion: 0.9\n")
    (info / "RECORD").write_text("_lab_editable.pth,,\n")
    direct = {"url": project.as_uri(), "dir_info": {"editable": True}}
    (info / "direct_url.json").write_text(json.dumps(direct))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(project / "src"))
    try:
        analysis = importlib.import_module("lab_editable").ANALYSIS
        code = code_identity(analysis)
    finally:
        sys.modules.pop("lab_editable", None)
    assert (code.source, code.version, code.commit) == ("lab-editable-dist", "0.9", None)
