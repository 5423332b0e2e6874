"""The dispatch model and the parameters file read and write the original dispatcher's
files unchanged; merging parameters keeps the original's precedence and key order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from neuroferry.pipelines.analysis import AnalysisParameters, DispatchModel, merge_parameters

FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "aind-analysis"
DISPATCH_FILES = sorted((FIXTURES / "dispatch").glob("*/*/*.json"))

#: A model as the original writes one (own sample, in its format: 4-space indent, fields
#: in its order, no newline at the end).
SAMPLE = """{
    "s3_location": [
        "s3://lab-data/behavior_1_2025-06-07_14-31-15"
    ],
    "asset_name": [
        "behavior_1_2025-06-07_14-31-15"
    ],
    "docdb_record_id": [
        "0b0e8f"
    ],
    "file_location": [
        "s3://lab-data/behavior_1_2025-06-07_14-31-15/nwb/blocks 1.nwb"
    ],
    "distributed_parameters": {
        "method": "isolation_distance",
        "cutoff": 1e-7,
        "window": {
            "hi": 2,
            "lo": 1.0
        },
        "label": "\u00e9t\u00e9"
    },
    "group_metadata": null,
    "query": "{\\"subject.subject_id\\": \\"1\\"}",
    "analysis_code": null
}"""


def fixture_file(path: Path) -> str:
    if not path.is_file():
        pytest.skip(f"the original dispatcher's sample files are not available ({path})")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "path", DISPATCH_FILES or [FIXTURES / "dispatch"], ids=lambda p: "/".join(p.parts[-3:])
)
def test_every_fixture_file_reads_and_writes_back_byte_for_byte(path: Path) -> None:
    text = fixture_file(path)
    model = DispatchModel.model_validate_json(text)
    assert model.model_dump_json(indent=4) == text
    assert len(model.s3_location) == len(model.asset_name) == len(model.docdb_record_id)


def test_own_sample_writes_back_byte_for_byte() -> None:
    sample = SAMPLE.replace("\\u00e9", "é")  # raw UTF-8, as pydantic writes it
    model = DispatchModel.model_validate_json(sample)
    assert model.model_dump_json(indent=4) == sample
    assert model.distributed_parameters == {
        "method": "isolation_distance",
        "cutoff": 1e-7,
        "window": {"hi": 2, "lo": 1.0},
        "label": "été",
    }


def test_fields_of_other_versions_are_kept_and_written_last() -> None:
    text = json.dumps(
        {
            "asset_id": ["abc"],
            "s3_location": ["s3://b/a"],
            "asset_name": ["a"],
            "docdb_record_id": ["1"],
        }
    )
    model = DispatchModel.model_validate_json(text)
    written = json.loads(model.model_dump_json())
    assert written["asset_id"] == ["abc"]
    assert list(written)[-1] == "asset_id"
    assert list(written)[:3] == ["s3_location", "asset_name", "docdb_record_id"]


def test_required_lists() -> None:
    with pytest.raises(ValidationError, match="docdb_record_id"):
        DispatchModel.model_validate({"s3_location": ["s3://b/a"], "asset_name": ["a"]})


def test_parameters_file() -> None:
    own = AnalysisParameters.model_validate_json(
        '{"fixed_parameters": {"a": 1}, "distributed_parameters": [{"m": "x"}, {"m": "y"}]}'
    )
    assert own.fixed_parameters == {"a": 1}
    assert own.distributed_parameters == [{"m": "x"}, {"m": "y"}]
    assert AnalysisParameters() == AnalysisParameters(
        fixed_parameters={}, distributed_parameters=[]
    )
    with pytest.raises(ValidationError, match="distributed_parameter"):
        AnalysisParameters.model_validate({"distributed_parameter": [{"m": "x"}]})


def test_the_fixture_parameters_file() -> None:
    text = fixture_file(FIXTURES / "analysis_parameters.json")
    parameters = AnalysisParameters.model_validate_json(text)
    assert list(parameters.fixed_parameters) == [
        "analysis_name",
        "analysis_tag",
        "isi_violations_cutoff",
    ]
    assert parameters.distributed_parameters == [
        {"method": "isolation_distance"},
        {"method": "amplitude_cutoff"},
    ]


def items(d: dict[str, Any]) -> list[tuple[str, Any]]:
    return list(d.items())


FIXED = {"analysis_name": "U", "analysis_tag": "t", "isi_violations_cutoff": 0.05}


@pytest.mark.parametrize(
    ("fixed", "overrides", "distributed", "merged"),
    [
        # M1: distributed keys come after the fixed ones
        (FIXED, {}, {"method": "m"}, [*FIXED.items(), ("method", "m")]),
        # M2: the same values, split the other way round, give another order
        (
            {"analysis_name": "U", "analysis_tag": "t", "method": "m"},
            None,
            {"isi_violations_cutoff": 0.05},
            [
                ("analysis_name", "U"),
                ("analysis_tag", "t"),
                ("method", "m"),
                ("isi_violations_cutoff", 0.05),
            ],
        ),
        # M4: an override changes a fixed value in its place
        (
            FIXED,
            {"isi_violations_cutoff": 0.9},
            {"method": "m"},
            [
                ("analysis_name", "U"),
                ("analysis_tag", "t"),
                ("isi_violations_cutoff", 0.9),
                ("method", "m"),
            ],
        ),
        # M5: distributed beats the override, still in the fixed place
        (
            FIXED,
            {"isi_violations_cutoff": 0.9},
            {"isi_violations_cutoff": 0.5, "method": "m"},
            [
                ("analysis_name", "U"),
                ("analysis_tag", "t"),
                ("isi_violations_cutoff", 0.5),
                ("method", "m"),
            ],
        ),
        # an override of a key the fixed parameters lack is appended before distributed ones
        ({"a": 1}, {"b": 2}, {"c": 3}, [("a", 1), ("b", 2), ("c", 3)]),
        ({"a": 1}, {"a": None}, None, [("a", None)]),
        (None, None, None, []),
    ],
)
def test_merge_parameters(
    fixed: dict[str, Any] | None,
    overrides: dict[str, Any] | None,
    distributed: dict[str, Any] | None,
    merged: list[tuple[str, Any]],
) -> None:
    before = dict(fixed or {})
    assert items(merge_parameters(fixed, overrides, distributed)) == merged
    assert (fixed or {}) == before  # nothing given is changed


def test_merge_matches_the_fixture_merge_cases() -> None:
    """The M cases of the original's hash cases: merging the parts the case names gives
    the merged parameters the original hashed, in the same order."""
    cases = {
        c["case"][:2]: c["merged_parameters"]
        for c in json.loads(fixture_file(FIXTURES / "hash_cases.json"))["merge_path_cases"]
    }
    m = {"method": "m"}
    assert items(merge_parameters(FIXED, {}, m)) == items(cases["M1"])
    m2_fixed = {"analysis_name": "U", "analysis_tag": "t", "method": "m"}
    assert items(merge_parameters(m2_fixed, {}, {"isi_violations_cutoff": 0.05})) == items(
        cases["M2"]
    )
    assert items(merge_parameters(FIXED, {"isi_violations_cutoff": 0.05}, m)) == items(cases["M3"])
    assert items(merge_parameters(FIXED, {"isi_violations_cutoff": 0.9}, m)) == items(cases["M4"])
    five = merge_parameters(
        FIXED, {"isi_violations_cutoff": 0.9}, {"isi_violations_cutoff": 0.5, **m}
    )
    assert items(five) == items(cases["M5"])


def test_nan_and_infinities_are_refused_naming_the_field() -> None:
    from pydantic import ValidationError

    from neuroferry.pipelines.analysis import AnalysisSpec, DispatchModel

    bad = {
        "query": {"x": [1, float("nan")]},
        "fixed_parameters": {"scale": float("inf")},
        "distributed_parameters": [{}, {"w": -float("inf")}],
        "parameters": {"a": {"b": float("nan")}},
    }
    shown = {
        "query": r"query\.x\[1\]",
        "fixed_parameters": r"fixed_parameters\.scale",
        "distributed_parameters": r"distributed_parameters\[1\]\.w",
        "parameters": r"parameters\.a\.b",
    }
    for field, value in bad.items():
        with pytest.raises(ValidationError, match=shown[field] + ": NaN and infinities"):
            AnalysisSpec.model_validate({"analysis": "a", field: value})
    model = {"s3_location": ["s3://b/a"], "asset_name": ["a"], "docdb_record_id": [""]}
    with pytest.raises(ValidationError, match=r"extra\.w: NaN and infinities"):
        DispatchModel.model_validate({**model, "extra": {"w": float("nan")}})
    with pytest.raises(ValidationError, match=r"models\.0[\s\S]*group_metadata\.g"):
        AnalysisSpec.model_validate(
            {"analysis": "a", "models": [{**model, "group_metadata": {"g": float("inf")}}]}
        )
