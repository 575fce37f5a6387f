"""`manage.py serve` in embedded mode, as `make run` starts it."""

import asyncio
import re
import time

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus, WebSocketException

from tests.system.conftest import Server, embedded_env, free_port, manage

pytestmark = pytest.mark.system


def _login(server, username, password) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    page = client.get("/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    response = client.post(
        "/admin/login/?next=/admin/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": server.url + "/admin/login/"},
    )
    assert response.status_code == 302, response.text[:500]
    return client


def test_serve_answers_pages_and_static_files(embedded_server):
    root = httpx.get(embedded_server.url + "/")
    assert root.status_code == 302
    login = httpx.get(embedded_server.url + "/admin/login/")
    assert login.status_code == 200
    css = httpx.get(embedded_server.url + "/static/admin/css/base.css")
    assert css.status_code == 200
    admin = httpx.get(embedded_server.url + "/admin/")
    assert admin.status_code == 302
    assert "/admin/login/" in admin.headers["location"]
    log = embedded_server.log_path.read_text()
    assert "embedded Celery worker started" in log
    assert "embedded mode" in log


def test_a_generated_admin_logs_in_and_sees_demo_data(embedded_server):
    output = manage(embedded_server.environ, "ensure_admin").stdout
    password = re.search(r"password: (\S+)", output).group(1)
    manage(embedded_server.environ, "load_demo")

    client = _login(embedded_server, "admin", password)
    sessions = client.get("/admin/sessions_app/session/")

    assert sessions.status_code == 200
    assert "Demo: support conversation" in sessions.text


def test_an_unauthenticated_websocket_is_refused(embedded_server):
    url = embedded_server.url.replace("http", "ws") + "/ws/dashboard/"

    async def attempt():
        async with websockets.connect(url, origin=embedded_server.url) as socket:
            await socket.recv()

    with pytest.raises(WebSocketException) as refused:
        asyncio.run(attempt())
    # Closed before the handshake completes: the server answers 403.
    assert isinstance(refused.value, InvalidStatus)
    assert refused.value.response.status_code == 403


def test_the_embedded_worker_sweeps_stateless_threads_away(tmp_path):
    """The sweeper runs in embedded mode too (a bare Celery WorkController announces no
    readiness, so it used to never start): a stateless run's thread goes after its TTL,
    one kept with on_completion "keep" stays."""
    environ = embedded_env(
        tmp_path, STATEHOUSE_TEMPORARY_THREAD_TTL_S="0.5", STATEHOUSE_SWEEP_INTERVAL_S="0.5"
    )
    manage(environ, "migrate", "--noinput")
    manage(environ, "ensure_admin")
    key = manage(environ, "create_api_key", "admin").stdout.strip().splitlines()[-1]
    server = Server(environ, free_port(), tmp_path / "serve.log").start()
    try:
        api = httpx.Client(base_url=server.url + "/api", headers={"X-Api-Key": key}, timeout=30)
        threads = {}
        for completion in ("delete", "keep"):
            body = {"assistant_id": "pipeline", "input": {"steps": 1}}
            response = api.post("/runs/wait", json=body | {"on_completion": completion})
            assert response.status_code == 200, response.text
            threads[completion] = response.headers["Content-Location"].split("/")[2]

        deadline = time.monotonic() + 30
        while api.get(f"/threads/{threads['delete']}").status_code != 404:
            assert time.monotonic() < deadline, "the stateless run's thread was never swept"
            time.sleep(0.2)
        assert api.get(f"/threads/{threads['keep']}").status_code == 200
    finally:
        server.stop()
