"""Live push latency: from a state change's commit to its arrival at WebSocket clients.

A real server is started as operators run it, and N logged-in WebSocket clients (each
with a Django session of its own, as N browser tabs) subscribe to one thread's feed, the
feed of the thread status page. The thread is then changed through the JSON API, one
change at a time, and every client notes when the change's event arrives.

The latency of one delivery is its arrival time minus the time of the commit: state
changes are pushed from ``transaction.on_commit``, and the server is started with a
``sitecustomize`` (bench only) that stamps each pushed payload with the clock at that
moment. It covers the push, the channel layer, the consumers' per-event access checks and
the sockets. Each line also gives the latency from the change's own timestamp (taken in
its transaction, before the write), which adds the write and the commit.

Modes (each in its own process):
  embedded    `manage.py serve` (uvicorn + worker thread, in-memory channel layer) on SQLite
  production  uvicorn `config.asgi:application` on PostgreSQL (statehouse_bench) with
              channels_redis (BENCH_REDIS_URL)

    python bench/live.py                 # both
    python bench/live.py embedded        # one
"""

import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CLIENT_COUNTS = (1, 100)
WARMUP = 5
CHANGES = {1: 200, 100: 60}
TARGET_P95_MS = 100.0


# Loaded by the server process (PYTHONPATH) before anything else: stamps every live push
# with the time it is made, which for a state change is right after its commit.
STAMP_PUSHES = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from core import realtime

_push = realtime.push


def _stamped_push(groups, payload):
    if isinstance(payload, dict):
        payload = dict(payload, pushed_at=time.time())
    _push(groups, payload)


realtime.push = _stamped_push
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(sessions: int) -> dict:
    """A staff user with ``sessions`` logged-in Django sessions, an API key and a thread."""
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.utils.module_loading import import_string

    from core.apikeys import create_api_key
    from sessions_app.services import create_session
    from threads_app.services import create_thread

    User = get_user_model()
    username = f"bench-live-{uuid.uuid4().hex[:6]}"
    user = User.objects.create_user(username, password=uuid.uuid4().hex, is_staff=True)
    store_class = import_string(settings.SESSION_ENGINE + ".SessionStore")
    keys = []
    for _ in range(sessions):
        store = store_class()
        store[SESSION_KEY] = str(user.pk)
        # The backend a password login records (the first one listed is django-axes'
        # lockout check, which authenticates no one).
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        keys.append(store.session_key)
    _key, api_key = create_api_key(user, "bench")
    thread = create_thread(create_session(user, "bench live"))
    return {"sessions": keys, "api_key": api_key, "thread": str(thread.pk)}


def start_server(mode: str, port: int, log_path: Path) -> subprocess.Popen:
    if mode == "embedded":
        command = [sys.executable, "manage.py", "serve", "--port", str(port)]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--port",
            str(port),
            "--lifespan",
            "on",
            "--log-level",
            "warning",
        ]
    stamp_dir = Path(tempfile.mkdtemp(prefix="statehouse-bench-stamp-"))
    (stamp_dir / "sitecustomize.py").write_text(STAMP_PUSHES)
    pythonpath = os.pathsep.join(filter(None, [str(stamp_dir), os.environ.get("PYTHONPATH")]))
    environ = dict(
        os.environ, PYTHONPATH=pythonpath, PYTHONUNBUFFERED="1", UVICORN_LOG_LEVEL="warning"
    )
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("server exited:\n" + log_path.read_text()[-3000:])
        try:
            httpx.get(f"http://127.0.0.1:{port}/admin/login/", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:])


async def measure(port: int, setup: dict, clients: int) -> tuple[list[float], list[float]]:
    """Latencies (ms) of every delivery: from the commit, and from the change's timestamp."""
    import httpx
    import websockets

    thread_id = setup["thread"]
    origin = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/ws/threads/{thread_id}/"
    sockets = []
    for key in setup["sessions"][:clients]:
        ws = await websockets.connect(
            url, origin=origin, additional_headers={"Cookie": f"sessionid={key}"}, max_queue=None
        )
        hello = json.loads(await ws.recv())
        assert hello["type"] == "subscribed", hello
        sockets.append(ws)

    arrivals: dict[int, list[float]] = {}
    stamps: dict[int, float] = {}
    commits: dict[int, float] = {}
    done: dict[int, asyncio.Event] = {}

    async def listen(ws):
        async for raw in ws:
            received = time.time()
            event = json.loads(raw)
            if event.get("type") != "state.changed" or event.get("id") != thread_id:
                continue
            version = event["version"]
            stamps[version] = datetime.fromisoformat(event["at"]).timestamp()
            commits[version] = event["pushed_at"]
            arrivals.setdefault(version, []).append(received)
            if len(arrivals[version]) == clients and version in done:
                done[version].set()

    listeners = [asyncio.create_task(listen(ws)) for ws in sockets]
    from_commit: list[float] = []
    from_change: list[float] = []
    headers = {"X-Api-Key": setup["api_key"]}
    async with httpx.AsyncClient(base_url=origin + "/api", headers=headers, timeout=30) as api:
        for i in range(WARMUP + CHANGES[clients]):
            response = await api.patch(f"/threads/{thread_id}", json={"metadata": {"bench": i}})
            response.raise_for_status()
            version = setup["version"] + i + 1  # one change at a time: versions follow
            event = done.setdefault(version, asyncio.Event())
            if len(arrivals.get(version, [])) == clients:
                event.set()
            await asyncio.wait_for(event.wait(), timeout=30)
            if i >= WARMUP:
                from_commit.extend((t - commits[version]) * 1000 for t in arrivals[version])
                from_change.extend((t - stamps[version]) * 1000 for t in arrivals[version])
            await asyncio.sleep(0.01)
    for task in listeners:
        task.cancel()
    for ws in sockets:
        await ws.close()
    return from_commit, from_change


def percentile(values: list[float], pct: int) -> float:
    if len(values) < 2:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def run(mode: str) -> None:
    sys.path.insert(0, str(HERE))
    from _django import setup

    os.environ["STATEHOUSE_VAR_DIR"] = tempfile.mkdtemp(prefix="statehouse-bench-live-")
    if mode == "production":
        os.environ["CHANNELS_PREFIX"] = f"bench-live-{uuid.uuid4().hex[:6]}"
        setup("postgresql", redis=True)
    else:
        setup("sqlite")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    data = prepare(max(CLIENT_COUNTS))
    port = free_port()
    log_path = Path(os.environ["STATEHOUSE_VAR_DIR"]) / "server.log"
    server = start_server(mode, port, log_path)
    try:
        from threads_app.models import Thread

        for clients in CLIENT_COUNTS:
            data["version"] = Thread.objects.get(pk=data["thread"]).version
            # The measuring clients' own garbage collector must not stall their clocks.
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                from_commit, from_change = asyncio.run(measure(port, data, clients))
            finally:
                gc.enable()
            p95 = percentile(from_commit, 95)
            verdict = "" if p95 <= TARGET_P95_MS else "  MISSED"
            print(
                f"live {mode} {clients} client{'s' if clients > 1 else ''}: "
                f"p50 {statistics.median(from_commit):.1f} ms, p95 {p95:.1f} ms "
                f"(target p95 <= {TARGET_P95_MS:g} ms){verdict}; "
                f"from the change, write and commit included: "
                f"p50 {statistics.median(from_change):.1f} ms, "
                f"p95 {percentile(from_change, 95):.1f} ms; {len(from_commit)} deliveries",
                flush=True,
            )
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    modes = sys.argv[1:] or ["embedded", "production"]
    if len(modes) == 1:
        run(modes[0])
        return
    for mode in modes:
        subprocess.run([sys.executable, __file__, mode], check=True)


if __name__ == "__main__":
    main()
