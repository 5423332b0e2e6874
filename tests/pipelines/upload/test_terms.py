"""The modality and platform lists and the project names uploads may give, on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import delete

from neuroferry.db import vocab_terms
from neuroferry.errors import InvalidInput, NotFound
from neuroferry.pipelines.upload import (
    add_project,
    allowed_terms,
    delete_project,
    delete_term,
    list_projects,
    list_terms,
    put_term,
)


def test_lists_are_seeded_once_from_the_package(engine):
    modalities = {t.abbreviation: t for t in list_terms(engine, "modality")}
    assert modalities["ecephys"].name == "Extracellular electrophysiology"
    assert modalities["pophys"].legacy_names == ("ophys",)
    assert "SmartSPIM" in {t.abbreviation for t in list_terms(engine, "platform")}
    with engine.begin() as conn:
        conn.execute(delete(vocab_terms).where(vocab_terms.c.list == "platform"))
    assert list_terms(engine, "platform") == []  # an emptied list stays empty
    with pytest.raises(InvalidInput, match="list 'species' is not known"):
        list_terms(engine, "species")  # type: ignore[arg-type]


def test_admins_add_rename_and_remove_terms(engine):
    added = put_term(engine, "modality", "kinect", "Kinect depth video", "root", ["depth"])
    assert (added.abbreviation, added.legacy_names, added.created_by) == (
        "kinect",
        ("depth",),
        "root",
    )
    put_term(engine, "modality", "kinect", "Depth video", "root")
    found = {t.abbreviation: t for t in list_terms(engine, "modality")}
    assert (found["kinect"].name, found["kinect"].legacy_names) == ("Depth video", ())
    with pytest.raises(InvalidInput, match="'ECEPHYS' would match the modality 'ecephys'"):
        put_term(engine, "modality", "ECEPHYS", "Shouting", "root")
    with pytest.raises(InvalidInput, match="would match the modality 'ecephys'"):
        put_term(engine, "modality", "ephys", "Ephys", "root", ["Ecephys"])
    with pytest.raises(InvalidInput, match="'OPHYS' would match the modality 'pophys'"):
        put_term(engine, "modality", "ophys2", "Ophys", "root", ["OPHYS"])  # a legacy name
    with pytest.raises(InvalidInput, match="abbreviation 'a b' is not allowed"):
        put_term(engine, "modality", "a b", "A B", "root")
    with pytest.raises(InvalidInput, match="name: give the term's display name"):
        put_term(engine, "platform", "x", " ", "root")
    delete_term(engine, "modality", "kinect")
    with pytest.raises(NotFound, match="no modality 'kinect'; known: BARseq, "):
        delete_term(engine, "modality", "kinect")


def test_projects_and_allowed_terms(engine):
    assert list_projects(engine) == []
    allowed = allowed_terms(engine)
    assert allowed.projects == () and allowed.check_project("anything") == "anything"
    added = add_project(engine, " Ephys Platform ", "root")
    assert added.name == "Ephys Platform" and added.created <= datetime.now(UTC)
    add_project(engine, "Atlas", "root")
    with pytest.raises(InvalidInput, match="name: project 'Atlas' exists already"):
        add_project(engine, "Atlas", "root")
    with pytest.raises(InvalidInput, match="name: give the project's name"):
        add_project(engine, "", "root")
    assert [p.name for p in list_projects(engine)] == ["Atlas", "Ephys Platform"]
    modalities, platforms, projects = allowed_terms(engine)
    assert projects == ("Atlas", "Ephys Platform") and modalities and platforms
    allowed = allowed_terms(engine)
    with pytest.raises(InvalidInput, match="project_name: 'Other' is not a known project"):
        allowed.check_project("Other")
    assert allowed.modality("Extracellular electrophysiology").abbreviation == "ecephys"
    assert allowed.modality("OPHYS").abbreviation == "pophys"  # a legacy name
    assert allowed.platform("SMARTSPIM").abbreviation == "SmartSPIM"
    with pytest.raises(InvalidInput, match=r"modalities\.0: 'kinect' is not a known modality"):
        allowed.modality("kinect", "modalities.0")
    delete_project(engine, "Atlas")
    with pytest.raises(NotFound, match="no project 'Atlas'; known projects: Ephys Platform"):
        delete_project(engine, "Atlas")


def test_text_that_no_database_could_keep_is_refused_naming_the_field(engine):
    nul = "a\x00b"
    with pytest.raises(InvalidInput, match=r"name: .* contains a NUL character"):
        delete_project(engine, nul)
    with pytest.raises(InvalidInput, match=r"legacy_names\.0: .* contains a NUL character"):
        put_term(engine, "platform", "rig", "Rig", "root", [nul])
