"""A real Statehouse server for API tests, driven over HTTP.

Embedded mode: `manage.py serve` (ASGI server + worker thread) on a file database.
Production mode (REDIS_URL set): uvicorn + a `celery -A config worker` process on a
scratch PostgreSQL database and Redis.
"""

import json
import os
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from tests.system.conftest import Server, UvicornServer, embedded_env, free_port, manage
from tests.workers import WorkerProcess

SETUP_USERS = """
import json
from django.contrib.auth import get_user_model
from core.apikeys import create_api_key, revoke
User = get_user_model()
keys = {}
for name, staff in (("ops", True), ("alice", False), ("bob", False)):
    user = User.objects.create_user(name, password="pw-" + name, is_staff=staff)
    keys[name] = create_api_key(user, "tests")[1]
revoked, secret = create_api_key(User.objects.get(username="alice"), "old")
revoke(revoked)
keys["revoked"] = secret
print("KEYS=" + json.dumps(keys))
"""


@dataclass
class LiveApi:
    url: str
    keys: dict
    mode: str

    @property
    def api(self) -> str:
        return self.url + "/api"

    def client(self, who: str = "alice") -> httpx.Client:
        headers = {"X-Api-Key": self.keys[who]} if who else {}
        return httpx.Client(base_url=self.api, headers=headers, timeout=60)


def _create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _drop_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def live_api(tmp_path_factory):
    with running_api(tmp_path_factory.mktemp("live-api")) as api:
        yield api


@contextmanager
def running_api(var_dir, name: str = "e2e", **extra_env):
    """A live server (and worker) on a database of its own, ``extra_env`` added to its
    environment (``STATEHOUSE_GRAPHS_FILE``, say)."""
    production = bool(os.environ.get("REDIS_URL"))
    if production:
        db_url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/statehouse_{name}_{os.getpid()}"
        _create_database(db_url)
        environ = dict(
            os.environ,
            STATEHOUSE_VAR_DIR=str(var_dir),
            DATABASE_URL=db_url,
            STATEHOUSE_QUEUE=f"{name}-{uuid.uuid4().hex[:8]}",
            STATEHOUSE_SSE_HEARTBEAT_S="1",
            PYTHONUNBUFFERED="1",
            **extra_env,
        )
    else:
        environ = embedded_env(
            var_dir,
            STATEHOUSE_SSE_HEARTBEAT_S="1",
            DJANGO_SETTINGS_MODULE="config.test_settings",
            **extra_env,
        )
    manage(environ, "migrate", "--noinput")
    output = manage(environ, "shell", "-c", SETUP_USERS).stdout
    keys = json.loads(output.split("KEYS=", 1)[1].strip())
    port = free_port()
    worker = None
    if production:
        server = UvicornServer(environ, port, var_dir / "server.log")
        worker = WorkerProcess(environ, var_dir / "worker.log", concurrency=2)
        worker.start()
    else:
        server = Server(environ, port, var_dir / "server.log")
    server.start()
    try:
        yield LiveApi(server.url, keys, "production" if production else "embedded")
    finally:
        server.stop()
        if worker is not None:
            worker.stop()
            _drop_database(environ["DATABASE_URL"])
