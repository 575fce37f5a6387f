"""The ASGI entry point: Django's HTTP handling with a sync middleware chain."""

import json
from inspect import iscoroutinefunction

import pytest
from asgiref.testing import ApplicationCommunicator

from config.asgi import application, django_asgi_app
from core.apikeys import create_api_key


async def http_get(
    path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[str, str], bytes]:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    communicator = ApplicationCommunicator(application, scope)
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=10)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait()
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, body


def test_the_middleware_chain_is_the_sync_one():
    # One hop to the sync thread per request, not two per middleware.
    assert not iscoroutinefunction(django_asgi_app._middleware_chain)


@pytest.mark.django_db(transaction=True)
async def test_an_api_request_passes_every_middleware_and_the_view(alice):
    from asgiref.sync import sync_to_async

    secret = (await sync_to_async(create_api_key)(alice, "asgi"))[1]

    status, headers, body = await http_get("/api/ok", [(b"x-api-key", secret.encode())])

    assert status == 200
    assert json.loads(body) == {"ok": True}
    assert headers["x-frame-options"] == "DENY"  # clickjacking middleware ran
    assert headers["x-content-type-options"] == "nosniff"  # security middleware ran


@pytest.mark.django_db(transaction=True)
async def test_an_unauthenticated_api_request_is_refused_through_asgi():
    status, _, body = await http_get("/api/ok", [])

    assert status == 401
    assert "detail" in json.loads(body)
