"""The catalog pages: the search box's two languages (MongoDB-style JSON and field=value
terms), sorting and paging, a bad filter named in words, and an asset's page with its
metadata documents and where its data lies."""

from __future__ import annotations

import re
import secrets
import shlex

import pytest
from playwright.sync_api import expect

from neuroferry.errors import InvalidInput
from neuroferry.web.pages.catalog import parse_query

# -- the terms language, without a browser ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("   \n ", {}),
        ('{"subject.subject_id": "123456"}', {"subject.subject_id": "123456"}),
        ("subject.sex=Female", {"subject.sex": "Female"}),
        ("location~lake", {"location": {"$regex": "lake", "$options": "i"}}),
        ("ecephys_7", {"name": {"$regex": "ecephys_7", "$options": "i"}}),
        ("a.b>=2024-01-01", {"a.b": {"$gte": "2024-01-01"}}),
        ("rating>3", {"rating": {"$gt": 3}}),
        ("qc=true", {"qc": {"$in": ["true", True]}}),
        ('project="Ephys Platform"', {"data_description.project_name": "Ephys Platform"}),
        (
            "platform=SmartSPIM subject_id=123",
            {
                "$and": [
                    {
                        "$or": [
                            {"data_description.platform.abbreviation": "SmartSPIM"},
                            {"data_description.platform.name": "SmartSPIM"},
                            {"upload_job.platform.abbreviation": "SmartSPIM"},
                            {"upload_job.platform.name": "SmartSPIM"},
                        ]
                    },
                    {
                        "$or": [
                            {"data_description.subject_id": {"$in": ["123", 123]}},
                            {"subject.subject_id": {"$in": ["123", 123]}},
                        ]
                    },
                ]
            },
        ),
        (
            "subject!=7",
            {
                "$and": [
                    {"data_description.subject_id": {"$nin": ["7", 7]}},
                    {"subject.subject_id": {"$nin": ["7", 7]}},
                ]
            },
        ),
        ("name~a.b(c", {"name": {"$regex": r"a\.b\(c", "$options": "i"}}),
    ],
)
def test_filters_are_json_or_terms(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1,}', "filter: not valid JSON at line 1, column 9"),
        ('{"a": ', "filter: not valid JSON at line 1"),
        ('project="Ephys', "filter: No closing quotation"),
        ("subject=", "filter: 'subject=' has no value after '='"),
        ("$where=1", "filter: '$where' is not a field"),
        ("a..b=1", "filter: 'a..b' is not a field"),
    ],
)
def test_bad_filters_say_what_is_wrong(text, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        parse_query(text)


# -- the pages ------------------------------------------------------------------------------


def register(portal, owner: str, count: int = 3) -> list[dict]:
    """Assets of a new subject, registered through the catalog API by an admin for
    ``owner`` (users see only their own assets)."""
    subject = f"8{secrets.randbelow(10**6):06d}"
    docs = []
    for i in range(count):
        name = f"SmartSPIM_{subject}_2024-0{i + 1}-15_10-00-00"
        docs.append(
            {
                "name": name,
                "location": f"s3://lab-lake/raw/{name}",
                "data_description": {
                    "name": name,
                    "subject_id": subject,
                    "creation_time": f"2024-0{i + 1}-15T10:00:00",
                    "project_name": "Brain Atlas",
                    "platform": {"name": "SmartSPIM platform", "abbreviation": "SmartSPIM"},
                    "modalities": [
                        {"name": "Selective plane illumination", "abbreviation": "SPIM"}
                    ],
                    "data_level": "raw",
                },
                "subject": {"subject_id": subject, "sex": "Female", "genotype": "wt/wt"},
                "procedures": {"subject_procedures": [{"procedure_type": "Perfusion"}]},
            }
        )
    answer = portal.api("PUT", "/catalog", json=docs, params={"owner": owner})
    assert answer.status_code == 200, answer.text
    return docs


def search(page, text: str) -> None:
    page.get_by_label("Filter").fill(text)
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()


def names(page) -> list[str]:
    return page.locator("tbody tr[data-asset]").evaluate_all(
        "rows => rows.map(r => r.dataset.asset)"
    )


def test_searching_by_json_and_by_terms_sorting_and_a_bad_filter(portal, page_as, shot):
    docs = register(portal, "alice")
    subject = docs[0]["data_description"]["subject_id"]
    page = page_as("alice")
    page.goto("/catalog")
    expect(page.get_by_role("heading", name="Catalog")).to_be_visible()

    search(
        page,
        f'{{"subject.subject_id": "{subject}", "data_description.creation_time": '
        '{"$gte": "2024-02-01"}}',
    )
    assert names(page) == [docs[2]["name"], docs[1]["name"]]  # newest acquired first
    row = page.locator(f'tr[data-asset="{docs[2]["name"]}"]')
    assert re.search(
        rf"SmartSPIM\s+{subject}\s+2024-03-15 10:00:00\s+s3://lab-lake/raw/", row.inner_text()
    )

    search(page, f"platform=SmartSPIM subject={subject}")
    assert names(page) == [d["name"] for d in reversed(docs)]
    assert "1 to 3 of 3" in page.locator(".pager").inner_text()
    # sort by a column: the header link, then again for the other way round
    page.get_by_role("link", name="Acquired").click()
    assert names(page) == [d["name"] for d in docs]
    assert page.get_by_label("Filter").input_value() == f"platform=SmartSPIM subject={subject}"
    shot(page, "catalog")

    search(page, f"subject={subject} acquired<2024-02-01")
    assert names(page) == [docs[0]["name"]]
    # another user's search finds none of alice's assets
    other = page_as("bob")
    other.goto("/catalog")
    search(other, f"subject={subject}")
    assert names(other) == []

    # a bad filter is named in words, with the filter kept to fix it
    for bad, says in [
        ('{"subject.subject_id": {"$foo": 1}}', "$foo at subject.subject_id is not supported"),
        ('{"subject.subject_id": ', "filter: not valid JSON at line 1"),
    ]:
        with page.expect_response(lambda r: "/catalog" in r.url) as answer:
            search(page, bad)
        assert answer.value.status == 422
        expect(page.get_by_role("alert")).to_contain_text(says)
        assert page.get_by_label("Filter").input_value() == bad
        assert page.locator("tbody tr[data-asset]").count() == 0


def test_an_assets_page_shows_its_documents_and_where_it_lies(portal, page_as, shot):
    doc = register(portal, "bob", 1)[0]
    page = page_as("bob")
    page.goto("/catalog")
    search(page, doc["data_description"]["subject_id"])  # a word: names that contain it
    page.get_by_role("link", name=doc["name"]).click()
    page.wait_for_url(f"**/catalog/{doc['name']}")
    expect(page.get_by_role("heading", name=doc["name"])).to_be_visible()
    facts = page.locator("dl.facts").inner_text()
    assert "Brain Atlas" in facts and "SmartSPIM" in facts and "2024-01-15 10:00:00" in facts

    location = doc["location"]
    assert page.locator("#location").inner_text() == location
    assert page.locator("#cmd-ls").inner_text() == f"ferry ls {location}"
    assert page.locator("#cmd-sync").inner_text() == (
        f"ferry sync {location} {shlex.quote('./' + doc['name'])}"
    )
    page.get_by_role("button", name="Copy the command to list its files").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()

    # one collapsible document per metadata file, the first one open
    documents = page.locator("details.document")
    expect(documents).to_have_count(4)  # data_description, subject, procedures, the whole
    first = documents.nth(0)
    assert first.get_attribute("open") is not None and "data_description" in first.inner_text()
    subject = documents.filter(has=page.locator("summary", has_text=re.compile(r"^subject$")))
    assert subject.get_attribute("open") is None
    subject.locator("summary").click()
    assert '"genotype": "wt/wt"' in subject.locator("pre").inner_text()
    assert "No job you can see made it" in page.locator("main").inner_text()
    shot(page, "asset")

    missing = page.goto("/catalog/no-such-asset")
    assert missing.status == 404
    assert "no asset named 'no-such-asset' in the catalog" in page.locator("main").inner_text()
