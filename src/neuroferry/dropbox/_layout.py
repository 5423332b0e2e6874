"""The files a drop-box writes beside a submission, in the original's layout:

``{group}/results/job__{dropbox}_{timestamp}/logs/certificate.txt`` (the set-up log and a
line per dataset), ``logs/DATASET_NAME:{dataset}_STATUS.txt`` (JSON, one per dataset),
``process_results/`` (the analysis's results) and ``process_results/end.txt``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

END_MARKER = b"end of analysis marker"
"""The exact body of ``end.txt`` (no newline), as the original writes it."""

INITIALIZING, IN_PROGRESS, SUCCESS, FAILED = "INITIALIZING", "IN PROGRESS", "SUCCESS", "FAILED"

#: A task's state as the original's dataset status (``STATUS``) says it.
STATUS_OF_TASK = {
    "pending": INITIALIZING,
    "queued": INITIALIZING,
    "up_for_retry": INITIALIZING,
    "up_for_reschedule": IN_PROGRESS,
    "running": IN_PROGRESS,
    "succeeded": SUCCESS,
    "skipped": SUCCESS,
    "failed": FAILED,
    "cancelled": FAILED,
}


def job_folder(group: str, dropbox: str, timestamp: str) -> str:
    """The key prefix of one submission's job: ``{group}/results/job__{dropbox}_{ts}``."""
    return f"{group}/results/job__{dropbox}_{timestamp}"


def certificate_key(folder: str) -> str:
    return f"{folder}/logs/certificate.txt"


def status_key(folder: str, dataset: str) -> str:
    """``logs/DATASET_NAME:{dataset}_STATUS.txt``, the key the original really writes."""
    return f"{folder}/logs/DATASET_NAME:{dataset}_STATUS.txt"


def end_key(folder: str) -> str:
    return f"{folder}/process_results/end.txt"


def dataset_names(datanames: Sequence[str]) -> list[str]:
    """Each dataset's name in its status file's key: the file's name, as the original has
    it; where two datasets share a file name, their paths within the group (``/`` as
    ``_``) tell them apart."""
    base = [posixpath.basename(d.rstrip("/")) for d in datanames]
    names = []
    for dataname, name in zip(datanames, base, strict=True):
        if base.count(name) > 1:
            name = dataname.split("/", 1)[-1].replace("/", "_")
        names.append(name)
    return names


def elapsed(seconds: float) -> str:
    """``H:MM:SS.ss``, as the original's certificate times its lines."""
    seconds = max(seconds, 0.0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{int(hours)}:{int(minutes):02d}:{secs:05.2f}"


def setup_lines(log: Sequence[Sequence[Any]]) -> list[str]:
    """The set-up log's lines, each with the tab and ``[+H:MM:SS.ss]`` of the original."""
    return [
        text if text.startswith("\n") else f"{text}\t [+{elapsed(float(at))}]" for text, at in log
    ]


def stamp(when: datetime | None) -> str:
    """A dataset line's time, ``%Y_%m_%d_%H_%M_%S`` as the original's instances write it."""
    return when.strftime("%Y_%m_%d_%H_%M_%S") if when is not None else "N/A"


def certificate(
    log: Sequence[Sequence[Any]], datasets: Sequence[Mapping[str, Any]] | None, poll: float
) -> str:
    """The certificate: with ``datasets`` (a submission that runs), their lines above the
    set-up log, as the original has them; without, the set-up log alone (a submission
    refused before anything ran)."""
    setup = setup_lines(log)
    if datasets is None:
        return "\n".join(setup) + "\n"
    lines = ["PER ENVIRONMENT MONITORING:", "================"]
    for d in datasets:
        time = d["time"] + (" (finished)" if d.get("finished") else "")
        line = (
            f"DATANAME: {d['dataname']} | STATUS: {d['status']} | TIME: {time} | "
            f"LAST COMMAND: {d.get('last') or 'NONE'}"
        )
        if d.get("cpu") is not None:
            line += f" | CPU_USAGE: {cpu_usage(d['cpu'])}"
        if d.get("error"):
            line += f" | ERROR: {d['error']}"
        lines.append(line)
    lines += [
        "================",
        f"These lines are updated about every {poll:g} seconds while the job runs; "
        "process_results/end.txt appears when every dataset has finished, failed ones too.",
        "For more information, see DATASET_NAME: files for stdout and stderr output.",
        " ",
        "++++++++++++++++++",
        " ",
        "JOB MANAGER SETUP LOG:",
        *setup,
    ]
    return "\n".join(lines) + "\n"


def memory_usage(value: float | None) -> str:
    """Resident memory as the original's wrapper shows it: ``257683 MB``."""
    return "N/A" if value is None else f"{round(value / 2**20)} MB"


def cpu_usage(value: float | None) -> str:
    """CPU use (percent of one core) as the original's wrapper shows it: ``96.4 %``."""
    return "N/A" if value is None else f"{value:.1f} %"


def status_file(dataset: Mapping[str, Any]) -> bytes:
    """One dataset's status file: the JSON the original's wrapper writes (4-space indent,
    its keys in its order), with how long the task has run (``elapsed``, ``H:MM:SS``), its
    ``error`` and ``results`` added."""
    body = {
        "instance": dataset.get("worker") or "N/A",
        "command": dataset.get("command") or "N/A",
        "input": dataset["dataname"],
        "status": dataset["status"],
        "reason": {SUCCESS: 0, FAILED: 1}.get(dataset["status"]),
        "memory_usage": memory_usage(dataset.get("memory")),
        "cpu_usage": cpu_usage(dataset.get("cpu")),
        "job_start": dataset.get("start") or "N/A",
        "job_finish": dataset.get("finish") or "N/A",
        "std": {str(i): line for i, line in enumerate(dataset.get("std") or [])},
        "elapsed": elapsed(dataset["elapsed"]).split(".")[0]
        if dataset.get("elapsed") is not None
        else "N/A",
        "error": dataset.get("error"),
        "results": dataset.get("results"),
    }
    return json.dumps(body, indent=4).encode()
