"""Command lines of admin-defined commands (the upload's ``command`` transformation, command
analyses): placeholders and container runtimes."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from neuroferry.engine._context import TaskFailed

PLACEHOLDERS = (
    "INPUT_SOURCE",
    "OUTPUT_LOCATION",
    "JOB_SETTINGS",
    "IMAGE_VERSION",
    "IMAGE",
    "S3_LOCATION",
)
"""What ``%NAME`` in a ``command_script`` is replaced with (see the upload and analysis guides)."""

# longest first, so that %IMAGE_VERSION is not read as %IMAGE followed by "_VERSION"
_PATTERN = re.compile("%(" + "|".join(sorted(PLACEHOLDERS, key=len, reverse=True)) + ")")

CONTAINER_COMMANDS = frozenset({"apptainer", "singularity", "docker", "podman"})
"""A script starting with one of these starts its own container and is run as it is."""


def command_words(script: str, values: Mapping[str, str], where: str) -> list[str]:
    """The words of ``script`` (split as a shell would, without running a shell) with each
    placeholder replaced; a value is never split or re-read, whatever characters it holds."""
    try:
        words = shlex.split(script)
    except ValueError as exc:
        raise TaskFailed(f"{where}.command_script cannot be split into words: {exc}") from exc
    if not words:
        raise TaskFailed(f"{where}.command_script is empty")
    return [_PATTERN.sub(lambda m: values[m.group(1)], word) for word in words]


def starts_own_container(words: Sequence[str]) -> bool:
    """Whether the command is itself a container runtime (``singularity exec …``)."""
    return PurePosixPath(words[0]).name in CONTAINER_COMMANDS


def image_reference(runtime: str, image: str, version: str | None) -> str:
    """The image as the runtime names it: ``name:version``, and for Apptainer and
    Singularity ``docker://name:version`` unless the image is a URL or a ``.sif`` file."""
    if runtime != "docker" and image.endswith(".sif"):
        return image
    ref = f"{image}:{version}" if version else image
    if runtime == "docker" or "://" in ref:
        return ref
    return f"docker://{ref}"


def in_container(
    runtime: str,
    image: str,
    words: Sequence[str],
    *,
    read_only: Sequence[str],
    writable: Sequence[str],
    workdir: str,
) -> list[str]:
    """``words`` run inside ``image`` with the given folders visible at the same paths."""
    if runtime == "docker":
        mounts: list[str] = []
        for path in read_only:
            mounts += ["-v", f"{path}:{path}:ro"]
        for path in writable:
            mounts += ["-v", f"{path}:{path}"]
        user = f"{os.getuid()}:{os.getgid()}"
        return ["docker", "run", "--rm", "--user", user, *mounts, "-w", workdir, image, *words]
    binds = [f"{p}:{p}:ro" for p in read_only] + [f"{p}:{p}" for p in writable]
    return [
        runtime,
        "exec",
        "--cleanenv",
        "--bind",
        ",".join(binds),
        "--pwd",
        workdir,
        image,
        *words,
    ]
