"""Browser apps on another origin (Agent Chat UI, a useStream app) can call the API:
CORS as django-cors-headers answers it with Statehouse's settings."""

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from core.apikeys import create_api_key
from tests.factories import make_session, make_thread
from threads_app import services

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def api(alice):
    return Client(headers={"X-Api-Key": create_api_key(alice)[1]})


@pytest.fixture
def thread(alice):
    return make_thread(make_session(alice), services.resolve_workflow("pipeline"))


@pytest.fixture
def embedded_cors(settings):
    """The CORS settings config/settings.py gives in embedded mode (whichever mode the
    tests run in)."""
    embedded = _cors_settings()
    settings.CORS_ALLOWED_ORIGINS = embedded["origins"]
    settings.CORS_ALLOWED_ORIGIN_REGEXES = embedded["regexes"]


@pytest.mark.django_db
def test_a_local_browser_apps_preflight_is_answered_without_a_key(embedded_cors):
    origin = "http://localhost:5173"

    response = Client().options(
        "/api/info",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type, last-event-id",
        },
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == origin
    allowed = {h.strip() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"x-api-key", "last-event-id", "content-type"} <= allowed
    assert "POST" in response["Access-Control-Allow-Methods"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "origin", ["http://127.0.0.1:3000", "http://[::1]:8080", "http://localhost"]
)
def test_local_origins_get_the_cors_headers_and_the_exposed_locations(
    api, thread, origin, embedded_cors
):
    body = {"assistant_id": "pipeline", "input": {"steps": 1}}
    response = api.post(
        f"/api/threads/{thread.pk}/runs",
        json.dumps(body),
        "application/json",
        headers={"Origin": origin},
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == origin
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"content-location", "location"}


@pytest.mark.django_db
def test_other_origins_and_other_paths_get_no_cors_headers(api, embedded_cors):
    for origin in ("https://evil.example", "http://localhost.evil.example"):
        response = api.get("/api/info", headers={"Origin": origin})
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response
    admin = Client().get("/admin/login/", headers={"Origin": "http://localhost:5173"})
    assert "Access-Control-Allow-Origin" not in admin


@functools.cache
def _cors_settings(**environ) -> dict:
    code = (
        "import json; from django.conf import settings; "
        "print(json.dumps({'origins': settings.CORS_ALLOWED_ORIGINS, "
        "'regexes': getattr(settings, 'CORS_ALLOWED_ORIGIN_REGEXES', [])}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    env |= {"DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "x" * 50} | environ
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_allows_only_the_origins_it_lists():
    production = {
        "DATABASE_URL": "postgres://u@db.invalid:5432/x",
        "REDIS_URL": "redis://redis.invalid:6379/0",
        "CORS_ALLOWED_ORIGINS": "https://chat.example.com,https://studio.example.com",
    }
    assert _cors_settings(**production) == {
        "origins": ["https://chat.example.com", "https://studio.example.com"],
        "regexes": [],
    }
    embedded = _cors_settings()
    assert embedded["origins"] == []
    assert embedded["regexes"] == [r"^http://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?$"]
