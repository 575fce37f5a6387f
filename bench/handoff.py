"""Handing one run to a worker: Celery on Redis (with the settings that matter) against a
claim straight from PostgreSQL with Redis only as the wake-up, in the same run.

Each variant starts one worker process, sends RUNS messages one after another (each sent
when the previous one started) and prints, per run: the CPU the sending process spent
sending, the CPU of the worker's processes (their idle CPU, measured before, taken out)
and the latency from send to task start (p50, p95), plus the Redis connections the sending
process opened while sending (0: its producer connection is reused, none set up per run).

The database claim (a prototype, not the runtime): the API side writes the run row, as
it does anyway, and LPUSHes one wake-up token; each worker BLPOPs a token (a timeout
doubles as the poll that covers lost tokens) and claims with
``UPDATE ... WHERE id = (SELECT id ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``, so a
token wakes one worker and a run is claimed once whatever happens to the tokens. Its
worker figure includes the claim statement, which the Celery path does after its
hand-off (the compare-and-set claim of threads_app) and is not counted there.

    python bench/handoff.py    # BENCH_DATABASE_URL, BENCH_REDIS_URL override the defaults
"""

import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import DEFAULT_PG, DEFAULT_REDIS, ROOT, setup

RUNS = 300
WARMUP = 20
TICKS = os.sysconf("SC_CLK_TCK")
QUIET = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
TABLE = "bench_handoff_job"


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants."""
    parents: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
        cpu[int(entry.name)] = (int(fields[11]) + int(fields[12])) / TICKS
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(parents.get(current, []))
    return total


OPENED = [0]  # Redis connections this process opened (the sender's reuse check)


def count_connections() -> None:
    from redis.connection import AbstractConnection

    connect = AbstractConnection.connect

    def counted(self, *args, **kwargs):
        if self._sock is None:
            OPENED[0] += 1
        return connect(self, *args, **kwargs)

    AbstractConnection.connect = counted


def worker_figure(process, client, key, send, idle_s: float = 2.0) -> dict:
    """Send RUNS messages with ``send()``; CPU and latency figures per run."""
    for _ in range(WARMUP):
        send()
        if client.blpop([key], timeout=30) is None:
            raise RuntimeError("the worker did not answer")
    start = tree_cpu(process.pid)
    time.sleep(idle_s)
    idle_rate = (tree_cpu(process.pid) - start) / idle_s
    latencies, sending = [], 0.0
    opened = OPENED[0]
    worker_start, wall_start = tree_cpu(process.pid), time.monotonic()
    for _ in range(RUNS):
        before = time.process_time()
        send()
        sending += time.process_time() - before
        _key, value = client.blpop([key], timeout=30)
        latencies.append(float(value) * 1000)
    wall = time.monotonic() - wall_start
    worker = tree_cpu(process.pid) - worker_start - idle_rate * wall
    latencies.sort()
    return {
        "api_ms": sending * 1000 / RUNS,
        "worker_ms": max(worker, 0.0) * 1000 / RUNS,
        "p50": statistics.median(latencies),
        "p95": latencies[int(len(latencies) * 0.95)],
        "connections": OPENED[0] - opened,
    }


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def celery_variant(name, client, worker_conf: dict, sender_conf: dict, flags: list) -> dict:
    from celery import signature

    from config.celery import app

    queue, key = f"bench-handoff-{uuid.uuid4().hex[:8]}", f"bench:handoff:{uuid.uuid4().hex}"
    saved = {name: app.conf[name] for name in sender_conf}
    app.conf.update(sender_conf, task_default_queue=queue)
    environ = dict(
        os.environ,
        PYTHONPATH=f"{ROOT / 'bench'}{os.pathsep}{ROOT}",
        STATEHOUSE_QUEUE=queue,
        BENCH_HANDOFF_CONF=json.dumps(worker_conf),
        BENCH_HANDOFF_KEY=key,
        LOG_LEVEL="WARNING",
    )
    command = [sys.executable, "-m", "celery", "-A", "config", "worker", "--concurrency", "1"]
    command += ["--include", "_handoff_tasks", "-n", f"handoff-{queue}@%h", "-l", "WARNING"]
    process = subprocess.Popen(
        command + flags,
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def send():
            signature("bench.handoff", args=(time.time(),)).apply_async()

        figure = worker_figure(process, client, key, send)
    finally:
        stop(process)
        app.conf.update(saved)
        client.delete(key)
    report(f"celery {name}", figure)
    return figure


def claim_worker() -> None:
    """The prototype's worker loop (run as a subprocess of this script)."""
    import psycopg
    import redis

    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    wake, key = os.environ["BENCH_WAKE_KEY"], os.environ["BENCH_HANDOFF_KEY"]
    claim = (
        f"UPDATE {TABLE} SET status = 'running', claimed_by = %s WHERE id = ("
        f"SELECT id FROM {TABLE} WHERE status = 'pending' ORDER BY id "
        "FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING sent_at"
    )
    name = f"claim-{os.getpid()}"
    with psycopg.connect(os.environ["BENCH_DATABASE_URL"], autocommit=True) as db:
        while True:
            token = client.blpop([wake], timeout=1)  # the timeout: a poll for lost tokens
            if token is not None and token[1] == b"stop":
                return
            while (row := db.execute(claim, [name], prepare=True).fetchone()) is not None:
                client.rpush(key, time.time() - row[0])


def claim_variant(client) -> dict:
    import psycopg

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG)
    wake, key = f"bench:wake:{uuid.uuid4().hex}", f"bench:handoff:{uuid.uuid4().hex}"
    db = psycopg.connect(url, autocommit=True)
    db.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, "
        "status text NOT NULL DEFAULT 'pending', sent_at double precision NOT NULL, "
        "claimed_by text)"
    )
    db.execute(f"TRUNCATE {TABLE}")
    environ = dict(os.environ, BENCH_DATABASE_URL=url, BENCH_WAKE_KEY=wake, BENCH_HANDOFF_KEY=key)
    process = subprocess.Popen(
        [sys.executable, __file__, "--claim-worker"], env=environ, start_new_session=True
    )
    inserting: list[float] = []
    insert = f"INSERT INTO {TABLE} (sent_at) VALUES (%s)"

    def send():
        before = time.process_time()
        db.execute(insert, [time.time()], prepare=True)  # the run row: written in both designs
        inserting.append(time.process_time() - before)
        client.lpush(wake, 1)

    try:
        figure = worker_figure(process, client, key, send)
    finally:
        client.lpush(wake, "stop")
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop(process)
        db.execute(f"DROP TABLE {TABLE}")
        db.close()
        client.delete(key, wake)
    figure["api_ms"] -= sum(inserting[-RUNS:]) * 1000 / RUNS  # only the wake-up counts
    report("db-claim (LPUSH wake-up, BLPOP + FOR UPDATE SKIP LOCKED claim)", figure)
    return figure


def report(name: str, figure: dict) -> None:
    print(
        f"handoff {name}: API send CPU {figure['api_ms']:.2f} ms/run, worker CPU "
        f"{figure['worker_ms']:.2f} ms/run, latency p50 {figure['p50']:.2f} ms "
        f"(p95 {figure['p95']:.2f}), Redis connections the sender opened in {RUNS} sends: "
        f"{figure['connections']}",
        flush=True,
    )


def main() -> int:
    setup("postgresql", redis=True)
    count_connections()
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS))
    os.environ.setdefault("BENCH_REDIS_URL", settings.REDIS_URL)
    print(f"handoff {RUNS} runs per variant, one worker process (--concurrency 1)", flush=True)
    msgpack = {"task_serializer": "msgpack", "accept_content": ["json", "msgpack"]}
    celery_variant("as configured (README's worker command)", client, {}, {}, [])
    quiet = celery_variant("+ without gossip/mingle/heartbeat", client, {}, {}, QUIET)
    celery_variant(
        "+ quiet + worker_disable_rate_limits",
        client,
        {"worker_disable_rate_limits": True},
        {},
        QUIET,
    )
    celery_variant("+ quiet + msgpack", client, msgpack, msgpack, QUIET)
    celery_variant("+ quiet + task_protocol 1", client, {}, {"task_protocol": 1}, QUIET)
    celery_variant(
        "+ quiet + prefetch multiplier 4 (not acceptable: a dead worker holds 4 runs)",
        client,
        {"worker_prefetch_multiplier": 4},
        {},
        QUIET,
    )
    claim = claim_variant(client)
    print(
        "handoff db-claim against celery without gossip/mingle/heartbeat, per run: API "
        f"{quiet['api_ms'] - claim['api_ms']:+.2f} ms CPU saved, worker "
        f"{quiet['worker_ms'] - claim['worker_ms']:+.2f} ms CPU saved, latency p50 "
        f"{quiet['p50'] - claim['p50']:+.2f} ms saved",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--claim-worker"]:
        claim_worker()
    else:
        sys.exit(main())
