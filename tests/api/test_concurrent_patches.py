"""Concurrent PATCHes without a version: every writer is answered 200 and every write is
kept (the metadata merge is read under the row's lock), on real concurrent transactions."""

import threading

import pytest
from django.db import connection
from django.test import Client

from core.apikeys import create_api_key
from sessions_app.models import Session
from tests.factories import make_session, make_thread
from threads_app import services
from threads_app.models import Thread, Workflow

pytestmark = pytest.mark.django_db(transaction=True)

WRITERS = 24


def _patch_all(key: str, path: str, bodies: list[dict]) -> list:
    """PATCH every body at once, each from its own thread (its own connection)."""
    barrier = threading.Barrier(len(bodies))
    results: list = [None] * len(bodies)

    def writer(index, body):
        try:
            client = Client(headers={"X-Api-Key": key})
            barrier.wait(timeout=30)
            response = client.patch(path, body, "application/json")
            results[index] = (response.status_code, response.json())
        except Exception as exc:  # reported by the test
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=item) for item in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not [t for t in threads if t.is_alive()], "a writer is stuck"
    return results


def _metadata_writers():
    return [{"metadata": {f"k{i}": i}} for i in range(WRITERS)]


def _assert_all_answered_200(results):
    statuses = [r[0] if isinstance(r, tuple) else repr(r) for r in results]
    assert statuses == [200] * WRITERS, [
        r for r in results if not isinstance(r, tuple) or r[0] != 200
    ][:3]


def _assert_every_key_kept(metadata: dict):
    assert {f"k{i}": i for i in range(WRITERS)}.items() <= metadata.items()


def test_concurrent_thread_patches_keep_every_key(alice):
    thread = make_thread(make_session(alice))
    key = create_api_key(alice)[1]

    results = _patch_all(key, f"/api/threads/{thread.pk}", _metadata_writers())

    _assert_all_answered_200(results)
    thread = Thread.objects.get(pk=thread.pk)
    _assert_every_key_kept(thread.metadata)
    assert thread.metadata["topic"] == "refund"  # what was there before is kept too
    assert thread.version == 1 + WRITERS


def test_concurrent_assistant_patches_keep_every_key(alice):
    assistant = services.create_workflow("pipeline", "alice's", metadata={"team": "a"})
    Workflow.objects.filter(pk=assistant.pk).update(owner=alice)
    key = create_api_key(alice)[1]

    results = _patch_all(key, f"/api/assistants/{assistant.pk}", _metadata_writers())

    _assert_all_answered_200(results)
    assistant = Workflow.objects.get(pk=assistant.pk)
    _assert_every_key_kept(assistant.metadata)
    assert assistant.metadata["team"] == "a"
    assert assistant.version == 1 + WRITERS


def test_concurrent_session_patches_keep_every_key(alice):
    session = make_session(alice)
    key = create_api_key(alice)[1]

    results = _patch_all(key, f"/api/sessions/{session.pk}", _metadata_writers())

    _assert_all_answered_200(results)
    session = Session.objects.get(pk=session.pk)
    _assert_every_key_kept(session.metadata)
    assert session.metadata["channel"] == "web"
    assert session.version == 1 + WRITERS


def test_an_explicit_stale_session_version_still_conflicts(alice):
    session = make_session(alice)
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    path = f"/api/sessions/{session.pk}"
    assert (
        client.patch(path, {"title": "a", "expected_version": 1}, "application/json").status_code
        == 200
    )

    stale = client.patch(path, {"metadata": {"x": 1}, "expected_version": 1}, "application/json")

    assert stale.status_code == 409
    assert "expected version 1, found 2" in stale.json()["detail"]
    assert "x" not in Session.objects.get(pk=session.pk).metadata
