"""The LangGraph Server API, so that the official ``langgraph-sdk`` clients work unchanged.

Assistants are Workflows, threads are Threads (each in a Session), runs are Runs executed
by the Celery runtime; thread state and history are read through DjangoSaver. A request
field Statehouse does not support is refused with 422 naming it (the request schemas
forbid unknown fields), never silently ignored.
"""

from ninja import Router

from api.langgraph import assistants, info, runs, streaming, threads

router = Router(tags=["LangGraph"])
for part in (info, assistants, threads, runs, streaming):
    router.add_router("", part.router)
