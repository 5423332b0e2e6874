"""The pages' helpers: times, durations, sizes, state badges, local paths, paging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from starlette.requests import Request

from neuroferry.web.pages import (
    elapsed,
    format_ago,
    format_bytes,
    format_duration,
    format_time,
    local_path,
    pager,
    state_badge,
    state_class,
    time_tag,
    url_with,
)
from neuroferry.web.pages._render import environment

NOW = datetime(2025, 11, 22, 10, 0, 0, tzinfo=UTC)


def test_times_are_utc_whatever_they_came_as():
    assert format_time(NOW) == "2025-11-22 10:00 UTC"
    assert format_time("2025-11-22T11:30:05+01:30", seconds=True) == "2025-11-22 10:00:05 UTC"
    assert format_time(datetime(2025, 11, 22, 10, 0)) == "2025-11-22 10:00 UTC"  # naive: UTC
    assert format_time(None) == format_time("") == format_time("not a time") == "—"
    plus_two = NOW.astimezone(timezone(timedelta(hours=2)))
    assert format_time(plus_two) == "2025-11-22 10:00 UTC"


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(seconds=42), "42 s ago"),
        (timedelta(minutes=5, seconds=59), "5 min ago"),
        (timedelta(hours=3, minutes=1), "3 h ago"),
        (timedelta(days=1, hours=2), "1 day ago"),
        (timedelta(days=9), "9 days ago"),
        (-timedelta(minutes=5), "in 5 min"),
    ],
)
def test_relative_times(delta, text):
    assert format_ago(NOW - delta, now=NOW) == text


def test_time_tag_says_the_time_and_how_long_ago():
    tag = str(time_tag(datetime.now(UTC) - timedelta(minutes=3)))
    assert tag.startswith('<time datetime="') and 'title="3 min ago"' in tag
    assert tag.endswith(" UTC</time>")
    assert str(time_tag(None)) == "—"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.42, "0.4 s"),
        (42, "42 s"),
        (303, "5 min 03 s"),
        (7500, "2 h 05 min"),
        (3 * 86400 + 4 * 3600 + 5, "3 d 4 h"),
        (timedelta(minutes=1), "1 min 00 s"),
        (None, "—"),
        (-1, "—"),
        (float("nan"), "—"),
    ],
)
def test_durations(value, text):
    assert format_duration(value) == text


def test_elapsed_runs_to_now_for_running_things():
    assert elapsed(NOW, NOW + timedelta(seconds=90)) == 90
    assert elapsed(None) is None
    running = elapsed(datetime.now(UTC) - timedelta(seconds=30))
    assert running is not None and 29 < running < 60


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 B"), (512, "512 B"), (1536, "1.5 KiB"), (3.2 * 1024**3, "3.2 GiB"), (None, "—")],
)
def test_byte_sizes(value, text):
    assert format_bytes(value) == text


def test_state_badges_carry_their_words_and_safe_classes():
    assert state_class("up_for_retry") == "state state-up_for_retry"
    assert str(state_badge("up_for_retry")) == (
        '<span class="state state-up_for_retry">up for retry</span>'
    )
    hostile = str(state_badge('"><script>'))
    assert "<script>" not in hostile and 'class="state state-script"' in hostile
    assert str(state_badge(None)) == '<span class="state state-unknown">unknown</span>'


@pytest.mark.parametrize(
    ("target", "result"),
    [
        ("/jobs/12?tab=log", "/jobs/12?tab=log"),
        ("/", "/"),
        (None, "/jobs"),
        ("jobs", "/jobs"),
        ("//evil.example", "/jobs"),
        ("/\\evil.example", "/jobs"),
        ("https://evil.example/jobs", "/jobs"),
        ("/jobs\n", "/jobs"),
    ],
)
def test_local_paths_never_leave_the_site(target, result):
    assert local_path(target) == result


def request_for(query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/jobs",
            "query_string": query.encode(),
            "headers": [],
        }
    )


def test_url_with_replaces_query_parameters():
    request = request_for("state=running&offset=50&sort=-created")
    assert url_with(request, sort="name", offset=None) == "/jobs?state=running&sort=name"
    assert url_with(request_for(""), state="failed") == "/jobs?state=failed"
    assert url_with(request_for("a=1")) == "/jobs?a=1"
    assert url_with(request_for("name=a b&x=1"), x=None) == "/jobs?name=a+b"


def test_pager_links_keep_the_filters():
    page = pager(request_for("state=running&offset=50"), total=120, offset=50, limit=50, shown=50)
    assert page.summary == "51 to 100 of 120"
    assert page.prev_url == "/jobs?state=running"
    assert page.next_url == "/jobs?state=running&offset=100"
    last = pager(request_for("offset=100"), total=120, offset=100, limit=50, shown=20)
    assert last.next_url is None and last.prev_url == "/jobs?offset=50"
    assert pager(request_for(""), 0, 0, 50, 0).summary == "nothing found"


def test_templates_are_autoescaped_and_strict():
    env = environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.from_string("{{ x | state }}").render(x="failed").startswith('<span class="state')
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing }}").render()


def _luminance(hex_colour: str) -> float:
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def test_every_state_has_a_badge_with_aa_contrast():
    import re

    from neuroferry.engine._states import TASK_STATES
    from neuroferry.web.pages import STATIC

    css = (STATIC / "ferry.css").read_text()
    for state in TASK_STATES:
        rule = re.search(rf"\.state-{state} \{{([^}}]*)\}}", css)
        assert rule, f".state-{state} is missing from ferry.css"
        background = re.search(r"background: (#[0-9a-f]{6})", rule[1])[1]
        colour = re.search(r"[^-]color: (#[0-9a-f]{6})", " " + rule[1])[1]
        light, dark = sorted((_luminance(background), _luminance(colour)), reverse=True)
        ratio = (light + 0.05) / (dark + 0.05)
        assert ratio >= 4.5, f".state-{state}: contrast {ratio:.1f} is below WCAG AA (4.5)"
