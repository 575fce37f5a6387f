"""The usage dashboard, its CSV export, /metrics and /healthz."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from control_room.views import health
from control_room.views.usage import EXPORT_COLUMNS
from core import state
from core.time import now
from tests.history.conftest import ai_message, fake_model

# --- the dashboard ---------------------------------------------------------------------------


@pytest.fixture
def usage(place):
    model = fake_model(ai_message(), ai_message(), ai_message(model="acme-llm", provider="acme"))
    for _ in range(3):
        model.invoke("Hi", config=place.config())
    return place


def test_the_dashboard_is_for_staff_only(client, alice):
    url = reverse("history:usage")

    anonymous = client.get(url)
    client.force_login(alice)
    not_staff = client.get(url)

    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]
    assert not_staff.status_code == 302
    assert "/admin/login/" in not_staff["Location"]


def test_the_dashboard_renders_without_any_call(client, staff):
    client.force_login(staff)

    response = client.get(reverse("history:usage"))

    assert response.status_code == 200
    body = response.content.decode()
    assert "No LLM calls in this period." in body
    assert "Every call has a price." in body
    assert body.count("<svg") == 2
    assert "No calls in this period" in body
    assert len(response.context["series"]) == 30


def test_the_dashboard_shows_costs_tokens_models_users_and_unpriced_calls(client, staff, usage):
    client.force_login(staff)

    response = client.get(reverse("history:usage"), {"days": 7})

    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["totals"]["calls"] == 3
    assert response.context["totals"]["cost"] == Decimal("0.0115")
    assert "$0.0115" in body
    assert "gpt-4o-2024-08-06" in body
    assert "alice" in body
    assert "Support chat" in body
    assert "acme-llm" in body
    assert "1 unpriced" in body
    # charts are inline SVG, one bar per day; nothing is loaded from elsewhere
    assert body.count('class="bar"') == 14
    assert "<script src" not in body
    assert "https://" not in body
    assert 'href="/status/"' in body


def test_the_csv_export_has_the_dashboards_numbers(client, staff, usage):
    client.force_login(staff)

    response = client.get(reverse("history:usage_export"))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    by_model = {row["model"]: row for row in rows}
    gpt = by_model["gpt-4o-2024-08-06"]
    assert (gpt["calls"], gpt["input_tokens"], gpt["cache_read_tokens"]) == ("2", "2400", "400")
    assert Decimal(gpt["cost_total_usd"]) == Decimal("0.0115")
    assert gpt["day"] == now().date().isoformat()
    acme = by_model["acme-llm"]
    assert (acme["cost_source"], acme["cost_total_usd"]) == ("unpriced", "")


def test_the_csv_export_takes_a_date_range(client, staff, usage):
    client.force_login(staff)
    yesterday = (now() - timedelta(days=1)).date().isoformat()

    response = client.get(reverse("history:usage_export"), {"start": yesterday, "end": yesterday})

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines == [",".join(EXPORT_COLUMNS)]


def test_the_csv_export_is_for_staff_only(client, alice):
    client.force_login(alice)

    assert client.get(reverse("history:usage_export")).status_code == 302


# --- /metrics ---------------------------------------------------------------------------------


def _families(response):
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def _sample(families, name, **labels):
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no sample {name} {labels}")


@pytest.fixture
def runs(place):
    expired = place.new_run()
    state.update_state(
        "run",
        expired.pk,
        {"status": "running", "lease_expires_at": now() - timedelta(minutes=5)},
    )
    done = place.new_run()
    started = now() - timedelta(seconds=40)
    state.update_state(
        "run",
        done.pk,
        {"status": "success", "started_at": started, "finished_at": started + timedelta(seconds=3)},
    )
    return place


def test_metrics_need_the_bearer_token_or_a_staff_login(client, alice, settings):
    settings.STATEHOUSE_METRICS_TOKEN = "metrics-token"
    url = reverse("history:metrics")

    assert client.get(url).status_code == 401
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    client.force_login(alice)
    assert client.get(url).status_code == 403


def test_metrics_parse_and_count_runs_tokens_and_cost(client, settings, usage, runs):
    settings.STATEHOUSE_METRICS_TOKEN = "metrics-token"

    response = client.get(reverse("history:metrics"), HTTP_AUTHORIZATION="Bearer metrics-token")

    assert response.status_code == 200
    families = _families(response)
    assert _sample(families, "statehouse_runs", status="pending") == 1
    assert _sample(families, "statehouse_runs", status="running") == 1
    assert _sample(families, "statehouse_runs", status="success") == 1
    assert _sample(families, "statehouse_run_queue_depth") == 1
    assert _sample(families, "statehouse_runs_lease_expired") == 1
    assert _sample(families, "statehouse_run_duration_seconds_bucket", le="1.0") == 0
    assert _sample(families, "statehouse_run_duration_seconds_bucket", le="5.0") == 1
    assert _sample(families, "statehouse_run_duration_seconds_gsum") == pytest.approx(3.0)
    gpt = {"provider": "openai", "model": "gpt-4o-2024-08-06"}
    assert _sample(families, "statehouse_llm_calls_total", cost_source="computed", **gpt) == 2
    assert _sample(families, "statehouse_llm_tokens_total", kind="input", **gpt) == 2400
    assert _sample(families, "statehouse_llm_tokens_total", kind="reasoning", **gpt) == 100
    assert _sample(families, "statehouse_llm_cost_usd_total", **gpt) == pytest.approx(0.0115)
    assert (
        _sample(families, "statehouse_llm_calls_total", model="acme-llm", cost_source="unpriced")
        == 1
    )


def test_staff_may_read_the_metrics_logged_in(client, staff):
    client.force_login(staff)

    response = client.get(reverse("history:metrics"))

    assert response.status_code == 200
    assert "statehouse_runs" in _families(response)


# --- /healthz ---------------------------------------------------------------------------------


def test_healthz_is_200_when_every_component_answers(client, db):
    response = client.get(reverse("history:healthz"))

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok", "channel_layer": "ok"},
    }


def test_healthz_is_503_naming_an_unreachable_broker(client, db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1

    response = client.get(reverse("history:healthz"))

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["broker"]
    assert body["checks"] == {"database": "ok", "broker": "failed", "channel_layer": "ok"}
    assert "127.0.0.1" not in response.content.decode()


def test_healthz_is_503_naming_a_broken_channel_layer(client, db, monkeypatch):
    class Broken:
        async def send(self, channel, message):
            raise ConnectionError("redis://secret@10.0.0.1 refused")

    monkeypatch.setattr(health, "channel_layer_for_check", lambda: Broken())

    response = client.get(reverse("history:healthz"))

    assert response.status_code == 503
    assert response.json()["failed"] == ["channel_layer"]
    assert "secret" not in response.content.decode()


def test_healthz_is_503_naming_a_failing_database(client, db, monkeypatch):
    def down():
        raise OSError("connection to server failed")

    monkeypatch.setattr(health, "_check_database", down)

    response = client.get(reverse("history:healthz"))

    assert response.status_code == 503
    assert response.json()["failed"] == ["database"]
