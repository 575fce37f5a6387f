"""Real processes: `manage.py serve` started as a subprocess on its own file database."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_env(var_dir: Path, **extra) -> dict:
    environ = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
    }
    # The product's own settings (DEBUG on: a key file in var_dir), not the test suite's.
    environ.update(
        STATEHOUSE_VAR_DIR=str(var_dir),
        DEBUG="1",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    environ.update(extra)
    return environ


def manage(environ, *args, check=True):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


class Server:
    def __init__(self, environ, port, log_path):
        self.environ = environ
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self.process = None
        self.command = [sys.executable, "manage.py", "serve", "--port", str(self.port)]

    def start(self):
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env=self.environ,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                httpx.get(self.url + "/admin/login/", timeout=1)
                return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class UvicornServer(Server):
    """The production-mode server: uvicorn on config.asgi, no worker inside."""

    def __init__(self, environ, port, log_path):
        super().__init__(environ, port, log_path)
        self.command = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "on",
        ]


@pytest.fixture
def embedded_server(tmp_path):
    environ = embedded_env(tmp_path)
    manage(environ, "migrate", "--noinput")
    server = Server(environ, free_port(), tmp_path / "serve.log").start()
    yield server
    server.stop()
