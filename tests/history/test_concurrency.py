"""Totals stay exact when calls are recorded (and repriced) from many threads at once."""

import io
import threading
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection

from history_app.models import LLMCall, ModelPrice
from sessions_app.models import Session
from tests.factories import make_thread
from tests.history.conftest import Place, ai_message, assert_totals_consistent, fake_model
from threads_app.models import Thread

pytestmark = pytest.mark.django_db(transaction=True)

WORKERS = 6
CALLS_EACH = 8


def _run_all(targets):
    errors = []

    def wrap(target):
        def run():
            try:
                target()
            except Exception as exc:  # reported by the test
                errors.append(exc)
            finally:
                connection.close()

        return threading.Thread(target=run)

    threads = [wrap(target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [t for t in threads if t.is_alive()], "a worker is stuck"
    assert errors == []


def _recorder(place, thread, barrier, models=("gpt-4o-2024-08-06", "acme-llm")):
    def record():
        handler = place.handler(thread=thread)
        messages = [ai_message(str(i), model=models[i % len(models)]) for i in range(CALLS_EACH)]
        model = fake_model(*messages)
        barrier.wait(timeout=20)
        for _ in range(CALLS_EACH):
            model.invoke("Go", config={"callbacks": [handler]})
        assert handler.recorded == CALLS_EACH

    return record


def test_totals_equal_the_sum_of_calls_recorded_concurrently(alice, on_postgres):
    place = Place(alice)
    other_thread = make_thread(place.session)
    barrier = threading.Barrier(WORKERS)
    targets = [
        _recorder(place, place.thread if i % 2 else other_thread, barrier) for i in range(WORKERS)
    ]

    _run_all(targets)

    calls = LLMCall.objects.filter(session=place.session)
    assert calls.count() == WORKERS * CALLS_EACH
    session = Session.objects.get(pk=place.session.pk)
    assert session.total_calls == WORKERS * CALLS_EACH
    assert session.total_tokens == WORKERS * CALLS_EACH * 1500
    # half the calls are gpt-4o at $0.00575, half are unpriced
    assert session.total_cost == Decimal("0.00575") * (WORKERS * CALLS_EACH // 2)
    for thread in (place.thread, other_thread):
        assert Thread.objects.get(pk=thread.pk).total_calls == WORKERS * CALLS_EACH // 2
    assert assert_totals_consistent() == WORKERS * CALLS_EACH


def test_reprice_running_beside_recorders_keeps_every_total_exact(alice, bob, on_postgres):
    places = [Place(alice), Place(bob, "Other")]
    barrier = threading.Barrier(WORKERS + 1)
    targets = [_recorder(places[i % 2], places[i % 2].thread, barrier) for i in range(WORKERS)]

    def repricer():
        barrier.wait(timeout=20)
        ModelPrice.objects.create(model_pattern="acme-*", input_per_mtok=1, output_per_mtok=3)
        for _ in range(4):
            call_command("reprice", "--batch-size", "5", stdout=io.StringIO())

    _run_all([*targets, repricer])
    call_command("reprice", stdout=io.StringIO())

    assert LLMCall.objects.count() == WORKERS * CALLS_EACH
    assert not LLMCall.objects.filter(cost_source="unpriced").exists()
    assert assert_totals_consistent() == WORKERS * CALLS_EACH
