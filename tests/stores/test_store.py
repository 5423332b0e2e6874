"""The Store protocol's seams: errors translated into neuroferry's, obstore kept inside
``neuroferry.stores``."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

import neuroferry
from conftest import use_s3_endpoint
from neuroferry.errors import StoreAuthError, StoreNotFound, StoreUnreachable
from neuroferry.stores import Store, open_store

SOURCE = Path(neuroferry.__file__).parent


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_no_module_outside_stores_imports_obstore() -> None:
    offenders = []
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE)
        if relative.parts[0] == "stores":
            continue
        modules = _imports(ast.parse(path.read_text(), str(path)))
        if any(m == "obstore" or m.startswith("obstore.") for m in modules):
            offenders.append(str(relative))
    assert offenders == []
    inside = ast.parse((SOURCE / "stores" / "_open.py").read_text())
    assert "obstore.store" in _imports(inside)  # the walk does see imports


def test_every_operation_of_an_unreachable_store_raises_store_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as sock:  # bound but never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        use_s3_endpoint(monkeypatch, f"http://127.0.0.1:{sock.getsockname()[1]}", retry_timeout=1)
        url = "s3://bucket/prefix"
        store = open_store(url)
        assert isinstance(store, Store)
        calls = {
            "read": lambda: store.get("a/b.json"),
            "write": lambda: store.put("a/b.json", b"{}"),
            "look up": lambda: store.head("a/b.json"),
            "remove": lambda: store.delete("a/b.json"),
        }
        for action, call in calls.items():
            with pytest.raises(StoreUnreachable, match=f"cannot reach {url}/a/b.json to {action}"):
                call()
        with pytest.raises(StoreUnreachable, match=f"cannot reach {url}/units/ to list"):
            list(store.list("units/"))
        with pytest.raises(StoreUnreachable, match=f"cannot reach {url} to list objects"):
            list(store.list())
        with pytest.raises(StoreUnreachable, match=f"cannot reach {url} to list"):
            store.check()


def test_refused_credentials_raise_store_auth_error(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(s3_env, create=True)
    store.put("kept.txt", b"x")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "not-the-key-id")
    refused = open_store(s3_env)
    with pytest.raises(StoreAuthError, match=f"{s3_env}/kept.txt refused to read"):
        refused.get("kept.txt")
    with pytest.raises(StoreNotFound):
        store.get("never-written.txt")
