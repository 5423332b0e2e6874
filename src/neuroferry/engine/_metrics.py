"""Prometheus metrics: task durations and bytes transferred counted by this process's
orchestrator; jobs, tasks by state and queue depth read from the database."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from neuroferry.engine._kinds import BYTES_COPIED_KEY

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Counters of one process (Prometheus adds them up across processes)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started: dict[tuple[int, int], float] = {}
        self.buckets: Counter[tuple[str, float]] = Counter()
        self.duration_sum: dict[str, float] = {}
        self.duration_count: Counter[str] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self.bytes_transferred = 0
        self.start_delay_sum = 0.0
        self.start_delay_count = 0

    def observe_start(self, claim: Any) -> None:
        """A task was claimed: remember when, and how long it waited to start."""
        with self._lock:
            self._started[(claim.task_id, claim.instance.attempt)] = time.monotonic()
            if claim.created is not None and claim.instance.attempt == 1:
                waited = (datetime.now(claim.created.tzinfo) - claim.created).total_seconds()
                self.start_delay_sum += max(waited, 0.0)
                self.start_delay_count += 1

    def observe_end(self, claim: Any, state: str, result: Any) -> None:
        """A task run ended: its duration, its outcome and the bytes it reports."""
        with self._lock:
            began = self._started.pop((claim.task_id, claim.instance.attempt), None)
            kind = claim.instance.kind
            self.finished[(kind, state)] += 1
            if began is not None:
                seconds = time.monotonic() - began
                self.duration_sum[kind] = self.duration_sum.get(kind, 0.0) + seconds
                self.duration_count[kind] += 1
                for bound in BUCKETS:
                    if seconds <= bound:
                        self.buckets[(kind, bound)] += 1
            if isinstance(result, dict) and isinstance(result.get(BYTES_COPIED_KEY), int):
                self.bytes_transferred += result[BYTES_COPIED_KEY]

    def render(self, engine: Engine) -> str:
        """The metrics in Prometheus text format (version 0.0.4)."""
        from neuroferry.engine._queries import counts_by_state
        from neuroferry.engine._states import JOB_STATES, TASK_STATES

        job_counts, task_counts, depth = counts_by_state(engine)
        out = [
            "# HELP ferry_jobs Jobs by state.",
            "# TYPE ferry_jobs gauge",
            *(f'ferry_jobs{{state="{s}"}} {job_counts.get(s, 0)}' for s in JOB_STATES),
            "# HELP ferry_tasks Task instances by state.",
            "# TYPE ferry_tasks gauge",
            *(f'ferry_tasks{{state="{s}"}} {task_counts.get(s, 0)}' for s in TASK_STATES),
            "# HELP ferry_queue_depth Tasks ready to run and waiting for a worker.",
            "# TYPE ferry_queue_depth gauge",
            f"ferry_queue_depth {depth}",
        ]
        with self._lock:
            out += [
                "# HELP ferry_task_duration_seconds How long task runs took.",
                "# TYPE ferry_task_duration_seconds histogram",
            ]
            for kind in sorted(self.duration_count):
                k = _escape(kind)
                cumulative = 0
                for bound in BUCKETS:
                    cumulative += self.buckets[(kind, bound)]
                    out.append(
                        f'ferry_task_duration_seconds_bucket{{kind="{k}",le="{bound}"}} '
                        f"{cumulative}"
                    )
                out += [
                    f'ferry_task_duration_seconds_bucket{{kind="{k}",le="+Inf"}} '
                    f"{self.duration_count[kind]}",
                    f'ferry_task_duration_seconds_sum{{kind="{k}"}} {self.duration_sum[kind]:.6f}',
                    f'ferry_task_duration_seconds_count{{kind="{k}"}} {self.duration_count[kind]}',
                ]
            out += [
                "# HELP ferry_task_runs_total Task runs that ended, by kind and outcome.",
                "# TYPE ferry_task_runs_total counter",
                *(
                    f'ferry_task_runs_total{{kind="{_escape(k)}",state="{s}"}} {n}'
                    for (k, s), n in sorted(self.finished.items())
                ),
                "# HELP ferry_bytes_transferred_total Bytes copied into stores by tasks.",
                "# TYPE ferry_bytes_transferred_total counter",
                f"ferry_bytes_transferred_total {self.bytes_transferred}",
                "# HELP ferry_task_start_delay_seconds Time from a task's creation to its first "
                "start (the engine's scheduling overhead included).",
                "# TYPE ferry_task_start_delay_seconds summary",
                f"ferry_task_start_delay_seconds_sum {self.start_delay_sum:.6f}",
                f"ferry_task_start_delay_seconds_count {self.start_delay_count}",
            ]
        return "\n".join(out) + "\n"


METRICS = Metrics()
