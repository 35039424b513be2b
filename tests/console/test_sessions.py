"""Console sessions (server-side, bounded, expiring) and CSRF token checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from connectord.console.sessions import SessionTable, new_token, same_token
from connectord.console.web import ago, percent, safe_next


def test_a_session_keeps_the_key_server_side_under_a_fresh_random_id() -> None:
    table = SessionTable()
    one = table.create("cdk_secret", "acme")
    two = table.create("cdk_secret", "acme")
    assert one.id != two.id
    assert len(one.id) == len(one.csrf_token) == 43
    assert one.csrf_token != two.csrf_token
    assert "cdk_secret" not in repr(one)
    assert table.get(one.id) is one
    assert table.get("not-a-session") is None
    assert table.get(None) is None
    table.end(one.id)
    assert table.get(one.id) is None
    assert len(table) == 1


def test_sessions_end_when_idle_or_old_and_the_table_is_bounded() -> None:
    idle = SessionTable(idle_seconds=0.05)
    session = idle.create("k", "t")
    assert idle.get(session.id) is session  # use keeps it alive
    time.sleep(0.08)
    assert idle.get(session.id) is None
    old = SessionTable(max_age_seconds=0.05)
    session = old.create("k", "t")
    time.sleep(0.03)
    assert old.get(session.id) is session
    time.sleep(0.03)
    assert old.get(session.id) is None  # used or not
    small = SessionTable(max_sessions=2)
    first, second = small.create("a", "t"), small.create("b", "t")
    small.get(first.id)  # the least recently used is now the second
    third = small.create("c", "t")
    assert [small.get(s.id) is not None for s in (first, second, third)] == [True, False, True]


def test_flashes_are_shown_once() -> None:
    session = SessionTable().create("k", "t")
    session.flash("Saved.")
    session.flash("Oops", "error")
    assert session.take_flashes() == [("ok", "Saved."), ("error", "Oops")]
    assert session.take_flashes() == []


def test_tokens_compare_in_full() -> None:
    token = new_token()
    assert same_token(token, token)
    for given in (None, "", token[:-1], token + "x", ["list"], 42):
        assert not same_token(token, given)


def test_after_sign_in_only_a_path_of_this_site() -> None:
    assert safe_next("/connectors/abc?x=1") == "/connectors/abc?x=1"
    for target in (None, "", "https://evil.example/", "//evil.example/x", "/\\evil", "connectors"):
        assert safe_next(target) == "/connectors"


def test_figures_read_well() -> None:
    assert percent(None) == "\N{EN DASH}"
    assert percent(1.0) == "100%"
    assert percent(0.995) == "99.5%"
    assert ago(None) == "never"
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert ago(now - timedelta(seconds=10), now) == "just now"
    assert ago(now - timedelta(minutes=5), now) == "5 min ago"
    assert ago(now - timedelta(hours=3), now) == "3 h ago"
    assert ago(now - timedelta(days=2), now) == "2 d ago"
