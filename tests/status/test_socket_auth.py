"""control_room.socket_auth reads a socket's user without Django's middleware: pinned
here to what django.contrib.auth.get_user says for the same session, for the session
engines it reads differently (the database in bulk, cached_db from the database, signed
cookies one by one), and to the Django names it uses."""

import inspect
from importlib import import_module

import django
import pytest
from django.conf import settings
from django.contrib import auth
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDatabaseStore
from django.contrib.sessions.backends.db import SessionStore as DatabaseStore
from django.http import HttpRequest
from django.test import Client, override_settings

from control_room.socket_auth import BatchCache, current_user

ENGINES = [
    "django.contrib.sessions.backends.db",
    "django.contrib.sessions.backends.cached_db",
    "django.contrib.sessions.backends.signed_cookies",
]
OLD_SECRET = "an-old-secret-key-" + "x" * 40
NEW_SECRET = "a-new-secret-key-" + "y" * 40


def test_the_django_internals_it_relies_on_are_there():
    assert django.VERSION[:2] == (5, 2), (
        "Django changed: check control_room/socket_auth.py against django.contrib.auth."
        "get_user and the session backends, then move this pin"
    )
    for name in ("SESSION_KEY", "BACKEND_SESSION_KEY", "HASH_SESSION_KEY", "load_backend"):
        assert hasattr(auth, name), name
    assert list(inspect.signature(SessionBase.decode).parameters) == ["self", "session_data"]
    assert isinstance(inspect.getattr_static(DatabaseStore, "get_model_class"), classmethod)
    model = DatabaseStore.get_model_class()
    assert {"session_key", "session_data", "expire_date"} <= {
        field.name for field in model._meta.get_fields()
    }
    # cached_db sessions are read from the database table in bulk as db ones are.
    assert issubclass(CachedDatabaseStore, DatabaseStore)
    user_model = auth.get_user_model()
    assert callable(user_model.get_session_auth_hash)
    assert callable(user_model.get_session_auth_fallback_hash)


def _store(key):
    return import_module(settings.SESSION_ENGINE).SessionStore(key)


def _socket_users(key):
    """current_user as a socket's check asks, alone and in a batch read in bulk."""
    alone = current_user({"session": _store(key)})
    cache = BatchCache()
    cache.prefetch_sessions([key])
    batched = current_user({"session": _store(key)}, cache)
    return alone, batched


def _django_user(key):
    request = HttpRequest()
    request.session = _store(key)
    return auth.get_user(request)


def _who(user):
    return (user.is_authenticated, user.pk)


def _logged_out(user, client):
    client.logout()


def _password_changed(user, client):
    user.set_password("a new password")
    user.save()


def _deactivated(user, client):
    user.is_active = False
    user.save()


SCENARIOS = {
    "logged in": (None, {}),
    "logged out elsewhere": (_logged_out, {}),
    "password changed": (_password_changed, {}),
    "deactivated": (_deactivated, {}),
    "backend no longer configured": (
        None,
        {"AUTHENTICATION_BACKENDS": ["django.contrib.auth.backends.AllowAllUsersModelBackend"]},
    ),
    "secret rotated, old one a fallback": (
        None,
        {"SECRET_KEY": NEW_SECRET, "SECRET_KEY_FALLBACKS": [OLD_SECRET]},
    ),
    "secret rotated, old one dropped": (None, {"SECRET_KEY": NEW_SECRET}),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_socket_user_is_the_one_django_finds(alice, engine, scenario):
    change, later_settings = SCENARIOS[scenario]
    with override_settings(SESSION_ENGINE=engine, SECRET_KEY=OLD_SECRET):
        client = Client()
        client.force_login(alice)
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        if change is not None:
            change(alice, client)
        with override_settings(**later_settings):
            # Django's get_user may rewrite the session (rotate its hash, flush it):
            # asked second.
            alone, batched = _socket_users(key)
            expected = _django_user(key)
    assert _who(alone) == _who(expected)
    assert _who(batched) == _who(expected)
    if scenario in ("logged in", "secret rotated, old one a fallback"):
        assert _who(expected) == (True, alice.pk)  # the comparison is not vacuous


@override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db")
def test_a_batch_reads_every_database_session_in_one_query(alice, bob, django_assert_num_queries):
    keys = []
    for user in (alice, bob, alice):
        client = Client()
        client.force_login(user)
        keys.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    cache = BatchCache()
    with django_assert_num_queries(1):
        cache.prefetch_sessions(keys)
    assert {key: cache.session(key) for key in keys} == {
        key: dict(_store(key).items()) for key in keys
    }
