"""Runs through the whole stack on PostgreSQL + Redis with real worker processes.

1. `pipeline` runs per second (steps 5, delay 0.05 s) with 1 and with 2 worker
   processes: 2 workers should give at least 1.7x the throughput of 1.
2. One 20-step `pipeline` run through Statehouse (API-level service call to final
   status, as a client sees it) divided by the same graph invoked directly with
   PostgresSaver, in the same run: the overhead ratio should be at most 1.2.
"""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _django import ROOT, setup

RUNS = 16
QUEUE = f"bench-{uuid.uuid4().hex[:8]}"


def start_workers(count: int, log_dir: Path) -> list[subprocess.Popen]:
    from django.conf import settings

    environ = dict(
        os.environ,
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=settings.REDIS_URL,
        STATEHOUSE_QUEUE=QUEUE,
        LOG_LEVEL="WARNING",
    )
    workers = []
    for index in range(count):
        log = open(log_dir / f"worker-{index}.log", "w")  # noqa: SIM115
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "config",
                    "worker",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "INFO",
                    "-n",
                    f"bench{index}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                ],
                cwd=ROOT,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = [(log_dir / f"worker-{i}.log").read_text() for i in range(count)]
        if all("ready." in text for text in logs):
            return workers
        time.sleep(0.1)
    raise RuntimeError("workers did not start: " + "\n".join(logs))


def stop_workers(workers) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.wait(30)


def wait_all(run_ids, timeout=300.0) -> None:
    from threads_app.models import Run

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = Run.objects.filter(pk__in=run_ids).exclude(status__in=Run.FINAL_STATUSES)
        if not left.exists():
            failed = Run.objects.filter(pk__in=run_ids).exclude(status="success")
            if failed.exists():
                raise RuntimeError(f"runs failed: {list(failed.values('status', 'error'))}")
            return
        time.sleep(0.01)
    raise RuntimeError("runs did not finish")


def make_threads(count):
    from django.contrib.auth import get_user_model

    from sessions_app.services import create_session
    from threads_app import services

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    session = create_session(owner, "runs bench")
    workflow = services.resolve_workflow("pipeline")
    return [services.create_thread(session, workflow) for _ in range(count)]


def throughput(workers_count: int, log_dir: Path) -> float:
    from threads_app import services

    workers = start_workers(workers_count, log_dir)
    try:
        warm = make_threads(workers_count)
        wait_all([services.create_run(t, input={"steps": 1}).pk for t in warm])
        threads = make_threads(RUNS)
        start = time.perf_counter()
        ids = [services.create_run(t, input={"steps": 5, "delay_s": 0.05}).pk for t in threads]
        wait_all(ids)
        return RUNS / (time.perf_counter() - start)
    finally:
        stop_workers(workers)


def statehouse_20_steps(log_dir: Path, rounds: int = 3) -> float:
    from threads_app import services

    workers = start_workers(1, log_dir)
    try:
        best = float("inf")
        for thread in make_threads(rounds + 1)[: rounds + 1]:
            start = time.perf_counter()
            run = services.create_run(thread, input={"steps": 20, "delay_s": 0.05})
            wait_all([run.pk])
            best = min(best, time.perf_counter() - start)
        return best
    finally:
        stop_workers(workers)


def direct_20_steps(rounds: int = 3) -> float:
    from langgraph.checkpoint.postgres import PostgresSaver

    from threads_app.registry import load_graph

    url = os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1)
    with PostgresSaver.from_conn_string(url) as saver:
        saver.setup()
        graph = load_graph("pipeline", checkpointer=saver)
        best = float("inf")
        for _ in range(rounds + 1):
            config = {"configurable": {"thread_id": str(uuid.uuid4())}}
            start = time.perf_counter()
            graph.invoke({"steps": 20, "delay_s": 0.05}, config)
            best = min(best, time.perf_counter() - start)
        return best


def main() -> None:
    os.environ["STATEHOUSE_QUEUE"] = QUEUE  # this process enqueues where the workers listen
    setup("postgresql", redis=True)
    log_dir = ROOT / "var" / "bench"
    log_dir.mkdir(parents=True, exist_ok=True)
    one = throughput(1, log_dir)
    two = throughput(2, log_dir)
    print(
        f"runs pipeline(5 steps, 0.05 s) throughput: 1 worker {one:.2f} runs/s, "
        f"2 workers {two:.2f} runs/s, scaling {two / one:.2f}x (target >= 1.7x)"
    )
    ours = statehouse_20_steps(log_dir)
    direct = direct_20_steps()
    print(
        f"runs pipeline(20 steps, 0.05 s) latency: statehouse {ours * 1000:.0f} ms, "
        f"direct PostgresSaver {direct * 1000:.0f} ms, overhead ratio {ours / direct:.2f} "
        f"(target <= 1.2)"
    )


if __name__ == "__main__":
    main()
