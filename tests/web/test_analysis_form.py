"""The analysis page's form made from a parameter model's JSON schema: a typed field per
property (enums followed through ``$ref``, optionals unwrapped), and reading what it sends."""

from __future__ import annotations

from enum import StrEnum

import pytest
from pydantic import BaseModel, Field

from neuroferry.errors import InvalidInput
from neuroferry.web.pages.analyses import form_fields


class Mode(StrEnum):
    fast = "fast"
    exact = "exact"


class Parameters(BaseModel):
    name: str = Field(description="what to call it")
    level: int | None = None
    scale: float = 1.5
    mode: Mode = Mode.fast
    keep: bool = True
    channels: list[int] = Field(default_factory=lambda: [0, 1])


def test_a_field_per_property_typed_with_its_default_and_help() -> None:
    fields = {f.name: f for f in form_fields(Parameters.model_json_schema())}
    assert list(fields) == ["name", "level", "scale", "mode", "keep", "channels"]
    assert [fields[n].kind for n in fields] == [
        "string",
        "integer",
        "number",
        "enum",
        "boolean",
        "json",
    ]
    assert fields["name"].required and fields["name"].help == "what to call it"
    assert not fields["level"].required and fields["level"].shown(fields["level"].default) == ""
    assert fields["mode"].choices == ("fast", "exact") and fields["mode"].default == "fast"
    assert fields["channels"].shown([0, 1]) == "[0, 1]" and fields["keep"].default is True


def test_reading_the_form_types_each_value_and_names_a_wrong_one() -> None:
    fields = {f.name: f for f in form_fields(Parameters.model_json_schema())}
    assert fields["level"].read(" 3 ") == 3 and fields["level"].read("") is None
    assert fields["scale"].read("2") == 2.0 and fields["mode"].read("exact") == "exact"
    assert fields["keep"].read(None) is False and fields["keep"].read("true") is True
    assert fields["channels"].read("[2]") == [2]
    for name, text, message in [
        ("name", "", "name: required"),
        ("level", "2.5", "level: not a whole number: '2.5'"),
        ("scale", "much", "scale: not a number: 'much'"),
        ("mode", "slow", "mode: not one of fast, exact"),
        ("channels", "[1", "channels: not valid JSON"),
        ("scale", "nan", "scale: not a finite number: 'nan'"),
        ("scale", "-inf", "scale: not a finite number"),
        ("channels", "[1, NaN]", "channels: NaN is not a number JSON allows"),
        ("channels", "[1e999]", "channels: 1e999 is not a finite number"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            fields[name].read(text)
