"""Fixtures of the analysis tests: an empty registry, and runs of an analysis over local or
S3 stores."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from neuroferry.pipelines.analysis import Analysis, AnalysisRun, DispatchModel
from neuroferry.stores import open_store


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No analysis registered by hand and the entry points read again."""
    from neuroferry.pipelines.analysis import _registry

    monkeypatch.setattr(_registry, "_registered", {})
    monkeypatch.setattr(_registry, "_installed", None)
    yield


@pytest.fixture
def run_analysis(tmp_path: Path) -> Callable[..., tuple[Any, Path]]:
    """Runs an analysis as a task would: over a dispatch model, with its parameters
    validated, a fresh results folder and the stores opened directly. Returns the run's
    outputs (validated by the output model) and the results folder."""
    count = 0

    def run(
        analysis: Analysis, inputs: DispatchModel, **parameters: Any
    ) -> tuple[BaseModel | None, Path]:
        nonlocal count
        count += 1
        results = tmp_path / f"results-{count}"
        results.mkdir()
        cancels: list[int] = []
        job = AnalysisRun(
            inputs=inputs,
            parameters=analysis.parameters.model_validate(parameters),
            results=results,
            open_store=lambda url: open_store(url),
            log=logging.getLogger(f"test-analysis-{analysis.name}"),
            check_cancelled=lambda: cancels.append(1),
        )
        outputs = analysis.run(job)
        assert cancels, "the analysis never checked for a cancel"
        if analysis.outputs is not None:
            assert isinstance(outputs, analysis.outputs)
        return outputs, results

    return run
