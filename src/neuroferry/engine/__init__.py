"""The job engine: states, the orchestrator and executors (the only code importing distributed)."""

from neuroferry.engine._clusters import make_cluster, resources_for, worker_resources
from neuroferry.engine._context import (
    Cancelled,
    Reschedule,
    TaskContext,
    TaskFailed,
    TaskLog,
    cancel_key,
    log_key,
)
from neuroferry.engine._executor import Executor
from neuroferry.engine._jobs import (
    NewJob,
    cancel_job,
    get_job,
    job_tasks,
    list_jobs,
    read_log,
    retry_job,
    submit_job,
    submit_jobs,
)
from neuroferry.engine._kinds import (
    JobKind,
    PreparedJob,
    TaskDef,
    get_kind,
    job_kinds,
    register_kind,
)
from neuroferry.engine._metrics import METRICS
from neuroferry.engine._orchestrator import Orchestrator
from neuroferry.engine._states import JOB_STATES, TASK_STATES

__all__ = [
    "JOB_STATES",
    "METRICS",
    "TASK_STATES",
    "Cancelled",
    "Executor",
    "JobKind",
    "NewJob",
    "Orchestrator",
    "PreparedJob",
    "Reschedule",
    "TaskContext",
    "TaskDef",
    "TaskFailed",
    "TaskLog",
    "cancel_job",
    "cancel_key",
    "get_job",
    "get_kind",
    "job_kinds",
    "job_tasks",
    "list_jobs",
    "log_key",
    "make_cluster",
    "read_log",
    "register_kind",
    "resources_for",
    "retry_job",
    "submit_job",
    "submit_jobs",
    "worker_resources",
]
