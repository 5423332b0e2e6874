"""Code identity (a real git checkout holding an analysis's module; container images) and
result identity (canonical JSON, hashed)."""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import BaseModel

from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.pipelines.analysis import (
    Analysis,
    AnalysisRun,
    CodeIdentity,
    canonical_json,
    code_identity,
    result_identity,
)

# -- canonical JSON ---------------------------------------------------------------------


def test_canonical_json_sorts_keys_and_writes_compactly_in_utf8() -> None:
    value = {"b": [1, {"z": None, "y": True}], "a": "é ü", "c": (1, 2)}
    assert canonical_json(value) == '{"a":"é ü","b":[1,{"y":true,"z":null}],"c":[1,2]}'


@pytest.mark.parametrize(
    ("number", "written"),
    [
        (1.0, "1"),
        (1, "1"),
        (-0.0, "0"),
        (1e16, "10000000000000000"),
        (0.1, "0.1"),
        (1e-07, "1e-07"),
        (2.5e-5, "2.5e-05"),
        (True, "true"),
        (False, "false"),
    ],
)
def test_canonical_json_spells_each_number_one_way(number: float, written: str) -> None:
    assert canonical_json(number) == written


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_refuses_nan_and_infinity_saying_where(bad: float) -> None:
    with pytest.raises(InvalidInput, match=r"\$\.a\[1\]: .* is not allowed \(only finite"):
        canonical_json({"a": [0, bad]})


def test_canonical_json_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(InvalidInput, match=r"\$: key 1 is not a string"):
        canonical_json({1: "one"})
    with pytest.raises(InvalidInput, match=r"\$\.s: a set cannot be written as JSON"):
        canonical_json({"s": {1}})


# -- result identity --------------------------------------------------------------------


class Params(BaseModel):
    threshold: float = 0.5
    n: int = 3
    bounds: dict[str, float] = {}
    label: str = "x"


CODE = CodeIdentity("quality", "1.2.0", "lab-analyses", "a" * 40, False)
INPUTS = ["s3://lake/asset-b", "s3://lake/asset-a"]


def identity(code: CodeIdentity = CODE, inputs: list[str] = INPUTS, **params: object) -> str:
    return result_identity(code, inputs, Params.model_validate(params))


def test_result_identity_is_the_sha256_of_the_documented_json() -> None:
    document = (
        '{"code":{"commit":"' + "a" * 40 + '","digest":null,"name":"quality","version":"1.2.0"},'
        '"inputs":["s3://lake/asset-a","s3://lake/asset-b"],'
        '"parameters":{"bounds":{"hi":2.5,"lo":1},"label":"ünï","n":3,"threshold":0.5}}'
    )
    want = hashlib.sha256(document.encode("utf-8")).hexdigest()
    assert identity(bounds={"lo": 1.0, "hi": 2.5}, label="ünï") == want


def test_a_dirty_checkout_adds_dirty_to_the_hashed_code_and_only_then() -> None:
    document = (
        '{"code":{"commit":"' + "a" * 40 + '","digest":null,"dirty":true,"name":"quality",'
        '"version":"1.2.0"},"inputs":["s3://lake/asset-a","s3://lake/asset-b"],'
        '"parameters":{"bounds":{},"label":"x","n":3,"threshold":0.5}}'
    )
    dirty = identity(replace(CODE, dirty=True))
    assert dirty == hashlib.sha256(document.encode("utf-8")).hexdigest()
    assert dirty != identity()


def test_result_identity_ignores_key_order() -> None:
    forward = Params.model_validate({"threshold": 0.7, "n": 4, "bounds": {"lo": 1, "hi": 2}})
    backward = Params.model_validate({"bounds": {"hi": 2, "lo": 1}, "n": 4, "threshold": 0.7})
    assert result_identity(CODE, INPUTS, forward) == result_identity(CODE, INPUTS, backward)


def test_result_identity_writes_1_and_1_0_alike_on_a_float_field() -> None:
    assert identity(threshold=1) == identity(threshold=1.0)
    assert identity(bounds={"lo": 0}) == identity(bounds={"lo": 0.0})


def test_result_identity_is_the_same_for_an_omitted_default_and_the_default_given() -> None:
    assert identity() == identity(threshold=0.5, n=3, bounds={}, label="x")


def test_result_identity_ignores_the_order_of_input_locations() -> None:
    assert identity(inputs=["s3://lake/b", "s3://lake/a"]) == identity(
        inputs=["s3://lake/a", "s3://lake/b"]
    )
    assert identity(inputs=["s3://lake/a"]) != identity(inputs=["s3://lake/a", "s3://lake/b"])


def test_result_identity_changes_with_any_parameter() -> None:
    base = identity()
    changed = [
        identity(threshold=0.51),
        identity(n=4),
        identity(bounds={"lo": 0.0}),
        identity(label="y"),
    ]
    assert base not in changed
    assert len(set(changed)) == len(changed)


@pytest.mark.parametrize(
    "change",
    [
        {"version": "1.2.1"},
        {"commit": "b" * 40},
        {"commit": None},
        {"name": "quality2"},
        {"digest": "sha256:" + "c" * 64},
    ],
)
def test_result_identity_changes_with_the_code(change: dict[str, object]) -> None:
    assert identity(code=replace(CODE, **change)) != identity()


def test_result_identity_ignores_where_the_code_was_installed_from() -> None:
    assert identity(code=replace(CODE, source="other-dist")) == identity()


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_result_identity_refuses_nan_and_infinite_parameters(bad: float) -> None:
    with pytest.raises(InvalidInput, match=r"\$\.parameters\.threshold: .* is not allowed"):
        identity(threshold=bad)
    with pytest.raises(InvalidInput, match=r"parameters\.bounds\.lo"):
        identity(bounds={"lo": bad})


# -- code identity: git -----------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo),
    }
    return subprocess.run(
        ["git", "-c", "user.name=Lab", "-c", "user.email=lab@example.org", *args],
        cwd=repo,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


MODULE = """
from pydantic import BaseModel
from neuroferry.pipelines.analysis import Analysis

class Parameters(BaseModel):
    cutoff: float = 0.5

def run(run):
    return {"cutoff": run.parameters.cutoff}

ANALYSIS = Analysis("unit-quality", run, Parameters, version="0.3")
"""


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Analysis]]:
    """A git checkout with one commit holding an analysis's module (importable); gives a
    function that imports the module afresh and returns its analysis."""
    repo = tmp_path / "repo"
    repo.mkdir()
    name = f"lab_quality_{uuid.uuid4().hex[:8]}"
    (repo / f"{name}.py").write_text(textwrap.dedent(MODULE))
    (repo / "README").write_text("analyses\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    monkeypatch.syspath_prepend(str(repo))

    def load() -> Analysis:
        sys.modules.pop(name, None)
        analysis: Analysis = importlib.import_module(name).ANALYSIS
        return analysis

    load.repo = repo  # type: ignore[attr-defined]
    load.module = name  # type: ignore[attr-defined]
    yield load
    sys.modules.pop(name, None)


def test_an_analysis_in_a_clean_checkout_has_its_commit(checkout: Callable[[], Analysis]) -> None:
    repo: Path = checkout.repo  # type: ignore[attr-defined]
    code = code_identity(checkout())
    assert code == CodeIdentity("unit-quality", "0.3", None, git(repo, "rev-parse", "HEAD"), False)
    assert code.as_dict()["commit"] == code.commit


@pytest.mark.parametrize("change", ["modified", "untracked", "staged"])
def test_a_dirty_checkout_is_refused_unless_allowed(
    checkout: Callable[[], Analysis], change: str
) -> None:
    repo: Path = checkout.repo  # type: ignore[attr-defined]
    head = git(repo, "rev-parse", "HEAD")
    if change == "modified":
        (repo / "README").write_text("changed\n")
    elif change == "untracked":
        (repo / "notes.txt").write_text("new\n")
    else:
        (repo / "README").write_text("staged\n")
        git(repo, "add", "README")
    analysis = checkout()
    with pytest.raises(ConfigError) as caught:
        code_identity(analysis)
    message = str(caught.value)
    assert "analysis 'unit-quality'" in message
    assert f"uncommitted changes (commit {head})" in message
    assert "commit or stash them, or allow a dirty tree" in message
    code = code_identity(analysis, allow_dirty=True)
    assert (code.commit, code.dirty) == (head, True)


def test_a_new_commit_changes_the_identity(checkout: Callable[[], Analysis]) -> None:
    repo: Path = checkout.repo  # type: ignore[attr-defined]
    module = repo / f"{checkout.module}.py"  # type: ignore[attr-defined]
    first = code_identity(checkout())
    module.write_text(module.read_text().replace("0.5", "0.6"))
    git(repo, "commit", "-q", "-am", "stricter")
    second = code_identity(checkout())
    assert first.commit != second.commit
    params = checkout().parameters()
    assert result_identity(first, ["s3://x"], params) != result_identity(second, ["s3://x"], params)


def test_a_module_the_checkout_does_not_track_has_no_commit(
    checkout: Callable[[], Analysis],
) -> None:
    repo: Path = checkout.repo  # type: ignore[attr-defined]
    module = repo / f"{checkout.module}.py"  # type: ignore[attr-defined]
    git(repo, "rm", "-q", "--cached", module.name)
    git(repo, "commit", "-q", "-m", "untrack")
    (repo / ".gitignore").write_text(module.name + "\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-q", "-m", "ignore")
    assert code_identity(checkout()).commit is None


def test_without_git_the_commit_is_unknown(
    checkout: Callable[[], Analysis], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo: Path = checkout.repo  # type: ignore[attr-defined]
    (repo / "README").write_text("dirty, but nobody can tell\n")
    analysis = checkout()
    empty = tmp_path / "no-git"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert code_identity(analysis) == CodeIdentity("unit-quality", "0.3", None, None, False)


def test_an_analysis_outside_any_checkout_has_no_commit(tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    name = f"plain_{uuid.uuid4().hex[:8]}"
    (outside / f"{name}.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(outside))
    try:
        analysis = importlib.import_module(name).ANALYSIS
        assert code_identity(analysis) == CodeIdentity("unit-quality", "0.3", None, None, False)
    finally:
        sys.path.remove(str(outside))
        sys.modules.pop(name, None)


# -- code identity: images --------------------------------------------------------------


def nothing(run: AnalysisRun) -> None:
    """A container analysis's function (the image is what runs)."""


def test_an_image_with_a_digest_is_identified_by_it() -> None:
    digest = "sha256:" + "0123456789abcdef" * 4
    analysis = Analysis("spikes", nothing, Params, version="4.1", image=f"lab/spikes@{digest}")
    code = code_identity(analysis)
    assert code == CodeIdentity("spikes", "4.1", None, None, False, "lab/spikes", digest)


def test_an_image_without_a_digest_has_none() -> None:
    code = code_identity(Analysis("spikes", nothing, Params, image="lab/spikes:4.1"))
    assert (code.image, code.digest) == ("lab/spikes:4.1", None)


@pytest.mark.parametrize("image", ["lab/spikes@sha256:abc", "lab/spikes@md5:" + "0" * 64, "@x"])
def test_a_malformed_digest_is_refused(image: str) -> None:
    with pytest.raises(ConfigError, match=r"analysis 'spikes': image .* is not name@sha256"):
        code_identity(Analysis("spikes", nothing, Params, image=image))
