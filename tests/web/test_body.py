"""The one check of JSON request bodies: what it refuses, and where it says the problem is."""

from __future__ import annotations

import contextlib

import pytest

from neuroferry.web._body import MAX_DEPTH, BodyError, check_json


@pytest.mark.parametrize(
    ("body", "message", "where"),
    [
        (b'{"a": NaN}', "NaN is not a number JSON allows", "line 1, column 7"),
        (b'{"a": [1,\n  Infinity]}', "Infinity is not a number", "line 2, column 3"),
        (b'{"a": -Infinity}', "-Infinity is not a number", "line 1, column 7"),
        (b'{"NaN": 1e999}', "1e999 is too large for a number", "line 1, column 9"),
        (b'{"a": -1e400}', "-1e400 is too large", "line 1, column 7"),
        (b'{"a": 9223372036854775808}', "too large for a whole number", "line 1, column 7"),
        (b'{"a": -' + b"9" * 5000 + b"}", "too large for a whole number", "line 1, column 7"),
        (b'{"a": {"b c": ["x", "\\udc00"]}}', "unpaired surrogate", '$.a["b c"][1]'),
        (b'{"\\ud800": 1}', "unpaired surrogate", "$"),
        (b'{"a": "\xed\xa0\x80"}', "not UTF-8", "byte 7"),
        (b'{"a": "\xff"}', "not UTF-8", "byte 7"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "deeper than 64", "column 65"),
        (b'{"a": 1,}', "not valid JSON", "line 1, column 9"),
        (b'{"label": ' + b"[" * 5000 + b"]" * 5000 + b"}", "deeper than 64", "line 1, column 74"),
    ],
)
def test_refused_bodies_say_what_and_where(body: bytes, message: str, where: str) -> None:
    with pytest.raises(BodyError) as refused:
        check_json(body)
    assert message in refused.value.message
    assert where in refused.value.where


def test_acceptable_bodies_are_parsed_as_json() -> None:
    body = (
        b'{"emoji": "\\ud83d\\ude00", "NaN in a string": "NaN Infinity 1e999 [[[", '
        b'"big": 9223372036854775807, "small": -9223372036854775807, "f": 1.5e300, '
        b'"deep": '
        + b"[" * (MAX_DEPTH - 1)
        + b"]" * (MAX_DEPTH - 1)
        + b', "brackets": "'
        + b"[" * 200
        + b'"}'
    )
    value = check_json(body)
    assert value["emoji"] == "\U0001f600" and value["big"] == 2**63 - 1
    assert value["f"] == 1.5e300 and value["brackets"] == "[" * 200


def test_the_checks_stay_cheap_on_hostile_bodies() -> None:
    import time

    bodies = [
        b"[" * 65 + b'"' + b'\\"' * 500_000,  # a string that never ends, after deep nesting
        b'"' + b"[" * 100_000 + b'"\\' * 100_000,  # strings that never end, deep
        b"[" * 200_000 + b"]" * 200_000,  # far deeper than any parser should recurse
        b"[" * 60 + b'"[",' * 250_000 + b'"]"' + b"]" * 60,  # many brackets inside strings
    ]
    for body in bodies:
        started = time.perf_counter()
        with contextlib.suppress(BodyError):
            check_json(body)
        assert time.perf_counter() - started < 1.0, body[:80]
    with pytest.raises(BodyError) as refused:
        check_json(bodies[2])
    assert refused.value.where == "line 1, column 65"
