"""Small helpers to make realistic data through the state manager."""

from sessions_app.services import create_session
from threads_app import services as threads


def make_session(owner, title="Support chat", **metadata):
    return create_session(owner, title, metadata or {"channel": "web"}, actor=owner)


def make_workflow(graph_id="chat"):
    return threads.ensure_system_workflow(graph_id)


def make_thread(session, workflow=None, **metadata):
    return threads.create_thread(session, workflow, metadata or {"topic": "refund"})
