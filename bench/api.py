"""The API under load: Statehouse in production mode against `langgraph dev`, same client.

Statehouse runs as uvicorn (2 processes) + 2 Celery worker processes on PostgreSQL and
Redis; the anchor is `langgraph dev` (langgraph-cli[inmem], in-memory) serving the same
langgraph.json, installed into var/bench/lgdev-venv on first use. At fixed concurrency:

- GET /threads/{id}/state on a thread with a finished pipeline run;
- POST /threads/{id}/runs/wait running `pipeline` with one step (one thread per client);
- GET /ok (the cheapest authenticated route) and, on Statehouse, an unknown page: the
  floor of any request through Django on this machine, to read the state-read ratio by.

Prints p50/p99 latency and throughput for each server and the ratios.
"""

import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import ROOT, setup

CONCURRENCY = 8
STATE_REQUESTS = 2000
WAIT_REQUESTS = 200
VAR = ROOT / "var" / "bench"
LGDEV_VENV = VAR / "lgdev-venv"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, headers: dict, process: subprocess.Popen, log: Path, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ok", headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"server did not start:\n{log.read_text()[-3000:]}")


def start(command, environ, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env=environ,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(processes) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def ensure_lgdev() -> Path:
    binary = LGDEV_VENV / "bin" / "langgraph"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LGDEV_VENV)], check=True)
        subprocess.run(
            [
                str(LGDEV_VENV / "bin" / "pip"),
                "install",
                "-q",
                "langgraph-cli[inmem]",
                "langchain-core>=1.7,<1.8",
            ],
            check=True,
        )
    return binary


async def load(client: httpx.AsyncClient, requests, concurrency: int, expect: int = 0):
    """Run ``requests`` (coroutine factories) with ``concurrency`` at once; latencies in ms.

    Each response must succeed (or have the status ``expect``).
    """
    latencies: list[float] = []
    queue = list(requests)
    position = 0

    async def worker():
        nonlocal position
        while position < len(queue):
            make = queue[position]
            position += 1
            started = time.perf_counter()
            response = await make(client)
            if response.status_code != expect:
                response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return latencies, len(latencies) / elapsed


def summary(latencies, throughput) -> dict:
    ordered = sorted(latencies)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "rps": throughput,
    }


async def timed(client, make, warm_up: int, count: int, expect: int = 0) -> dict:
    """``warm_up`` requests unmeasured, then the summary of ``count`` more."""
    await load(client, [make] * warm_up, CONCURRENCY, expect)
    return summary(*await load(client, [make] * count, CONCURRENCY, expect))


async def measure(base_url: str, headers: dict, floor_url: str = "") -> dict:
    """State reads, runs/wait and GET /ok; with ``floor_url``, also requests to it (an
    unknown page: Django's 404, the least a request through Statehouse can cost)."""
    result = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=120) as client:
        if floor_url:
            result["floor"] = await timed(
                client, lambda c: c.get(floor_url), 100, STATE_REQUESTS, expect=404
            )
        result["ok"] = await timed(client, lambda c: c.get("/ok"), 100, STATE_REQUESTS)

        thread = (await client.post("/threads", json={})).json()["thread_id"]
        done = await client.post(
            f"/threads/{thread}/runs/wait", json={"assistant_id": "pipeline", "input": {"steps": 2}}
        )
        done.raise_for_status()
        result["state"] = await timed(
            client, lambda c: c.get(f"/threads/{thread}/state"), 100, STATE_REQUESTS
        )

        threads = [
            (await client.post("/threads", json={})).json()["thread_id"] for _ in range(CONCURRENCY)
        ]
        turn = {"n": 0}

        def run_wait(c):
            turn["n"] += 1
            return c.post(
                f"/threads/{threads[turn['n'] % CONCURRENCY]}/runs/wait",
                json={"assistant_id": "pipeline", "input": {"steps": 1}},
            )

        result["wait"] = await timed(client, run_wait, 20, WAIT_REQUESTS)
    return result


def statehouse(log_dir: Path) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections

    from core.apikeys import create_api_key

    user, _ = get_user_model().objects.get_or_create(username="api-bench")
    secret = create_api_key(user, "bench")[1]
    connections.close_all()
    environ = dict(
        os.environ,
        STATEHOUSE_QUEUE=f"api-bench-{uuid.uuid4().hex[:6]}",
        STATEHOUSE_API_RATE="1000000/m",
        DB_POOL_MAX="8",  # production setting: a connection pool per server process
        LOG_LEVEL="WARNING",
    )
    port = free_port()
    server = start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "config.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
            "--log-level",
            "warning",
            "--lifespan",
            "on",
        ],
        environ,
        log_dir / "api-uvicorn.log",
    )
    workers = [
        start(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--concurrency",
                "1",
                "-n",
                f"apibench{i}@%h",
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            environ,
            log_dir / f"api-worker-{i}.log",
        )
        for i in range(2)
    ]
    try:
        url = f"http://127.0.0.1:{port}/api"
        headers = {"X-Api-Key": secret}
        wait_ready(url, headers, server, log_dir / "api-uvicorn.log")
        floor_url = f"http://127.0.0.1:{port}/no-such-page/"
        return asyncio.run(measure(url, headers, floor_url))
    finally:
        stop([server, *workers])


def langgraph_dev(log_dir: Path) -> dict:
    binary = ensure_lgdev()
    # The in-memory server pickles its threads and checkpoints into .langgraph_api/ and
    # loads them at start; left from earlier runs they slow it down (state reads went
    # from 6 ms to 190 ms p50 after a few runs). Each run starts it empty.
    shutil.rmtree(ROOT / ".langgraph_api", ignore_errors=True)
    port = free_port()
    environ = dict(os.environ, LANGSMITH_TRACING="false", LANGGRAPH_NO_ANALYTICS="1")
    environ.pop("DATABASE_URL", None)
    server = start(
        [
            str(binary),
            "dev",
            "--port",
            str(port),
            "--no-browser",
            "--no-reload",
            "--config",
            "langgraph.json",
        ],
        environ,
        log_dir / "api-lgdev.log",
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, {}, server, log_dir / "api-lgdev.log")
        return asyncio.run(measure(url, {}))
    finally:
        stop([server])


def line(name: str, ours: dict, anchor: dict) -> str:
    return (
        f"api {name} (concurrency {CONCURRENCY}): statehouse p50 {ours['p50']:.1f} ms, "
        f"p99 {ours['p99']:.1f} ms, {ours['rps']:.1f} req/s; langgraph dev p50 "
        f"{anchor['p50']:.1f} ms, p99 {anchor['p99']:.1f} ms, {anchor['rps']:.1f} req/s; "
        f"p50 ratio {ours['p50'] / anchor['p50']:.2f}, throughput ratio "
        f"{ours['rps'] / anchor['rps']:.2f}"
    )


def main() -> None:
    setup("postgresql", redis=True)
    VAR.mkdir(parents=True, exist_ok=True)
    ours = statehouse(VAR)
    anchor = langgraph_dev(VAR)
    print(
        line("GET /threads/{id}/state", ours["state"], anchor["state"])
        + " (target p50 ratio <= 1.0)"
    )
    print(
        line("POST /threads/{id}/runs/wait pipeline(1 step)", ours["wait"], anchor["wait"])
        + " (target throughput ratio >= 0.8)"
    )
    print(line("GET /ok", ours["ok"], anchor["ok"]))
    floor = ours["floor"]
    print(
        f"api floor (concurrency {CONCURRENCY}): an unknown page on statehouse (Django's 404: "
        f"middleware and URL resolver, no auth, no database) p50 {floor['p50']:.1f} ms, "
        f"{floor['rps']:.1f} req/s; p50 ratio to langgraph dev's state read "
        f"{floor['p50'] / anchor['state']['p50']:.2f}"
    )


if __name__ == "__main__":
    main()
