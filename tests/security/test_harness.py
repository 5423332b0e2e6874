"""The deployment the probes attack is what it claims to be."""

from __future__ import annotations


def test_runs_in_production_mode_with_ordinary_users(hostile):
    me = hostile.api("GET", "/users/me", "alice")
    assert me.status_code == 200 and me.json()["role"] == "user"
    assert hostile.api("GET", "/users", "alice").status_code == 403
    assert hostile.api("GET", "/users", "admin").status_code == 200
    assert hostile.api("GET", "/users/me", None).status_code == 401
