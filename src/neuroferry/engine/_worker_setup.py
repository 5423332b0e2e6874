"""Loaded by every embedded Dask worker process (a Dask preload module).

The terminal's Ctrl-C reaches the whole process group; the service stops its workers
itself, so they ignore SIGINT instead of printing a traceback each. Their log records
have the service's secrets redacted, as the service's own have.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any


def dask_setup(worker: Any) -> None:
    """Dask calls this when the worker starts."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from neuroferry.config import get_settings
    from neuroferry.errors import ConfigError
    from neuroferry.redaction import install_log_redaction

    with contextlib.suppress(ConfigError):  # reported by the service; tasks redact their logs
        install_log_redaction(get_settings())
