"""Loaded by the Dask workers that :class:`~neuroferry.engine.WorkerGroup` starts (a Dask
preload module).

SIGUSR1 makes such a worker leave gracefully: it tells the scheduler it is retiring, the
scheduler gives the tasks it was running to other workers (without counting that as a
failure of those tasks), then it closes. The terminal's Ctrl-C never reaches it (it runs
in its own session); the command that started it retires it instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

REASON = "the command that added it ended"


def dask_setup(worker: Any) -> None:
    """Dask calls this in the worker's event loop when the worker starts."""
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[Any]] = []

    def retire() -> None:
        if not pending:
            pending.append(asyncio.ensure_future(worker.close_gracefully(reason=REASON)))

    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
        loop.add_signal_handler(signal.SIGUSR1, retire)
