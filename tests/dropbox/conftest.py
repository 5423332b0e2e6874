"""Fixtures of the drop-box tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def clean_git_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test analysis counts as committed code, whatever the checkout's state."""
    monkeypatch.setattr(
        "neuroferry.pipelines.analysis._identity._git_state", lambda path: (None, False)
    )
