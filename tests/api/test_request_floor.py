"""What every API request pays in the middleware, and what it still gets: an API key
request is one statement (its key) and never reads the session table, has no message
store, and still carries the security headers and CORS; the pages keep their sessions,
CSRF and messages."""

import json

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from config.asgi import application
from core.apikeys import create_api_key
from core.models import ApiKey
from tests.asgi import http_get

ORIGIN = "https://chat.example.com"


@pytest.fixture
def key(alice):
    return create_api_key(alice, "floor")[1]


def tables(queries) -> str:
    return " ".join(query["sql"] for query in queries)


@pytest.mark.django_db
def test_a_key_request_is_one_statement_and_never_reads_the_session(key, alice):
    api = Client(headers={"X-Api-Key": key})
    api.force_login(alice)  # a browser's session cookie comes along, unused
    assert api.get("/api/ok").status_code == 200  # the key's first use: last_used_at

    with CaptureQueriesContext(connection) as queries:
        response = api.get("/api/ok")

    assert response.status_code == 200
    assert len(queries) == 1, tables(queries)
    assert ApiKey._meta.db_table in queries[0]["sql"]
    assert Session._meta.db_table not in tables(queries)
    assert not response.cookies  # no session saved, no CSRF cookie set
    assert not hasattr(response.wsgi_request, "_messages")  # no message store made


@pytest.mark.django_db
def test_a_session_request_to_the_api_reads_its_session_and_needs_csrf_to_write(alice):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)

    with CaptureQueriesContext(connection) as queries:
        assert browser.get("/api/ok").status_code == 200
    assert Session._meta.db_table in tables(queries)

    refused = browser.post("/api/threads", "{}", content_type="application/json")
    assert refused.status_code == 403


async def asgi_get(path: str, headers: list[tuple[bytes, bytes]]):
    return await http_get(application, path, headers)


@pytest.mark.django_db(transaction=True)
async def test_api_answers_through_asgi_carry_the_security_headers_and_cors(alice, settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    key = (await sync_to_async(create_api_key)(alice, "asgi"))[1]
    request_headers = [(b"x-api-key", key.encode()), (b"origin", ORIGIN.encode())]

    for path, status in (("/api/ok", 200), ("/api/no-such-route", 404)):
        answer, headers, body = await asgi_get(path, request_headers)

        assert answer == status
        assert "detail" in json.loads(body) or json.loads(body) == {"ok": True}
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cross-origin-opener-policy"] == "same-origin"
        assert headers["access-control-allow-origin"] == ORIGIN
        assert "location" in headers["access-control-expose-headers"]
        assert "set-cookie" not in headers


@pytest.mark.django_db(transaction=True)
async def test_an_api_request_without_a_key_is_refused_through_asgi_with_its_headers():
    status, headers, body = await asgi_get("/api/ok", [])

    assert status == 401
    assert json.loads(body)["detail"].startswith("Authentication required")
    assert headers["x-frame-options"] == "DENY"


@pytest.mark.django_db
def test_the_pages_keep_sessions_csrf_and_messages(staff):
    browser = Client(enforce_csrf_checks=True)
    login = browser.get("/admin/login/")
    token = login.cookies["csrftoken"].value

    # CSRF: a form posted without its token is refused.
    no_token = browser.post("/admin/login/", {"username": "staff", "password": "pw-staff"})
    assert no_token.status_code == 403

    # Sessions: a login with the token makes one.
    logged_in = browser.post(
        "/admin/login/?next=/admin/",
        {"username": "staff", "password": "pw-staff", "csrfmiddlewaretoken": token},
    )
    assert logged_in.status_code == 302
    assert "sessionid" in logged_in.cookies
    assert Session.objects.count() == 1

    # Messages: the admin's "added" message, left alone by an API call between.
    token = browser.get("/admin/auth/group/add/").cookies.get(
        "csrftoken", login.cookies["csrftoken"]
    )
    added = browser.post(
        "/admin/auth/group/add/",
        {"name": "operators", "csrfmiddlewaretoken": token.value},
    )
    assert added.status_code == 302
    assert Group.objects.filter(name="operators").exists()
    assert browser.get("/api/ok").status_code == 200  # a session call to the API
    page = browser.get(added["Location"])
    assert page.status_code == 200
    shown = [str(message) for message in page.context["messages"]]
    assert any("operators" in message and "added successfully" in message for message in shown)
