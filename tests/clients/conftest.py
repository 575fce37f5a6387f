"""The real JavaScript clients (from npm) against a real Statehouse server.

`npm ci` installs the packages of the committed package-lock.json into node_modules/
when they are missing or older than the lock (never a browser: the browser is the
system's /usr/bin/chromium, see tests/e2e). The server is tests/api's live server, so
these run in embedded mode and, with REDIS_URL set, in production mode.
"""

import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.api.conftest import live_api  # noqa: F401 (the same live server fixture)
from tests.e2e.conftest import (  # noqa: F401 (the same browser fixtures)
    browser,
    chromium_path,
    page,
    pytest_runtest_makereport,
)
from tests.system.conftest import ROOT

HERE = Path(__file__).resolve().parent
NODE_MODULES = ROOT / "node_modules"
LOCK = ROOT / "package-lock.json"


def _missing(message: str):
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _installed() -> bool:
    """node_modules holds what the lock says (npm keeps its own copy of the lock there)."""
    hidden_lock = NODE_MODULES / ".package-lock.json"
    return hidden_lock.exists() and hidden_lock.stat().st_mtime >= LOCK.stat().st_mtime


@pytest.fixture(scope="session")
def node_modules():
    """The npm packages, installed with `npm ci` when missing or older than the lock."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            _missing(f"{tool} is missing: apt-get install -y nodejs npm (Node 20.19+)")
    with open(Path(tempfile.gettempdir()) / "statehouse-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs never install at once
        if not _installed():
            npm = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=600,
            )
            if npm.returncode != 0:
                pytest.fail(f"npm ci failed:\n{npm.stdout}\n{npm.stderr}")
    return NODE_MODULES


class NodeScripts:
    """Runs tests/clients/js/<script>.mjs <scenario> against the live server."""

    def __init__(self, api_url: str, api_key: str):
        self.environ = dict(os.environ, STATEHOUSE_API_URL=api_url, STATEHOUSE_API_KEY=api_key)

    def __call__(self, script: str, scenario: str, **params):
        completed = subprocess.run(
            ["node", str(HERE / "js" / f"{script}.mjs"), scenario, json.dumps(params)],
            cwd=ROOT,
            env=self.environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, (
            f"{script} {scenario} failed:\n{completed.stderr}\n{completed.stdout}"
        )
        return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def js(node_modules, live_api):  # noqa: F811
    return NodeScripts(live_api.api, live_api.keys["alice"])


@dataclass
class PageServer:
    origin: str
    root: Path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # the test output stays readable
        pass


@pytest.fixture(scope="session", autouse=True)
def page_server(tmp_path_factory):
    """A static server for the useStream page, on another origin than the API's.

    It is up before the live server starts (so autouse), because in production mode a
    browser origin must be listed in CORS_ALLOWED_ORIGINS when the server starts; in
    embedded mode the server's default (any local origin) is what is tested.
    """
    root = tmp_path_factory.mktemp("usestream-build")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    with pytest.MonkeyPatch.context() as patch:
        if os.environ.get("REDIS_URL"):
            listed = os.environ.get("CORS_ALLOWED_ORIGINS", "")
            patch.setenv("CORS_ALLOWED_ORIGINS", ",".join(filter(None, [listed, origin])))
        yield PageServer(origin, root)
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.fixture(scope="session")
def usestream_page(node_modules, page_server):
    """The useStream page (tests/clients/usestream), built by Vite for the page server."""
    vite = subprocess.run(
        [
            str(NODE_MODULES / ".bin" / "vite"),
            "build",
            "--config",
            str(HERE / "usestream" / "vite.config.mjs"),
            "--outDir",
            str(page_server.root),
            "--emptyOutDir",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if vite.returncode != 0:
        pytest.fail(f"vite build failed:\n{vite.stdout}\n{vite.stderr}")
    return page_server.origin + "/index.html"
