"""Tokens and cost per session, thread, run, model, user and day, over date ranges."""

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from history_app.pricing import Tokens
from history_app.recording import CallRecord, record_llm_call
from history_app.services import dashboard_data, session_usage, usage_by, usage_totals
from tests.history.conftest import Place


def record(place, day, model="gpt-4o-2024-08-06", tokens=1000, thread=None, run=None, user=None):
    return record_llm_call(
        CallRecord(
            lc_run_id=uuid.uuid4(),
            session_id=place.session.pk,
            thread_id=(thread or place.thread).pk,
            run_id=(run or place.run).pk,
            user_id=(user or place.owner).pk,
            started_at=datetime(2025, 5, day, 10, tzinfo=UTC),
            provider="openai",
            model_name=model,
            tokens=Tokens(input=tokens, output=tokens // 2, total=tokens + tokens // 2),
            usage={"input_tokens": tokens, "output_tokens": tokens // 2},
        )
    )


@pytest.fixture
def calls(alice, bob):
    a, b = Place(alice, "A"), Place(bob, "B")
    record(a, 1)
    record(a, 1, model="gpt-4o-mini")
    record(a, 2, model="acme-llm")
    second_run = a.new_run()
    record(a, 3, run=second_run)
    record(b, 2, tokens=4000)
    return {"a": a, "b": b, "second_run": second_run}


def _cost(model, tokens):
    from history_app.pricing import library_price

    at = datetime(2025, 5, 1, tzinfo=UTC)
    t = Tokens(input=tokens, output=tokens // 2, total=tokens + tokens // 2)
    return library_price("openai", model, t, at).total


def test_usage_per_day_with_a_date_range(calls):
    rows = usage_by("day", start=date(2025, 5, 2), end=date(2025, 5, 3), order="key")

    assert [(r["day"], r["calls"], r["unpriced_calls"], r["total_tokens"]) for r in rows] == [
        (date(2025, 5, 2), 2, 1, 1500 + 6000),
        (date(2025, 5, 3), 1, 0, 1500),
    ]
    assert rows[0]["cost"] == _cost("gpt-4o", 4000)


def test_usage_per_model(calls):
    rows = {r["model_name"]: r for r in usage_by("model")}

    assert rows["gpt-4o-2024-08-06"]["calls"] == 3
    assert rows["gpt-4o-2024-08-06"]["cost"] == 2 * _cost("gpt-4o", 1000) + _cost("gpt-4o", 4000)
    assert rows["acme-llm"]["unpriced_calls"] == 1
    assert rows["acme-llm"]["cost"] == 0
    assert usage_by("model", limit=1)[0]["model_name"] == "gpt-4o-2024-08-06"


def test_usage_per_session_user_thread_and_run(calls):
    a, b = calls["a"], calls["b"]

    sessions = {r["session_id"]: r["calls"] for r in usage_by("session")}
    users = {r["user_id"]: r["total_tokens"] for r in usage_by("user")}
    threads = {r["thread_id"]: r["calls"] for r in usage_by("thread")}
    runs = {r["run_id"]: r["calls"] for r in usage_by("run", session=a.session)}

    assert sessions == {a.session.pk: 4, b.session.pk: 1}
    assert users == {a.owner.pk: 4 * 1500, b.owner.pk: 6000}
    assert threads == {a.thread.pk: 4, b.thread.pk: 1}
    assert runs == {a.run.pk: 3, calls["second_run"].pk: 1}


def test_totals_with_filters(calls):
    a = calls["a"]

    everything = usage_totals()
    one_day = usage_totals(start=date(2025, 5, 1), end=date(2025, 5, 1))
    one_run = usage_totals(run=calls["second_run"])
    one_model = usage_totals(model="acme-llm")
    alice = usage_totals(user=a.owner, start=date(2025, 5, 2))

    assert everything["calls"] == 5
    assert everything["total_tokens"] == 4 * 1500 + 6000
    assert one_day["calls"] == 2
    assert one_run["calls"] == 1
    assert one_run["cost"] == _cost("gpt-4o", 1000)
    assert (one_model["calls"], one_model["unpriced_calls"], one_model["cost"]) == (1, 1, 0)
    assert alice["calls"] == 2


def test_rollups_and_calls_give_the_same_answers(calls):
    a = calls["a"]
    # per-day totals of a session from its rollup and from its calls (thread filter forces it)
    from_rollup = usage_by("day", session=a.session, order="key")
    from_calls = usage_by("day", session=a.session, thread=a.thread, order="key")

    keys = ("day", "calls", "input_tokens", "output_tokens", "total_tokens", "cost")
    assert [{k: r[k] for k in keys} for r in from_rollup] == [
        {k: r[k] for k in keys} for r in from_calls
    ]


def test_a_sessions_usage_summary(calls):
    summary = session_usage(calls["a"].session)

    assert summary["totals"]["calls"] == 4
    assert [r["day"] for r in summary["by_day"]] == [date(2025, 5, d) for d in (1, 2, 3)]
    assert {r["model_name"] for r in summary["by_model"]} == {
        "gpt-4o-2024-08-06",
        "gpt-4o-mini",
        "acme-llm",
    }


def test_unknown_dimensions_are_refused(db):
    with pytest.raises(ValueError, match="unknown dimension"):
        usage_by("planet")


def test_the_dashboard_data_fills_days_without_calls(calls):
    data = dashboard_data(days=5, today=date(2025, 5, 5))

    assert [row["day"].day for row in data["series"]] == [1, 2, 3, 4, 5]
    assert [row["calls"] for row in data["series"]] == [2, 2, 1, 0, 0]
    assert data["series"][4]["cost"] == Decimal(0)
    assert data["totals"]["calls"] == 5
    assert data["sessions"][0]["title"] in ("A", "B")
    assert {u["username"] for u in data["users"]} == {"alice", "bob"}
    assert [(u["model_name"], u["calls"]) for u in data["unpriced"]] == [("acme-llm", 1)]
