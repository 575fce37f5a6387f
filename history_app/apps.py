from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "history_app"
    verbose_name = "History"

    def ready(self):
        from core.events import state_changed_batch
        from history_app import handlers

        state_changed_batch.connect(
            handlers.record_state_events, dispatch_uid="history_app.state_event"
        )
