"""Optimistic concurrency with real threads on PostgreSQL (row locks, READ COMMITTED)."""

import threading

import pytest
from django.db import connection

from core import state
from history_app.models import StateEvent
from sessions_app.models import Session
from tests.factories import make_session

pytestmark = pytest.mark.django_db(transaction=True)


def _in_thread(fn, results, key):
    def run():
        try:
            results[key] = fn()
        except Exception as exc:
            results[key] = exc
        finally:
            connection.close()

    return threading.Thread(target=run)


def _add_key(session_id, key, expected_version, barrier=None):
    def update():
        current = state.get_state("session", session_id)
        if barrier is not None:
            barrier.wait(timeout=10)
        metadata = dict(current["metadata"]) | {key: True}
        return state.update_state(
            "session", session_id, {"metadata": metadata}, expected_version=expected_version
        )

    return update


def test_two_writers_with_the_same_expected_version_one_wins(alice, on_postgres):
    session = make_session(alice)
    barrier = threading.Barrier(2)
    results = {}
    threads = [
        _in_thread(_add_key(session.pk, key, 1, barrier), results, key) for key in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    outcomes = sorted(type(result).__name__ for result in results.values())
    assert outcomes == ["Session", "StateConflict"]
    loser = next(key for key, result in results.items() if isinstance(result, Exception))

    # The loser re-reads and retries: no update is lost.
    current = state.get_state("session", session.pk)
    _add_key(session.pk, loser, current["version"])()
    final = Session.objects.get(pk=session.pk)
    assert final.metadata == {"channel": "web", "a": True, "b": True}
    assert final.version == 3
    assert StateEvent.objects.filter(entity_id=session.pk, kind="updated").count() == 2


def test_a_concurrent_writer_without_expected_version_conflicts(alice, on_postgres, monkeypatch):
    """Both writers read version 1, then both write: the second finds the row changed."""
    session = make_session(alice)
    barrier = threading.Barrier(2)
    check_size = state._check_size

    def read_then_wait(entity_type, new_state):
        check_size(entity_type, new_state)
        barrier.wait(timeout=10)  # both have read the row and validated their change

    monkeypatch.setattr(state, "_check_size", read_then_wait)
    results = {}

    def writer(title):
        return lambda: state.update_state("session", session.pk, {"title": title})

    threads = [_in_thread(writer(title), results, title) for title in ("left", "right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    winners = [key for key, result in results.items() if not isinstance(result, Exception)]
    losers = [result for result in results.values() if isinstance(result, Exception)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert isinstance(losers[0], state.StateConflict)
    final = Session.objects.get(pk=session.pk)
    assert final.title == winners[0]
    assert final.version == 2
    assert StateEvent.objects.filter(entity_id=session.pk, kind="updated").count() == 1


def test_many_concurrent_retrying_writers_lose_nothing(alice, on_postgres):
    session = make_session(alice)
    results = {}

    def increment():
        for _attempt in range(50):
            current = state.get_state("session", session.pk)
            counter = current["metadata"].get("n", 0)
            try:
                return state.update_state(
                    "session",
                    session.pk,
                    {"metadata": current["metadata"] | {"n": counter + 1}},
                    expected_version=current["version"],
                )
            except state.StateConflict:
                continue
        raise AssertionError("never won")

    threads = [_in_thread(increment, results, i) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not [r for r in results.values() if isinstance(r, Exception)]
    final = Session.objects.get(pk=session.pk)
    assert final.metadata["n"] == 8
    assert final.version == 9
