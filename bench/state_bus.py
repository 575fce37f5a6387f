"""State updates per second through the state manager, with every handler connected.

Compared, in the same run and on the same row, with a bare ``Model.save()``. Run on
SQLite and on PostgreSQL (each in its own process):

    python bench/state_bus.py            # both
    python bench/state_bus.py sqlite     # one
"""

import subprocess
import sys
import time
from pathlib import Path

N = 2000
WARMUP = 200


def measure(fn, n: int) -> float:
    for i in range(WARMUP):
        fn(i)
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def run(backend: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _django import setup

    setup(backend)
    from django.contrib.auth import get_user_model

    from core import realtime, state
    from sessions_app.models import Session
    from sessions_app.services import create_session
    from threads_app.services import create_thread

    owner, _ = get_user_model().objects.get_or_create(username="bench")
    session = create_session(owner, "bench")
    thread = create_thread(session)

    def bare_save(i):
        row = Session.objects.get(pk=session.pk)
        row.title = f"bare {i}"
        row.save()

    def session_update(i):
        state.update_state("session", session.pk, {"title": f"managed {i}"})

    thread_statuses = ("busy", "idle")

    def thread_update(i):
        state.update_state("thread", thread.pk, {"status": thread_statuses[i % 2]})

    bare = measure(bare_save, N)
    managed = measure(session_update, N)
    threads = measure(thread_update, N // 2)
    realtime.flush()
    if backend == "postgresql":
        parallel(owner, Session, create_session, state, backend)
    print(
        f"state_bus {backend} session update: {managed:,.0f} updates/s, "
        f"bare save {bare:,.0f}/s, overhead {bare / managed:.2f}x"
    )
    print(
        f"state_bus {backend} thread status update (+ session aggregate, restore point): "
        f"{threads:,.0f} updates/s, overhead {bare / threads:.2f}x vs bare save"
    )


CLIENTS = 4


def parallel(owner, Session, create_session, state, backend) -> None:
    """The same two loops from CLIENTS threads at once, each on its own session row:
    what the database sustains when several workers and requests change state."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    rows = [create_session(owner, f"bench {i}").pk for i in range(CLIENTS)]
    per_client = N // CLIENTS

    def bare(pk):
        for i in range(per_client):
            row = Session.objects.get(pk=pk)
            row.title = f"bare {i}"
            row.save()
        connection.close()

    def managed(pk):
        for i in range(per_client):
            state.update_state("session", pk, {"title": f"managed {i}"})
        connection.close()

    rates = {}
    for name, work in (("bare", bare), ("managed", managed)):
        with ThreadPoolExecutor(CLIENTS) as pool:
            start = time.perf_counter()
            list(pool.map(work, rows))
            rates[name] = per_client * CLIENTS / (time.perf_counter() - start)
    print(
        f"state_bus {backend} session update, {CLIENTS} clients at once: "
        f"{rates['managed']:,.0f} updates/s, bare save {rates['bare']:,.0f}/s, "
        f"overhead {rates['bare'] / rates['managed']:.2f}x"
    )


def main() -> None:
    backends = sys.argv[1:] or ["sqlite", "postgresql"]
    if len(backends) == 1:
        run(backends[0])
        return
    for backend in backends:
        subprocess.run([sys.executable, __file__, backend], check=True)


if __name__ == "__main__":
    main()
