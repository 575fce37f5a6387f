from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints_app"
    verbose_name = "Checkpoints"

    def ready(self):
        from checkpoints_app import handlers
        from core.events import state_changed

        state_changed.connect(
            handlers.record_restore_point, dispatch_uid="checkpoints_app.restore_point"
        )
