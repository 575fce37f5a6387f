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


def _production_env(tmp_path, **environ):
    clean = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "STATEHOUSE_TESTING")}
    clean.update(STATEHOUSE_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    clean.pop("DEBUG", None)
    clean.update(environ)
    return clean


def _settings_in_subprocess(tmp_path, code=None, **environ):
    code = (
        code or "from django.conf import settings; print(settings.SECRET_KEY[:6], settings.DEBUG)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=_production_env(tmp_path, **environ),
        capture_output=True,
        text=True,
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


def test_the_key_file_is_created_owner_only_not_chmod_ed_after_writing(tmp_path, monkeypatch):
    import config.settings as production

    def no_chmod(*args, **kwargs):
        raise AssertionError("the key file was chmod-ed after it was written")

    monkeypatch.setattr(production, "VAR_DIR", tmp_path)
    monkeypatch.setattr(Path, "chmod", no_chmod)
    monkeypatch.setattr(os, "chmod", no_chmod)
    previous = os.umask(0)  # nothing masks the mode the file is created with
    try:
        key = production._local_secret_key()
    finally:
        os.umask(previous)

    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert len(key) >= 50
    assert production._local_secret_key() == key  # created once, then read


def test_an_existing_key_file_is_read_not_replaced(tmp_path, monkeypatch):
    import config.settings as production

    monkeypatch.setattr(production, "VAR_DIR", tmp_path)
    (tmp_path / "secret_key").write_text("made-by-another-process\n")

    assert production._local_secret_key() == "made-by-another-process"


HASHER = "from django.conf import settings; print(settings.PASSWORD_HASHERS[0])"


def test_the_old_test_switch_does_not_lift_the_secret_key_requirement(tmp_path):
    result = _settings_in_subprocess(tmp_path, STATEHOUSE_TESTING="1")

    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr
    assert not (tmp_path / "secret_key").exists()


def test_the_old_test_switch_does_not_weaken_password_hashing(tmp_path):
    result = _settings_in_subprocess(
        tmp_path, HASHER, STATEHOUSE_TESTING="1", SECRET_KEY="from-the-environment-0123456789"
    )

    assert result.returncode == 0, result.stderr
    assert "MD5" not in result.stdout
    assert result.stdout.strip() == "django.contrib.auth.hashers.PBKDF2PasswordHasher"


def _check_deploy(tmp_path, **environ):
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=ROOT,
        env=_production_env(tmp_path, SECRET_KEY="from-the-environment-0123456789", **environ),
        capture_output=True,
        text=True,
    )


def test_check_deploy_refuses_the_test_settings(tmp_path):
    result = _check_deploy(tmp_path, DJANGO_SETTINGS_MODULE="config.test_settings")

    assert result.returncode != 0
    assert "statehouse.E001" in result.stderr
    assert "MD5PasswordHasher" in result.stderr


def test_check_deploy_passes_the_hashing_of_the_production_settings(tmp_path):
    result = _check_deploy(tmp_path, STATEHOUSE_TESTING="1")

    assert "statehouse.E001" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr


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
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer"}
    }
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
