"""Small helpers to make realistic data through the state manager."""

from sessions_app.services import create_session
from threads_app import services as threads


def make_session(owner, title="Support chat", **metadata):
    return create_session(owner, title, metadata or {"channel": "web"}, actor=owner)


def make_workflow(graph_id="chat"):
    return threads.ensure_system_workflow(graph_id)


def make_thread(session, workflow=None, **metadata):
    return threads.create_thread(session, workflow, metadata or {"topic": "refund"})


def api_client(owner):
    """A test client with a new API key of ``owner``'s, its first use (the key's
    last_used_at is written once a minute) already made, so that a test counts its own
    statements only."""
    from django.test import Client

    from core.apikeys import create_api_key

    client = Client(headers={"X-Api-Key": create_api_key(owner)[1]})
    client.get("/api/sessions")
    return client
