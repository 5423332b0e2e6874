"""The trivial analysis of ``bench/analysis.py``, and the same function for plain Dask.

Dask worker processes import this module by the name ``_analysis_tasks`` (they inherit the
parent's ``sys.path``, which holds the ``bench`` folder when the benchmark runs as
``python bench/analysis.py``); importing it registers the analysis there too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from neuroferry.pipelines.analysis import Analysis, AnalysisRun, DispatchModel, register_analysis
from neuroferry.stores import Store, open_store

NAME = "bench-trivial"


class Parameters(BaseModel):
    method: str = "m0"
    cutoff: float = 0.05


def trivial(run: AnalysisRun) -> dict[str, Any]:
    """Counts its inputs; writes nothing."""
    run.check_cancelled()
    assert isinstance(run.parameters, Parameters)
    return {"inputs": len(run.inputs.s3_location), "method": run.parameters.method}


TRIVIAL = Analysis(NAME, trivial, Parameters, version="1.0")
register_analysis(TRIVIAL)


def registered() -> bool:
    """Run on every worker (``client.run``): importing this module registered the analysis."""
    return True


def _nothing() -> None:
    return None


def plain_run(location: str, method: str) -> dict[str, Any]:
    """The same analysis as plain Dask runs it: the function over one input, with its
    parameters validated and a results folder that it leaves empty."""
    return trivial(
        AnalysisRun(
            inputs=DispatchModel(
                s3_location=[location],
                asset_name=[location.rsplit("/", 1)[-1]],
                docdb_record_id=[""],
            ),
            parameters=Parameters(method=method),
            results=Path("."),
            open_store=_open,
            log=logging.getLogger("bench-trivial"),
            check_cancelled=_nothing,
        )
    )


def _open(url: str) -> Store:
    return open_store(url)
