"""Budgets: one alert per crossing and period, blocking new runs, signed webhooks with retries."""

import hashlib
import hmac
import json
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.time import now
from history_app import budgets, tasks
from history_app.budgets import BudgetExceeded, check_budgets, period_end, period_start
from history_app.models import Alert, Budget
from history_app.pricing import Tokens
from history_app.recording import CallRecord, record_llm_call
from tests.factories import make_session, make_thread
from tests.history.conftest import Place, fake_model

COST = Decimal("0.00575")  # one default fake call of gpt-4o


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run on-commit work (alerts are raised after the call commits) as it would in production."""

    def run(fn, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kwargs)

    return run


@pytest.fixture
def enqueued(monkeypatch):
    sent = []
    # budgets sends the task by name (a signature): its apply_async is the task's.
    monkeypatch.setattr(
        tasks.send_alert_webhook,
        "apply_async",
        lambda args=(), kwargs=None, **options: sent.append(*args),
    )
    return sent


def test_budgets_sends_the_webhook_task_by_its_registered_name():
    from config.celery import app

    assert tasks.send_alert_webhook.name == budgets.SEND_ALERT_WEBHOOK
    assert app.tasks[budgets.SEND_ALERT_WEBHOOK].name == tasks.send_alert_webhook.name


def call(place, committed, times=1):
    for _ in range(times):
        committed(fake_model().invoke, "Hi", config=place.config())


def test_crossing_a_budget_raises_one_alert_not_one_per_call(place, committed, mocker_push):
    budget = Budget.objects.create(
        name="Alice monthly", scope="user", user=place.owner, limit=Decimal("0.01")
    )

    call(place, committed)
    assert not Alert.objects.exists()

    call(place, committed, times=3)

    alert = Alert.objects.get()
    assert alert.budget == budget
    assert alert.subject == f"user:{place.owner.pk}"
    assert alert.spent == 2 * COST
    assert alert.period_start == now().date().replace(day=1)
    assert "Alice monthly" in alert.message and "alice" in alert.message
    assert alert.blocking is False
    live = [payload for groups, payload in mocker_push if payload["type"] == "budget.alert"]
    assert len(live) == 1
    assert live[0]["alert_id"] == alert.pk
    assert [groups for groups, payload in mocker_push if payload["type"] == "budget.alert"] == [
        ["dashboard"]
    ]


def test_a_budget_for_every_session_alerts_once_per_session(alice, committed):
    Budget.objects.create(
        name="Per session", scope="session", metric="tokens", period="total", limit=3000
    )
    first, second = Place(alice, "First"), Place(alice, "Second")

    call(first, committed, times=3)
    call(second, committed, times=1)
    call(second, committed, times=2)

    alerts = Alert.objects.order_by("id")
    assert [a.subject for a in alerts] == [
        f"session:{first.session.pk}",
        f"session:{second.session.pk}",
    ]
    assert [a.spent for a in alerts] == [3000, 3000]


def test_another_period_raises_its_own_alert(place, committed):
    Budget.objects.create(name="Daily", scope="user", period="day", limit=Decimal("0.01"))

    def on(day):
        for _ in range(2):
            committed(
                record_llm_call,
                CallRecord(
                    lc_run_id=uuid.uuid4(),
                    session_id=place.session.pk,
                    thread_id=place.thread.pk,
                    user_id=place.owner.pk,
                    started_at=datetime(2025, 5, day, 9, tzinfo=UTC),
                    provider="openai",
                    model_name="gpt-4o",
                    tokens=Tokens(input=1000, output=1000, total=2000),
                    usage={},
                ),
            )

    on(1)
    on(2)

    assert [a.period_start for a in Alert.objects.order_by("id")] == [
        date(2025, 5, 1),
        date(2025, 5, 2),
    ]


def test_a_blocking_budget_makes_new_runs_fail_fast(place, committed):
    Budget.objects.create(
        name="Hard cap", scope="user", user=place.owner, limit=Decimal("0.01"), action="block"
    )
    Budget.objects.create(name="Soft", scope="user", user=place.owner, limit=Decimal("0.001"))
    check_budgets(place.owner, place.session)  # nothing spent yet

    call(place, committed, times=2)

    with pytest.raises(BudgetExceeded) as raised:
        check_budgets(place.owner, place.session)
    assert isinstance(raised.value, ValueError)
    message = str(raised.value)
    assert "Hard cap" in message
    assert "$0.0115 of $0.01 this month" in message
    assert "blocked" in message
    assert Alert.objects.get(budget__name="Hard cap").blocking is True


def test_a_blocking_budget_of_one_session_leaves_the_others_alone(place, alice, committed):
    Budget.objects.create(
        name="This session",
        scope="session",
        session=place.session,
        metric="tokens",
        period="total",
        limit=1500,
        action="block",
    )
    call(place, committed)

    with pytest.raises(BudgetExceeded, match="1,500 tokens of 1,500 tokens in total"):
        check_budgets(alice, place.session.pk)
    check_budgets(alice, make_session(alice))
    check_budgets(alice)


def test_inactive_budgets_do_nothing(place, committed):
    Budget.objects.create(
        name="Off", scope="user", limit=Decimal("0.001"), action="block", is_active=False
    )

    call(place, committed)

    check_budgets(place.owner, place.session)
    assert not Alert.objects.exists()


def test_periods_start_and_end_on_calendar_boundaries():
    wednesday = date(2025, 2, 12)
    assert period_start("day", wednesday) == wednesday
    assert period_start("week", wednesday) == date(2025, 2, 10)
    assert period_start("month", wednesday) == date(2025, 2, 1)
    assert period_end("month", date(2025, 2, 1)) == date(2025, 2, 28)
    assert period_end("week", date(2025, 2, 10)) == date(2025, 2, 16)
    assert period_end("total", budgets.EPOCH) is None


# --- webhooks -------------------------------------------------------------------------------


class Receiver:
    """A local HTTP server that answers with the given statuses, then 200, and keeps bodies."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.requests = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/statehouse"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def secret(settings):
    settings.STATEHOUSE_WEBHOOK_SECRET = "s3cret-for-tests"
    return settings.STATEHOUSE_WEBHOOK_SECRET


def _alert(place, committed, url):
    Budget.objects.create(
        name="Hooked", scope="user", user=place.owner, limit=Decimal("0.005"), webhook_url=url
    )
    call(place, committed)
    return Alert.objects.get()


def test_an_alert_with_a_webhook_is_enqueued_for_delivery(place, committed, enqueued):
    alert = _alert(place, committed, "http://127.0.0.1:9/hook")

    assert enqueued == [alert.pk]
    assert alert.webhook_status == "pending"


def test_the_global_webhook_url_is_used_when_the_budget_has_none(
    place, committed, enqueued, settings
):
    settings.STATEHOUSE_ALERT_WEBHOOK_URL = "http://127.0.0.1:9/global"
    alert = _alert(place, committed, "")

    assert enqueued == [alert.pk]


def test_no_webhook_no_delivery(place, committed, enqueued):
    alert = _alert(place, committed, "")

    assert enqueued == []
    assert alert.webhook_status == ""


def test_webhook_bodies_are_signed_with_hmac_sha256(place, committed, enqueued, receiver, secret):
    hook = receiver()
    alert = _alert(place, committed, hook.url)

    tasks.send_alert_webhook.apply(args=[alert.pk])

    [(headers, body)] = hook.requests
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Statehouse-Signature"] == expected
    assert tasks.verify(body, secret, headers["X-Statehouse-Signature"])
    assert not tasks.verify(body + b" ", secret, headers["X-Statehouse-Signature"])
    payload = json.loads(body)
    assert payload["alert_id"] == alert.pk
    assert payload["budget"] == "Hooked"
    assert payload["spent"] == str(alert.spent)
    alert.refresh_from_db()
    assert (alert.webhook_status, alert.webhook_attempts) == ("sent", 1)
    assert alert.delivered_at is not None


def test_failed_deliveries_are_retried_with_growing_backoff(
    place, committed, enqueued, receiver, secret, monkeypatch
):
    hook = receiver(statuses=[500, 503])
    alert = _alert(place, committed, hook.url)
    waits = []
    real_backoff = tasks.backoff_seconds
    monkeypatch.setattr(
        tasks, "backoff_seconds", lambda n: waits.append(real_backoff(n)) or waits[-1]
    )

    tasks.send_alert_webhook.apply(args=[alert.pk])

    assert len(hook.requests) == 3
    assert waits == [10, 20]
    # every attempt is signed; the body says which attempt it is
    attempts = [json.loads(body)["attempt"] for _headers, body in hook.requests]
    assert attempts == [1, 2, 3]
    alert.refresh_from_db()
    assert (alert.webhook_status, alert.webhook_attempts, alert.webhook_error) == ("sent", 3, "")


def test_delivery_is_given_up_after_the_last_retry(place, committed, enqueued, secret):
    # nothing listens on this port: every attempt fails to connect
    alert = _alert(place, committed, "http://127.0.0.1:9/nobody")

    tasks.send_alert_webhook.apply(args=[alert.pk])

    alert.refresh_from_db()
    assert alert.webhook_status == "failed"
    assert alert.webhook_attempts == tasks.MAX_RETRIES + 1
    assert "cannot reach" in alert.webhook_error


def test_backoff_doubles_up_to_a_cap():
    assert [tasks.backoff_seconds(n) for n in range(8)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        900,
    ]


def test_no_secret_no_unsigned_delivery(place, committed, enqueued, receiver, settings):
    settings.STATEHOUSE_WEBHOOK_SECRET = ""
    hook = receiver()
    alert = _alert(place, committed, hook.url)

    tasks.send_alert_webhook.apply(args=[alert.pk])

    assert hook.requests == []
    alert.refresh_from_db()
    assert alert.webhook_status == "failed"
    assert "STATEHOUSE_WEBHOOK_SECRET" in alert.webhook_error


def test_a_user_budget_counts_all_of_the_users_sessions(place, alice, committed):
    Budget.objects.create(name="All of alice", scope="user", limit=Decimal("0.01"))
    other = Place(alice, "Other")
    make_thread(other.session)

    call(place, committed)
    call(other, committed)

    assert Alert.objects.get().spent == 2 * COST
