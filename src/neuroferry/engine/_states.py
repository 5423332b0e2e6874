"""Task and job states, and how a job's state follows from its tasks'."""

from __future__ import annotations

from collections.abc import Iterable

PENDING = "pending"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
SKIPPED = "skipped"
CANCELLED = "cancelled"
UP_FOR_RETRY = "up_for_retry"
UP_FOR_RESCHEDULE = "up_for_reschedule"

TASK_STATES = (
    PENDING,
    QUEUED,
    RUNNING,
    UP_FOR_RETRY,
    UP_FOR_RESCHEDULE,
    SUCCEEDED,
    FAILED,
    SKIPPED,
    CANCELLED,
)
JOB_STATES = (PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)

DONE_OK = frozenset({SUCCEEDED, SKIPPED})
TERMINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})
WAITING = frozenset({QUEUED, UP_FOR_RETRY, UP_FOR_RESCHEDULE})
"""States of a task that will be claimed when its ``not_before`` passes."""
ACTIVE = WAITING | {RUNNING}

#: ``placement`` of the row that stands for a mapped task as a whole.
MAP = "map"


def job_state(task_states: Iterable[str], *, started: bool, cancel_requested: bool) -> str:
    """A job's state from its tasks' (mapped tasks count by their own row)."""
    states = list(task_states)
    if any(s in ACTIVE for s in states):
        return RUNNING if started else QUEUED
    if all(s in DONE_OK for s in states):
        return SUCCEEDED
    if cancel_requested or (CANCELLED in states and FAILED not in states):
        return CANCELLED
    if FAILED in states:
        return FAILED
    return PENDING
