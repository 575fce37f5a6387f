from django.apps import AppConfig


class CheckpointsConfig(AppConfig):
    name = "checkpoints_app"
    verbose_name = "Checkpoints"

    def ready(self):
        from django.db.models.signals import post_delete

        from checkpoints_app import handlers
        from checkpoints_app.connections import check_django_pools_when_idle
        from core.events import state_changed

        check_django_pools_when_idle()

        state_changed.connect(
            handlers.record_restore_point,
            sender="threads_app.Thread",
            dispatch_uid="checkpoints_app.restore_point",
        )
        post_delete.connect(
            handlers.delete_thread_checkpoints,
            sender="threads_app.Thread",
            dispatch_uid="checkpoints_app.thread_checkpoints",
        )
