"""The ASGI entry point: Django's HTTP handling with a sync middleware chain."""

import json
from inspect import iscoroutinefunction

import pytest

from config.asgi import application, django_asgi_app
from core.apikeys import create_api_key
from tests.asgi import http_get


async def get(path: str, headers) -> tuple[int, dict[str, str], bytes]:
    return await http_get(application, path, headers)


def test_the_middleware_chain_is_the_sync_one():
    # One hop to the sync thread per request, not two per middleware.
    assert not iscoroutinefunction(django_asgi_app._middleware_chain)


@pytest.mark.django_db(transaction=True)
async def test_an_api_request_passes_every_middleware_and_the_view(alice):
    from asgiref.sync import sync_to_async

    secret = (await sync_to_async(create_api_key)(alice, "asgi"))[1]

    status, headers, body = await get("/api/ok", [(b"x-api-key", secret.encode())])

    assert status == 200
    assert json.loads(body) == {"ok": True}
    assert headers["x-frame-options"] == "DENY"  # clickjacking middleware ran
    assert headers["x-content-type-options"] == "nosniff"  # security middleware ran


@pytest.mark.django_db(transaction=True)
async def test_an_unauthenticated_api_request_is_refused_through_asgi():
    status, _, body = await get("/api/ok", [])

    assert status == 401
    assert "detail" in json.loads(body)
