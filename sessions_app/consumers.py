from core.consumers import FeedConsumer, is_staff
from sessions_app.models import Session


class SessionConsumer(FeedConsumer):
    """A session, its threads and its usage: for staff and the session's owner."""

    group_prefix = "session"

    def can_view(self, user) -> bool:
        sessions = Session.objects.filter(pk=self.object_id())
        if not is_staff(user):
            sessions = sessions.filter(owner=user)
        return user.is_active and sessions.exists()
