"""What a job may touch: the folders and store URLs its owner was granted.

Deny by default. A user reads folders under the shared ``source_roots`` and their own
``[grants.NAME] source_roots``, store URLs under ``store_prefixes``, their own prefixes and
the service's destinations, and writes only to the destinations. An admin reads and writes
anywhere. Nobody, whatever the roots say, reaches the service's own files: its home (but
for its ``demo/`` folder), database, config file, staging folder and the folders behind
its ``file://`` stores (those are read through stores, never as source folders).

Every value is checked as it will be used: store URLs and paths are percent-decoded until
stable and normalised (``.``/``..`` parts, repeated ``/``, scheme and host case) first;
folders are checked by their spelling when a job is submitted and by their real path
(symlinks followed) when a task reads them.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from neuroferry.config import Settings, config_path
from neuroferry.errors import ConfigError, Forbidden, UnsafePath

__all__ = [
    "Access",
    "access_for",
    "internal_access",
    "normalise_path",
    "normalise_url",
]

_DECODE_ROUNDS = 8
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SLASHES = re.compile(r"/{2,}")
_SQLITE = re.compile(r"^sqlite(\+\w+)?:///")


# -- normalisation -------------------------------------------------------------------------


def _decoded(label: str, value: str) -> str:
    """``value`` percent-decoded until decoding changes nothing more."""
    for _ in range(_DECODE_ROUNDS):
        try:
            once = unquote(value, errors="strict") if "%" in value else value
        except UnicodeDecodeError:
            raise UnsafePath(
                f"{label}: {value!r} holds a percent-encoded byte that is not UTF-8 text"
            ) from None
        if once == value:
            return value
        value = once
    raise UnsafePath(f"{label}: {value!r} is percent-encoded too many times; give it plainly")


def _check_characters(label: str, value: str) -> None:
    if _CONTROL.search(value):
        raise UnsafePath(
            f"{label}: {value!r} holds a control character (NUL, newline, tab …); "
            "give a plain path or URL"
        )


def _normal_segments(label: str, shown: str, path: str) -> str:
    """An absolute ``/``-path without empty, ``.`` or ``..`` parts; a ``..`` that would
    climb above the root is refused."""
    parts: list[str] = []
    for part in _SLASHES.sub("/", path).split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise UnsafePath(f"{label}: {shown!r} climbs above its root with '..'")
            parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def normalise_url(label: str, url: str) -> str:
    """The canonical form of a store URL (``file://`` for a plain path): percent-decoded
    until stable, scheme and host in lower case, no ``.``/``..``/empty path parts, no
    trailing ``/``. Refuses control characters, queries, fragments, user names and a
    ``..`` above the bucket or the file system's root (:class:`UnsafePath`, naming
    ``label``)."""
    if not isinstance(url, str) or not url:
        raise UnsafePath(f"{label}: give a store URL or an absolute path")
    _check_characters(label, url)
    if "://" not in url:
        return "file://" + str(normalise_path(label, url))
    decoded = _decoded(label, url)
    _check_characters(label, decoded)
    if "://" not in decoded:
        raise UnsafePath(f"{label}: {url!r} is not a valid store URL")
    scheme, _, rest = decoded.partition("://")
    scheme = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise UnsafePath(f"{label}: {url!r} does not start with a valid URL scheme")
    if "?" in rest or "#" in rest:
        raise UnsafePath(f"{label}: {url!r}: store URLs take no '?' query or '#' fragment")
    host, slash, path = rest.partition("/")
    host = host.lower()
    if "@" in host or "\\" in host:
        raise UnsafePath(f"{label}: {url!r}: give the bucket (or host) alone, without a user")
    if scheme == "file":
        if host not in ("", "localhost"):
            raise UnsafePath(f"{label}: {url!r} names host {host!r}; use file:///absolute/path")
        return "file://" + _normal_segments(label, url, "/" + path)
    path = _normal_segments(label, url, "/" + path) if slash else "/"
    return f"{scheme}://{host}{path.rstrip('/')}"


def normalise_path(label: str, path: str) -> Path:
    """An absolute local path as written, without ``.``/``..``/empty parts (``file://``
    URLs become their path). Refuses relative paths, control characters, and spellings
    whose percent-decoded form climbs above the root (:class:`UnsafePath`)."""
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"{label}: give an absolute path")
    _check_characters(label, path)
    if path.startswith("file://"):
        return Path(normalise_url(label, path).removeprefix("file://"))
    _check_characters(label, _decoded(label, path))
    if not posixpath.isabs(path):
        raise UnsafePath(f"{label}: {path!r} is not an absolute path; give the full path")
    return Path(_normal_segments(label, path, path))


def _spellings(label: str, path: str) -> list[Path]:
    """The path as written and, if different, as percent-decoded: both are checked."""
    plain = normalise_path(label, path)
    if path.startswith("file://") or "%" not in path:
        return [plain]
    decoded = normalise_path(label, _decoded(label, path))
    return [plain] if decoded == plain else [plain, decoded]


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or under it (both normalised): ``path == root or root
    in path.parents``, comparing the paths' parts once instead of each parent's."""
    parts, head = path.parts, root.parts
    return parts[: len(head)] == head if len(parts) > len(head) else path == root


def _url_inside(url: str, prefix: str) -> bool:
    """Whether canonical ``url`` is ``prefix`` or under it (whole path parts only)."""
    if url == prefix:
        return True
    head = prefix if prefix.endswith("/") else prefix + "/"
    return url.startswith(head)


def _both(path: Path) -> tuple[Path, ...]:
    """``path`` as configured and with its symlinks followed."""
    real = Path(os.path.realpath(path))
    return (path,) if real == path else (path, real)


def _local(url: str) -> Path | None:
    return Path(url.removeprefix("file://")) if url.startswith("file://") else None


# -- who may touch what ------------------------------------------------------------------

_PATHS = ("roots", "own_roots", "exempt", "every_root")
"""The fields of :class:`Access` that are tuples of folders."""


@dataclass(frozen=True)
class Access:
    """What one user's jobs may read, write and remove. Picklable: it travels with a task
    to the workers, which check the real paths again before reading."""

    user: str | None
    """The user's name; ``None`` for the service itself (admin-like)."""
    is_admin: bool
    roots: tuple[Path, ...]
    """Folders this user may read: the shared ``source_roots`` and their own."""
    own_roots: tuple[Path, ...]
    """Their own granted folders, the only ones a user's job may remove folders from."""
    store_prefixes: tuple[str, ...]
    """Canonical store URL prefixes this user may read (shared and their own)."""
    destinations: tuple[str, ...]
    """Canonical URLs of the service's destinations: written by every user's jobs."""
    protected: tuple[tuple[Path, str], ...]
    """The service's own files and folders, each with what it is; never reachable."""
    exempt: tuple[Path, ...] = ()
    """Folders inside a protected one that stay reachable (the demo's session)."""
    every_root: tuple[Path, ...] = ()
    """Every configured source root (shared, and every user's): never removed."""

    @property
    def who(self) -> str:
        return f"user {self.user!r}" if self.user else "the service"

    def to_json(self) -> dict[str, Any]:
        """This access as JSON, to be stored with a job (see :meth:`from_json`)."""
        out: dict[str, Any] = {"user": self.user, "is_admin": self.is_admin}
        for name in _PATHS:
            out[name] = [str(p) for p in getattr(self, name)]
        out["store_prefixes"] = list(self.store_prefixes)
        out["destinations"] = list(self.destinations)
        out["protected"] = [[str(p), what] for p, what in self.protected]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Access:
        """The access :meth:`to_json` stored."""
        return cls(
            user=data["user"],
            is_admin=bool(data["is_admin"]),
            store_prefixes=tuple(data["store_prefixes"]),
            destinations=tuple(data["destinations"]),
            protected=tuple((Path(p), str(what)) for p, what in data["protected"]),
            **{name: tuple(Path(p) for p in data.get(name, ())) for name in _PATHS},
        )

    # -- messages --------------------------------------------------------------------

    def _ask(self) -> str:
        if self.user is None:
            return "ask an administrator"
        return f"ask an administrator to grant it ([grants.{self.user}] in ferry.toml)"

    def _roots_shown(self) -> str:
        roots = sorted({str(r) for r in self.roots})
        return ", ".join(roots) if roots else "none"

    # -- folders ---------------------------------------------------------------------

    def _protected_hit(self, path: Path) -> tuple[Path, str] | None:
        """The protected path that ``path`` is, lies in or contains (whose files reading
        ``path`` would reach), unless ``path`` lies in an exempt folder."""
        if any(_inside(path, e) for e in self.exempt):
            return None
        for where, what in self.protected:
            # inside a protected folder, or holding one (reading it all would reach it)
            if _inside(path, where) or _inside(where, path):
                return where, what
        return None

    def _refuse_protected(self, label: str, shown: str, path: Path) -> None:
        hit = self._protected_hit(path)
        if hit is not None:
            where, what = hit
            relations = {True: "is", False: "is inside" if where in path.parents else "holds"}
            relation = relations[path == where]
            raise Forbidden(
                f"{label}: {shown} {relation} the service's own {what} ({where}); no job may "
                "read or change it, whatever the source roots say"
            )

    def _readable(self, path: Path) -> bool:
        return self.is_admin or any(_inside(path, r) for r in self.roots)

    def check_folder(self, label: str, path: str, *, real: bool = False) -> Path:
        """The folder (or file) at ``path`` if this user's jobs may read it: by its
        normalised spelling, or (``real``, when the task reads it) by its real path with
        symlinks followed. Returns the path to use (the real one when ``real``)."""
        candidates = _spellings(label, path)
        if real:
            candidates = [Path(os.path.realpath(candidates[0]))]
        for candidate in candidates:
            shown = path if str(candidate) == path else f"{path} (which is {candidate})"
            self._refuse_protected(label, shown, candidate)
            if not self._readable(candidate):
                raise Forbidden(
                    f"{label}: {shown} is not under a folder {self.who} may read "
                    f"({self._roots_shown()}); {self._ask()}"
                )
        return candidates[0]

    def check_removal(self, label: str, path: str, *, real: bool = False) -> Path:
        """The folder at ``path`` if this user's job may remove it: readable, neither a
        source root nor holding one, and for users inside one of their own granted folders
        (never the shared ones)."""
        folder = self.check_folder(label, path, real=real)
        roots = {p for r in (*self.roots, *self.every_root) for p in _both(r)}
        if any(folder == root or folder in root.parents for root in roots):
            what = "a source root itself" if folder in roots else "holds a source root"
            raise Forbidden(
                f"{label}: {path} is {what}; it is never removed "
                "(remove_source_folders removes folders inside one)"
            )
        if self.is_admin:
            return folder
        own = {p for r in self.own_roots for p in _both(r)}
        if not any(root in folder.parents for root in own):
            granted = ", ".join(sorted(str(r) for r in self.own_roots)) or "none"
            raise Forbidden(
                f"{label}: {path} is not inside a folder granted to {self.who} alone "
                f"({granted}); remove_source_folders removes only folders there. Set "
                "tasks.remove_source_folders.skip_task: true, or ask an administrator"
            )
        return folder

    # -- stores ----------------------------------------------------------------------

    def _under_destination(self, url: str) -> bool:
        return any(_url_inside(url, d) for d in self.destinations)

    def _check_local_url(self, label: str, url: str, canonical: str) -> None:
        """A ``file://`` URL outside the destinations must not reach protected files."""
        local = _local(canonical)
        if local is not None and not self._under_destination(canonical):
            self._refuse_protected(label, url, local)

    def check_read_url(self, label: str, url: str) -> str:
        """The canonical form of ``url`` if this user's jobs may read it: under a store
        prefix they were granted or a destination (admins: anywhere but protected
        folders)."""
        canonical = normalise_url(label, url)
        self._check_local_url(label, url, canonical)
        if self.is_admin or self._under_destination(canonical):
            return canonical
        if any(_url_inside(canonical, p) for p in self.store_prefixes):
            return canonical
        local = _local(canonical)
        if local is not None and any(_inside(local, r) for r in self.roots):
            return canonical
        allowed = ", ".join(sorted({*self.store_prefixes, *self.destinations})) or "none"
        raise Forbidden(
            f"{label}: {url} is not under a store prefix {self.who} may read ({allowed}); "
            f"{self._ask()}"
        )

    def check_write_url(self, label: str, url: str) -> str:
        """The canonical form of ``url`` if this user's jobs may write there: inside a
        destination of the service (admins: anywhere but protected folders)."""
        canonical = normalise_url(label, url)
        self._check_local_url(label, url, canonical)
        if self.is_admin or self._under_destination(canonical):
            return canonical
        raise Forbidden(
            f"{label}: {url} is not inside a destination of this service "
            f"({', '.join(self.destinations)}); only admins may write elsewhere"
        )

    def check_read(self, label: str, value: str) -> str:
        """A store URL (``scheme://…``, ``file://`` included) or a local path, checked for
        reading; its canonical form."""
        if "://" in value:
            return self.check_read_url(label, value)
        return str(self.check_folder(label, value))


# -- building one ------------------------------------------------------------------------


def _folder(value: Path | str, what: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{what}: {value} is not an absolute path")
    return Path(os.path.normpath(path))


def _canonical(value: str, what: str) -> str:
    try:
        return normalise_url(what, value if "://" in value else str(_folder(value, what)))
    except UnsafePath as exc:
        raise ConfigError(str(exc)) from exc


def _sqlite_file(database_url: str) -> Path | None:
    match = _SQLITE.match(database_url)
    if match is None:
        return None
    rest = database_url[match.end() :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest).expanduser().absolute()


def protected_paths(settings: Settings) -> tuple[tuple[Path, str], ...]:
    """The service's own files and folders, each with what it is."""
    found: list[tuple[Path, str]] = [(settings.home, "home folder")]
    database = _sqlite_file(settings.database_url)
    if database is not None:
        found.append((database, "database"))
        found.extend(
            (database.with_name(database.name + s), "database")
            for s in ("-wal", "-shm", "-journal")
        )
    found.append((config_path().expanduser().absolute(), "config file"))
    if settings.staging_dir is not None:
        found.append((Path(settings.staging_dir).expanduser().absolute(), "staging folder"))
    stores = [settings.store_url, settings.log_store_url, *settings.destinations.values()]
    for url in stores:
        local = _local(_canonical(url, "store"))
        if local is not None:
            found.append((local, "store folder"))
    unique: dict[Path, str] = {}
    for path, what in found:
        for spelling in _both(Path(os.path.normpath(path))):
            unique.setdefault(spelling, what)
    return tuple(unique.items())


def access_for(settings: Settings, name: str | None, role: str) -> Access:
    """What the jobs of the user ``name`` with ``role`` may touch under ``settings``;
    ``name`` None is the service itself (admin-like, protected paths still refused)."""
    grant = settings.grants.get(name) if name is not None else None
    shared = [_folder(r, "source_roots") for r in settings.source_roots]
    own = [_folder(r, f"grants.{name}.source_roots") for r in grant.source_roots] if grant else []
    prefixes = [_canonical(p, "store_prefixes") for p in settings.store_prefixes]
    if grant is not None:
        prefixes += [_canonical(p, f"grants.{name}.store_prefixes") for p in grant.store_prefixes]
    destinations = [_canonical(u, "destinations") for u in settings.destinations.values()]
    roots = tuple(dict.fromkeys(p for r in [*shared, *own] for p in _both(r)))
    every = [
        _folder(r, f"grants.{user}.source_roots")
        for user, g in settings.grants.items()
        for r in g.source_roots
    ]
    return Access(
        user=name,
        is_admin=name is None or role == "admin",
        roots=roots,
        own_roots=tuple(dict.fromkeys(own)),
        store_prefixes=tuple(dict.fromkeys(prefixes)),
        destinations=tuple(dict.fromkeys(destinations)),
        protected=protected_paths(settings),
        exempt=tuple(dict.fromkeys(_both(settings.home / "demo"))),
        every_root=tuple(dict.fromkeys([*shared, *every])),
    )


def internal_access(settings: Settings) -> Access:
    """What jobs without an owner (started by the service itself) may touch."""
    return access_for(settings, None, "admin")
