from core.consumers import FeedConsumer, is_staff
from threads_app.models import Run, Thread


class ThreadConsumer(FeedConsumer):
    """A thread, its runs' state changes and their streamed events (the runtime pushes a
    run's events to its thread's group too): for staff and the session's owner."""

    group_prefix = "thread"

    def can_view(self, user) -> bool:
        threads = Thread.objects.filter(pk=self.object_id())
        if not is_staff(user):
            threads = threads.filter(session__owner=user)
        return user.is_active and threads.exists()


class RunConsumer(FeedConsumer):
    """One run's state changes and streamed events."""

    group_prefix = "run"

    def can_view(self, user) -> bool:
        runs = Run.objects.filter(pk=self.object_id())
        if not is_staff(user):
            runs = runs.filter(thread__session__owner=user)
        return user.is_active and runs.exists()
