"""The environment a task's command runs with: a small allow-list, never the service's
own settings or credentials."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

PASSED = ("PATH", "LANG", "LANGUAGE", "TZ")
"""Variables of the service's environment every command gets (with ``LC_*``)."""


def command_environment(
    scratch: str | os.PathLike[str],
    allowed: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables a command gets: ``PATH``, ``LANG``, ``LANGUAGE``, ``TZ`` and ``LC_*``
    from ``environ`` (default ``os.environ``), the variables an admin named in ``allowed``
    (the ``command_environment`` setting), and ``HOME`` and ``TMPDIR`` set to ``scratch``
    (the task's own folder). Nothing else: no ``FERRY_*``, ``AWS_*``, database URLs or
    tokens unless an admin named them."""
    env = os.environ if environ is None else environ
    names = set(PASSED) | {n for n in env if n.startswith("LC_")} | set(allowed)
    out = {name: env[name] for name in sorted(names) if name in env}
    out.setdefault("PATH", os.defpath)
    home = str(Path(scratch))
    out["HOME"] = home
    out["TMPDIR"] = home
    return out
