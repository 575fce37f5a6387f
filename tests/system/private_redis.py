"""A Redis server of a test's own, on a port of its own, that the test may stop and
restart without disturbing anything else (it keeps nothing on disk)."""

import contextlib
import shutil
import subprocess
import time

import pytest


class PrivateRedis:
    """A Redis server for one test, on a port of its own, that a test may restart."""

    def __init__(self, port: int, folder):
        self.port = port
        self.folder = folder
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"],
                capture_output=True,
            )
            if b"PONG" in ping.stdout:
                return self
            time.sleep(0.1)
        raise AssertionError("redis did not start")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def restart(self):
        self.stop()
        time.sleep(0.5)
        self.start()


@contextlib.contextmanager
def running_redis(folder):
    """A started PrivateRedis on a free port, stopped at the end (skips without redis)."""
    from tests.system.conftest import free_port

    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server")
    redis = PrivateRedis(free_port(), folder).start()
    try:
        yield redis
    finally:
        redis.stop()
