"""Session use cases the API calls: the session a new thread joins, and a patch."""

import uuid

import pytest

from core import state
from sessions_app import services
from sessions_app.models import Session
from tests.factories import make_session

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_thread_joins_the_named_session_or_a_new_one(alice, bob, staff):
    session = make_session(alice)

    assert services.session_for_new_thread(alice, str(session.pk)) == session
    assert services.session_for_new_thread(staff, str(session.pk)) == session
    new = services.session_for_new_thread(alice)
    assert (new.owner, new.metadata) == (alice, {"created_by": "api"})
    for wanted in (str(session.pk), str(uuid.uuid4()), "nope"):
        with pytest.raises(services.SessionNotFound, match=f"Session {wanted} not found"):
            services.session_for_new_thread(bob, wanted)


def test_patch_session_merges_metadata_under_the_lock(alice):
    session = make_session(alice, a=1, b=2)

    patched = services.patch_session(session.pk, {"title": "new", "metadata": {"b": 3}})

    assert (patched.title, patched.metadata) == ("new", {"a": 1, "b": 3})
    with pytest.raises(state.StateConflict):
        services.patch_session(session.pk, {"title": "stale"}, expected_version=1)
    assert Session.objects.get(pk=session.pk).title == "new"
    with pytest.raises(services.SessionNotFound):
        services.patch_session(uuid.uuid4(), {"title": "x"})
