"""`manage.py serve` in embedded mode, as `make run` starts it."""

import asyncio
import re

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus, WebSocketException

from tests.system.conftest import manage

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
