"""The package layout: a package's private modules (``_x``) are imported only from inside
that package (``neuroferry.engine._claims`` only from ``neuroferry.engine.*``); other
packages use the names its ``__init__`` re-exports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import neuroferry

SRC = Path(neuroferry.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """Every dotted name an import in ``module``'s ``source`` names, with its line:
    ``from a import b`` names ``a`` and ``a.b``; relative imports are resolved."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _private_module(name: str) -> tuple[str, str] | None:
    """For a dotted name inside a private module, that module and the package that owns
    it (``neuroferry.engine._claims.x`` → ``neuroferry.engine._claims``,
    ``neuroferry.engine``); None for a public name."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[: i + 1]), ".".join(parts[:i])
    return None


def _foreign_private_imports() -> Iterator[tuple[str, int, str, str]]:
    """(file, line, importing module, private module) for each import of a private module
    from outside the package that owns it."""
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(path)
        seen: set[tuple[int, str]] = set()
        source = path.read_text(encoding="utf-8")
        for line, name in _imported(source, module, path.name == "__init__.py"):
            found = _private_module(name) if name.startswith("neuroferry.") else None
            if found is None:
                continue
            private, owner = found
            if module == owner or module.startswith(owner + ".") or (line, private) in seen:
                continue
            seen.add((line, private))
            yield str(path.relative_to(SRC.parent)), line, module, private


def test_no_module_imports_a_private_module_of_another_package() -> None:
    found = [
        f"{file}:{line}: {module} imports {private}"
        for file, line, module, private in _foreign_private_imports()
    ]
    assert not found, "private modules imported from outside their package:\n" + "\n".join(found)


def test_the_check_sees_private_imports_in_every_form() -> None:
    source = "\n".join(
        [
            "import neuroferry.engine._claims",
            "from neuroferry.engine._claims import claim_tasks",
            "from neuroferry.engine import _claims, get_job",
            "from .._claims import heartbeat",
            "from . import _render",
            "def later():",
            "    from neuroferry.engine._states import TERMINAL",
        ]
    )
    found = {}
    for line, name in _imported(source, "neuroferry.engine.sub.mod"):
        if (private := _private_module(name)) is not None:
            found.setdefault(line, set()).add(private)
    claims = ("neuroferry.engine._claims", "neuroferry.engine")
    assert found == {
        1: {claims},
        2: {claims},
        3: {claims},
        4: {claims},
        5: {("neuroferry.engine.sub._render", "neuroferry.engine.sub")},
        7: {("neuroferry.engine._states", "neuroferry.engine")},
    }
    assert _private_module("neuroferry.engine.get_job") is None
    assert _private_module("neuroferry.__version__") is None
