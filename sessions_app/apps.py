from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions_app"
    verbose_name = "Sessions"

    def ready(self):
        from core.events import state_changed
        from sessions_app import handlers

        state_changed.connect(
            handlers.update_session_aggregate,
            sender="threads_app.Thread",
            dispatch_uid="sessions_app.session_aggregate",
        )
