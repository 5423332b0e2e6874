"""Loaded by every embedded Dask worker process (a Dask preload module).

The terminal's Ctrl-C reaches the whole process group; the service stops its workers
itself, so they ignore SIGINT instead of printing a traceback each.
"""

from __future__ import annotations

import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Dask calls this when the worker starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
