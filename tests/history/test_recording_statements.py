"""Recording an LLM call is paid on every model call of every run: its statements are pinned.

On PostgreSQL the call row, the thread and session totals, both daily rollups and "is
there a budget to evaluate?" are one statement; with the price override lookup, two.
"""

import uuid
from decimal import Decimal

import pytest

from core.time import now
from history_app import budgets
from history_app.models import Alert, Budget, DailyModelUsage, DailySessionUsage, LLMCall
from history_app.pricing import Tokens
from history_app.recording import CallRecord, record_llm_call
from sessions_app.models import Session
from tests.factories import make_session
from threads_app.models import Thread

COST = Decimal("0.00575")  # gpt-4o, 1200 in (200 cached), 300 out


def record(place, lc_run_id=None):
    return record_llm_call(
        CallRecord(
            lc_run_id=lc_run_id or uuid.uuid4(),
            session_id=place.session.pk,
            thread_id=place.thread.pk,
            run_id=place.run.pk,
            user_id=place.owner.pk,
            started_at=now(),
            provider="openai",
            model_name="gpt-4o-2024-08-06",
            tokens=Tokens(input=1200, output=300, total=1500, cache_read=200),
        )
    )


def test_recording_a_call_on_postgres_takes_two_statements_and_keeps_every_total(
    place, on_postgres, mocker_push, django_assert_num_queries, django_capture_on_commit_callbacks
):
    record(place)  # the first call of the day creates the rollup rows

    with django_assert_num_queries(2), django_capture_on_commit_callbacks(execute=True):
        call = record(place)

    assert call.pk == LLMCall.objects.latest("id").pk
    thread = Thread.objects.get(pk=place.thread.pk)
    session = Session.objects.get(pk=place.session.pk)
    assert thread.total_calls == session.total_calls == 2
    assert thread.total_tokens == session.total_tokens == 3000
    assert thread.total_cost == session.total_cost == 2 * COST
    assert (session.total_input_tokens, session.total_output_tokens) == (2400, 600)
    day = DailySessionUsage.objects.get(session_id=place.session.pk)
    assert (day.calls, day.total_tokens, day.cost_total) == (2, 3000, 2 * COST)
    model_day = DailyModelUsage.objects.get(model_name="gpt-4o-2024-08-06")
    assert (model_day.calls, model_day.cache_read_tokens, model_day.cost_total) == (
        2,
        400,
        2 * COST,
    )
    # The live event carries the totals the statement returned.
    _groups, payload = [p for p in mocker_push if p[1]["type"] == "usage.recorded"][-1]
    assert payload["thread_total_tokens"] == payload["session_total_tokens"] == 3000
    assert Decimal(payload["session_total_cost"]) == 2 * COST


def test_a_call_reported_twice_on_postgres_is_one_statement_and_changes_nothing(
    place, on_postgres, django_assert_num_queries
):
    lc_run_id = uuid.uuid4()
    record(place, lc_run_id)

    with django_assert_num_queries(2):
        assert record(place, lc_run_id) is None

    assert LLMCall.objects.count() == 1
    assert Session.objects.get(pk=place.session.pk).total_calls == 1
    assert DailySessionUsage.objects.get().calls == 1


def test_an_applicable_budget_is_still_evaluated_after_the_call(
    place, django_capture_on_commit_callbacks
):
    Budget.objects.create(name="Tiny", scope="user", user=place.owner, limit=Decimal("0.001"))

    with django_capture_on_commit_callbacks(execute=True):
        record(place)

    assert Alert.objects.get().spent == COST


@pytest.mark.parametrize("with_session", [True, False])
def test_the_recorders_budget_sql_selects_exactly_the_applicable_budgets(
    alice, bob, with_session, on_postgres
):
    from django.db import connection

    mine, other = make_session(alice, "Mine"), make_session(alice, "Other")
    made = [
        Budget.objects.create(name="all users", scope="user", limit=1),
        Budget.objects.create(name="alice", scope="user", user=alice, limit=1),
        Budget.objects.create(name="bob", scope="user", user=bob, limit=1),
        Budget.objects.create(name="all sessions", scope="session", limit=1),
        Budget.objects.create(name="mine", scope="session", session=mine, limit=1),
        Budget.objects.create(name="other", scope="session", session=other, limit=1),
        Budget.objects.create(name="off", scope="user", user=alice, limit=1, is_active=False),
    ]
    session_id = mine.pk if with_session else None
    sql, params = budgets.applicable_sql(alice.pk, session_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        selected = {row[0] for row in cursor.fetchall()}

    expected = {b.pk for b in budgets.applicable(alice.pk, session_id)}
    assert selected == expected
    names = {b.name for b in made if b.pk in selected}
    assert names == (
        {"all users", "alice", "all sessions", "mine"} if with_session else {"all users", "alice"}
    )
