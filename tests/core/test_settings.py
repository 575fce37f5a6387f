"""Settings from the environment, and the production system check."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import env
from core.checks import embedded_transports_in_production

ROOT = Path(__file__).resolve().parents[2]


def test_env_helpers_parse_typed_values(monkeypatch):
    monkeypatch.setenv("X_BOOL", "yes")
    monkeypatch.setenv("X_INT", "42")
    monkeypatch.setenv("X_LIST", "a.example, b.example,,")
    assert env.env_bool("X_BOOL") is True
    assert env.env_int("X_INT", 1) == 42
    assert env.env_list("X_LIST") == ["a.example", "b.example"]
    assert env.env_int("X_MISSING", 7) == 7


@pytest.mark.parametrize("name,value", [("X_BOOL", "maybe"), ("X_INT", "forty")])
def test_env_helpers_name_the_bad_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    parse = env.env_bool if name == "X_BOOL" else (lambda n: env.env_int(n, 0))
    with pytest.raises(ImproperlyConfigured, match=name):
        parse(name)


def _settings_in_subprocess(tmp_path, **environ):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "STATEHOUSE_TESTING")}
    clean.update(STATEHOUSE_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    clean.pop("DEBUG", None)
    clean.update(environ)
    code = "from django.conf import settings; print(settings.SECRET_KEY[:6], settings.DEBUG)"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True
    )


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    result = _settings_in_subprocess(tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_local_secret_key_is_generated_once_for_development(tmp_path):
    first = _settings_in_subprocess(tmp_path, DEBUG="1")
    second = _settings_in_subprocess(tmp_path, DEBUG="1")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    key_file = tmp_path / "secret_key"
    assert key_file.exists()
    assert oct(key_file.stat().st_mode)[-3:] == "600"


def test_an_explicit_secret_key_wins(tmp_path):
    result = _settings_in_subprocess(tmp_path, SECRET_KEY="from-the-environment-0123456789")
    assert result.stdout.startswith("from-t False")
    assert not (tmp_path / "secret_key").exists()


def test_in_memory_transports_warn_when_debug_is_off(settings):
    settings.DEBUG = False
    settings.CELERY_BROKER_URL = "memory://"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    assert [w.id for w in embedded_transports_in_production(None)] == [
        "statehouse.W001",
        "statehouse.W002",
    ]


def test_real_transports_do_not_warn(settings):
    settings.DEBUG = False
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer"}}
    assert embedded_transports_in_production(None) == []


def test_debug_mode_does_not_warn(settings):
    settings.DEBUG = True
    settings.CELERY_BROKER_URL = "memory://"
    assert embedded_transports_in_production(None) == []


def test_sqlite_runs_with_wal_and_immediate_transactions(db, settings):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("embedded mode only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_the_in_memory_broker_is_polled_often_enough_for_runs_to_start_at_once():
    from django.conf import settings

    from config.celery import app

    if not settings.CELERY_BROKER_URL.startswith("memory://"):
        pytest.skip("embedded mode only")
    with app.connection_for_read() as connection:
        # kombu's default is a second: a run waited up to that long to be picked up.
        assert connection.transport.polling_interval <= 0.05
