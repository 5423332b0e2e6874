"""The job engine: states, the orchestrator and executors (the only code importing distributed)."""

from neuroferry.engine._executor import Executor

__all__ = ["Executor"]
