"""Browser tests: Debian's Chromium driven by Playwright against a real Statehouse.

Embedded mode: `manage.py serve` (ASGI server + worker thread) on a file database.
Production mode (REDIS_URL set): uvicorn + a `celery -A config worker` process on a
scratch PostgreSQL database, with channels_redis.

The browser is the system's /usr/bin/chromium (never a downloaded one). A failing test
leaves a screenshot and the page's HTML in test-artifacts/.
"""

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import ROOT, Server, UvicornServer, embedded_env, free_port, manage
from tests.workers import WorkerProcess

CHROMIUM = Path(os.environ.get("STATEHOUSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
OPERATOR = "operator"
OPERATOR_PASSWORD = "pw-operator-e2e"

SETUP = f"""
from django.contrib.auth import get_user_model
User = get_user_model()
User.objects.create_user({OPERATOR!r}, password={OPERATOR_PASSWORD!r}, is_staff=True,
                         is_superuser=True)
"""


@dataclass
class LiveSite:
    server: Server
    environ: dict
    api_key: str
    mode: str
    threads: list = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api", headers={"X-Api-Key": self.api_key}, timeout=30
        )

    def new_thread(self) -> str:
        with self.api() as api:
            response = api.post("/threads", json={})
        assert response.status_code == 200, response.text
        return response.json()["thread_id"]

    def start_run(self, thread_id: str, assistant_id: str, payload: dict, **extra) -> dict:
        with self.api() as api:
            response = api.post(
                f"/threads/{thread_id}/runs",
                json={"assistant_id": assistant_id, "input": payload, **extra},
            )
        assert response.status_code == 200, response.text
        return response.json()

    def manage(self, *args):
        return manage(self.environ, *args)


def _database(url: str, action: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if action == "create":
            conn.execute(f'CREATE DATABASE "{name}"')


@pytest.fixture(scope="session")
def chromium_path():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(CHROMIUM)


@pytest.fixture(scope="session")
def site(tmp_path_factory, chromium_path):
    var_dir = tmp_path_factory.mktemp("e2e")
    production = bool(os.environ.get("REDIS_URL"))
    worker = None
    if production:
        base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
        db_url = f"{base}/statehouse_e2e_live_{os.getpid()}"
        _database(db_url, "create")
        environ = dict(
            os.environ,
            STATEHOUSE_VAR_DIR=str(var_dir),
            DATABASE_URL=db_url,
            STATEHOUSE_QUEUE=f"e2e-live-{uuid.uuid4().hex[:8]}",
            CHANNELS_PREFIX=f"e2e-live-{uuid.uuid4().hex[:8]}",
            PYTHONUNBUFFERED="1",
        )
    else:
        environ = embedded_env(var_dir, DJANGO_SETTINGS_MODULE="config.test_settings")
    manage(environ, "migrate", "--noinput")
    manage(environ, "shell", "-c", SETUP)
    api_key = manage(environ, "create_api_key", OPERATOR).stdout.strip().splitlines()[-1]
    port = free_port()
    if production:
        worker = WorkerProcess(environ, var_dir / "worker.log", concurrency=2).start()
        server = UvicornServer(environ, port, var_dir / "server.log")
    else:
        server = Server(environ, port, var_dir / "server.log")
    server.start()
    yield LiveSite(server, environ, api_key, "production" if production else "embedded")
    server.stop()
    if worker is not None:
        worker.stop()
        _database(environ["DATABASE_URL"], "drop")


@pytest.fixture(scope="module")
def browser(chromium_path):
    """One Chromium per test module: Playwright's sync API keeps an event loop running
    in this thread while it is open, which later asyncio.run() calls would trip over."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell a failure."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _save_artifacts(request, page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_")
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        (ARTIFACTS / f"{name}.html").write_text(page.content())
    except Exception as exc:  # a crashed page: say so, keep the test's own error
        (ARTIFACTS / f"{name}.error.txt").write_text(f"no screenshot: {exc}\n")


@pytest.fixture
def page(request, browser):
    """A fresh browser context (no cookies) and page; a screenshot if the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        _save_artifacts(request, page)
        name = request.node.name.replace("/", "_")
        (ARTIFACTS / f"{name}.console.txt").write_text("\n".join(console) + "\n")
    context.close()


def log_in(page, site: LiveSite) -> None:
    """Log in through the admin login form, as an operator does."""
    page.goto(site.url + "/admin/login/")
    page.fill("#id_username", OPERATOR)
    page.fill("#id_password", OPERATOR_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(site.url + "/admin/")


@pytest.fixture
def operator_page(page, site):
    log_in(page, site)
    return page


def wait_live(page) -> None:
    """Until the page's socket is subscribed to its feed."""
    from playwright.sync_api import expect

    expect(page.locator("[data-live-indicator]")).to_have_attribute("data-state", "live")


def mark_document(page) -> None:
    """Tag the document: a reload would lose the tag (see assert_not_reloaded)."""
    page.evaluate("window.__statehouseNoReload = 'still the same document'")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__statehouseNoReload") == "still the same document"
