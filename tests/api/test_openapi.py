"""The OpenAPI document (statuses as ints, as ninja builds it) says what every route
answers: a schema for each success, text/event-stream for the streams, and the errors
each route gives itself."""

import pytest

from api.app import api as ninja_api

SCHEMA = ninja_api.get_openapi_schema()
OPERATIONS = sorted(
    (method, path, operation)
    for path, methods in SCHEMA["paths"].items()
    for method, operation in methods.items()
)
NO_BODY = {202, 204}


@pytest.mark.parametrize(
    "operation", [op for _, _, op in OPERATIONS], ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_every_route_declares_its_answer(operation):
    responses = operation["responses"]
    successes = [status for status in responses if 200 <= status < 300]
    assert successes
    for status in successes:
        if status in NO_BODY:
            assert "content" not in responses[status]
            continue
        [(media_type, content)] = responses[status]["content"].items()
        assert media_type in ("application/json", "text/event-stream")
        assert content["schema"]


@pytest.mark.parametrize(
    "operation", [op for _, _, op in OPERATIONS], ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_every_error_a_route_declares_is_a_detail(operation):
    errors = {s: r for s, r in operation["responses"].items() if 400 <= s < 500}
    for response in errors.values():
        ref = response["content"]["application/json"]["schema"]["$ref"]
        assert ref.rsplit("/", 1)[1] in ("Detail", "Invalid")


def test_the_streams_are_event_streams():
    streams = {
        (method, path)
        for method, path, operation in OPERATIONS
        if "text/event-stream" in operation["responses"].get(200, {}).get("content", {})
    }
    assert streams == {
        ("get", "/api/threads/{thread_id}/runs/{run_id}/stream"),
        ("get", "/api/threads/{thread_id}/stream"),
        ("post", "/api/runs/stream"),
        ("post", "/api/threads/{thread_id}/runs/stream"),
    }
