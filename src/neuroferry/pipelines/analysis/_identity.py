"""Code identity and result identity: which code made a result, and the hash that says
whether a result was made before.

**Code identity.** An analysis's code is named by its name and version and by where it
comes from: the installed distribution that provides its function's module (its version
is the analysis's version unless the analysis gives its own), and, when the function's
source file is tracked in a git checkout, the checkout's commit. A checkout with changes
that are not committed (``git status --porcelain`` lists anything: modified, staged or
untracked files) is refused unless the caller allows it; the identity then says
``dirty``. Without git, or outside a checkout, the commit is unknown (``None``). A
container analysis is identified by its image and, when the image is given as
``name@sha256:…``, its digest. A command analysis (registered by an admin) is identified
by its name, the version the admin saved, its command script, and its image and the
image's digest when the container runtime could tell.

**Result identity.** The sha256 (hex) of the canonical JSON (:func:`canonical_json`) of::

    {"code": {"name", "version", "commit", "digest"} and "dirty": true when dirty,
     "inputs": [input locations, sorted],
     "parameters": the validated parameters, defaults filled in (model_dump(mode="json"))}

so it does not change with the order of keys or of input locations, with ``1`` given for
``1.0`` on a float parameter, or with a parameter left out instead of given its default;
it changes with any parameter's value, any input, and the code's name, version, commit or
image digest. A command analysis's identity adds ``"command"`` and ``"image"`` (the code of
other analyses has neither key, so their identities stay what they were).

Code run from a checkout with uncommitted changes adds ``"dirty": true`` (a
clean identity has no ``dirty`` key, so identities of clean code stay what they were): a
dirty run never stands for a clean one.

**Canonical JSON.** Object keys sorted, no spaces (``,`` and ``:``), characters outside
ASCII written as themselves (UTF-8), and one spelling per number: a float with an integral
value is written as the integer (``1.0`` as ``1``, ``-0.0`` as ``0``), other floats in
Python's shortest round-trip form (``0.1``, ``1e-07``). NaN and infinities are refused.
Tuples are written as lists; any value other than a dict with string keys, list, tuple,
string, number, boolean or ``None`` is refused.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import math
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import (
    Distribution,
    PackageNotFoundError,
    distributions,
    packages_distributions,
    version,
)
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pydantic import BaseModel

from neuroferry.errors import ConfigError, InvalidInput
from neuroferry.pipelines.analysis._registry import Analysis

GIT_TIMEOUT = 10.0
"""Seconds a git command may take before the commit counts as unknown."""
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class CodeIdentity:
    """Which code an analysis runs."""

    name: str
    version: str | None
    source: str | None
    """The distribution that provides the analysis's function (``None``: none found)."""
    commit: str | None
    """The git commit of the checkout holding the function's source, if it is in one."""
    dirty: bool
    """The checkout had changes that are not committed (allowed by the caller)."""
    image: str | None = None
    """A container analysis's image, without its digest."""
    digest: str | None = None
    """The image's digest (``sha256:…``) when the image was given with one (or, for a
    command analysis, when the container runtime could tell)."""
    command: str | None = None
    """A command analysis's command script."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def code_identity(analysis: Analysis, allow_dirty: bool = False) -> CodeIdentity:
    """The code identity of ``analysis``. :class:`ConfigError` if its source lies in a git
    checkout with uncommitted changes, unless ``allow_dirty`` (the identity then says
    ``dirty``)."""
    if analysis.command is not None:
        command = analysis.command
        return CodeIdentity(
            analysis.name,
            analysis.version,
            None,
            None,
            False,
            image=command.image,
            digest=command.digest,
            command=command.script,
        )
    if analysis.image is not None:
        image, digest = _split_image(analysis)
        return CodeIdentity(
            analysis.name, analysis.version, None, None, False, image=image, digest=digest
        )
    module = getattr(analysis.run, "__module__", None) or ""
    path = _source_file(analysis)
    source = _distribution(module, path)
    found_version = analysis.version
    if found_version is None and source is not None:
        try:
            found_version = version(source)
        except PackageNotFoundError:
            found_version = None
    commit, dirty = _git_state(path)
    if dirty and not allow_dirty:
        raise ConfigError(
            f"analysis {analysis.name!r} comes from a git checkout with uncommitted changes "
            f"(commit {commit}): commit or stash them, or allow a dirty tree for this run"
        )
    return CodeIdentity(analysis.name, found_version, source, commit, dirty)


_KNOWN_MAX = 256
_known: dict[tuple[Analysis, bool], CodeIdentity] = {}


def known_code_identity(
    analysis: Analysis, allow_dirty: bool = False, *, fresh: bool = False
) -> CodeIdentity:
    """:func:`code_identity` as this process last worked it out (``fresh``: work it out
    again). For the many tasks a worker runs of one analysis: looking at the checkout
    starts three git processes each time. A caller that finds the identity stale (it does
    not match the one dispatched) asks again with ``fresh``."""
    key = (analysis, allow_dirty)
    code = None if fresh else _known.get(key)
    if code is None:
        code = code_identity(analysis, allow_dirty)
        if len(_known) >= _KNOWN_MAX:
            _known.clear()
        _known[key] = code
    return code


def _split_image(analysis: Analysis) -> tuple[str, str | None]:
    assert analysis.image is not None
    image, at, digest = analysis.image.partition("@")
    if not at:
        return image, None
    if not image or not _DIGEST.match(digest):
        raise ConfigError(
            f"analysis {analysis.name!r}: image {analysis.image!r} is not name@sha256:<64 hex "
            "digits>"
        )
    return image, digest


@functools.lru_cache(maxsize=256)
def _distribution(module: str, path: Path | None) -> str | None:
    """The installed distribution that provides ``module`` (the first by name when several
    provide its top-level package), or, for an editable install, the one whose project
    folder holds the module's source file ``path``. Looked up once per process, as the
    analyses themselves are loaded once: it reads every installed distribution's metadata
    (a tenth of a second or more), which a task that runs in milliseconds cannot afford."""
    top = module.partition(".")[0]
    names = packages_distributions().get(top) if top else None
    if names:
        return sorted(names)[0]
    if path is None:
        return None
    for dist in sorted(distributions(), key=lambda d: d.metadata["Name"] or ""):
        folder = _editable_folder(dist)
        if folder is not None and path.is_relative_to(folder):
            return str(dist.metadata["Name"])
    return None


def _editable_folder(dist: Distribution) -> Path | None:
    """The project folder of a distribution installed in editable mode (PEP 610)."""
    try:
        found = json.loads(dist.read_text("direct_url.json") or "null")
    except ValueError:
        return None
    if not isinstance(found, dict) or not (found.get("dir_info") or {}).get("editable"):
        return None
    url = str(found.get("url") or "")
    if not url.startswith("file://"):
        return None
    return Path(unquote(urlparse(url).path)).resolve()


def _source_file(analysis: Analysis) -> Path | None:
    try:
        found = inspect.getsourcefile(analysis.run)
    except TypeError:
        return None
    return Path(found).resolve() if found else None


def _git_state(path: Path | None) -> tuple[str | None, bool]:
    """The commit of the checkout that tracks the source file ``path``, and whether the
    checkout has uncommitted changes; ``(None, False)`` outside a checkout or without git."""
    git = shutil.which("git")
    if path is None or git is None or not path.is_file():
        return None, False
    folder = path.parent
    tracked = _git(git, folder, "ls-files", "--error-unmatch", "--", path.name)
    commit = _git(git, folder, "rev-parse", "--verify", "HEAD") if tracked is not None else None
    if commit is None:
        return None, False
    status = _git(git, folder, "status", "--porcelain")
    return commit.strip(), status is None or bool(status.strip())


def _git(git: str, folder: Path, *args: str) -> str | None:
    """The output of ``git args`` run in ``folder`` with a scrubbed environment (no
    shell, a timeout); ``None`` if it fails."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LC_ALL": "C",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    try:
        done = subprocess.run(
            [git, "-C", str(folder), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON (see the module's documentation): the same text for the
    same data, whatever the key order or the spelling of its numbers. :class:`InvalidInput`
    naming where a NaN, an infinity or a value JSON cannot hold lies."""
    return json.dumps(
        _canonical(value, "$"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _canonical(value: Any, where: str) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where}: {value} is not allowed (only finite numbers)")
        return int(value) if value.is_integer() else float(value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where}: key {key!r} is not a string")
            out[key] = _canonical(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise InvalidInput(f"{where}: a {type(value).__name__} cannot be written as JSON")


def result_identity(code: CodeIdentity, locations: Sequence[str], parameters: BaseModel) -> str:
    """The identity of the result of ``code`` run over ``locations`` with ``parameters``
    (validated): the sha256 (hex) of their canonical JSON, as the module's documentation
    says. :class:`InvalidInput` if a parameter is NaN or infinite."""
    hashed: dict[str, Any] = {
        "name": code.name,
        "version": code.version,
        "commit": code.commit,
        "digest": code.digest,
    }
    if code.dirty:
        hashed["dirty"] = True
    if code.command is not None:
        hashed.update(command=code.command, image=code.image)
    document = {
        "code": hashed,
        "inputs": sorted(locations),
        "parameters": parameters.model_dump(mode="json"),
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()
