"""A little demo data, created through the state manager (so it has history too)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from sessions_app.models import Session
from sessions_app.services import create_session
from threads_app import services as threads

DEMO_TITLE = "Demo: support conversation"


class Command(BaseCommand):
    help = "Load demo sessions, workflows and threads (once; does nothing if they exist)."

    def handle(self, *args, **options):
        User = get_user_model()
        owner = User.objects.filter(is_superuser=True).order_by("pk").first()
        if owner is None:
            self.stderr.write("No administrator yet: run manage.py ensure_admin first.")
            return
        if Session.objects.filter(title=DEMO_TITLE).exists():
            self.stdout.write("Demo data is loaded already.")
            return
        with transaction.atomic():
            chat = threads.ensure_system_workflow("chat", description="Assistant with a tool")
            approval = threads.ensure_system_workflow("approval", description="Human approval")
            pipeline = threads.ensure_system_workflow("pipeline", description="Step pipeline")
            actor = "demo"
            support = create_session(owner, DEMO_TITLE, {"channel": "web"}, actor=actor)
            done = threads.create_thread(support, chat, {"topic": "refund"}, actor=actor)
            threads.mark_thread_running(done.pk, actor=actor)
            threads.mark_thread_finished(done.pk, {"answer": "Refund issued."}, actor=actor)
            waiting = threads.create_thread(support, approval, {"topic": "draft"}, actor=actor)
            threads.mark_thread_running(waiting.pk, actor=actor)
            batch = create_session(owner, "Demo: nightly batch", {"channel": "cron"}, actor=actor)
            failed = threads.create_thread(batch, pipeline, {"steps": 5}, actor=actor)
            threads.mark_thread_running(failed.pk, actor=actor)
            threads.mark_thread_failed(failed.pk, "step 3: upstream timed out", actor=actor)
        self.stdout.write("Demo data loaded: 2 sessions, 3 threads.")
