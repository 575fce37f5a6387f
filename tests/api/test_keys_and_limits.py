"""API keys (hashed, shown once, revocable) and the API's limits: 413 and 429."""

import io
import re
import uuid
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from api.app import api as ninja_api
from core.apikeys import create_api_key, verify_api_key
from core.models import ApiKey
from core.throttling import UserRateThrottle


def test_keys_are_stored_hashed_with_a_visible_prefix(alice):
    key, secret = create_api_key(alice, "laptop")

    assert secret.startswith(key.prefix + "_")
    assert secret not in key.hashed_key
    assert len(key.hashed_key) == 64
    assert verify_api_key(secret).owner == alice
    assert verify_api_key(secret[:-1] + "x") is None


def test_bearer_tokens_work_like_the_header(alice):
    secret = create_api_key(alice)[1]
    response = Client(headers={"Authorization": f"Bearer {secret}"}).get("/api/sessions")
    assert response.status_code == 200

    wrong = Client(enforce_csrf_checks=True, headers={"Authorization": f"Bearer {secret}x"})
    refused = wrong.post("/api/sessions", {"title": "x"}, "application/json")
    assert refused.status_code == 401
    assert "API key is unknown or revoked" in refused.json()["detail"]


def test_last_used_is_recorded(alice):
    key, secret = create_api_key(alice)
    Client(headers={"X-Api-Key": secret}).get("/api/sessions")
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_an_inactive_owners_key_is_refused(alice):
    secret = create_api_key(alice)[1]
    alice.is_active = False
    alice.save()
    assert Client(headers={"X-Api-Key": secret}).get("/api/sessions").status_code == 401


def test_the_command_prints_the_key_once(alice):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "alice", "--name", "ci", stdout=out, stderr=err)
    secret = out.getvalue().strip()
    assert verify_api_key(secret).name == "ci"
    assert secret not in err.getvalue()


def test_the_admin_creates_a_key_and_shows_it_once(client, staff, alice):
    client.force_login(staff)
    response = client.post(
        "/admin/core/apikey/add/", {"owner": alice.pk, "name": "from admin"}, follow=True
    )
    shown = [str(m) for m in response.context["messages"]]
    secret = re.search(r"(sh_\S+)", shown[0]).group(1)
    assert verify_api_key(secret).owner == alice
    key = ApiKey.objects.get(name="from admin")
    page = client.get(f"/admin/core/apikey/{key.pk}/change/").content.decode()
    assert secret not in page

    client.post("/admin/core/apikey/", {"action": "revoke_keys", "_selected_action": [key.pk]})
    assert verify_api_key(secret) is None


def test_a_body_over_the_limit_is_413(alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    secret = create_api_key(alice)[1]
    response = Client(headers={"X-Api-Key": secret}).post(
        "/api/sessions", {"title": "x" * 5000}, "application/json"
    )
    assert response.status_code == 413
    assert "larger than 1000 bytes" in response.json()["detail"]


def test_malformed_json_is_a_400(alice):
    secret = create_api_key(alice)[1]
    response = Client(headers={"X-Api-Key": secret}).post(
        "/api/sessions", "{not json", "application/json"
    )
    assert response.status_code == 400


@pytest.fixture
def tight_rate(monkeypatch):
    """The API's own throttle object (shared by every route), set to 3 requests a minute,
    in a minute of its own (the count may live in a Redis other tests share)."""
    [throttle] = ninja_api.throttle
    assert isinstance(throttle, UserRateThrottle)
    monkeypatch.setattr(throttle, "num_requests", 3)
    clock = {"now": 60.0 * (10**9 + uuid.uuid4().int % 10**6)}
    monkeypatch.setattr(throttle, "timer", lambda: clock["now"])
    return clock


def test_too_many_requests_is_429(alice, tight_rate):
    secret = create_api_key(alice)[1]
    client = Client(headers={"X-Api-Key": secret})
    statuses = [client.get("/api/sessions").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200]
    assert statuses[3:] == [429, 429]


def test_the_rate_is_per_user(alice, bob, tight_rate):
    alice_client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    bob_client = Client(headers={"X-Api-Key": create_api_key(bob)[1]})
    for _ in range(3):
        assert alice_client.get("/api/sessions").status_code == 200
    assert alice_client.get("/api/sessions").status_code == 429
    assert bob_client.get("/api/sessions").status_code == 200


def test_the_next_minute_starts_a_new_count(alice, tight_rate):
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    tight_rate["now"] += 50  # ten seconds before the window ends
    statuses = [client.get("/api/sessions").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    [throttle] = ninja_api.throttle
    assert throttle.wait() == pytest.approx(10)

    tight_rate["now"] += 10
    assert client.get("/api/sessions").status_code == 200


def test_a_request_costs_one_increment_not_a_list_of_times(alice, tight_rate):
    # ninja's own throttle rewrote the times of all the window's requests each time.
    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    for _ in range(2):
        client.get("/api/sessions")
    [throttle] = ninja_api.throttle
    key = throttle.get_cache_key(SimpleNamespace(auth=alice))
    assert throttle.counter.incr(key, 60) == 3  # the window's count was 2


def test_in_production_the_count_is_in_redis_for_every_server_process(alice, tight_rate):
    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL (production mode)")
    import redis

    client = Client(headers={"X-Api-Key": create_api_key(alice)[1]})
    client.get("/api/sessions")
    [throttle] = ninja_api.throttle
    key = throttle.counter.prefix + throttle.get_cache_key(SimpleNamespace(auth=alice))
    server = redis.Redis.from_url(settings.REDIS_URL)
    assert server.get(key) == b"1"
    assert 0 < server.ttl(key) <= 61  # gone once its minute has passed


def test_values_the_database_refuses_are_a_422_not_a_500(alice):
    secret = create_api_key(alice)[1]
    client = Client(headers={"X-Api-Key": secret})
    from django.db import connection

    response = client.get("/api/sessions", {"q": "nul\x00byte"})
    if connection.vendor == "postgresql":  # PostgreSQL refuses NUL characters in text
        assert response.status_code == 422
        assert "cannot be used" in response.json()["detail"]
    else:
        assert response.status_code == 200
