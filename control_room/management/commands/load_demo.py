"""Demo data that is real: runs of the demo graphs, executed here by the runtime.

Every thread is made by the services and every run is started by
``threads_app.services.create_run`` and executed by ``threads_app.runtime.execute_run``
in this process (``make run`` loads the demo before it serves, so no worker is up yet;
with a worker running elsewhere, the run is waited for instead). So the demo has what a
real installation has: runs, checkpoints, messages, LLM calls with tokens and cost, state
changes, a thread waiting for a human and a run that failed with a real error. Loaded
once: a second call finds the demo session and does nothing.
"""

import contextlib
import logging

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from sessions_app.models import Session
from sessions_app.services import create_session
from threads_app import runtime
from threads_app import services as threads
from threads_app.models import Run

DEMO_TITLE = "Demo: support conversation"
BATCH_TITLE = "Demo: nightly batch"
ACTOR = "demo"
WAIT_S = 120.0


class Command(BaseCommand):
    help = "Load demo sessions and threads with real runs of the demo graphs (once)."

    def handle(self, *args, **options):
        User = get_user_model()
        owner = User.objects.filter(is_superuser=True).order_by("pk").first()
        if owner is None:
            self.stderr.write("No administrator yet: run manage.py ensure_admin first.")
            return
        if Session.objects.filter(title=DEMO_TITLE).exists():
            self.stdout.write("Demo data is loaded already.")
            return
        chat = threads.ensure_system_workflow("chat", description="Assistant with a tool")
        approval = threads.ensure_system_workflow("approval", description="Human approval")
        pipeline = threads.ensure_system_workflow("pipeline", description="Step pipeline")
        support = create_session(owner, DEMO_TITLE, {"channel": "web"}, actor=ACTOR)
        batch = create_session(owner, BATCH_TITLE, {"channel": "cron"}, actor=ACTOR)

        order = threads.create_thread(support, chat, {"topic": "order status"}, actor=ACTOR)
        self.run(order, input={"messages": [{"role": "user", "content": "Where is order 1042?"}]})

        refund = threads.create_thread(support, approval, {"topic": "refund"}, actor=ACTOR)
        self.run(refund, input={"request": "refund for order 1042"})
        self.run(refund, command={"resume": {"action": "approve"}})

        waiting = threads.create_thread(support, approval, {"topic": "apology"}, actor=ACTOR)
        self.run(waiting, input={"request": "apology for the late delivery"})

        nightly = threads.create_thread(batch, pipeline, {"job": "reindex"}, actor=ACTOR)
        self.run(nightly, input={"steps": 6})

        broken = threads.create_thread(batch, pipeline, {"job": "export"}, actor=ACTOR)
        # A negative delay makes the graph's time.sleep raise: a real error, from the graph.
        self.run(broken, input={"steps": 3, "delay_s": -1}, expect=Run.Status.ERROR)

        self.stdout.write(
            "Demo data loaded: 2 sessions, 5 threads, 6 runs (one waits for a human, one failed)."
        )

    def run(self, thread, *, expect: str = Run.Status.SUCCESS, **request):
        run = threads.create_run(thread, actor=ACTOR, **request)
        with _quiet_runtime() if expect == Run.Status.ERROR else contextlib.nullcontext():
            runtime.execute_run(run.pk)  # "skipped" if a worker elsewhere took it first
        finished = threads.wait_for_run(run.pk, timeout=WAIT_S)
        if finished is None or finished.status != expect:
            status = finished.status if finished else "not finished"
            raise CommandError(f"demo run {run.pk} on {thread}: {status}, expected {expect}")
        return finished


@contextlib.contextmanager
def _quiet_runtime():
    """The run meant to fail logs no traceback into ``make run``'s output."""
    logger = logging.getLogger(runtime.__name__)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
