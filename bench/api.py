"""The API under load: Statehouse, Aegra and `langgraph dev`, same client, same graphs.

Three servers, each serving langgraph.json's demo graphs, measured one after the other:

- Statehouse in production mode: uvicorn (2 processes) + 2 Celery worker processes on
  PostgreSQL and a Redis server of the bench's own (or BENCH_REDIS_URL), as deployed: a
  waited run that can start at once is executed by the server process that waits for
  it (threads_app/inprocess.py), one queued behind another run of its thread by a worker;
- Aegra (aegra-api from PyPI, FastAPI on PostgreSQL, runs executed in the server
  processes), 2 uvicorn processes with uvloop and httptools, on a database of its own
  (BENCH_AEGRA_DATABASE_URL), installed into var/bench/aegra-venv on first use;
- `langgraph dev` (langgraph-cli[inmem], in memory), installed into var/bench/lgdev-venv.

At concurrency 8, with the same requests:

- GET /threads/{id}/state on a thread with a finished pipeline run;
- POST /threads/{id}/runs/wait running `pipeline` with one step (8 threads that already
  have runs, one per client);
- the cheapest authenticated route (GET /ok; Aegra has none, GET /info) and, on
  Statehouse, an unknown page: the floor of any request through Django.

For the state reads and the runs: p50/p99 latency and throughput; the CPU time per request
of each process (utime+stime from /proc: the server's process tree, the workers' trees,
the PostgreSQL backends connected to the server's database, the Redis server); and, for the
servers on PostgreSQL, the SQL statements per request, counted from the PostgreSQL server
log in a second start of the server with `log_statement = 'all'` set on its database only
(the timed pass runs without it; the setting is reset afterwards). Prints every figure, the
ratios and whether each target of the API speed issue is met; the statements of each
counted phase, grouped by text, go to var/bench/api-sql-<server>-<phase>.txt.
"""

import asyncio
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import ROOT, setup

CONCURRENCY = 8
STATE_REQUESTS = 2000
WAIT_REQUESTS = 200
# The counting pass: fewer requests (every statement is logged), after a warm-up.
COUNT_STATE_REQUESTS = 200
COUNT_WAIT_REQUESTS = 40
VAR = ROOT / "var" / "bench"
LGDEV_VENV = VAR / "lgdev-venv"
AEGRA_VENV = VAR / "aegra-venv"
AEGRA_VERSION = "0.6.0"
DEFAULT_AEGRA_PG = "postgres://root@127.0.0.1:5432/aegra_bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The targets of the issue "The durable run path at peer speed", at concurrency 8.
TARGET_WAIT_VS_AEGRA = 1.2
TARGET_WAIT_VS_LGDEV = 0.8
TARGET_CPU_PER_RUN_MS = 18
TARGET_STATEMENTS_PER_RUN = 15
TARGET_STATEMENTS_PER_READ = 2


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, headers: dict, process, log: Path, others=(), timeout=120):
    """Until ``url`` answers 200; fails if ``process`` or one of ``others`` (pairs of a
    process and its log) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for each, its_log in ((process, log), *others):
            if each.poll() is not None:
                raise RuntimeError(f"{each.args[:4]} exited:\n{its_log.read_text()[-3000:]}")
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
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
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def ensure_venv(venv: Path, check: str, packages: list[str]) -> Path:
    """The virtualenv ``venv`` with ``packages``, installed unless ``check`` imports."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", check]).returncode == 0:
        return venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *packages], check=True)
    return venv


def ensure_lgdev() -> Path:
    venv = ensure_venv(
        LGDEV_VENV, "import langgraph_api", ["langgraph-cli[inmem]", "langchain-core>=1.7,<1.8"]
    )
    return venv / "bin" / "langgraph"


def ensure_aegra() -> Path:
    # uvloop and httptools: with uvicorn's pure-Python defaults Aegra's kept-alive
    # connections stall about 40 ms per request. greenlet: SQLAlchemy's asyncio needs it.
    venv = ensure_venv(
        AEGRA_VENV,
        "import aegra_api, uvloop, httptools, greenlet",
        [f"aegra-api=={AEGRA_VERSION}", "uvloop", "httptools", "greenlet"],
    )
    return venv / "bin" / "python"


# CPU time from /proc ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime+cutime+cstime in seconds) of ``pid``, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # After "pid (comm) ": state ppid ... utime(14) stime(15) cutime(16) cstime(17).
    return int(fields[1]), sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of ``roots`` and all their descendants (reaped children included)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    total, pending, seen = 0.0, list(roots), set()
    while pending:
        pid = pending.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        pending.extend(children.get(pid, []))
    return total


def postgres_backends(database: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend connected to ``database``."""
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", [database]
        ).fetchall()
    return {pid: stat[1] for (pid,) in pids if (stat := _stat(pid))}


@dataclass
class Target:
    """A server under test: where to reach it and which processes do its work."""

    name: str
    url: str
    headers: dict
    ok_path: str
    floor_url: str = ""
    trees: dict[str, list[int]] = field(default_factory=dict)  # "server": [pid], ...
    database: str = ""  # its PostgreSQL database, if any
    redis_pid: int = 0


class CpuProbe:
    """CPU time per request of each of the target's processes over a measured phase."""

    def __init__(self, target: Target):
        self.target = target

    def snapshot(self) -> dict:
        target = self.target
        result = {name: tree_cpu(pids) for name, pids in target.trees.items()}
        if target.database:
            result["PostgreSQL"] = postgres_backends(target.database)
        if target.redis_pid:
            result["Redis"] = tree_cpu([target.redis_pid])
        return result

    async def begin(self):
        return self.snapshot()

    async def end(self, before, count: int) -> dict:
        after = self.snapshot()
        per_request = {}
        for name, value in after.items():
            if isinstance(value, dict):
                # Backends that left during the phase are lost; new ones count in full.
                spent = sum(cpu - before[name].get(pid, 0.0) for pid, cpu in value.items())
            else:
                spent = value - before[name]
            per_request[name] = spent * 1000 / count
        return {"cpu": per_request}


# SQL statements from the PostgreSQL server log -------------------------------------------


def admin_url() -> str:
    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"


def create_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def server_log() -> Path | None:
    """The PostgreSQL server's log file, if this process can read it and its lines name
    the database (%d in log_line_prefix); BENCH_PG_LOG overrides the discovery."""
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        prefix = conn.execute("SHOW log_line_prefix").fetchone()[0]
        current = conn.execute("SELECT pg_current_logfile()").fetchone()[0]
        data_directory = conn.execute("SHOW data_directory").fetchone()[0]
    if os.environ.get("BENCH_PG_LOG"):
        path = Path(os.environ["BENCH_PG_LOG"])
    elif current:
        path = Path(data_directory) / current
    else:
        # No logging collector: Debian's pg_ctlcluster sends stderr to /var/log/postgresql.
        logs = sorted(
            Path("/var/log/postgresql").glob("postgresql-*.log"), key=lambda p: p.stat().st_mtime
        )
        path = logs[-1] if logs else None
    if path is None or "%d" not in prefix or not os.access(path, os.R_OK):
        return None
    return path


DATA_STATEMENTS = {"SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "COPY", "MERGE"}


class StatementProbe:
    """The statements a target's database ran over a measured phase, from the server log."""

    def __init__(self, target: Target, log: Path, phase: str):
        self.pattern = re.compile(
            rf"@{re.escape(target.database)} LOG:  (?:statement|execute [^:]*): (.*)"
        )
        self.log = log
        self.report = VAR / f"api-sql-{target.name.replace(' ', '-')}-{phase}.txt"

    async def begin(self):
        await asyncio.sleep(1)  # let the writes of the warm-up's last runs land
        return self.log.stat().st_size

    async def end(self, start: int, count: int) -> dict:
        await asyncio.sleep(1)  # and the measured runs' last writes
        with self.log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode(errors="replace")
        shapes = Counter()
        kinds = Counter()
        lines = text.splitlines()
        for number, line in enumerate(lines):
            if match := self.pattern.search(line):
                statement = match.group(1).strip()
                # A statement starting with a line break goes on on tab-indented lines.
                for more in lines[number + 1 : number + 4]:
                    if statement or not more.startswith("\t"):
                        break
                    statement = more.strip()
                statement = statement or "(empty query: a connection check)"
                word = statement.split(None, 1)[0].upper().rstrip(";") if statement else ""
                kinds["data" if word in DATA_STATEMENTS else word] += 1
                shapes[re.sub(r"'[^']*'|\$\d+|\b\d+\b", "?", statement)[:160]] += 1
        total = sum(kinds.values())
        self.report.write_text(
            "".join(f"{n / count:8.2f}  {shape}\n" for shape, n in shapes.most_common())
        )
        return {
            "sql": {
                "total": total / count,
                "data": kinds["data"] / count,
                "transactions": (kinds["BEGIN"] + kinds["START"]) / count,
            }
        }


@contextlib.contextmanager
def statements_logged(database: str):
    """log_statement = 'all' for new sessions on ``database`` only, reset on the way out."""
    import psycopg

    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE \"{database}\" SET log_statement = 'all'")
    try:
        yield
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" RESET log_statement')


# The load ---------------------------------------------------------------------------------


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


async def timed(client, make, warm_up: int, count: int, expect: int = 0, probe=None) -> dict:
    """``warm_up`` requests unmeasured, then the summary of ``count`` more (and what
    ``probe`` saw over them, per request)."""
    await load(client, [make] * warm_up, CONCURRENCY, expect)
    token = await probe.begin() if probe else None
    result = summary(*await load(client, [make] * count, CONCURRENCY, expect))
    if probe:
        result.update(await probe.end(token, count))
    return result


async def measure(target: Target, log: Path | None = None) -> dict:
    """State reads and 1-step runs/wait, with the CPU per request; without ``log`` also
    the cheapest route and the floor. With ``log`` (the counting pass), fewer requests and
    the statements per request instead."""
    result = {}
    state_requests, wait_requests = STATE_REQUESTS, WAIT_REQUESTS
    if log:
        state_requests, wait_requests = COUNT_STATE_REQUESTS, COUNT_WAIT_REQUESTS

    def probe(phase):
        return StatementProbe(target, log, phase) if log else CpuProbe(target)

    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=120) as c:
        if not log:
            if target.floor_url:
                result["floor"] = await timed(
                    c, lambda c: c.get(target.floor_url), 100, STATE_REQUESTS, expect=404
                )
            result["ok"] = await timed(c, lambda c: c.get(target.ok_path), 100, STATE_REQUESTS)

        thread = (await c.post("/threads", json={})).json()["thread_id"]
        done = await c.post(
            f"/threads/{thread}/runs/wait", json={"assistant_id": "pipeline", "input": {"steps": 2}}
        )
        done.raise_for_status()
        result["state"] = await timed(
            c,
            lambda c: c.get(f"/threads/{thread}/state"),
            100,
            state_requests,
            probe=probe("state"),
        )

        threads = [
            (await c.post("/threads", json={})).json()["thread_id"] for _ in range(CONCURRENCY)
        ]
        turn = {"n": 0}

        def run_wait(c):
            turn["n"] += 1
            return c.post(
                f"/threads/{threads[turn['n'] % CONCURRENCY]}/runs/wait",
                json={"assistant_id": "pipeline", "input": {"steps": 1}},
            )

        result["wait"] = await timed(c, run_wait, 20, wait_requests, probe=probe("run"))
    return result


def measured(servers, database: str = "", log: Path | None = None) -> dict:
    """The timed pass over a fresh start of ``servers`` (a context manager factory
    yielding a Target); with a readable ``log``, first a counting pass over another start
    with every statement of ``database`` logged, its figures merged in."""
    counted = None
    if database and log:
        with statements_logged(database), servers() as target:
            counted = asyncio.run(measure(target, log))
    with servers() as target:
        result = asyncio.run(measure(target))
    if counted:
        for phase in ("state", "wait"):
            result[phase]["sql"] = counted[phase]["sql"]
    return result


# The servers ------------------------------------------------------------------------------


@contextlib.contextmanager
def private_redis():
    """A Redis server of the bench's own (its CPU is then the bench's alone), unless
    BENCH_REDIS_URL names one."""
    if os.environ.get("BENCH_REDIS_URL"):
        yield
        return
    port = free_port()
    server = start(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        os.environ,
        VAR / "api-redis.log",
    )
    os.environ["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    try:
        yield
    finally:
        stop([server])
        del os.environ["BENCH_REDIS_URL"]


def redis_pid() -> int:
    import redis
    from django.conf import settings

    with redis.Redis.from_url(settings.REDIS_URL) as client:
        deadline = time.monotonic() + 20
        while True:
            try:
                return int(client.info("server")["process_id"])
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def statehouse_servers(secret: str, log_dir: Path):
    @contextlib.contextmanager
    def servers():
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
            worker_logs = [(w, log_dir / f"api-worker-{i}.log") for i, w in enumerate(workers)]
            wait_ready(url + "/ok", headers, server, log_dir / "api-uvicorn.log", worker_logs)
            yield Target(
                name="statehouse",
                url=url,
                headers=headers,
                ok_path="/ok",
                floor_url=f"http://127.0.0.1:{port}/no-such-page/",
                trees={"server": [server.pid], "workers": [w.pid for w in workers]},
                database=os.environ["DATABASE_URL"].rsplit("/", 1)[1],
                redis_pid=redis_pid(),
            )
        finally:
            stop([server, *workers])

    return servers


def statehouse(log_dir: Path, log: Path | None) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connections

    from core.apikeys import create_api_key

    user, _ = get_user_model().objects.get_or_create(username="api-bench")
    secret = create_api_key(user, "bench")[1]
    connections.close_all()
    database = os.environ["DATABASE_URL"].rsplit("/", 1)[1]
    return measured(statehouse_servers(secret, log_dir), database, log)


AEGRA_PREPARE = """
import asyncio
from aegra_api.core.database import db_manager
from aegra_api.core.migrations import run_migrations

async def main():
    await db_manager.initialize()  # LangGraph's checkpointer and store tables
    await db_manager.close()

run_migrations()
asyncio.run(main())
"""


def aegra(log_dir: Path, log: Path | None) -> dict:
    python = ensure_aegra()
    url = os.environ.get("BENCH_AEGRA_DATABASE_URL", DEFAULT_AEGRA_PG)
    create_database(url)
    environ = dict(
        {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE")},
        DATABASE_URL=url,
        AEGRA_CONFIG=str(ROOT / "langgraph.json"),
        AUTH_TYPE="noop",
        LOG_LEVEL="WARNING",
    )
    # Its migrations (alembic) and LangGraph's tables, once: the 2 server processes
    # would otherwise race to create them at start-up.
    prepare = subprocess.run(
        [str(python), "-c", AEGRA_PREPARE], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    if prepare.returncode:
        raise RuntimeError(f"aegra migrations failed:\n{prepare.stderr[-3000:]}")

    @contextlib.contextmanager
    def servers():
        port = free_port()
        server = start(
            [
                str(python),
                "-m",
                "uvicorn",
                "aegra_api.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "2",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            environ,
            log_dir / "api-aegra.log",
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/info", {}, server, log_dir / "api-aegra.log")
            yield Target(
                name="aegra",
                url=base,
                headers={},
                ok_path="/info",
                trees={"server": [server.pid]},
                database=url.rsplit("/", 1)[1],
            )
        finally:
            stop([server])

    return measured(servers, url.rsplit("/", 1)[1], log)


def langgraph_dev(log_dir: Path) -> dict:
    binary = ensure_lgdev()
    environ = dict(os.environ, LANGSMITH_TRACING="false", LANGGRAPH_NO_ANALYTICS="1")
    environ.pop("DATABASE_URL", None)

    @contextlib.contextmanager
    def servers():
        # The in-memory server pickles its threads and checkpoints into .langgraph_api/
        # and loads them at start; left from earlier runs they slow it down (state reads
        # went from 6 ms to 190 ms p50 after a few runs). Each run starts it empty.
        shutil.rmtree(ROOT / ".langgraph_api", ignore_errors=True)
        port = free_port()
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
            wait_ready(url + "/ok", {}, server, log_dir / "api-lgdev.log")
            yield Target(
                name="langgraph dev",
                url=url,
                headers={},
                ok_path="/ok",
                trees={"server": [server.pid]},
            )
        finally:
            stop([server])

    return measured(servers)


# The report -------------------------------------------------------------------------------


def verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def latency(name: str, figures: dict) -> str:
    return (
        f"{name} p50 {figures['p50']:.1f} ms, p99 {figures['p99']:.1f} ms, "
        f"{figures['rps']:.1f} req/s"
    )


def cpu(name: str, figures: dict) -> str:
    parts = figures["cpu"]
    detail = ", ".join(f"{part} {ms:.1f}" for part, ms in parts.items())
    return f"{name} {sum(parts.values()):.1f} ms ({detail})"


def statements(name: str, figures: dict) -> str:
    sql = figures.get("sql")
    if not sql:
        return f"{name} not counted"
    return (
        f"{name} {sql['total']:.1f} ({sql['data']:.1f} data statements, "
        f"{sql['total'] - sql['data']:.1f} other, {sql['transactions']:.1f} transactions)"
    )


NAMES = ("statehouse", "aegra", "langgraph dev")


def report(ours: dict, peer: dict, anchor: dict, counted: bool) -> list[str]:
    head = f"(concurrency {CONCURRENCY})"
    state = (ours["state"], peer["state"], anchor["state"])
    wait = (ours["wait"], peer["wait"], anchor["wait"])
    read_ratio = state[0]["p50"] / state[1]["p50"]
    to_aegra = wait[0]["rps"] / wait[1]["rps"]
    to_lgdev = wait[0]["rps"] / wait[2]["rps"]
    run_cpu = sum(wait[0]["cpu"].values())
    lines = [
        f"api GET /threads/{{id}}/state {head}: "
        + "; ".join(map(latency, NAMES, state))
        + f"; p50 ratio to aegra {read_ratio:.2f} (target <= 1.0: {verdict(read_ratio <= 1)})"
        + f", to langgraph dev {state[0]['p50'] / state[2]['p50']:.2f}",
        f"api POST /threads/{{id}}/runs/wait pipeline(1 step) {head}: "
        + "; ".join(map(latency, NAMES, wait))
        + f"; throughput ratio to aegra {to_aegra:.2f} (target >= {TARGET_WAIT_VS_AEGRA}: "
        + f"{verdict(to_aegra >= TARGET_WAIT_VS_AEGRA)}), to langgraph dev {to_lgdev:.2f} "
        + f"(target >= {TARGET_WAIT_VS_LGDEV}: {verdict(to_lgdev >= TARGET_WAIT_VS_LGDEV)})",
        f"api CPU per 1-step run {head}: "
        + "; ".join(map(cpu, NAMES, wait))
        + f"; statehouse (target <= {TARGET_CPU_PER_RUN_MS} ms: "
        + f"{verdict(run_cpu <= TARGET_CPU_PER_RUN_MS)})",
        f"api CPU per state read {head}: " + "; ".join(map(cpu, NAMES, state)),
    ]
    if counted:
        run_sql, read_sql = ours["wait"].get("sql"), ours["state"].get("sql")
        run_met = bool(run_sql) and run_sql["total"] <= TARGET_STATEMENTS_PER_RUN
        read_met = bool(read_sql) and read_sql["total"] <= TARGET_STATEMENTS_PER_READ
        lines += [
            f"api SQL statements per 1-step run on an existing thread {head}: "
            + "; ".join(map(statements, NAMES[:2], wait[:2]))
            + f"; statehouse (target <= {TARGET_STATEMENTS_PER_RUN}: {verdict(run_met)})",
            f"api SQL statements per state read {head}: "
            + "; ".join(map(statements, NAMES[:2], state[:2]))
            + f"; statehouse (target <= {TARGET_STATEMENTS_PER_READ}: {verdict(read_met)})",
            f"api SQL statements by text: {VAR.relative_to(ROOT)}/api-sql-<server>-<run|state>.txt",
        ]
    else:
        lines.append(
            "api SQL statements: not counted (the PostgreSQL server log is not readable here "
            "or its log_line_prefix has no %d; set BENCH_PG_LOG)"
        )
    cheapest = ("statehouse GET /ok", "aegra GET /info", "langgraph dev GET /ok")
    floor = ours["floor"]
    lines += [
        f"api cheapest route {head}: "
        + "; ".join(map(latency, cheapest, (ours["ok"], peer["ok"], anchor["ok"]))),
        f"api floor {head}: an unknown page on statehouse (Django's 404: middleware and URL "
        f"resolver, no auth, no database) p50 {floor['p50']:.1f} ms, {floor['rps']:.1f} req/s; "
        f"p50 ratio to langgraph dev's state read {floor['p50'] / anchor['state']['p50']:.2f}",
    ]
    return lines


def main() -> None:
    # A terminated bench still stops its servers and resets log_statement (finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    VAR.mkdir(parents=True, exist_ok=True)
    with private_redis():
        setup("postgresql", redis=True)
        log = server_log()
        ours = statehouse(VAR, log)
        peer = aegra(VAR, log)
        anchor = langgraph_dev(VAR)
    for text in report(ours, peer, anchor, counted=bool(log)):
        print(text)


if __name__ == "__main__":
    main()
