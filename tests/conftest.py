"""Shared fixtures: three users (staff, an owner, another owner), as healthchecks does."""

import pytest
from django.contrib.auth import get_user_model


def _user(username, **extra):
    User = get_user_model()
    return User.objects.create_user(username=username, password="pw-" + username, **extra)


@pytest.fixture
def staff(db):
    return _user("staff", is_staff=True, is_superuser=True)


@pytest.fixture
def alice(db):
    return _user("alice")


@pytest.fixture
def bob(db):
    return _user("bob")


@pytest.fixture
def on_postgres(settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: run with DATABASE_URL=postgres://...")
    return True


@pytest.fixture
def mocker_push(monkeypatch):
    """Record live pushes (groups, payload) instead of sending them."""
    from core import realtime

    pushed: list[tuple[list[str], dict]] = []
    monkeypatch.setattr(realtime, "push", lambda groups, payload: pushed.append((groups, payload)))
    return pushed


@pytest.fixture(scope="session", autouse=True)
def _close_stray_connections(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end connections that threads left open.

    On PostgreSQL, a session left idle inside a transaction (by a thread a test did not
    wait for) is ended after 30 s, so it cannot block the flush between tests forever.
    """
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            name = connection.ops.quote_name(connection.settings_dict["NAME"])
            cursor.execute(f"ALTER DATABASE {name} SET idle_in_transaction_session_timeout = '30s'")
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """One real Celery worker for the whole test session (see tests/workers.py)."""
    from tests.workers import start_session_worker

    worker = start_session_worker(tmp_path_factory)
    yield worker
    worker.stop()
